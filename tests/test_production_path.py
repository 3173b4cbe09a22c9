"""The production configs' training path on a CPU: what a GPU run relies on, run here first.

configs/{convnext_xxl,eva02_l,vit_h14}.yaml train and predict with every setting they have (cosine
loss, EMA 0.9995, gradient checkpointing, a linear-probe epoch, layer decay, grad_accum 2, batch 32,
precision) but the backbone (a tiny random-init member of the same family), the data paths, two short
epochs and the image size (32 px: at the production 224-336 px one such run takes 15-50 s on this
2-core CPU). Fold 0 of 4 only: the other folds run the same code. Then the pieces one at a time:
precision (bf16 autocast, fp16 + GradScaler), EMA, gradient checkpointing, the linear probe, early
stopping on an inner split of whole prompt groups. (Layer decay per family: tests/test_train.py;
augmentation: tests/test_augment.py; the losses: tests/test_losses.py.)
"""
import contextlib
import shutil
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import core.faults
import models.loop as loop
from core.dataset import load_dataset
from core.errors import DataError
from core.folds import groups_path, load_folds, save_groups
from core.io import read_json
from models.config import load_config
from models.distributed import DistEnv
from models.engine import build_model_for_inference, predict_rows
from models.image_cache import build_image_cache
from models.train import TrainingData, train_run
from tests.model_fixtures import PRODUCTION_CONFIGS, REPO, make_tiny_project, production_overrides

SIZE = 32
N_TRAIN, K = 88, 4  # fold 0 trains on 66 rows: two steps of the production batch (32)
# train.precision -> what a CPU runs it as
PRECISIONS = {"auto": "fp32", "bf16": "bf16", "fp16": "fp16"}
# fp16 on a CPU without fp16 arithmetic is emulated (5x slower than bf16 for ConvNeXt and the ViT):
# the whole fp16 run for the cheapest family, the GradScaler's unscale-before-clip for the ViT below
FP16_RUNS = ("eva02_l",)
RUNS = [(name, p) for name in sorted(PRODUCTION_CONFIGS) for p in PRECISIONS if p != "fp16" or name in FP16_RUNS]
# what each production config differs in from its YAML in these tests (data.* and out: paths)
CHANGED_KEYS = {"backbone.name", "backbone.pretrained", "backbone.kwargs", "image.size", "train.epochs",
                "train.max_steps_per_epoch", "train.num_threads", "train.precision"}


def cpu_fp16_supported():
    try:
        scaler = torch.amp.GradScaler("cpu")
        lin = torch.nn.Linear(4, 4)
        with torch.autocast("cpu", dtype=torch.float16):
            out = lin(torch.ones(2, 4))
        scaler.scale(out.float().mean()).backward()
        return out.dtype == torch.float16
    except (RuntimeError, TypeError, AssertionError):
        return False


FP16_SKIP = pytest.mark.skipif(not cpu_fp16_supported(), reason=f"torch {torch.__version__} has no fp16 autocast or "
                               "GradScaler on CPU: the fp16 path runs on CUDA only")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_tiny_project(tmp_path_factory.mktemp("prod"), n_train=N_TRAIN, n_test=6, k=K)
    # one decode process: above 64 images the trainer's cache build starts a pool of spawned workers
    build_image_cache(load_dataset(root / "data" / "train")["path"], SIZE, root / "cache", "bicubic", workers=1,
                      progress=False)
    return root


def production_cfg(name, project, out, **kw):
    return load_config(REPO / f"configs/{name}.yaml", production_overrides(name, project, out, size=SIZE, **kw))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@contextlib.contextmanager
