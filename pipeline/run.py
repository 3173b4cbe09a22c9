"""Run the whole pipeline, stage by stage, skipping stages whose inputs and command did not change.

    ./run_all.sh [--config configs/pipeline/demo.yaml] [--work work] [--from STAGE] [--gpus N]
                 [--n-train N] [--n-test N] [--size PX] [--model-set KEY=VALUE ...]

Stages: data -> targets -> folds -> baseline -> one `train:<model>` per model config ->
ensemble -> score. Each stage is one of the project's own commands (printed before it runs);
its fingerprint (the command line and the content of its input files) is stored under
WORK/.stages/ when it succeeds, and a later run skips it while the fingerprint and its outputs
are unchanged. `--from STAGE` forces that stage and every later one to run again. The first
failing stage stops the pipeline with its error.
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

import yaml

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
        raise SystemExit(f"error: {p}: no source code to fingerprint (file or package missing)")
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


def load_pipeline(path):
    path = Path(path)
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    for key in ("data", "folds", "models"):
        if key not in cfg:
            raise SystemExit(f"error: {path}: missing section {key!r}")
    return cfg


def resolve_config(path, what="model config"):
    """A config path as given (relative to the current folder) or relative to the repository."""
    p = Path(path)
    for cand in (p, REPO / p):
        if cand.is_file():
            return cand.resolve()
    raise SystemExit(f"error: {what} {path} not found (relative to {Path.cwd()} or {REPO})")


def model_name(config_path):
    with open(config_path) as f:
        raw = yaml.safe_load(f) or {}
    return raw.get("name") or Path(config_path).stem


def build_stages(cfg, args):
    py = [sys.executable]
    work = Path(args.work).resolve()  # stages run from the repository root
    d = cfg["data"]
    stages = []
    if "demo" in d:
        demo = dict(d["demo"])
        for key in ("n_train", "n_test", "size"):
            if getattr(args, key) is not None:
                demo[key] = getattr(args, key)
        data = work / "data" / "demo"
        train, test, test_prompts = data / "train", data / "test", data / "test_prompts.csv"
        stages.append(Stage("data", py + ["-m", "datagen.demo", "--out", str(data), "--n-train", str(demo["n_train"]),
                                          "--n-test", str(demo["n_test"]), "--size", str(demo["size"]),
                                          "--seed", str(demo.get("seed", 0))],
                            code=[REPO / "datagen" / "demo"], outputs=[train / "prompts.csv", test_prompts]))
    else:
        train, test = Path(d["train"]).resolve(), Path(d["test"]).resolve()
        test_prompts = Path(d["test_prompts"]).resolve() if d.get("test_prompts") else None
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
                                       "--k", str(f.get("k", 5)), "--threshold", str(f.get("threshold", 0.9)),
                                       "--mode", f.get("mode", "exact"), "--seed", str(f.get("seed", 42)),
                                       "--out", str(folds)],
                        inputs=[train / "prompts.csv", targets / "targets.npy"], outputs=[folds]))
    stages.append(Stage("baseline", py + ["-m", "models.mean_baseline", "--train", str(train), "--test", str(test),
                                          "--targets", str(targets), "--folds", str(folds),
                                          "--out", str(work / "runs" / "mean_baseline")],
                        inputs=[folds, targets / "targets.npy", test / "images"],
                        outputs=[work / "runs" / "mean_baseline" / "manifest.json"]))
    launcher = py + ["-m"]
    if args.gpus and args.gpus > 1:
        launcher = py + ["-m", "torch.distributed.run", "--nproc_per_node", str(args.gpus), "-m"]
    run_dirs = []
    configs = [resolve_config(m) for m in cfg["models"]]
    for config in configs:
        name = model_name(config)
        run_dir = work / "runs" / name
        sets = [f"data.train={train}", f"data.test={test}", f"data.targets={targets}", f"data.folds={folds}",
                f"data.cache_dir={work / 'cache'}", f"out={run_dir}"] + list(args.model_set)
        inputs = [Path(config), folds, targets / "targets.npy", train / "images", test / "images"]
        with open(config) as fh:
            raw = yaml.safe_load(fh) or {}
        src = (raw.get("knn") or {}).get("features_from")
        if src:  # a kNN on a trained run's features: point it at that run inside this work tree
            src_run = work / "runs" / Path(src).name
            sets.append(f"knn.features_from={src_run}")
            inputs.append(src_run / "manifest.json")
        cmd = launcher + ["models.train", "--config", str(config), "--resume", "--no-progress"]
        for s in sets:
            cmd += ["--set", s]
        stages.append(Stage(f"train:{name}", cmd, inputs=inputs, outputs=[run_dir / "manifest.json"]))
        run_dirs.append(run_dir)
    ens = work / "ensemble"
    e = cfg.get("ensemble") or {}
    # The mean-embedding baseline joins the stack as a constant model: the blend's intercept.
    stacked = ([work / "runs" / "mean_baseline"] if e.get("include_baseline", True) else []) + run_dirs
    stages.append(Stage("ensemble", py + ["-m", "ensemble.fit", "--runs", *map(str, stacked), "--out", str(ens),
                                          "--method", e.get("method", "auto")],
                        inputs=[r / "manifest.json" for r in stacked], outputs=[ens / "submission.csv"]))
    stages.append(Stage("submission", ["cp", str(ens / "submission.csv"), str(work / "submission.csv")],
                        inputs=[ens / "submission.csv"], outputs=[work / "submission.csv"]))
    if test_prompts:
        stages.append(Stage("score", py + ["-m", "pipeline.summary", "--work", str(work), "--runs",
                                           str(work / "runs" / "mean_baseline"), *map(str, run_dirs)],
                            inputs=[work / "submission.csv"], outputs=[]))
    return stages


def run_stages(stages, work, start_from=None):
    stamps = Path(work) / ".stages"
    stamps.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in stages]
    if start_from and start_from not in names:
        raise SystemExit(f"error: --from {start_from}: no such stage; stages are {names}")
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
            print(f"\nrun_all: stage {stage.name} failed (exit {res.returncode}); later stages not run. "
                  f"Fix the error above and re-run: finished stages are skipped.", file=sys.stderr)
            return res.returncode
        stamp.write_text(fingerprint(stage))
        print(f"-- {stage.name} done in {time.time() - t0:.0f} s", flush=True)
    print(f"\nrun_all: all stages done in {time.time() - t_all:.0f} s", flush=True)
    return 0


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
