"""run_all's stages: what each runs, reads, writes and waits for, and the fingerprint that lets a rerun skip it.

A stage is one of the project's own commands. `needs` names the stages whose outputs it reads (the DAG the
scheduler runs); `cmd` is fingerprinted with the content of `inputs` and `code`, while how a stage is launched
(threads, devices, torchrun) is left to the plan (pipeline/plan.py) and does not enter the fingerprint.
"""
import hashlib
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from core.dataset import IMAGES_DIR, PROMPTS_FILE, TEST_PROMPTS_FILE
from core.errors import DataError
from core.runs import RUN_MANIFEST
from core.submission import SUBMISSION_FILE
from core.targets import META_FILE, TARGETS_FILE
from ensemble.apply import SCORES_FILE
from models.config import load_config
from oof.report import HTML_FILE
from pipeline.config import resolve_config
from pipeline.layout import WorkTree

REPO = Path(__file__).resolve().parents[1]
# Planning hints: a stage's seconds in the default demo (README, Results), used only to order ready stages and
# to plan threads; a training run 200, a kNN run on another run's features 10.
TRAIN_WEIGHT, KNN_WEIGHT = 200.0, 10.0
BANK_WEIGHT = 35.0  # the demo bank: 15,000 prompts embedded by MiniLM on 2 cores


@dataclass
class Stage:
    name: str
    cmd: list
    inputs: list = field(default_factory=list)  # files or folders whose content the stage reads
    outputs: list = field(default_factory=list)  # paths that must exist for a skip
    code: list = field(default_factory=list)  # source files or packages the stage runs, hashed by content
    needs: list = field(default_factory=list)  # names of the stages whose outputs it reads: they finish first
    weight: float = 1.0  # planning hint: its seconds in the default demo
    train: bool = False  # a models.train run: run_all sets its threads, decode workers and devices
    gpus: Optional[int] = None  # train: its share of the GPUs (the pipeline config's `gpus:`); None: an even split
    threads: Optional[int] = None  # train: train.num_threads its config fixes (None: the plan's)
    workers: Optional[int] = None  # train: data.workers its config fixes (None: the plan's share)
    show: bool = False  # its output is printed when it ends (checks, the final summary), not only logged


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
    """What the stages after the data read: the training and test sets, their targets and folds, and the stages
    that make them."""
    train: Path
    test: Path
    test_prompts: Optional[Path]
    targets: Path
    folds: Path
    data_stage: list  # ["data"] for the demo (it writes the images), else []


def build_stages(cfg, args):
    """Every stage, in an order that respects `needs`. Every model config is loaded (and so checked) here, before
    any stage runs."""
    py = [sys.executable]
    work = WorkTree(Path(args.work).resolve())  # stages run from the repository root
    stages, data = _data_stages(cfg, args, work, py)
    baseline = work.baseline
    stages.append(Stage("baseline", py + ["-m", "models.mean_baseline", "--train", str(data.train),
                                          "--test", str(data.test), "--targets", str(data.targets),
                                          "--folds", str(data.folds), "--out", str(baseline)],
                        inputs=[data.folds, data.targets / TARGETS_FILE, data.test / IMAGES_DIR],
                        outputs=[baseline / RUN_MANIFEST], needs=["folds"] + data.data_stage, weight=2))
    model_stages = _model_stages(cfg, args, work, py, data, stages)  # (a demo bank joins `stages`)
    return stages + model_stages + _blend_stages(cfg, work, py, data, model_stages)


