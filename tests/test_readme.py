"""Every command the documentation shows is run here (or by CI), so the documentation cannot go stale.

The documentation is README.md and the pages of docs/ (PAGES, in the order their commands run).
Code blocks by info string:
    bash        runnable commands: run in order (PAGES' order, then the order within a page) in a
                fresh folder, at tiny sizes (the Kaggle pack without downloading wheels); the stage
                walk comes first: it builds the work/ tree the later blocks read
    bash setup  the fresh-machine commands (README.md only): .ci/run runs the same install, tests
                and run_all.sh
    bash gpu    need GPUs / downloaded weights: each has a CPU stand-in below
    bash bench  benchmarks (long): each must answer --help; their numbers come from real runs
Relative links between the pages must point at files and headings that exist.
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

PAGES = ["README.md", "docs/stages.md", "docs/report.md", "docs/training.md", "docs/training-set.md",
         "docs/retrieval.md", "docs/data.md", "docs/stacker.md", "docs/kaggle.md", "docs/benchmarks.md", "docs/demo.md"]
README_MAX_LINES = 300
# The README's two set-up commands, byte for byte (CI runs the same steps).
SETUP_COMMANDS = [
    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && ./run_all.sh",
    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python -m pytest -q tests",
]
TINY_TRAIN = ["--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=2", "--set", "train.batch_size=8",
              "--set", "train.num_threads=1"]
FENCED = re.compile(r"```([^\n]*)\n(.*?)```", flags=re.S)


def read_page(page):
    return (REPO / page).read_text()


def blocks(kind, pages=PAGES):
    """Command lines of the pages' ```<kind> blocks, in PAGES' order (comments and blank lines dropped)."""
    out = []
    for page in pages:
        for info, body in FENCED.findall(read_page(page)):
            if info.strip() == kind:
                out += [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return out


def tiny(cmd):
    """The documented command at test size: same command and options, plus size-reducing overrides."""
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
    if joined == "-m pipeline.kaggle.pack":
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
    """Run the documentation's ```bash commands in order in a fresh folder; return that folder."""
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
    assert bench, "no ```bash bench block found in the documentation"
    modules += [shlex.split(cmd)[2] for cmd in bench]
    for module in modules:
        res = run([sys.executable, "-m", module, "--help"], REPO, env, timeout=120)
        assert "usage" in res.stdout.lower(), module


def test_setup_commands_match_ci():
    setup = blocks("bash setup")
    assert setup == SETUP_COMMANDS
    ci = (REPO / ".ci" / "run").read_text()
    install = "pip install -r requirements.txt"
    assert all(install in s for s in setup) and install in ci
    assert setup[0].endswith("./run_all.sh") and "run_all.sh" in ci
    assert setup[1].endswith("python -m pytest -q tests") and "python -m pytest -q tests" in ci


