"""Run the whole pipeline, stage by stage, skipping stages whose inputs and command did not change.

    ./run_all.sh [--config configs/pipeline/demo.yaml] [--work work] [--from STAGE] [--gpus N]
                 [--n-train N] [--n-test N] [--size PX] [--model-set KEY=VALUE ...]

Stages (`--list` prints them with their commands):
    data              the demo dataset (demo configs only)
    scan              every unreadable training image listed at once
    targets           the training prompts' MiniLM embeddings
    test-targets      the test prompts' embeddings (when the config gives test_prompts)
    folds             grouped K folds + prompt groups
    baseline          the constant mean-embedding run
    train:<model>     one per model config (torchrun with --gpus N > 1)
    ensemble          the stacker, chosen and scored by nested CV; the test blend
    submission        WORK/submission.csv
    offline-submit    the submission again from the fold checkpoints and the blend alone
    offline-check     its rows must equal the stacker's (cosine >= 0.999 per image)
    submission-check  the submission's format, checked against the test images
    report            the OOF analysis page
    score             per-model and stacked scores, the test score (when test prompts are known)

Each stage is one of the project's own commands (printed before it runs); its fingerprint (the
command line and the content of its input files) is stored under WORK/.stages/ when it succeeds,
and a later run skips it while the fingerprint and its outputs are unchanged. `--from STAGE`
forces that stage and every later one to run again. The first failing stage stops the pipeline
with its error (exit 2 for bad input: one `error: <file>: <problem>` line).

The pipeline config's keys are declared in pipeline/config.py; every model config it lists is loaded
(and checked, with the --model-set overrides) before the first stage runs. A `models:` entry is a config
path or `{config: PATH, gpus: N}` (that run's torchrun processes; default: --gpus).

The scan stage lists every unreadable training image at once and stops the pipeline; with
`--skip-bad-images` they are listed in WORK/data/checked/bad_images.csv and left out of every later
stage instead (the same id set everywhere).
"""
import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from core.errors import DataError, exit_on_input_error
from core.faults import fault_point
from core.io import write_text
from models.config import load_config
from pipeline.config import load_pipeline, resolve_config

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    name: str
    cmd: list
    inputs: list = field(default_factory=list)  # files or folders whose content the stage reads
    outputs: list = field(default_factory=list)  # paths that must exist for a skip
    code: list = field(default_factory=list)  # source files or packages the stage runs, hashed by content


def fingerprint(stage):
    h = hashlib.sha256(shlex.join(stage.cmd).encode())
    for path in stage.inputs:
        p = Path(path)
        h.update(str(p).encode())
        if p.is_file():
            h.update(_file_digest(p))
        elif p.is_dir():  # folders (image sets): names, sizes and mtimes, not every byte
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(b"<missing>")
    for path in stage.code:
        h.update(code_digest(path))
    return h.hexdigest()


def code_digest(path):
    """sha256 of a source file, or of a package's .py files (relative names + bytes).

    Content only: no mtimes and no __pycache__, so moving code around or touching a file
    without changing it does not rerun the stage (and every stage after it).
    """
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*.py") if "__pycache__" not in f.parts)
    if not files:
        raise DataError(p, "no source code to fingerprint (file or package missing)")
    for f in files:
        h.update(str(f.relative_to(p) if f != p else f.name).encode())
        h.update(_file_digest(f))
    return h.digest()


def _file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


@dataclass
class DataPaths:
    """What the stages after the data read: the training and test sets, their targets and folds."""
    train: Path
    test: Path
    test_prompts: Optional[Path]
    targets: Path
    folds: Path


def build_stages(cfg, args):
    """Every stage, in order. Every model config is loaded (and so checked) here, before any stage runs."""
    py = [sys.executable]
    work = Path(args.work).resolve()  # stages run from the repository root
    stages, data = _data_stages(cfg, args, work, py)
    stages.append(Stage("baseline", py + ["-m", "models.mean_baseline", "--train", str(data.train),
                                          "--test", str(data.test), "--targets", str(data.targets),
                                          "--folds", str(data.folds),
                                          "--out", str(work / "runs" / "mean_baseline")],
                        inputs=[data.folds, data.targets / "targets.npy", data.test / "images"],
                        outputs=[work / "runs" / "mean_baseline" / "manifest.json"]))
    model_stages, run_dirs = _model_stages(cfg, args, work, py, data)
    return stages + model_stages + _blend_stages(cfg, work, py, data, run_dirs)