def _data_stages(cfg, args, work, py):
    """data (demo) -> scan -> targets -> folds, test-targets beside them, and the paths they leave."""
    d = cfg["data"]
    stages, made_by = [], []
    if d["demo"]:
        demo = dict(d["demo"])
        for key in ("n_train", "n_test", "size"):
            if getattr(args, key, None) is not None:
                demo[key] = getattr(args, key)
        data = work.demo
        train, test, test_prompts = data / "train", data / "test", data / TEST_PROMPTS_FILE
        stages.append(Stage("data", py + ["-m", "datagen.demo", "--out", str(data), "--n-train", str(demo["n_train"]),
                                          "--n-test", str(demo["n_test"]), "--size", str(demo["size"]),
                                          "--seed", str(demo["seed"])],
                            code=[REPO / "datagen" / "demo"], outputs=[train / PROMPTS_FILE, test_prompts], weight=12))
        made_by = ["data"]
    else:
        train, test = Path(d["train"]).resolve(), Path(d["test"]).resolve()
        test_prompts = Path(d["test_prompts"]).resolve() if d["test_prompts"] else None
    # One scan of the training images before any long stage: every unreadable one is listed at once. With
    # --skip-bad-images they are left out instead: every later stage reads the checked view (same id set).
    scan_inputs = [train / PROMPTS_FILE, train / IMAGES_DIR]
    if getattr(args, "skip_bad_images", False):
        checked = work.checked
        stages.append(Stage("scan", py + ["-m", "core.dataset", str(train), "--write-checked", str(checked)],
                            inputs=scan_inputs, outputs=[checked / PROMPTS_FILE], needs=made_by))
        train = checked
    else:  # its output is its input: skipped while the images (names, sizes, mtimes) are unchanged
        stages.append(Stage("scan", py + ["-m", "core.dataset", str(train), "--require-prompts", "--scan"],
                            inputs=scan_inputs, outputs=[train / PROMPTS_FILE], needs=made_by))
    targets = work.targets("train")
    # prompt embeddings cached by text under this work folder (not the repository's); the cache takes
    # concurrent writers (append-only shards), so test-targets runs beside the training set's stages
    text_cache = ["--cache", str(work.text_cache)]
    stages.append(Stage("targets",
                        py + ["-m", "core.targets", "--prompts", str(train), "--out", str(targets)] + text_cache,
                        inputs=[train / PROMPTS_FILE], outputs=[targets / META_FILE], needs=["scan"], weight=13))
    if test_prompts:
        stages.append(Stage("test-targets", py + ["-m", "core.targets", "--prompts", str(test_prompts),
                                                  "--out", str(work.targets("test"))] + text_cache,
                            inputs=[test_prompts], outputs=[work.targets("test") / META_FILE], needs=made_by,
                            weight=10))
    f = cfg["folds"]
    folds = work.folds
    stages.append(Stage("folds", py + ["-m", "core.folds", "--prompts", str(train), "--targets", str(targets),
                                       "--k", str(f["k"]), "--threshold", str(f["threshold"]),
                                       "--mode", f["mode"], "--seed", str(f["seed"]), "--out", str(folds)],
                        inputs=[train / PROMPTS_FILE, targets / TARGETS_FILE], outputs=[folds], needs=["targets"],
                        weight=2))
    return stages, DataPaths(train, test, test_prompts, targets, folds, made_by)


def _model_stages(cfg, args, work, py, data, data_stages):
    """One `train:<name>` stage per model config, loaded by models.config with the overrides its stage runs
    with: the run name and folder come from there, and a bad config stops the pipeline before stage 1. A stage a
    model needs first (the demo's bank) is appended to `data_stages`."""
    stages, feature_runs = [], {}
    for entry in cfg["models"]:
        config = resolve_config(entry["config"])
        paths = [f"data.train={data.train}", f"data.test={data.test}", f"data.targets={data.targets}",
                 f"data.folds={data.folds}", f"data.cache_dir={work.cache}"]
        model = load_config(config, paths + list(args.model_set))
        sets = paths + [f"out={work.run(model['name'])}"] + list(args.model_set)
        inputs = [Path(config), data.folds, data.targets / TARGETS_FILE, data.train / IMAGES_DIR,
                  data.test / IMAGES_DIR]
        needs = ["folds"] + data.data_stage
        src, src_key = model["knn"]["features_from"], "knn.features_from"
        if model["model"] == "retrieval":
            sets, inputs, bank_stage = _retrieval_bank(model, cfg, args, work, py, data, sets, inputs, data_stages)
            needs += bank_stage
            src, src_key = (model["retrieval"]["run"], "retrieval.run") if model["retrieval"]["query"] == "run" \
                else (None, None)
        if src:  # a kNN on a trained run's features, a retrieval on its predictions: that run in this work tree
            src_run = work.run(Path(src).name)
            sets.append(f"{src_key}={src_run}")
            inputs.append(src_run / RUN_MANIFEST)
        model = load_config(config, sets)  # exactly what the stage runs
        cmd = py + ["-m", "models.train", "--config", str(config), "--resume", "--replace-changed", "--no-progress"]
        for s in sets:
            cmd += ["--set", s]
        weight = KNN_WEIGHT if model["model"] in ("knn", "retrieval") and src else TRAIN_WEIGHT
        stages.append(Stage(f"train:{model['name']}", cmd, inputs=inputs, outputs=[Path(model["out"]) / RUN_MANIFEST],
                            needs=needs, weight=weight, train=True, gpus=entry["gpus"],
                            threads=model["train"]["num_threads"], workers=model["data"]["workers"]))
        if src:
            feature_runs[stages[-1].name] = src_run
    for stage in stages:  # a kNN (retrieval) waits for the run whose features (predictions) it reads, wherever
        if stage.name in feature_runs:  # the list names it
            stage.needs += [s.name for s in stages if Path(s.outputs[0]).parent == feature_runs[stage.name]]
    return stages