def test_readme_is_short_and_keeps_the_setup_commands():
    readme = read_page("README.md")
    n = len(readme.splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move detail into docs/"
    # the two set-up blocks, unchanged byte for byte, in the README itself
    assert re.findall(r"```bash setup\n(.*?)```", readme, flags=re.S) == [c + "\n" for c in SETUP_COMMANDS]


def test_pages_list_every_doc_page():
    """Every page of docs/ is in PAGES: its commands run (in a stated order) and its links are checked."""
    pages = ["README.md"] + [f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")]
    assert not set(pages) - set(PAGES), f"pages missing from PAGES: {sorted(set(pages) - set(PAGES))}"
    assert not set(PAGES) - set(pages), f"PAGES lists pages that do not exist: {sorted(set(PAGES) - set(pages))}"
    first = next(page for page in PAGES if blocks("bash", [page]))
    assert blocks("bash", [first])[0] == "source .venv/bin/activate", "the stage walk must be the first ```bash block"


def heading_anchors(text):
    """GitHub's anchors for the Markdown headings of a page (fenced code left out)."""
    anchors, seen = set(), {}
    for line in FENCED.sub("", text).splitlines():
        m = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def relative_links(text):
    """Targets of the page's inline and reference links, without fenced code and inline code spans."""
    prose = re.sub(r"`[^`\n]*`", "", FENCED.sub("", text))
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose)
    targets += re.findall(r"^ {0,3}\[[^\]]+\]: *(\S+)", prose, flags=re.M)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t, flags=re.I)]  # http:, mailto: ...


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        links = relative_links(read_page(page))
        if page == "README.md":
            assert any(t.startswith("docs/") for t in links), "the README links the pages of docs/"
        for target in links:
            path, _, anchor = target.partition("#")
            dest = ((REPO / page).parent / path).resolve() if path else REPO / page
            if not dest.exists() or REPO not in dest.parents:
                broken.append(f"{page}: {target}: no such file in the repository")
            elif anchor and (dest.suffix != ".md" or anchor not in heading_anchors(dest.read_text())):
                broken.append(f"{page}: {target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, "\n".join(broken)


def test_anchor_slugs_follow_github():
    assert heading_anchors("# A `b` c: d -> e\n## Same\n## Same\n```\n# not a heading\n```\n") == \
        {"a-b-c-d---e", "same", "same-1"}


def test_gpu_commands_cpu_stand_ins(readme_workspace, env):
    """Each GPU command, run the same way on the CPU with 2 gloo processes and demo configs."""
    stand_ins = {
        "./run_all.sh --config configs/pipeline/gpu_production.yaml --gpus 8": "pipeline",
        "torchrun --nproc_per_node 8 -m models.train --config configs/eva02_l.yaml": "ddp",
        # test_generate_commands_cpu_stand_ins runs these four:
        ("python -m datagen.generate --prompts work/prompts/prompts.csv --out data/sd2 --holdout 0.02 --format jpeg "
         "--prepare"): "generate",
        ("torchrun --nproc_per_node 8 -m datagen.generate --prompts work/prompts/prompts.csv --out data/sd2 "
         "--holdout 0.02 --format jpeg --batch-size 8"): "generate",
        "python -m datagen.generate --merge data/sd2": "generate",
        "./run_all.sh --config configs/pipeline/generated.yaml --gpus 8": "generate",
        # test_retrieval_commands_cpu_stand_ins runs these three:
        "python -m datagen.filter --data data/sd2 --model ViT-H-14 --pretrained laion2b_s32b_b79k "
        "--drop-fraction 0.05 --out data/sd2_clip": "retrieval",
        "python -m models.train --config configs/retrieval_clip_h14.yaml": "retrieval",
        "./run_all.sh --config configs/pipeline/generated_clip.yaml --gpus 8": "retrieval",
    }
    assert blocks("bash gpu") == list(stand_ins), "a documented GPU command without a CPU stand-in"
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
    from core.runs import load_run

    assert load_run(readme_workspace / "work" / "runs" / "eva_ddp").oof_ids == \
        load_run(readme_workspace / "work" / "runs" / "eva_demo").oof_ids


def test_generate_commands_cpu_stand_ins(tmp_path, env):
    """The documented generation walk on the CPU: a tiny random SD2 folder as --model, 2 torchrun processes."""
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


def test_retrieval_commands_cpu_stand_ins(readme_workspace, tiny_clip, tmp_path, monkeypatch, capsys):
    """docs/retrieval.md's GPU walk on the CPU: the filter, the query: clip member and the pipeline's plan, with a
    tiny open_clip model trained contrastively (conftest tiny_clip) in place of ViT-H-14 laion2b. In this process
    (each command's `main`), in the README workspace."""
    import pandas as pd
    import yaml

    from core.runs import load_run
    from datagen.filter import main as filter_main
    from models.config import load_config
    from models.train import main as train_main
    from pipeline.run import main as pipeline_main
    from tests.clip_fixtures import TINY_CLIP, TINY_SIZE

    filt, train, pipe = [c for c in blocks("bash gpu", ["docs/retrieval.md"])]
    argv = shlex.split(filt)[3:]
    tower = {"--model": TINY_CLIP, "--pretrained": str(tiny_clip.weights), "--data": str(tiny_clip.data / "train"),
             "--out": str(tmp_path / "sd2_clip")}
    argv = [tower.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]
    assert filter_main(argv + ["--workers", "0", "--device", "cpu", "--batch-size", "64"]) == 0
    assert len(pd.read_csv(tmp_path / "sd2_clip" / "prompts.csv")) == 190  # 5% of 200 pairs dropped
    demo = {k: v for k, v in load_config(REPO / "configs" / "vit_demo.yaml")["data"].items()
            if k in ("train", "test", "targets", "folds")}  # the walk's demo set in place of data/train
    sets = [f"backbone.name={TINY_CLIP}", f"backbone.pretrained={tiny_clip.weights}", f"image.size={TINY_SIZE}",
            *(f"data.{k}={v}" for k, v in demo.items())]
    monkeypatch.chdir(readme_workspace)
    assert train_main(shlex.split(train)[3:] + [a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    run_dir = readme_workspace / "work" / "runs" / "retrieval_clip_h14"
    assert np.isfinite(load_run(run_dir).oof).all() and (run_dir / "bank" / "keys.npy").is_file()
    config = readme_workspace / shlex.split(pipe)[2]
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(next(b for info, b in FENCED.findall(read_page("docs/retrieval.md"))
                           if info.strip() == "yaml" and "models:" in b))
    assert yaml.safe_load(config.read_text())["data"]["train"] == "data/sd2_clip"
    capsys.readouterr()
    assert pipeline_main(shlex.split(pipe)[1:] + ["--list"]) == 0
    plan = capsys.readouterr().out
    assert "train:retrieval_clip_h14" in plan and "train:knn_clip_h14" in plan