def recording():
    """Record a fold's training from inside models.loop: its FoldModel, the weights at the start and after
    each epoch (live and the evaluated model, EMA when on), and the optimizer updates."""
    rec = SimpleNamespace(fm=None, initial=None, live=[], evaluated=[], updates=0, splits=[])
    build, end, update, split = loop.build_fold_model, loop.end_of_epoch, loop._optimizer_update, loop.split_inner_rows

    def build_spy(*args, **kwargs):
        rec.fm = build(*args, **kwargs)
        rec.initial = snapshot(rec.fm.model)
        return rec.fm

    def end_spy(fm, *args, **kwargs):
        rec.live.append(snapshot(fm.model))
        rec.evaluated.append(snapshot(fm.eval_model))
        return end(fm, *args, **kwargs)

    def update_spy(*args):
        rec.updates += 1
        return update(*args)

    def split_spy(*args):
        rec.splits.append(split(*args))
        return rec.splits[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "build_fold_model", build_spy)
        mp.setattr(loop, "end_of_epoch", end_spy)
        mp.setattr(loop, "_optimizer_update", update_spy)
        mp.setattr(loop, "split_inner_rows", split_spy)
        yield rec


def backbone_keys(state):
    return [k for k in state if k.startswith("backbone.")]


@pytest.fixture(scope="module")
def runs(project, tmp_path_factory):
    """Fold 0 of each production config, in each precision."""
    out = {}
    for name, precision in RUNS:
        if precision == "fp16" and not cpu_fp16_supported():
            continue
        cfg = production_cfg(name, project, tmp_path_factory.mktemp(f"{name}-{precision}") / "run",
                             extra=[] if precision == "auto" else [f"train.precision={precision}"])
        with recording() as rec:
            train_run(cfg, folds="0", progress=False)
        out[name, precision] = SimpleNamespace(cfg=cfg, rec=rec, fold=Path(cfg["out"]) / "folds" / "fold0")
    return out


def fold0_rows(project):
    ids = load_dataset(project / "data" / "train")["imgId"].tolist()
    return np.flatnonzero(load_folds(project / "folds.csv", ids) == 0)


def flat(cfg, prefix=""):
    """{"train.lr": 1e-4, ...}: a config's settings by dotted key (backbone.kwargs as one value)."""
    out = {}
    for k, v in cfg.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v and k != "kwargs" else {prefix + k: v})
    return out


@pytest.mark.parametrize("name, precision", RUNS)
def test_production_config_trains_and_predicts(runs, project, name, precision):
    if (name, precision) not in runs:
        pytest.skip(f"torch {torch.__version__} has no fp16 autocast or GradScaler on CPU: the fp16 path runs on "
                    "CUDA only")
    run = runs[name, precision]
    plain = flat(load_config(REPO / f"configs/{name}.yaml"))
    changed = {k for k, v in flat(run.cfg).items() if plain.get(k) != v and not k.startswith(("data.", "out"))}
    assert changed <= CHANGED_KEYS, changed  # every other production setting is what the test trains with
    t = run.cfg["train"]
    assert run.cfg["loss"]["type"] == "cosine" and t["ema_decay"] == 0.9995 and t["linear_probe_epochs"] == 1
    assert run.cfg["backbone"]["grad_checkpointing"] and t["layer_decay"] < 1 and t["grad_accum"] == 2
    assert t["batch_size"] == 32
    assert any(getattr(m, "grad_checkpointing", False) for m in run.rec.fm.model.backbone.modules())

    stats = read_json(run.fold / "done.json")
    assert stats["precision"] == PRECISIONS[precision] and stats["epochs_trained"] == 2
    # 2 micro-batches per update (grad_accum 2), 2 steps per epoch, 2 epochs
    assert run.rec.updates == 2 and run.rec.fm.ema is not None
    oof, test = np.load(run.fold / "oof.npy"), np.load(run.fold / "test.npy")
    assert oof.shape == (len(fold0_rows(project)), 384) and test.shape == (6, 384)
    assert np.isfinite(oof).all() and np.isfinite(test).all() and np.abs(oof).max() > 0
    log = pd.read_csv(run.fold / "train_log.csv")
    assert len(log) == 2 and np.isfinite(log["train_loss"]).all()


