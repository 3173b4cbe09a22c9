"""model: retrieval with query: run: honest CV against a planted bank, offline inference without a text encoder."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.dataset import load_images, read_prompts
from core.errors import DataError
from core.metric import cosine_scores, l2_normalize
from core.runs import aligned, load_run
from core.targets import embed_prompts
from models import retrieval, retrieval_bank
from models.config import load_config
from models.knn import neighbour_mean
from models.knn_index import BankIndex, train_cells
from models.train import TrainingData, train_run
from tests.model_fixtures import REPO, tiny_overrides

THRESHOLD = 0.9  # the tiny project's folds.json records none: core.folds' default


def retrieval_overrides(project, out, bank, extra=()):
    runs = project / "work" / "runs"
    return tiny_overrides(project, out, extra=[f"retrieval.run={runs / 'vit_demo'}", f"retrieval.bank={bank}",
                                               *extra])


@pytest.fixture(scope="module")
def planted(project):
    """A bank holding every training prompt, an upper-case copy of each (another text, the same MiniLM embedding:
    only the cosine rule catches it) and demo-grammar prompts from another stream; a trained retrieval run on it."""
    from datagen.demo.bank import bank_prompts

    runs = project / "work" / "runs"
    train_run(load_config(REPO / "configs" / "vit_demo.yaml", tiny_overrides(project, runs / "vit_demo")),
              progress=False)
    train = read_prompts(project / "data" / "train" / "prompts.csv")["prompt"].tolist()
    texts = train + [t.upper() for t in train] + bank_prompts(150, seed=11)
    bank = project / "bank.csv"
    pd.DataFrame({"imgId": [f"b{i:05d}" for i in range(len(texts))], "prompt": texts}).to_csv(bank, index=False)
    cfg = load_config(REPO / "configs" / "retrieval_demo.yaml",
                      retrieval_overrides(project, runs / "retrieval_demo", bank))
    metrics = train_run(cfg, progress=False)
    return project, cfg, metrics, TrainingData(cfg)


def brute_force_matches(texts, data):
    """(n_bank, K) by numpy alone: the same text as a fold-k training prompt or cosine >= THRESHOLD to one."""
    emb = l2_normalize(embed_prompts(texts, progress=False))
    sims = emb @ l2_normalize(data.targets).T
    train = [t.strip() for t in data.train["prompt"]]
    out = np.zeros((len(texts), data.k), dtype=bool)
    for k in range(data.k):
        in_k = data.folds == k
        same = np.array([t in {p for p, f in zip(train, in_k) if f} for t in texts])
        out[:, k] = same | (sims[:, in_k] >= THRESHOLD).any(axis=1)
    return out


def test_no_oof_row_retrieves_a_prompt_of_its_own_fold(planted):
    project, cfg, _, data = planted
    bank = retrieval_bank.Bank(project / "work" / "runs" / "retrieval_demo" / retrieval_bank.BANK_DIR)
    texts = retrieval_bank.bank_prompts(cfg["retrieval"]["bank"])
    truth = brute_force_matches(texts, data)
    assert np.array_equal(bank.matches, truth)
    n = len(data.ids)
    assert truth[:2 * n].any(axis=1).all()  # every planted copy matches its fold
    src = cfg["retrieval"]["run"]
    cells = train_cells(bank.values, 4)
    for kind, index in [("flat", BankIndex(bank.values)), ("ivf", BankIndex(bank.values, "ivf", 2, cells))]:
        for fold in range(data.k):
            oof_q, test_q = retrieval.run_queries(src, data, fold)
            _, _, nbr = retrieval.retrieve_fold(index, bank, oof_q, test_q, fold, cfg["retrieval"])
            assert not truth[nbr, fold].any(), (kind, fold)
            others = [f for f in range(data.k) if f != fold]
            assert truth[nbr][..., others].any()  # the other folds' prompts stay legal ...
            assert nbr.shape == (len(oof_q), cfg["retrieval"]["k"])
    # ... and without the mask the same search would retrieve fold-k matches: the planted bank tests something
    for fold in range(data.k):
        _, nbr = BankIndex(bank.values).search(retrieval.run_queries(src, data, fold)[0], cfg["retrieval"]["k"])
        assert truth[nbr, fold].any()


def test_oof_score_equals_the_bank_with_each_folds_matches_removed_by_hand(planted):
    project, cfg, metrics, data = planted
    r = cfg["retrieval"]
    texts = retrieval_bank.bank_prompts(r["bank"])
    truth = brute_force_matches(texts, data)
    values = l2_normalize(embed_prompts(texts, progress=False)).astype(np.float16)
    oof = np.zeros((len(data.ids), 384), dtype=np.float32)
    for fold in range(data.k):
        keep = np.flatnonzero(~truth[:, fold])  # the bank a fold-k OOF row may see, cut by hand
        sims, nbr = BankIndex(values[keep]).search(retrieval.run_queries(r["run"], data, fold)[0], r["k"])
        oof[data.folds == fold] = neighbour_mean(sims, nbr, values[keep], r["temperature"])
    by_hand = float(cosine_scores(oof, data.targets).mean())
    assert abs(metrics["oof_cosine"] - by_hand) < 1e-6
    # the whole bank for every row (the leak) gives another score: the removal is what the equality checks
    sims, nbr = BankIndex(values).search(load_run(r["run"]).oof, r["k"])
    leaked = cosine_scores(neighbour_mean(sims, nbr, values, r["temperature"]), data.targets).mean()
    assert abs(leaked - by_hand) > 1e-4


def test_offline_inference_reproduces_the_test_predictions_without_a_text_encoder(planted, monkeypatch):
    from models.predict import predict_images, shared_fold_predictions

    project = planted[0]
    runs = project / "work" / "runs"
    frame = load_images(project / "data" / "test")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # importing it would raise
    with shared_fold_predictions():
        pred = predict_images(runs / "retrieval_demo", frame["path"].tolist(), progress=False)
    ref = aligned(load_run(runs / "retrieval_demo"), frame["imgId"].tolist(), "test")
    assert cosine_scores(pred, ref).min() > 1 - 1e-5


def test_alpha_mixes_the_query_back_in(planted, tmp_path):
    project, cfg, metrics, _ = planted
    out = tmp_path / "mixed"
    mixed = train_run(load_config(REPO / "configs" / "retrieval_demo.yaml", retrieval_overrides(
        project, out, cfg["retrieval"]["bank"], ["retrieval.alpha=1.0"])), progress=False)
    assert metrics["config_hash"] != mixed["config_hash"]
    query = load_run(cfg["retrieval"]["run"])
    np.testing.assert_allclose(load_run(out).oof, l2_normalize(query.oof), atol=1e-6)  # alpha 1: the query alone
    assert (out / retrieval_bank.BANK_DIR / retrieval_bank.VALUES_FILE).is_file()


def test_query_run_on_other_folds_is_refused(planted, tmp_path):
    project, cfg, _, _ = planted
    other = tmp_path / "folds.csv"
    folds = pd.read_csv(project / "folds.csv")
    folds["fold"] = 1 - folds["fold"]
    folds.to_csv(other, index=False)
    bad = load_config(REPO / "configs" / "retrieval_demo.yaml", retrieval_overrides(
        project, tmp_path / "r", cfg["retrieval"]["bank"], [f"data.folds={other}"]))
    with pytest.raises(DataError, match="query run trained on other folds"):
        train_run(bad, progress=False)


def test_demo_bank_leaves_the_demo_alone_and_holds_nothing_near_a_test_prompt(tmp_path):
    from core.dataset import TEST_PROMPTS_FILE
    from core.io import sha256_file
    from datagen.demo import generate_demo
    from datagen.demo.bank import BANK_DIR, bank_prompts, write_bank

    data = tmp_path / "demo"
    generate_demo(data, 30, 8, 16, seed=1, progress=False)
    drawn = bank_prompts(200, seed=1)
    test = pd.read_csv(data / TEST_PROMPTS_FILE)  # plant: test prompts the bank stream draws (one by cosine only)
    test.loc[:2, "prompt"] = [drawn[0], drawn[1].upper(), drawn[2]]
    test.to_csv(data / TEST_PROMPTS_FILE, index=False)
    before = {p: sha256_file(p) for p in data.rglob("*") if p.is_file()}
    meta = write_bank(data, 200, seed=1)
    assert {p: sha256_file(p) for p in before} == before  # only new files
    bank = read_prompts(data / BANK_DIR / "prompts.csv")["prompt"].tolist()
    assert len(bank) == meta["n"] == 200 - meta["removed_near_test"] and meta["removed_near_test"] >= 3
    assert not {drawn[0], drawn[1], drawn[2]} & set(bank)
    sims = l2_normalize(embed_prompts(bank, progress=False)) @ l2_normalize(embed_prompts(test["prompt"].tolist(),
                                                                                         progress=False)).T
    assert sims.max() < 0.9


@pytest.mark.parametrize("finetune", [0, 3])
def test_clip_queries_are_honest_and_predict_offline_with_the_image_tower_only(planted, finetune, tmp_path,
                                                                               monkeypatch):
    """query: clip on the planted bank, towers as loaded (random init: keys cached once as float16 by towers and bank
    texts, RUN/bank/keys.npy) or fine-tuned per fold (ClipLoss on the other folds' pairs: keys per fold). No OOF row
    retrieves a prompt of its own fold; the run and its Kaggle pack predict the test images with neither a text
    tower nor a text encoder."""
    import open_clip

    from models import clip_towers, knn_features
    from models.clip_towers import TEXT_FEATURES_DIR, encode_images, text_features_key
    from models.fold_outputs import fold_checkpoint
    from models.predict import predict_images
    from models.retrieval_clip import FOLD_KEYS_FILE, IMAGE_TOWER_FILE, image_tower, towers_identity
    from pipeline.kaggle.pack import pack_run

    project, cfg, _, data = planted
    tuned_on, finetune_contrastive = [], clip_towers.finetune_contrastive
    monkeypatch.setattr(clip_towers, "finetune_contrastive",
                        lambda *a, **k: tuned_on.append(list(a[4])) or finetune_contrastive(*a, **k))

    def clip_run(out):
        clip_cfg = load_config(REPO / "configs" / "retrieval_demo.yaml", retrieval_overrides(
            project, out, cfg["retrieval"]["bank"], ["retrieval.query=clip", "retrieval.run=null", "image.size=32",
                                                     "backbone.source=open_clip", "backbone.name=tiny-ViT-2L-64-p8",
                                                     f"retrieval.finetune_steps={finetune}", "train.lr=2e-3"]))
        return clip_cfg, train_run(clip_cfg, progress=False)

    out = tmp_path / "clip"
    clip_cfg, metrics = clip_run(out)
    assert np.isfinite(metrics["oof_cosine"])
    bank = retrieval_bank.Bank(out / retrieval_bank.BANK_DIR)
    texts = retrieval_bank.bank_prompts(cfg["retrieval"]["bank"])
    truth = brute_force_matches(texts, data)
    keys = []
    for fold in range(data.k):
        ckpt = torch.load(fold_checkpoint(out, fold), weights_only=False)
        model, pre = image_tower(ckpt, fold_checkpoint(out, fold), "cpu")
        feats = encode_images(model, pre, data.train["path"][data.folds == fold].tolist())
        keys.append(np.load(fold_checkpoint(out, fold).parent / FOLD_KEYS_FILE) if finetune else
                    np.load(out / retrieval_bank.BANK_DIR / retrieval_bank.KEYS_FILE))
        _, _, nbr = retrieval.retrieve_fold(BankIndex(keys[-1]), bank, feats, feats[:1], fold, cfg["retrieval"])
        assert not truth[nbr, fold].any()
    prompts = data.train["prompt"].astype(str).to_numpy()
    assert tuned_on == ([prompts[data.folds != f].tolist() for f in range(data.k)] if finetune else [])
    assert keys[0].dtype == np.float16 and keys[0].shape == (bank.n, 64)
    assert (not np.array_equal(keys[0], keys[1])) == bool(finetune)  # fine-tuned: each fold its own towers
    monkeypatch.setattr(open_clip.model.CLIP, "encode_text", lambda *a, **k: pytest.fail("text tower ran"))
    if not finetune:  # the cached keys: by the towers and the bank's texts, reused from disk by another run
        cached = (Path(clip_cfg["data"]["cache_dir"]) / TEXT_FEATURES_DIR /
                  f"{text_features_key(towers_identity(clip_cfg), texts)}.npy")
        assert np.array_equal(np.load(cached), keys[0])
        monkeypatch.setattr(knn_features, "_MEMO", type(knn_features._MEMO)())
        _, again = clip_run(tmp_path / "again")
        assert again["oof_cosine"] == metrics["oof_cosine"]
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    paths = load_images(project / "data" / "test")["path"].tolist()
    pred = predict_images(out, paths, progress=False)
    ids = load_images(project / "data" / "test")["imgId"].tolist()
    assert cosine_scores(pred, aligned(load_run(out), ids, "test")).min() > 1 - 1e-5
    entry = pack_run("clip", out, tmp_path / "pack")
    packed = tmp_path / "pack" / "clip"
    assert cosine_scores(predict_images(packed, paths, progress=False), pred).min() > 1 - 1e-3
    tower = (torch.load(packed / "folds" / "fold0" / "model.pt", weights_only=False)["image_tower"]["state_dict"]
             if finetune else torch.load(packed / IMAGE_TOWER_FILE, weights_only=True))
    assert {t.dtype for t in tower.values() if t.is_floating_point()} == {torch.float16}
    assert not any(f.endswith(retrieval_bank.MATCHES_FILE) for f in entry["bank"]["files"])