def _retrieval_bank(model, cfg, args, work, py, data, sets, inputs, stages):
    """A retrieval run's bank: the demo's own (the `bank` stage writes it, once, before the first run that reads
    it) when its config names the demo bank of the default work folder, else the prompts file it names.
    Returns (overrides, inputs, [the bank stage's name] or [])."""
    from datagen.demo.bank import BANK_DIR

    bank = Path(model["retrieval"]["bank"])
    demo = cfg["data"]["demo"]
    if demo and bank == WorkTree(Path("work")).demo / BANK_DIR / PROMPTS_FILE:
        bank = work.demo / BANK_DIR / PROMPTS_FILE
        if not any(s.name == "bank" for s in stages):
            n_train = getattr(args, "n_train", None) or demo["n_train"]
            stages.append(Stage("bank", py + ["-m", "datagen.demo.bank", "--data", str(work.demo),
                                              "--n", str(demo["bank"] * n_train), "--seed", str(demo["seed"]),
                                              "--threshold", str(cfg["folds"]["threshold"]),
                                              "--cache", str(work.text_cache)],
                                inputs=[data.test_prompts], code=[REPO / "datagen" / "demo"],
                                outputs=[bank], needs=data.data_stage, weight=BANK_WEIGHT))
        return sets + [f"retrieval.bank={bank}"], inputs + [bank], ["bank"]
    bank = bank.resolve()
    return sets + [f"retrieval.bank={bank}"], inputs + [bank], []


def _blend_stages(cfg, work, py, data, model_stages):
    """ensemble -> submission, offline-submit -> its checks, report (-> score, the final summary, last)."""
    test, test_prompts = data.test, data.test_prompts
    run_dirs = [Path(s.outputs[0]).parent for s in model_stages]
    trains = [s.name for s in model_stages]
    ens = work.ensemble
    e = cfg["ensemble"]
    # The mean-embedding baseline joins the stack as a constant model: the blend's intercept.
    baseline = work.baseline
    stacked = ([baseline] if e["include_baseline"] else []) + run_dirs
    stages = [Stage("ensemble", py + ["-m", "ensemble.fit", "--runs", *map(str, stacked), "--out", str(ens),
                                      "--method", e["method"]],
                    inputs=[r / RUN_MANIFEST for r in stacked], outputs=[ens / SUBMISSION_FILE],
                    needs=(["baseline"] if e["include_baseline"] else []) + trains, weight=17)]
    stages.append(Stage("submission", ["cp", str(ens / SUBMISSION_FILE), str(work.submission)],
                        inputs=[ens / SUBMISSION_FILE], outputs=[work.submission], needs=["ensemble"]))
    # Offline inference (fold checkpoints + blend, from the test images alone) must reproduce the
    # stacker's submission: every run proves that what ships to Kaggle predicts what was scored.
    offline = work.offline_submission
    stages.append(Stage("offline-submit", py + ["-m", "models.submit", "--runs", *map(str, stacked),
                                                "--ensemble", str(ens), "--images", str(test), "--out", str(offline)],
                        inputs=[ens / SUBMISSION_FILE, test / IMAGES_DIR], outputs=[offline], needs=["ensemble"],
                        weight=10))
    stages.append(Stage("offline-check",
                        py + ["-m", "pipeline.check_offline", str(offline), str(ens / SUBMISSION_FILE)],
                        inputs=[offline, ens / SUBMISSION_FILE], needs=["offline-submit"], show=True))
    stages.append(Stage("submission-check",
                        py + ["-m", "core.submission", "check", str(offline), "--images", str(test)],
                        inputs=[offline], needs=["offline-submit"], show=True))
    report_runs = [baseline] + run_dirs
    test_opt = ["--test-targets", str(work.targets("test"))] if test_prompts else []
    stages.append(Stage("report", py + ["-m", "oof.report", "--runs", *map(str, report_runs), "--ensemble", str(ens),
                                        *test_opt, "--out", str(work.report), "--quiet"],
                        inputs=[r / RUN_MANIFEST for r in report_runs] + [ens / SCORES_FILE, work.groups]
                        + ([work.targets("test") / META_FILE] if test_prompts else []),
                        outputs=[work.report / HTML_FILE], code=[REPO / "oof" / "report"],
                        needs=["ensemble", "baseline"] + (["test-targets"] if test_prompts else []), weight=4))
    if test_prompts:  # the final summary: after every other stage, so it is the last thing printed
        stages.append(Stage("score", py + ["-m", "pipeline.summary", "--work", str(work.root), "--runs",
                                           str(baseline), *map(str, run_dirs)],
                            inputs=[work.submission], outputs=[], show=True,
                            needs=[s.name for s in stages if s.name != "ensemble"] + ["test-targets"]))
    return stages