@pytest.mark.parametrize("precision", ["auto", "bf16"])
@pytest.mark.parametrize("name", sorted(PRODUCTION_CONFIGS))
def test_linear_probe_epoch_freezes_the_backbone_then_fine_tunes(runs, name, precision):
    rec = runs[name, precision].rec
    keys = backbone_keys(rec.initial)
    epoch1, epoch2 = rec.live
    frozen = [k for k in keys if torch.equal(rec.initial[k], epoch1[k])]
    assert frozen == keys, "the backbone changed during the linear-probe epoch"
    assert not torch.equal(rec.initial["head.1.weight"], epoch1["head.1.weight"]), "the head did not learn"
    params = {f"backbone.{n}" for n, _ in rec.fm.model.backbone.named_parameters()}
    moved = [k for k in params if not torch.equal(epoch1[k], epoch2[k])]
    assert len(moved) >= 0.9 * len(params), f"only {len(moved)} of {len(params)} backbone tensors fine-tuned"


@pytest.mark.parametrize("name", sorted(PRODUCTION_CONFIGS))
def test_predictions_use_the_ema_weights(runs, project, name):
    run = runs[name, "auto"]
    fm = run.rec.fm
    live, ema = fm.model.state_dict(), fm.ema.module.state_dict()
    assert any(not torch.equal(live[k], ema[k]) for k in live), "EMA weights equal the live weights"
    saved = torch.load(run.fold / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert saved.keys() == ema.keys() and all(torch.equal(saved[k], ema[k]) for k in ema)
    images = build_image_cache(load_dataset(project / "data" / "train")["path"], SIZE, project / "cache", "bicubic",
                               progress=False)
    rows, bs = fold0_rows(project), run.cfg["predict"]["batch_size"]
    torch.set_num_threads(run.cfg["train"]["num_threads"])  # the run's threads: the same bits
    with_ema = predict_rows(fm.ema.module, images, rows, fm.pre, bs, torch.device("cpu"), "fp32")
    with_live = predict_rows(fm.model, images, rows, fm.pre, bs, torch.device("cpu"), "fp32")
    oof = np.load(run.fold / "oof.npy")
    np.testing.assert_array_equal(oof, with_ema)
    assert np.abs(oof - with_live).max() > 1e-5


def test_ema_run_crashed_and_resumed_equals_uninterrupted(project, tmp_path, monkeypatch):
    # 3 epochs: the checkpoint after epoch 2 holds an EMA apart from the live weights (timm's EMA copies
    # the weights at its first update)
    ref = production_cfg("eva02_l", project, tmp_path / "ref", epochs=3)
    train_run(ref, folds="0", progress=False)
    cfg = production_cfg("eva02_l", project, tmp_path / "run", epochs=3, extra=["train.checkpoint_every=1"])
    # a crash in epoch 3's first step, in-process: on disk what a SIGKILL leaves, the checkpoint of epoch 2
    monkeypatch.setenv(core.faults.FAULT_ENV, "train_step:5:EIO")
    monkeypatch.setattr(core.faults, "_reached", {})
    with pytest.raises(OSError, match="fault train_step"):
        train_run(cfg, folds="0", progress=False)
    monkeypatch.delenv(core.faults.FAULT_ENV)
    fold, ref_fold = tmp_path / "run" / "folds" / "fold0", tmp_path / "ref" / "folds" / "fold0"
    state = torch.load(fold / "last.pt", map_location="cpu", weights_only=False)
    assert (state["epoch"], state["step"]) == (2, 0)
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items()}
    assert any(not torch.equal(state["model"][k], ema[k]) for k in state["model"])
    train_run(cfg, folds="0", resume=True, progress=False)
    for f in ("oof.npy", "test.npy"):
        np.testing.assert_array_equal(np.load(fold / f), np.load(ref_fold / f))
    a = torch.load(fold / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    b = torch.load(ref_fold / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)


# --- precision -------------------------------------------------------------------------------------------


def fixed_batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, SIZE, SIZE, generator=g)
    y = torch.randn(n, 384, generator=g)
    return x, (y / y.norm(dim=1, keepdim=True)).numpy()


