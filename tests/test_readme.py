"""Every command in README.md is run here (or by CI), so the README cannot go stale.

README code blocks by info string:
    bash        runnable commands: run in order in a fresh folder, at tiny sizes (the Kaggle pack
                without downloading wheels)
    bash setup  the fresh-machine commands: .ci/run runs the same install, tests and run_all.sh
    bash gpu    need GPUs / downloaded weights: each has a CPU stand-in below
    bash bench  benchmarks (long): each must answer --help; their numbers come from real runs
"""
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from tests.model_fixtures import REPO

README = (REPO / "README.md").read_text()
TINY_TRAIN = ["--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=2", "--set", "train.batch_size=8",
              "--set", "train.num_threads=1"]


def blocks(kind):
    """Command lines of the README's ```<kind> blocks (comments and blank lines dropped)."""
    out = []
    for info, body in re.findall(r"```([^\n]*)\n(.*?)```", README, flags=re.S):
        if info.strip() == kind:
            out += [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return out


def tiny(cmd):
    """The README command at test size: same command and options, plus size-reducing overrides."""
    argv = shlex.split(cmd)
    if argv[0] == "python":
        argv[0] = sys.executable
    joined = " ".join(argv[1:3])
    if joined == "-m datagen.demo":
        argv += ["--n-train", "45", "--n-test", "6"]
    if joined == "-m models.train":
        argv += TINY_TRAIN
    if joined == "-m ensemble.fit":
        argv += ["--quiet"]
    if joined == "-m pipeline.kaggle_pack":
        argv += ["--no-wheels"]  # no downloads in tests; tests/test_kaggle_pack.py packs wheels from a folder
    if joined == "-m datagen.prompts":  # the shared prompt files, 20 rows of each
        argv = [a.replace("../shared/data", str(SHARED_DATA)) for a in argv] + ["--limit", "20"]
    return argv


def run(argv, cwd, env, timeout=600):
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{shlex.join(argv)}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def env():
    return dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def readme_workspace(tmp_path_factory, env):
    """Run the README's stage commands in order in a fresh folder; return that folder."""
    cwd = tmp_path_factory.mktemp("readme")
    cmds = blocks("bash")
    assert cmds and cmds[0] == "source .venv/bin/activate"
    for cmd in cmds[1:]:
        run(tiny(cmd), cwd, env)
    return cwd


def test_readme_stage_commands_run(readme_workspace):
    from core.submission import read_submission

    ids, emb = read_submission(readme_workspace / "work" / "submission_offline.csv")
    assert len(ids) == 6 and emb.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # The offline path (fold checkpoints + blend) reproduces the ensemble's own test blend.
    ids2, emb2 = read_submission(readme_workspace / "work" / "ensemble" / "submission.csv")
    pos = {i: k for k, i in enumerate(ids2)}
    assert np.abs(emb - emb2[[pos[i] for i in ids]]).max() < 1e-3


def test_every_command_has_help(env):
    modules = sorted({shlex.split(c)[2] for c in blocks("bash") if c.startswith("python -m")})
    modules += ["pipeline.run", "pipeline.summary", "models.image_cache"]
    bench = blocks("bash bench")
    assert bench, "no ```bash bench block found in the README"
    modules += [shlex.split(cmd)[2] for cmd in bench]
    for module in modules:
        res = run([sys.executable, "-m", module, "--help"], REPO, env, timeout=120)
        assert "usage" in res.stdout.lower(), module


def test_setup_commands_match_ci():
    setup = blocks("bash setup")
    assert len(setup) == 2
    ci = (REPO / ".ci" / "run").read_text()
    install = "pip install -r requirements.txt"
    assert all(install in s for s in setup) and install in ci
    assert setup[0].endswith("./run_all.sh") and "run_all.sh" in ci
    assert setup[1].endswith("python -m pytest -q tests") and "python -m pytest -q tests" in ci


def test_gpu_commands_cpu_stand_ins(readme_workspace, env):
    """Each GPU command, run the same way on the CPU with 2 gloo processes and demo configs."""
    stand_ins = {
        "./run_all.sh --config configs/pipeline/gpu_production.yaml --gpus 8": "pipeline",
        "torchrun --nproc_per_node 8 -m models.train --config configs/eva02_l.yaml": "ddp",
        # test_generate_commands_cpu_stand_ins runs these four:
        "python -m datagen.generate --prompts work/prompts/prompts.csv --out data/sd2 --holdout 0.02 --format jpeg --prepare": "generate",
        "torchrun --nproc_per_node 8 -m datagen.generate --prompts work/prompts/prompts.csv --out data/sd2 --holdout 0.02 --format jpeg --batch-size 8": "generate",
        "python -m datagen.generate --merge data/sd2": "generate",
        "./run_all.sh --config configs/pipeline/generated.yaml --gpus 8": "generate",
    }
    assert blocks("bash gpu") == list(stand_ins), "a README GPU command without a CPU stand-in"
    # run_all's plan for the 8 GPUs (--list: nothing runs): the four runs (the kNN on its own frozen ViT-H) side by
    # side, each through torchrun on 2 of the GPUs
    res = run([str(REPO / "run_all.sh"), "--config", "configs/pipeline/gpu_production.yaml", "--gpus", "8", "--list"],
              readme_workspace, env)
    lines = res.stdout.splitlines()
    train = {head.split(":")[1]: cmd for head, cmd in zip(lines[1::2], lines[2::2]) if head.startswith("train:")}
    assert lines[0].startswith("plan: GPUs 0,1,2,3,4,5,6,7") and len(train) == 4
    shares = [int(re.search(r"--nproc_per_node (\d) -m models.train", cmd).group(1)) for cmd in train.values()]
    assert shares == [2, 2, 2, 2] and all("CUDA_VISIBLE_DEVICES=" in cmd for cmd in train.values())
    # torchrun of models.train: the same launcher module, 2 processes, the eva family at demo size.
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
         "-m", "models.train", "--config", "configs/eva_demo.yaml", "--overwrite", "--no-progress",
         "--set", "out=work/runs/eva_ddp"] + TINY_TRAIN, readme_workspace, env)
    from oof.runs import load_run

    assert load_run(readme_workspace / "work" / "runs" / "eva_ddp").oof_ids == \
        load_run(readme_workspace / "work" / "runs" / "eva_demo").oof_ids


