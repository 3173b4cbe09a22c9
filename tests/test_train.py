"""The trainer on a tiny real dataset: every family, artifacts, resume, local checkpoints, LR decay, DDP, kNN."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.dataset import load_dataset
from core.runs import load_run
from models.backbones import BackboneError, create_backbone
from models.config import load_config
from models.train import RunError, train_run
from tests.helpers import assert_same_run, subprocess_env
from tests.model_fixtures import REPO, tiny_overrides

FAMILY_CONFIGS = {
    "convnext": ("configs/convnext_demo.yaml", []),
    # EVA02 (patch 14) at 32 px: a 2 x 2 patch grid
    "eva": ("configs/eva_demo.yaml", ["backbone.kwargs={img_size: 32}"]),
    "vit": ("configs/vit_demo.yaml", []),
}


def cfg_for(project, name, out, **kw):
    path, extra = FAMILY_CONFIGS[name]
    return load_config(REPO / path, tiny_overrides(project, out, extra=list(extra) + list(kw.pop("extra", [])), **kw))


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_family_trains_and_writes_valid_artifacts(project, tmp_path, family):
    cfg = cfg_for(project, family, tmp_path / family)
    metrics = train_run(cfg, progress=False)
    run = load_run(tmp_path / family)  # validates manifest hashes, shapes, finite values
    ids = load_dataset(project / "data" / "train")["imgId"].tolist()
    assert run.oof_ids == ids  # every training id exactly once, in dataset order
    assert run.test_ids == load_dataset(project / "data" / "test")["imgId"].tolist()
    assert np.isfinite(run.oof).all() and run.oof.shape == (len(ids), 384)
    fold_tests = [np.load(tmp_path / family / "folds" / f"fold{k}" / "test.npy") for k in (0, 1)]
    expected = np.mean([t / np.linalg.norm(t, axis=1, keepdims=True) for t in fold_tests], axis=0)
    np.testing.assert_allclose(run.test, expected, atol=1e-6)  # mean of the folds' unit vectors
    assert set(metrics["fold_cosine"]) == {"0", "1"} and -1 <= metrics["oof_cosine"] <= 1
    assert metrics["folds"]["sha256"] and metrics["targets"]["key"] and metrics["config_hash"]
    # Same config again: skipped, not retrained.
    before = (tmp_path / family / "oof.npy").stat().st_mtime_ns
    train_run(cfg, progress=False)
    assert (tmp_path / family / "oof.npy").stat().st_mtime_ns == before


def test_epoch_log_shows_the_cosine_only_when_evaluated(project, tmp_path, caplog):
    cfg = cfg_for(project, "convnext", tmp_path / "r", epochs=3, steps=1, extra=["train.eval_every=2"])
    with caplog.at_level("INFO", logger="models.loop"):
        train_run(cfg, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "models.loop" and " epoch " in r.getMessage()]
    assert len(lines) == 6 and not any("nan" in ln for ln in lines), lines
    # Epoch 2 by eval_every, epoch 3 as the last; epoch 1 is not evaluated.
    assert [("val_cosine" in ln) for ln in lines] == [False, True, True] * 2, lines


def test_changed_config_is_an_error_unless_overwrite(project, tmp_path):
    train_run(cfg_for(project, "convnext", tmp_path / "r"), progress=False)
    changed = cfg_for(project, "convnext", tmp_path / "r", extra=["train.lr=0.01"])
    with pytest.raises(RunError, match="config hash .* this config has .*--overwrite"):
        train_run(changed, progress=False)
    train_run(changed, overwrite=True, progress=False)
    assert load_run(tmp_path / "r").metrics["config"]["train"]["lr"] == 0.01


RESUME_EPOCHS, RESUME_STEPS = 2, 2  # 18 training rows per fold at batch 8: 2 steps per epoch


def _train_cmd(project, out, resume=False):
    cmd = [sys.executable, "-m", "models.train", "--config", "configs/convnext_demo.yaml", "--no-progress"]
    for o in tiny_overrides(project, out, epochs=RESUME_EPOCHS, steps=RESUME_STEPS):
        cmd += ["--set", o]
    if resume:
        cmd.append("--resume")
    return cmd


def test_resume_after_kill_equals_uninterrupted(project, tmp_path):
    # SIGKILL after the first step of fold 1's 2nd epoch (FAULT_AT counts optimizer steps over both folds):
    # fold 0 is finished, fold 1 has its epoch-1 checkpoint and has trained one step past it.
    kill_at = RESUME_EPOCHS * RESUME_STEPS + RESUME_STEPS + 1
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "cwd": REPO}
    ref = subprocess.Popen(_train_cmd(project, tmp_path / "ref"), env=subprocess_env(), **popen)
    cut = subprocess.Popen(_train_cmd(project, tmp_path / "cut"), env=subprocess_env(f"train_step:{kill_at}"), **popen)
    ref_err, cut_err = ref.communicate(timeout=600)[1], cut.communicate(timeout=600)[1]  # 1 thread each: in parallel
    assert ref.returncode == 0, ref_err
    assert cut.returncode == -signal.SIGKILL, cut_err
    assert (tmp_path / "cut" / "folds" / "fold0" / "done.json").exists()
    state = torch.load(tmp_path / "cut" / "folds" / "fold1" / "last.pt", map_location="cpu", weights_only=False)
    assert (state["epoch"], state["step"]) == (1, 0)  # fold 1's epoch-1 checkpoint; the step after it is lost
    with pytest.raises(RunError, match="fold 1 was interrupted; pass --resume"):  # not silently started over
        train_run(load_config(REPO / "configs/convnext_demo.yaml",
                              tiny_overrides(project, tmp_path / "cut", epochs=RESUME_EPOCHS, steps=RESUME_STEPS)),
                  progress=False)
    resumed = subprocess.run(_train_cmd(project, tmp_path / "cut", resume=True), env=subprocess_env(),
                             capture_output=True, text=True, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr
    assert "fold 0: finished earlier; skipped" in resumed.stdout and "resuming after epoch 1" in resumed.stdout
    assert_same_run(tmp_path / "ref", tmp_path / "cut")  # same machine: exactly the uninterrupted run


def test_local_checkpoint_file(tmp_path):
    section = {"source": "timm", "name": "convnext_atto", "pretrained": None, "kwargs": {}}
    torch.manual_seed(0)
    src = create_backbone(section, 32).module
    path = tmp_path / "convnext_atto.pth"
    torch.save(src.state_dict(), path)
    loaded = create_backbone({**section, "pretrained": str(path)}, 32).module
    for (n, a), (_, b) in zip(src.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
    # safetensors, wrapped in "model.", works as well
    from safetensors.torch import save_file

    st = tmp_path / "w.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in src.state_dict().items()}, str(st))
    from_st = create_backbone({**section, "pretrained": str(st)}, 32).module
    for (n, a), (_, b) in zip(src.state_dict().items(), from_st.state_dict().items()):
        assert torch.equal(a, b), n
    # open_clip: a local checkpoint of the whole CLIP model
    import open_clip

    from models.backbones import register_open_clip_configs

    register_open_clip_configs()
    clip = open_clip.create_model("demo-ViT-4L-192-p8")
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    oc = create_backbone({"source": "open_clip", "name": "demo-ViT-4L-192-p8", "pretrained": str(tmp_path / "clip.pt"),
                          "kwargs": {}}, 64).module
    assert torch.equal(oc.visual.conv1.weight, clip.visual.conv1.weight)


def test_clear_errors_for_bad_weights_and_names(tmp_path):
    eva = create_backbone({"source": "timm", "name": "eva02_tiny_patch14_224", "pretrained": None,
                           "kwargs": {"img_size": 32}}, 32).module
    torch.save(eva.state_dict(), tmp_path / "eva.pt")
    with pytest.raises(BackboneError, match=r"eva\.pt: weights do not fit the architecture: \d+ missing"):
        create_backbone({"source": "timm", "name": "convnext_atto", "pretrained": str(tmp_path / "eva.pt"),
                         "kwargs": {}}, 32)
    with pytest.raises(BackboneError, match="nope.pth: checkpoint file not found"):
        create_backbone({"source": "timm", "name": "convnext_atto", "pretrained": str(tmp_path / "nope.pth"),
                         "kwargs": {}}, 32)
    with pytest.raises(BackboneError, match="unknown timm model 'convnext_imaginary'"):
        create_backbone({"source": "timm", "name": "convnext_imaginary", "pretrained": None, "kwargs": {}}, 32)
    with pytest.raises(BackboneError, match="unknown open_clip model"):
        create_backbone({"source": "open_clip", "name": "ViT-Imaginary", "pretrained": None, "kwargs": {}}, 32)


PRODUCTION_CONFIGS = ("configs/convnext_xxl.yaml", "configs/eva02_l.yaml", "configs/vit_h14.yaml",
                      "configs/knn_clip_h14.yaml", "configs/retrieval_clip_h14.yaml")


def test_production_names_exist_in_installed_libraries():
    """Each production config's backbone name and pretrained tag are, whole, in the installed library's list."""
    import open_clip
    import timm

    from models.backbones import check_backbone, register_open_clip_configs

    register_open_clip_configs()
    named = set()
    for path in PRODUCTION_CONFIGS:
        cfg = load_config(REPO / path)
        section = cfg["knn"]["backbone"] if cfg["model"] == "knn" else cfg["backbone"]
        name, pretrained = section["name"], section["pretrained"]
        if section["source"] == "timm":  # timm: the tag is part of the name, arch.tag
            arch = name.split(".")[0]
            assert pretrained is True and timm.is_model(arch) and name in timm.list_pretrained(f"{arch}.*"), path
        else:
            assert name in open_clip.list_models(), path
            assert pretrained in open_clip.list_pretrained_tags_by_model(name), path
        check_backbone(section)  # what models.train checks before any image is decoded
        named.add((section["source"], name, pretrained))
    assert len(named) == 3  # ConvNeXt-XXL, EVA02-L, ViT-H-14 (the kNN's backbone is the ViT-H's)
    # a tag's prefix is not a tag: the check compares whole tags
    for source, name, pretrained in (("timm", "eva02_large_patch14_clip_336.merged", True),
                                     ("open_clip", "ViT-H-14", "laion2b_s32b")):
        with pytest.raises(BackboneError, match="has no pretrained tag"):
            check_backbone({"source": source, "name": name, "pretrained": pretrained})


# per family: the top layer (the head) and where some parameters sit (stem 0, each block its own layer, a
# final norm just below the head)
LAYER_DECAY_LAYERS = {
    # stem 0, blocks 1-4 (timm merges the final norm into the last), head 5
    "vit": (5, {"backbone.visual.conv1.weight": 0, "backbone.visual.transformer.resblocks.2.attn.in_proj_weight": 3,
                "backbone.visual.ln_post.weight": 4, "head.4.weight": 5}),
    # stem 0, the 12 blocks of 4 stages 1-12 (a stage's downsample with its first block), head.norm 13, head 14
    "convnext": (14, {"backbone.stem.0.weight": 0, "backbone.stages.0.blocks.0.conv_dw.weight": 1,
                      "backbone.stages.0.blocks.1.gamma": 2, "backbone.stages.1.downsample.1.weight": 3,
                      "backbone.stages.1.blocks.0.conv_dw.weight": 3, "backbone.stages.3.blocks.1.mlp.fc2.weight": 12,
                      "backbone.head.norm.weight": 13, "head.1.weight": 14}),
    # patch embedding, position embedding and class token 0, blocks 1-12, fc_norm 13, head 14
    "eva": (14, {"backbone.patch_embed.proj.weight": 0, "backbone.pos_embed": 0, "backbone.cls_token": 0,
                 "backbone.blocks.0.attn.qkv.weight": 1, "backbone.blocks.11.mlp.fc2.bias": 12,
                 "backbone.fc_norm.weight": 13, "head.1.weight": 14}),
}


@pytest.mark.parametrize("family", sorted(LAYER_DECAY_LAYERS))
def test_layer_wise_lr_decay(family):
    from timm.models import group_parameters

    from models.engine import make_optimizer, make_scheduler
    from models.net import build_model

    path, extra = FAMILY_CONFIGS[family]
    cfg = load_config(REPO / path, list(extra) + ["train.layer_decay=0.5", "train.lr=0.1", "train.warmup_epochs=0"])
    model, _ = build_model(cfg, np.zeros(384), np.ones(384))
    opt = make_optimizer(model, cfg["train"])
    sched = make_scheduler(opt, cfg["train"], updates_per_epoch=10)
    sched.step_update(0)  # start of the cosine: lr = base lr, times each group's scale
    layer_of = group_parameters(model, model.group_matcher(), reverse=True)
    top, anchors = LAYER_DECAY_LAYERS[family]
    assert max(layer_of.values()) == top
    param_layer = {id(p): layer_of[n] for n, p in model.named_parameters()}
    assert len(param_layer) == len(list(model.parameters()))  # every parameter has a layer
    seen = {}
    for group in opt.param_groups:
        layers = {param_layer[id(p)] for p in group["params"]}
        assert len(layers) == 1
        layer = layers.pop()
        assert group["lr"] == pytest.approx(0.1 * 0.5 ** (top - layer))
        seen[layer] = group["lr"]
    assert seen[top] == pytest.approx(0.1) and seen[0] == pytest.approx(0.1 * 0.5 ** top)
    assert set(seen) == set(range(top + 1))
    names = dict(model.named_parameters())
    assert {n: param_layer[id(names[n])] for n in anchors} == anchors


def test_ddp_two_processes_gather_oof_in_id_order(project, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "models.train", "--config", "configs/convnext_demo.yaml", "--no-progress"]
    for o in tiny_overrides(project, out):
        cmd += ["--set", o]
    res = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = load_run(out)
    ids = load_dataset(project / "data" / "train")["imgId"].tolist()
    assert run.oof_ids == ids
    # Each OOF row is the fold model's prediction for that very image: recompute fold 0's rows.
    from core.folds import load_folds
    from models.predict import predict_images

    frame = load_dataset(project / "data" / "train")
    folds = load_folds(project / "folds.csv", ids)
    rows = np.flatnonzero(folds == 0)
    ckpt_run = tmp_path / "fold0_only"
    (ckpt_run / "folds" / "fold0").mkdir(parents=True)
    os.link(out / "folds" / "fold0" / "model.pt", ckpt_run / "folds" / "fold0" / "model.pt")
    pred = predict_images(ckpt_run, frame["path"].iloc[rows].tolist(), progress=False)
    oof_rows = run.oof[rows] / np.linalg.norm(run.oof[rows], axis=1, keepdims=True)
    assert np.abs(pred - oof_rows).max() < 1e-4


def test_knn_never_uses_its_own_fold(project, tmp_path):
    from models.knn import knn_fold_predictions

    rng = np.random.default_rng(0)
    n = 60
    folds = np.arange(n) % 3
    targets = rng.normal(size=(n, 384)).astype(np.float32)
    feats = rng.normal(size=(n, 16)).astype(np.float32)
    # Every row has an exact feature twin in its own fold: a leaking kNN would copy the twin's target.
    feats[np.arange(0, n, 6) + 3] = feats[np.arange(0, n, 6)]
    for fold in range(3):
        oof, test, nbr = knn_fold_predictions(feats, feats[:5], targets, folds, fold, k=5, temperature=0.05)
        assert not np.isin(nbr, np.flatnonzero(folds == fold)).any()
        assert oof.shape == ((folds == fold).sum(), 384) and test.shape == (5, 384)
    # End to end on the tiny project, with a trained run's fold checkpoints as the feature source.
    train_run(cfg_for(project, "convnext", tmp_path / "feat"), progress=False)
    knn_cfg = load_config(REPO / "configs/knn_demo.yaml",
                          tiny_overrides(project, tmp_path / "knn") + [f"knn.features_from={tmp_path / 'feat'}"])
    metrics = train_run(knn_cfg, progress=False)
    run = load_run(tmp_path / "knn")
    assert run.oof_ids == load_run(tmp_path / "feat").oof_ids and metrics["oof_cosine"] > 0
    assert (tmp_path / "knn" / "features" / "fold0_train.npy").is_file()


def test_inner_validation_stops_after_patience_epochs_without_improvement(project, tmp_path):
    # lr 0 everywhere: the model never changes, so the inner score never improves after epoch 1.
    frozen = ["train.lr=0", "train.min_lr=0", "train.inner_val_fraction=0.25", "train.early_stopping_patience=1"]
    metrics = train_run(cfg_for(project, "convnext", tmp_path / "es", epochs=5, extra=frozen), progress=False)
    assert set(metrics["epochs"].values()) == {2}  # epoch 1 sets the best, epoch 2 fails to beat it, stop
    plain = train_run(cfg_for(project, "convnext", tmp_path / "plain", epochs=5, extra=frozen[:2]), progress=False)
    assert set(plain["epochs"].values()) == {5}  # no inner split: the fixed number of epochs