def fold_model(cfg, targets, updates_per_epoch=1):
    return loop.build_fold_model(cfg, 0, targets, np.arange(len(targets)), updates_per_epoch, DistEnv())


def test_bf16_autocast_trains_on_cpu(project, tmp_path):
    cfg = production_cfg("eva02_l", project, tmp_path, extra=["train.precision=bf16", "train.warmup_epochs=0",
                                                               "train.lr=1e-3"])
    x, targets = fixed_batch()
    fm = fold_model(cfg, targets, updates_per_epoch=8)
    assert fm.precision == "bf16" and fm.scaler is None
    y, st, losses = torch.from_numpy(targets), loop.FoldState(), []
    xn = loop.normalize(x, fm.pre["mean"], fm.pre["std"])
    for _ in range(8):
        fm.model.train()
        with fm.autocast:
            z = fm.model(xn)
        assert z.dtype == torch.bfloat16
        loss = loop.training_loss(fm.model, z, y, cfg["loss"])
        loss.backward()
        loop._optimizer_update(fm, st, cfg["train"])
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] - 0.05, losses


@FP16_SKIP
def test_fp16_grad_scaler_unscales_before_clipping(project, tmp_path, monkeypatch):
    cfg = production_cfg("vit_h14", project, tmp_path, extra=["train.precision=fp16", "train.clip_grad=0.5"])
    x, targets = fixed_batch()
    fm = fold_model(cfg, targets)
    assert fm.precision == "fp16" and isinstance(fm.scaler, torch.amp.GradScaler)
    xn = loop.normalize(x, fm.pre["mean"], fm.pre["std"])
    fm.model.train()
    with fm.autocast:
        z = fm.model(xn)
    assert z.dtype == torch.float16
    fm.scaler.scale(loop.training_loss(fm.model, z, torch.from_numpy(targets), cfg["loss"])).backward()
    scale = fm.scaler.get_scale()
    params = [p for p in fm.model.parameters() if p.grad is not None]
    scaled = [p.grad.clone() for p in params]
    seen = []
    clip = torch.nn.utils.clip_grad_norm_

    def clip_spy(parameters, max_norm, *args, **kwargs):
        seen.append([p.grad.clone() for p in params])
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_spy)
    before = [p.detach().clone() for p in params]
    loop._optimizer_update(fm, loop.FoldState(), cfg["train"])
    assert scale > 1 and len(seen) == 1
    for got, raw in zip(seen[0], scaled):  # clip saw the true gradients: the scaled ones / scale
        torch.testing.assert_close(got, raw / scale, rtol=1e-6, atol=0)
    assert all(torch.isfinite(g).all() for g in scaled)
    assert any(not torch.equal(b, p) for b, p in zip(before, params)), "the scaler skipped the step"


# --- gradient checkpointing -------------------------------------------------------------------------------


def saved_tensor_count(fn):
    n = [0]

    def pack(t):
        n[0] += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, n[0]


@pytest.mark.parametrize("name", sorted(PRODUCTION_CONFIGS))
def test_gradient_checkpointing_gives_the_same_gradients(name):
    from models.backbones import create_backbone

    section = load_config(REPO / f"configs/{name}.yaml", PRODUCTION_CONFIGS[name])["backbone"]
    assert section["grad_checkpointing"]
    with_ckpt = create_backbone(section, SIZE).module
    plain = create_backbone({**section, "grad_checkpointing": False}, SIZE).module
    plain.load_state_dict(with_ckpt.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, SIZE, SIZE, generator=g)
    grads, saved = [], []
    for model in (with_ckpt, plain):
        model.train()  # drop path on (the production rate), the same draws in both
        torch.manual_seed(1)
        out, n = saved_tensor_count(partial(model, x))
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
        (out * w).sum().backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
        saved.append(n)
    assert saved[0] < saved[1], f"checkpointing is not active: {saved[0]} tensors saved for backward vs {saved[1]}"
    assert grads[0].keys() == grads[1].keys()
    for k in grads[1]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-6, msg=k)