def test_generate_commands_cpu_stand_ins(tmp_path, env):
    """The README's generation walk on the CPU: a tiny random SD2 folder as --model, 2 torchrun processes."""
    import pandas as pd

    from tests.sd_fixtures import build_tiny_sd_pipeline

    cmds = [c for c in blocks("bash gpu") if "datagen.generate" in c or "generated.yaml" in c]
    assert len(cmds) == 4
    model = build_tiny_sd_pipeline(tmp_path / "tiny-sd2")
    corpus = tmp_path / "work" / "prompts"
    corpus.mkdir(parents=True)
    pd.DataFrame({"imgId": [f"{i:016x}" for i in range(24)], "prompt": [f"a photo of thing {i}" for i in range(24)],
                  "source": "demo"}).to_csv(corpus / "prompts.csv", index=False)
    tiny_gen = ["--model", str(model), "--gen-size", "32", "--save-size", "32", "--steps", "2", "--no-progress",
                "--cache", str(tmp_path / "text_cache")]
    for cmd in cmds:
        argv = shlex.split(cmd)
        if argv[0] == "torchrun":  # 2 CPU processes instead of 8 GPUs, the same launcher module
            argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29543",
                    *argv[3:], *tiny_gen]
        elif argv[0] == "python":
            argv = [sys.executable, *argv[1:]] + ([] if "--merge" in argv else tiny_gen)
        else:  # run_all.sh: the stages it would run on the generated set
            argv = [str(REPO / "run_all.sh"), *argv[1:-1], "2", "--list"]
        res = run(argv, tmp_path, env)
    assert "test-targets" in res.stdout and str(tmp_path / "data" / "sd2" / "test_prompts.csv") in res.stdout
    data = tmp_path / "data" / "sd2"
    train = pd.read_csv(data / "prompts.csv", dtype=str)
    test = pd.read_csv(data / "test_prompts.csv", dtype=str)
    assert len(train) + len(test) == 24 and len(test) >= 1
    assert sorted(p.name for p in (data / "images").iterdir()) == sorted(f"{i}.jpg" for i in train["imgId"])
    assert {p.name for p in data.glob("prompts.*-of-*.csv")} == {"prompts.0-of-2.csv", "prompts.1-of-2.csv"}