def _data_stages(cfg, args, work, py):
    """data (demo) -> scan -> targets (-> test-targets) -> folds, and the paths they leave."""
    d = cfg["data"]
    stages = []
    if d["demo"]:
        demo = dict(d["demo"])
        for key in ("n_train", "n_test", "size"):
            if getattr(args, key) is not None:
                demo[key] = getattr(args, key)
        data = work / "data" / "demo"
        train, test, test_prompts = data / "train", data / "test", data / "test_prompts.csv"
        stages.append(Stage("data", py + ["-m", "datagen.demo", "--out", str(data), "--n-train", str(demo["n_train"]),
                                          "--n-test", str(demo["n_test"]), "--size", str(demo["size"]),
                                          "--seed", str(demo["seed"])],
                            code=[REPO / "datagen" / "demo"], outputs=[train / "prompts.csv", test_prompts]))
    else:
        train, test = Path(d["train"]).resolve(), Path(d["test"]).resolve()
        test_prompts = Path(d["test_prompts"]).resolve() if d["test_prompts"] else None
    # One scan of the training images before any long stage: every unreadable one is listed at once. With
    # --skip-bad-images they are left out instead: every later stage reads the checked view (same id set).
    scan_inputs = [train / "prompts.csv", train / "images"]
    if getattr(args, "skip_bad_images", False):
        checked = work / "data" / "checked"
        stages.append(Stage("scan", py + ["-m", "core.dataset", str(train), "--write-checked", str(checked)],
                            inputs=scan_inputs, outputs=[checked / "prompts.csv"]))
        train = checked
    else:  # its output is its input: skipped while the images (names, sizes, mtimes) are unchanged
        stages.append(Stage("scan", py + ["-m", "core.dataset", str(train), "--require-prompts", "--scan"],
                            inputs=scan_inputs, outputs=[train / "prompts.csv"]))
    targets = work / "targets" / "train"
    # prompt embeddings cached by text under this work folder (not the repository's)
    text_cache = ["--cache", str(work / "cache" / "text_embeddings")]
    stages.append(Stage("targets", py + ["-m", "core.targets", "--prompts", str(train), "--out", str(targets)] + text_cache,
                        inputs=[train / "prompts.csv"], outputs=[targets / "meta.json"]))
    if test_prompts:
        stages.append(Stage("test-targets", py + ["-m", "core.targets", "--prompts", str(test_prompts),
                                                  "--out", str(work / "targets" / "test")] + text_cache,
                            inputs=[test_prompts], outputs=[work / "targets" / "test" / "meta.json"]))
    f = cfg["folds"]
    folds = work / "folds.csv"
    stages.append(Stage("folds", py + ["-m", "core.folds", "--prompts", str(train), "--targets", str(targets),
                                       "--k", str(f["k"]), "--threshold", str(f["threshold"]),
                                       "--mode", f["mode"], "--seed", str(f["seed"]), "--out", str(folds)],
                        inputs=[train / "prompts.csv", targets / "targets.npy"], outputs=[folds]))
    return stages, DataPaths(train, test, test_prompts, targets, folds)


def _model_stages(cfg, args, work, py, data):
    """One `train:<name>` stage per model config, loaded by models.config with the overrides its stage runs
    with: the run name and folder come from there, and a bad config stops the pipeline before stage 1."""
    stages, run_dirs = [], []
    for entry in cfg["models"]:
        config = resolve_config(entry["config"])
        paths = [f"data.train={data.train}", f"data.test={data.test}", f"data.targets={data.targets}",
                 f"data.folds={data.folds}", f"data.cache_dir={work / 'cache'}"]
        model = load_config(config, paths + list(args.model_set))
        sets = paths + [f"out={work / 'runs' / model['name']}"] + list(args.model_set)
        inputs = [Path(config), data.folds, data.targets / "targets.npy", data.train / "images", data.test / "images"]
        src = model["knn"]["features_from"]
        if src:  # a kNN on a trained run's features: point it at that run inside this work tree
            src_run = work / "runs" / Path(src).name
            sets.append(f"knn.features_from={src_run}")
            inputs.append(src_run / "manifest.json")
        model = load_config(config, sets)  # exactly what the stage runs
        gpus = entry["gpus"] or args.gpus
        launcher = py + (["-m", "torch.distributed.run", "--nproc_per_node", str(gpus), "-m"] if gpus and gpus > 1
                         else ["-m"])
        cmd = launcher + ["models.train", "--config", str(config), "--resume", "--replace-changed", "--no-progress"]
        for s in sets:
            cmd += ["--set", s]
        run_dir = Path(model["out"])
        stages.append(Stage(f"train:{model['name']}", cmd, inputs=inputs, outputs=[run_dir / "manifest.json"]))
        run_dirs.append(run_dir)
    return stages, run_dirs


