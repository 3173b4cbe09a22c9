"""run_all's stage fingerprints (code is followed by content, regenerated identical data reruns nothing) and its
configs: the pipeline config's keys and every model config checked before the first stage."""
import os
import shutil

import pytest
import yaml

from core.errors import DataError
from datagen.demo import generate_demo
from pipeline.config import load_pipeline
from pipeline.run import REPO, Stage, code_digest, fingerprint, main


def test_code_fingerprint_follows_content_not_mtimes_or_bytecode(tmp_path):
    pkg = tmp_path / "demo"
    shutil.copytree(REPO / "datagen" / "demo", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(pkg)
    for f in pkg.glob("*.py"):
        os.utime(f, (1, 1))  # touched, unchanged
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "writer.cpython-311.pyc").write_bytes(b"\0compiled")
    assert code_digest(pkg) == before
    with open(pkg / "writer.py", "a") as f:
        f.write("\n# an edit\n")
    assert code_digest(pkg) != before


def test_regenerated_identical_demo_keeps_downstream_fingerprints(tmp_path):
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=1, progress=False)
    stage = Stage("baseline", ["x"], inputs=[tmp_path / "d" / "test" / "images", tmp_path / "d" / "train" / "prompts.csv"])
    first = fingerprint(stage)
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=1, progress=False)
    assert fingerprint(stage) == first  # same bytes: files left alone, later stages skipped
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=2, progress=False)
    assert fingerprint(stage) != first


def _pipeline(tmp_path, models):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"data": {"demo": {"n_train": 20, "n_test": 4, "size": 16}}, "folds": {"k": 2},
                                    "models": models}))
    return path


def test_every_model_config_is_checked_before_the_first_stage(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs" / "vit_demo.yaml").read_text() + "\nhead:\n  dropout: 1.5\n")
    work = tmp_path / "w"
    assert main(["--config", str(_pipeline(tmp_path, ["configs/eva_demo.yaml", str(bad)])), "--work", str(work)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}: head.dropout must be in [0, 1), got 1.5"
    assert not work.exists()  # no stage ran
    # the --model-set overrides are checked with them
    good = _pipeline(tmp_path, ["configs/eva_demo.yaml"])
    assert main(["--config", str(good), "--work", str(work), "--model-set", "train.epochs=0"]) == 2
    assert "eva_demo.yaml: train.epochs must be >= 1, got 0" in capsys.readouterr().err and not work.exists()


def test_model_stages_take_name_and_folder_from_the_loaded_config(tmp_path, capsys):
    named = tmp_path / "named.yaml"
    named.write_text((REPO / "configs" / "vit_demo.yaml").read_text() + "\nname: vit_small\n")
    path = _pipeline(tmp_path, [{"config": str(named), "gpus": 2}, "configs/eva_demo.yaml"])
    assert main(["--config", str(path), "--work", str(tmp_path / "w"), "--list"]) == 0
    lines = {ln.split(": ", 1)[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "--nproc_per_node 2 -m models.train" in lines["train:vit_small"]  # gpus: that model's processes
    assert f"out={tmp_path / 'w' / 'runs' / 'vit_small'}" in lines["train:vit_small"]
    assert "torch.distributed.run" not in lines["train:eva_demo"]  # run_all's --gpus 1
    assert str(tmp_path / "w" / "runs" / "vit_small") in lines["ensemble"]


@pytest.mark.parametrize("models,data,message", [
    ([{"config": "configs/vit_demo.yaml", "gpu": 2}], None,
     "unknown key(s) ['gpu'] in models[0]; valid keys: ['config', 'gpus']"),
    ([{"config": "configs/vit_demo.yaml", "gpus": 0}], None, "models[0].gpus must be null or an integer >= 1, got 0"),
    ([{"gpus": 2}], None, "models[0] needs ['config']"),
    ([3], None, "models[0] must be a model config path or a mapping {config: PATH, gpus: N}, got 3"),
    (["configs/vit_demo.yaml"], {"demo": {"n_train": 20, "n_test": 4, "size": 4}},
     "data.demo.size must be >= 8, got 4"),
    (["configs/vit_demo.yaml"], {"demo": {"n_train": "many", "n_test": 4, "size": 16}},
     "data.demo.n_train must be an integer, got 'many' (str)"),
    (["configs/vit_demo.yaml"], {"train": 3, "test": "t"}, "data.train must be null or a string, got 3"),
])
def test_pipeline_config_values_are_checked(tmp_path, models, data, message):
    path = _pipeline(tmp_path, models)
    if data:
        path.write_text(yaml.safe_dump({"data": data, "folds": {}, "models": models}))
    with pytest.raises(DataError) as e:
        load_pipeline(path)
    assert str(e.value) == f"{path}: {message}"


def test_pipeline_defaults_fill_what_a_config_leaves_out(tmp_path):
    cfg = load_pipeline(_pipeline(tmp_path, ["configs/vit_demo.yaml"]))
    assert cfg["folds"] == {"k": 2, "threshold": 0.9, "mode": "exact", "seed": 42}
    assert cfg["data"]["demo"]["seed"] == 0 and cfg["ensemble"] == {"method": "auto", "include_baseline": True}
    assert cfg["models"] == [{"config": "configs/vit_demo.yaml", "gpus": None}]
