"""pipeline.kaggle.pack: pack tiny real runs + ensemble, run the Kaggle notebook's cells from the pack, offline."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.errors import DataError
from core.io import sha256_file
from core.submission import read_submission
from models.config import load_config
from models.knn_features import BACKBONES_ENV, PACKED_BACKBONES_DIR
from models.train import train_run
from pipeline.kaggle import checkpoints as kc
from pipeline.kaggle import notebook as nbk
from pipeline.kaggle import pack as kp
from pipeline.kaggle import wheels as kw
from tests.conftest import KAGGLE_SAMPLE
from tests.helpers import subprocess_env
from tests.model_fixtures import REPO, frozen_backbone_overrides, make_tiny_project, tiny_overrides

DUMMY_SPEC = "sdi2p-dummy==0.0.1"
FAISS_SPEC = f"faiss-cpu=={kw.read_pins()['faiss-cpu']}"


def make_dummy_wheel(folder, name="sdi2p_dummy", version="0.0.1", module=True):
    """A pure-Python wheel built by hand: lets the notebook's offline pip install run without the network.

    module=False: metadata only (a stand-in for a real package's wheel: installs, shadows nothing)."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b"VALUE = 1\n"} if module else {}
    files.update({f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
                  .encode(),
                  f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"})
    record = "".join(f"{f},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for f, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _train(project, config, out, extra=()):
    train_run(load_config(REPO / config, tiny_overrides(project, out, extra=list(extra))), progress=False)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, kaggle_sample):
    """Tiny runs of every kind -> ensemble -> pack -> the notebook run from the pack in a subprocess."""
    t0 = time.time()
    root = make_tiny_project(tmp_path_factory.mktemp("kp"))
    runs = root / "work" / "runs"
    _train(root, "configs/convnext_demo.yaml", runs / "convnext_demo")
    _train(root, "configs/vit_demo.yaml", runs / "vit_demo")
    _train(root, "configs/knn_demo.yaml", runs / "knn_demo", [f"knn.features_from={runs / 'convnext_demo'}"])
    # kNN on a frozen "pretrained" backbone whose weights are a local file: the pack must carry them
    weights, frozen = frozen_backbone_overrides(root / "pretrained")
    _train(root, "configs/knn_demo.yaml", runs / "knn_frozen", frozen)
    # retrieval: vit_demo's predictions search a small demo bank (IVF: the pack carries its cells)
    from datagen.demo.bank import write_bank

    write_bank(root / "data", 120, seed=3)
    _train(root, "configs/retrieval_demo.yaml", runs / "retrieval_demo",
           [f"retrieval.run={runs / 'vit_demo'}", f"retrieval.bank={root / 'data' / 'bank' / 'prompts.csv'}",
            "retrieval.index=ivf", "retrieval.nlist=4", "retrieval.nprobe=2"])
    from models.mean_baseline import main as mean_baseline

    assert mean_baseline(["--train", str(root / "data" / "train"), "--test", str(root / "data" / "test"),
                          "--targets", str(root / "targets"), "--folds", str(root / "folds.csv"),
                          "--out", str(runs / "mean_baseline")]) == 0
    names = ["mean_baseline", "convnext_demo", "vit_demo", "knn_demo", "knn_frozen", "retrieval_demo"]
    ens = root / "work" / "ensemble"
    # the ridge stacker: every dimension of every run feeds every output, so a packing error in any of them
    # shows, and the notebook applies ridge.npz (its weights.npz fallback travels too)
    res = subprocess.run([sys.executable, "-m", "ensemble.fit", "--runs", *[str(runs / n) for n in names],
                          "--out", str(ens), "--method", "ridge", "--ridge-alphas", "30,3", "--quiet"],
                         cwd=REPO, env=subprocess_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    t_built = time.time()

    make_dummy_wheel(root / "wheelhouse")
    make_dummy_wheel(root / "wheelhouse", "faiss_cpu", FAISS_SPEC.split("==")[1], module=False)  # kNN runs: faiss
    pack = root / "pack"
    assert kp.main(["--ensemble", str(ens), "--out", str(pack), "--wheels", DUMMY_SPEC,
                    "--wheel-dir", str(root / "wheelhouse")]) == 0  # runs: from the ensemble, no --runs
    t_packed = time.time()

    from models.submit import make_submission

    images = KAGGLE_SAMPLE / "images"
    ref_ids, ref = make_submission([runs / n for n in names], ens, images, root / "ref.csv", progress=False)
    weights.unlink()  # the notebook must not need the frozen backbone's original weights file

    # The notebook's code cells, run from a folder outside the repo with no PYTHONPATH: code from the pack only.
    script = root / "notebook_cells.py"
    script.write_text(nbk.notebook_code(pack / "notebook.ipynb")
                      + '\nprint("text encoder imported:", "sentence_transformers" in sys.modules)\n')
    cwd = root / "kaggle_working"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SDI2P_PACK=str(pack), SDI2P_IMAGES=str(images), SDI2P_OUT=str(cwd / "submission.csv"),
               PIP_TARGET=str(root / "pip_target"), OMP_NUM_THREADS="1")
    t_nb = time.time()
    nb = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert nb.returncode == 0, nb.stdout[-3000:] + nb.stderr[-3000:]
    print(f"\nkaggle pack test: build {t_built - t0:.1f} s, pack {t_packed - t_built:.1f} s, "
          f"notebook {time.time() - t_nb:.1f} s")
    return SimpleNamespace(root=root, runs=runs, names=names, ens=ens, pack=pack, images=images, ref_ids=ref_ids,
                           ref=ref, nb=nb, out=cwd / "submission.csv",
                           manifest=json.loads((pack / "MANIFEST.json").read_text()))


def test_notebook_from_the_pack_matches_the_fp32_runs(packed):
    assert "code from " + str(packed.pack / "code") in packed.nb.stdout
    ids, emb = read_submission(packed.out)
    assert len(ids) == 7 and emb.shape == (7, 384)
    assert ids == [str(i) for i in packed.ref_ids]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = np.sum(emb * packed.ref, axis=1)
    assert cos.min() > 1 - 1e-3, cos
    assert "text encoder imported: False" in packed.nb.stdout  # the retrieval run searched its packed bank
    # the wheel was installed offline by the notebook's install cell
    assert "--no-index" in packed.nb.stdout and (packed.root / "pip_target" / "sdi2p_dummy" / "__init__.py").is_file()


def test_each_packed_run_predicts_like_its_source(packed, monkeypatch):
    from models.predict import predict_images

    monkeypatch.delenv(BACKBONES_ENV, raising=False)  # the frozen backbone is found beside the pack's runs
    paths = sorted(str(p) for p in packed.images.iterdir())
    for name in ["convnext_demo", "vit_demo", "knn_demo", "knn_frozen", "retrieval_demo"]:
        a = predict_images(packed.runs / name, paths, progress=False)
        b = predict_images(packed.pack / "runs" / name, paths, progress=False)
        cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cos.min() > 1 - 1e-3, (name, cos)


def test_pack_layout_and_manifest(packed):
    pack, m = packed.pack, packed.manifest
    assert m["kind"] == kp.PACK_KIND and m["ensemble"]["models"] == packed.names
    code = set(m["code"]["files"])
    assert {"models/submit.py", "models/knn.py", "models/knn_index.py", "models/knn_features.py", "ensemble/apply.py",
            "ensemble/ridge_stacker.py", "core/runs.py",
            "core/io.py", "configs/open_clip/demo-ViT-4L-192-p8.json"} <= code
    assert not any(f.startswith(("tests/", "pipeline/", "work/", "datagen/", "bench/")) for f in code)
    assert sorted(str(p.relative_to(pack / "code")) for p in (pack / "code").rglob("*") if p.is_file()) == sorted(code)
    assert sorted(p.name for p in (pack / "ensemble").iterdir()) == ["ensemble.json", "ridge.npz", "weights.npz"]
    assert m["ensemble"]["method"] == "ridge"
    assert sorted(p.name for p in (pack / "runs" / "mean_baseline").iterdir()) == ["mean_embedding.npy", "metrics.json"]
    assert [w["spec"] for w in m["wheels"]] == [DUMMY_SPEC, FAISS_SPEC]  # faiss: the kNN runs search with it
    assert (pack / "wheels" / m["wheels"][0]["file"]).is_file()
    for name in packed.names:
        src = json.loads((packed.runs / name / "metrics.json").read_text())
        entry = m["runs"][name]
        assert entry["config_hash"] == src.get("config_hash") and entry["oof_cosine"] == src["oof_cosine"]
        assert isinstance(src["argv"], list) and isinstance(src["command"], str)  # provenance: the command line
        for rel, c in entry["checkpoints"].items():
            assert c["sha256"] == sha256_file(pack / "runs" / name / rel)
    assert json.loads((packed.runs / "mean_baseline" / "metrics.json").read_text())["argv"][:3] == [
        "python", "-m", "models.mean_baseline"]
    assert len(m["runs"]["convnext_demo"]["checkpoints"]) == 2 and not m["runs"]["mean_baseline"]["checkpoints"]
    assert m["sizes"]["total"] == pytest.approx(sum(p.stat().st_size for p in pack.rglob("*") if p.is_file()), rel=0.01)
    assert not [p for p in pack.parent.iterdir() if ".partial-" in p.name]
    # the pack carries the generated notebook, the one committed (tests/test_kaggle_notebook.py checks that)
    assert (pack / "notebook.ipynb").read_text() == nbk.notebook_text()


def test_fp16_pack_is_smaller_and_loads_as_fp32(packed):
    sizes = packed.manifest["sizes"]
    src = sum(p.stat().st_size for n in packed.names for p in (packed.runs / n).glob("folds/fold*/model.pt"))
    assert sizes["checkpoints_source"] == src
    # trained checkpoints (no embedded frozen backbone): about half; the manifest's saving adds up to that
    plain = [c for name in ["convnext_demo", "vit_demo", "knn_demo"]
             for c in packed.manifest["runs"][name]["checkpoints"].values()]
    before, after = sum(c["source_bytes"] for c in plain), sum(c["bytes"] for c in plain)
    assert after < 0.6 * before
    saved = sum(c["fp16_saved_bytes"] for c in plain)
    assert saved == pytest.approx(before - after, rel=0.05) and sizes["fp16_saving"] >= saved
    for name in ["convnext_demo", "vit_demo"]:
        before = (packed.runs / name / "folds" / "fold0" / "model.pt").stat().st_size
        after = (packed.pack / "runs" / name / "folds" / "fold0" / "model.pt").stat().st_size
        assert after < 0.6 * before, (name, before, after)
    ckpt = torch.load(packed.pack / "runs" / "vit_demo" / "folds" / "fold0" / "model.pt", weights_only=False)
    sd = ckpt["state_dict"]
    assert sd["target_mean"].dtype == sd["target_std"].dtype == torch.float32
    assert {v.dtype for k, v in sd.items() if k not in kc.KEEP_FP32 and v.is_floating_point()} == {torch.float16}
    knn = torch.load(packed.pack / "runs" / "knn_demo" / "folds" / "fold1" / "model.pt", weights_only=False)
    assert knn["bank_targets"].dtype == np.float16 and knn["bank_features"].dtype == np.float16
    assert knn["feature_model"]["state_dict"]["head.1.weight"].dtype == torch.float16
    from models.engine import build_model_for_inference

    model, _ = build_model_for_inference(ckpt["config"], sd, "cpu")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_clear_errors(packed, tmp_path, capsys):
    out = str(tmp_path / "pack")
    assert kp.main(["--ensemble", str(tmp_path / "nope"), "--out", out, "--no-wheels"]) == 2
    assert "ensemble folder not found" in capsys.readouterr().err
    ghost = tmp_path / "ens"
    shutil.copytree(packed.ens, ghost)
    manifest = json.loads((ghost / "ensemble.json").read_text())
    manifest["models"].append("ghost")
    (ghost / "ensemble.json").write_text(json.dumps(manifest))
    assert kp.main(["--ensemble", str(ghost), "--out", out, "--no-wheels"]) == 2
    assert "run 'ghost' is blended by the ensemble but absent" in capsys.readouterr().err
    # --runs lacking one of the blended runs
    assert kp.main(["--ensemble", str(packed.ens), "--runs", str(packed.runs / "vit_demo"), "--out", out,
                    "--no-wheels"]) == 2
    missing = "no run directory for ['mean_baseline', 'convnext_demo', 'knn_demo', 'knn_frozen', 'retrieval_demo']"
    assert missing in capsys.readouterr().err
    # an unfinished run (no manifest.json)
    unfinished = tmp_path / "runs" / "vit_demo"
    shutil.copytree(packed.runs / "vit_demo", unfinished)
    (unfinished / "manifest.json").unlink()
    runs = [str(packed.runs / n) for n in packed.names if n != "vit_demo"] + [str(unfinished)]
    assert kp.main(["--ensemble", str(packed.ens), "--runs", *runs, "--out", out, "--no-wheels"]) == 2
    assert "manifest.json: missing: the run is unfinished" in capsys.readouterr().err
    assert not (tmp_path / "pack").exists() and not list(tmp_path.glob(".pack.partial-*"))
    # never replaces a folder that is not a pack
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not a pack"):
        kp.make_pack(packed.ens, other, wheels=[])
    assert (other / "keep.txt").is_file() and not list(tmp_path.glob(".other.partial-*"))


def test_lgbm_ensemble_packs_its_stacker_and_lightgbm(packed, tmp_path):
    ens = tmp_path / "ensemble"
    shutil.copytree(packed.ens, ens)
    (ens / "lgbm_stacker.json.gz").write_bytes(b"stand-in")  # only copied here, never loaded
    manifest = json.loads((ens / "ensemble.json").read_text())
    manifest.update(method="lgbm", file="lgbm_stacker.json.gz", linear_fallback={"method": "equal",
                                                                                 "file": "weights.npz"},
                    models=["mean_baseline", "vit_demo"])  # knn_frozen's original weights file is gone
    (ens / "ensemble.json").write_text(json.dumps(manifest))
    wheelhouse = tmp_path / "wheelhouse"
    make_dummy_wheel(wheelhouse)
    lgbm = f"lightgbm-{kw.read_pins()['lightgbm']}-py3-none-manylinux_2_28_x86_64.whl"
    (wheelhouse / lgbm).write_bytes(b"stand-in")  # found by name: no download
    m = kp.make_pack(ens, tmp_path / "pack", wheels=[DUMMY_SPEC], wheel_dir=wheelhouse)
    assert sorted(p.name for p in (tmp_path / "pack" / "ensemble").iterdir()) == [
        "ensemble.json", "lgbm_stacker.json.gz", "weights.npz"]
    assert [w["file"] for w in m["wheels"]] == ["sdi2p_dummy-0.0.1-py3-none-any.whl", lgbm]


def test_wheel_specs_follow_requirements_pins():
    pins = kw.read_pins()
    assert kw.wheel_specs(["timm", "open_clip_torch", "ftfy==6.3.1"]) == [
        f"timm=={pins['timm']}", f"open_clip_torch=={pins['open-clip-torch']}", "ftfy==6.3.1"]
    with pytest.raises(DataError, match="neither pinned"):
        kw.wheel_specs(["no-such-package-sdi2p"])
    assert kw._parse_wheel("open_clip_torch-3.3.0-py3-none-any.whl") == ("open-clip-torch", "3.3.0")


def test_pack_holds_each_frozen_backbone_once(packed):
    """The frozen kNN backbone's weights: one file in backbones/, named by both fold checkpoints, not inside them."""
    m, pack = packed.manifest, packed.pack
    files = sorted(p.name for p in (pack / PACKED_BACKBONES_DIR).iterdir())
    assert len(files) == 1 and list(m["backbones"]) == files
    entry = m["backbones"][files[0]]
    assert entry["backbone"] == "timm:convnext_atto" and entry["fp16"]
    assert entry["sha256"] == sha256_file(pack / PACKED_BACKBONES_DIR / files[0])
    folds = m["runs"]["knn_frozen"]["checkpoints"]
    assert len(folds) == 2 and {c["frozen_backbone"] for c in folds.values()} == {files[0]}
    assert sorted(entry["used_by"]) == sorted(f"knn_frozen/{rel}" for rel in folds)
    state = torch.load(pack / PACKED_BACKBONES_DIR / files[0], weights_only=True)
    backbone_bytes = sum(v.nelement() * v.element_size() for v in state.values())
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    for rel, c in folds.items():
        ckpt = torch.load(pack / "runs" / "knn_frozen" / rel, weights_only=False)
        spec = ckpt["feature_model"]
        assert spec["state_dict"] is None and spec["weights_file"] == files[0] and spec["identity"] == entry["identity"]
        assert c["bytes"] < backbone_bytes  # the bank and targets only: no weights inside
        assert ckpt["bank_features"].dtype == np.float16 and ckpt["knn_index"]["kind"] == "flat"
    # trained kNN features (knn_demo) stay per fold: each fold's model is its own
    assert not any(c["frozen_backbone"] for c in m["runs"]["knn_demo"]["checkpoints"].values())
    assert m["sizes"]["backbones"] == (pack / PACKED_BACKBONES_DIR / files[0]).stat().st_size


def test_pack_carries_the_retrieval_bank_and_index_cells(packed):
    """The bank's float16 MiniLM embeddings and bank.json (not the training-only matches), the IVF cells in each
    fold, the query fold model in fp16; faiss is packed (the kNN runs need it too)."""
    from models.retrieval_bank import BANK_DIR, BANK_META, MATCHES_FILE, VALUES_FILE

    entry = packed.manifest["runs"]["retrieval_demo"]
    bank = packed.pack / "runs" / "retrieval_demo" / BANK_DIR
    assert sorted(p.name for p in bank.iterdir()) == sorted([BANK_META, VALUES_FILE])
    assert not (bank / MATCHES_FILE).exists()
    values = np.load(bank / VALUES_FILE)
    assert values.dtype == np.float16 and values.shape == (entry["bank"]["n"], 384)
    assert np.array_equal(values, np.load(packed.runs / "retrieval_demo" / BANK_DIR / VALUES_FILE))
    ckpt = torch.load(packed.pack / "runs" / "retrieval_demo" / "folds" / "fold0" / "model.pt", weights_only=False)
    assert ckpt["index"]["kind"] == "ivf" and ckpt["index"]["centroids"].dtype == np.float32
    assert ckpt["index"]["centroids"].shape == (4, 384)
    assert ckpt["query"]["state_dict"]["head.1.weight"].dtype == torch.float16
    assert ckpt["query"]["state_dict"]["target_mean"].dtype == torch.float32