# --- early stopping on an inner split of whole prompt groups --------------------------------------------------


def folds_with_groups(project, folder, rows_per_group=4):
    """folds.csv of the project in `folder`, with a groups.csv of groups of `rows_per_group` rows of one fold."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(project / "folds.csv", folder / "folds.csv")
    ids = load_dataset(project / "data" / "train")["imgId"].tolist()
    folds = load_folds(project / "folds.csv", ids)
    groups = np.empty(len(ids), dtype=np.int64)
    for f in np.unique(folds):
        rows = np.flatnonzero(folds == f)
        groups[rows] = f * 1000 + np.arange(len(rows)) // rows_per_group
    save_groups(groups_path(folder / "folds.csv"), ids, groups)
    return folder / "folds.csv", groups


INNER_SCORES = [0.1, 0.5, 0.3, 0.2]  # the best epoch is 2; patience 2 stops after epoch 4 of 6


@pytest.fixture(scope="module")
def inner_val_run(project, tmp_path_factory):
    folds_csv, groups = folds_with_groups(project, tmp_path_factory.mktemp("groups"))
    cfg = production_cfg("eva02_l", project, tmp_path_factory.mktemp("es") / "run", epochs=6, extra=[
        f"data.folds={folds_csv}", "train.inner_val_fraction=0.25", "train.early_stopping_patience=2",
        "train.eval_every=0"])
    scores, evaluate = list(INNER_SCORES), loop.evaluate

    def scripted(model, source, rows, *args):  # the real evaluation runs; its score is replaced by the script
        evaluate(model, source, rows, *args)
        return scores.pop(0)

    with recording() as rec, pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "evaluate", scripted)
        train_run(cfg, folds="0", progress=False)
    assert not scores
    return SimpleNamespace(cfg=cfg, rec=rec, groups=groups, fold=Path(cfg["out"]) / "folds" / "fold0")


def test_early_stopping_restores_the_best_epochs_weights(inner_val_run, project):
    run, rec = inner_val_run, inner_val_run.rec
    stats = read_json(run.fold / "done.json")
    assert stats["epochs_trained"] == 4 and stats["inner_val_best_epoch"] == 2
    saved = torch.load(run.fold / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    best, last = rec.evaluated[1], rec.evaluated[3]  # the evaluated model: the EMA
    assert all(torch.equal(saved[k], best[k]) for k in best)
    assert any(not torch.equal(saved[k], last[k]) for k in last)
    model, pre = build_model_for_inference(run.cfg, saved, torch.device("cpu"))
    torch.set_num_threads(run.cfg["train"]["num_threads"])
    images = build_image_cache(load_dataset(project / "data" / "train")["path"], SIZE, project / "cache", "bicubic",
                               progress=False)
    pred = predict_rows(model, images, fold0_rows(project), pre, 128, torch.device("cpu"), "fp32")
    np.testing.assert_array_equal(np.load(run.fold / "oof.npy"), pred)


def test_inner_split_holds_out_whole_groups_of_groups_csv(inner_val_run, project):
    (rest, inner), = inner_val_run.rec.splits
    groups = inner_val_run.groups
    assert len(inner) and len(rest)
    assert not set(groups[inner]) & set(groups[rest])  # no group on both sides
    train_rows = np.setdiff1d(np.arange(len(groups)), fold0_rows(project))
    np.testing.assert_array_equal(np.sort(np.concatenate([rest, inner])), train_rows)


def test_split_inner_rows_by_group():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), rng.integers(1, 6, 40))
    train_rows = np.flatnonzero(rng.random(len(groups)) < 0.8)
    rest, inner = loop.split_inner_rows(train_rows, 0.25, 42, 0, groups)
    assert not set(groups[rest]) & set(groups[inner])
    np.testing.assert_array_equal(np.sort(np.concatenate([rest, inner])), train_rows)
    assert len(set(groups[inner])) == int(len(set(groups[train_rows])) * 0.25)
    again = loop.split_inner_rows(train_rows, 0.25, 42, 0, groups)
    assert all(np.array_equal(a, b) for a, b in zip((rest, inner), again))  # a resume draws the same split
    assert not np.array_equal(inner, loop.split_inner_rows(train_rows, 0.25, 42, 1, groups)[1])
    rest0, inner0 = loop.split_inner_rows(train_rows, 0.0, 42, 0, None)
    assert np.array_equal(rest0, train_rows) and len(inner0) == 0
    with pytest.raises(ValueError, match="groups"):
        loop.split_inner_rows(train_rows, 0.25, 42, 0, None)


def test_inner_split_without_groups_csv_is_an_error_naming_it(project, tmp_path, capsys):
    from models.train import main

    folds_csv = tmp_path / "old" / "folds.csv"
    folds_csv.parent.mkdir()
    shutil.copy(project / "folds.csv", folds_csv)  # folds made before groups.csv existed
    overrides = production_overrides("eva02_l", project, tmp_path / "run", size=SIZE,
                                     extra=[f"data.folds={folds_csv}", "train.inner_val_fraction=0.25"])
    argv = ["--config", str(REPO / "configs/eva02_l.yaml"), "--no-progress"]
    argv += [a for o in overrides for a in ("--set", o)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {groups_path(folds_csv)}: not found") and "core.folds" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # no inner split: no groups needed
    cfg = load_config(REPO / "configs/eva02_l.yaml", overrides[:-1])
    assert TrainingData(cfg).groups is None


def test_groups_enter_the_run_identity_only_with_an_inner_split(project, tmp_path):
    folds_csv, groups = folds_with_groups(project, tmp_path / "g")
    base = production_overrides("eva02_l", project, tmp_path / "run", size=SIZE, extra=[f"data.folds={folds_csv}"])
    plain = load_config(REPO / "configs/eva02_l.yaml", base)
    # the identity of a run without an inner split is what it was before groups.csv was read: same hash
    assert set(TrainingData(plain).identity(plain, "cache")) == {"targets", "folds", "train_ids", "test_ids"}
    inner = load_config(REPO / "configs/eva02_l.yaml", base + ["train.inner_val_fraction=0.25"])
    before = TrainingData(inner).identity(inner, "cache")
    ids = load_dataset(project / "data" / "train")["imgId"].tolist()
    save_groups(groups_path(folds_csv), ids, groups // 2)  # coarser groups: another inner split
    after = TrainingData(inner).identity(inner, "cache")
    assert before["groups"] != after["groups"] and {k: v for k, v in before.items() if k != "groups"} == \
        {k: v for k, v in after.items() if k != "groups"}
    assert TrainingData(plain).identity(plain, "cache") == {k: v for k, v in after.items() if k != "groups"}


def test_inner_split_refuses_groups_csv_of_other_folds(project, tmp_path):
    folds_csv, groups = folds_with_groups(project, tmp_path / "g")
    ids = load_dataset(project / "data" / "train")["imgId"].tolist()
    save_groups(groups_path(folds_csv), ids, np.zeros(len(ids), dtype=np.int64))  # one group over every fold
    cfg = production_cfg("eva02_l", project, tmp_path / "run",
                         extra=[f"data.folds={folds_csv}", "train.inner_val_fraction=0.25"])
    with pytest.raises(DataError, match="groups.csv: group 0 spans"):
        TrainingData(cfg)