def _blend_stages(cfg, work, py, data, run_dirs):
    """ensemble -> submission -> offline-submit -> offline-check -> submission-check -> report (-> score)."""
    test, test_prompts = data.test, data.test_prompts
    ens = work / "ensemble"
    e = cfg["ensemble"]
    # The mean-embedding baseline joins the stack as a constant model: the blend's intercept.
    stacked = ([work / "runs" / "mean_baseline"] if e["include_baseline"] else []) + run_dirs
    stages = [Stage("ensemble", py + ["-m", "ensemble.fit", "--runs", *map(str, stacked), "--out", str(ens),
                                      "--method", e["method"]],
                    inputs=[r / "manifest.json" for r in stacked], outputs=[ens / "submission.csv"])]
    stages.append(Stage("submission", ["cp", str(ens / "submission.csv"), str(work / "submission.csv")],
                        inputs=[ens / "submission.csv"], outputs=[work / "submission.csv"]))
    # Offline inference (fold checkpoints + blend, from the test images alone) must reproduce the
    # stacker's submission: every run proves that what ships to Kaggle predicts what was scored.
    offline = work / "submission_offline.csv"
    stages.append(Stage("offline-submit", py + ["-m", "models.submit", "--runs", *map(str, stacked), "--ensemble", str(ens),
                                                "--images", str(test), "--out", str(offline)],
                        inputs=[ens / "submission.csv", test / "images"], outputs=[offline]))
    stages.append(Stage("offline-check", py + ["-m", "pipeline.check_offline", str(offline), str(ens / "submission.csv")],
                        inputs=[offline, ens / "submission.csv"]))
    stages.append(Stage("submission-check", py + ["-m", "core.submission", "check", str(offline), "--images", str(test)],
                        inputs=[offline]))
    report_runs = [work / "runs" / "mean_baseline"] + run_dirs
    test_opt = ["--test-targets", str(work / "targets" / "test")] if test_prompts else []
    stages.append(Stage("report", py + ["-m", "oof.report", "--runs", *map(str, report_runs), "--ensemble", str(ens),
                                        *test_opt, "--out", str(work / "report"), "--quiet"],
                        inputs=[r / "manifest.json" for r in report_runs] + [ens / "scores.json", work / "groups.csv"]
                        + ([work / "targets" / "test" / "meta.json"] if test_prompts else []),
                        outputs=[work / "report" / "report.html"], code=[REPO / "oof" / "report"]))
    if test_prompts:
        stages.append(Stage("score", py + ["-m", "pipeline.summary", "--work", str(work), "--runs",
                                           str(work / "runs" / "mean_baseline"), *map(str, run_dirs)],
                            inputs=[work / "submission.csv"], outputs=[]))
    return stages


def run_stages(stages, work, start_from=None):
    names = [s.name for s in stages]
    if start_from and start_from not in names:
        raise DataError(f"--from {start_from}", f"no such stage; stages are {names}")
    stamps = Path(work) / ".stages"
    stamps.mkdir(parents=True, exist_ok=True)
    forced = False
    t_all = time.time()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    for stage in stages:
        forced = forced or stage.name == start_from
        stamp = stamps / (stage.name.replace(":", "_") + ".sha256")
        fp = fingerprint(stage)
        up_to_date = (not forced and stamp.is_file() and stamp.read_text() == fp
                      and all(Path(o).exists() for o in stage.outputs))
        if up_to_date and stage.outputs:
            print(f"== [{time.time() - t_all:6.0f}s] {stage.name}: up to date, skipped", flush=True)
            continue
        print(f"\n== [{time.time() - t_all:6.0f}s] {stage.name}\n$ {shlex.join(stage.cmd)}", flush=True)
        t0 = time.time()
        res = subprocess.run(stage.cmd, cwd=REPO, env=env)
        if res.returncode != 0:
            code = res.returncode if res.returncode > 0 else 128 - res.returncode  # killed by a signal: 128 + N
            print(f"\nrun_all: stage {stage.name} failed (exit {code}); later stages not run. "
                  f"Fix the error above and re-run: finished stages are skipped.", file=sys.stderr)
            return code
        fault_point("stage_end")  # crash tests: killed after a stage finished, before its stamp
        write_text(stamp, fingerprint(stage))
        print(f"-- {stage.name} done in {time.time() - t0:.0f} s", flush=True)
    print(f"\nrun_all: all stages done in {time.time() - t_all:.0f} s", flush=True)
    report = Path(work) / "report" / "report.html"
    if report.is_file():
        print(f"run_all: the OOF analysis report is {report.resolve()}", flush=True)
    return 0


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(prog="run_all.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/pipeline/demo.yaml",
                    help="pipeline config, relative to here or to the repository (default: %(default)s)")
    ap.add_argument("--work", default="work", help="artifact folder (default: %(default)s)")
    ap.add_argument("--from", dest="start_from", default=None, metavar="STAGE", help="re-run from this stage on")
    ap.add_argument("--gpus", type=int, default=1, help="processes per training run, launched with torchrun")
    ap.add_argument("--n-train", type=int, default=None, help="demo data: training images")
    ap.add_argument("--n-test", type=int, default=None, help="demo data: test images")
    ap.add_argument("--size", type=int, default=None, help="demo data: image size")
    ap.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value in every model config, e.g. train.epochs=1 (repeatable)")
    ap.add_argument("--skip-bad-images", action="store_true",
                    help="scan the training images first; leave unreadable ones out of every stage (listed in "
                         "WORK/data/checked/bad_images.csv) instead of failing on them")
    ap.add_argument("--list", action="store_true", help="print the stages and their commands, run nothing")
    args = ap.parse_args(argv)
    cfg = load_pipeline(resolve_config(args.config, "pipeline config"))
    stages = build_stages(cfg, args)
    if args.list:
        for s in stages:
            print(f"{s.name}: {shlex.join(s.cmd)}")
        return 0
    return run_stages(stages, args.work, args.start_from)


if __name__ == "__main__":
    sys.exit(main())
