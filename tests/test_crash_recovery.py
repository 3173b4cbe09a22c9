"""SIGKILL (and a full disk) at the worst moments of the whole pipeline: the rerun finishes, nothing is lost,
and the artifacts equal an uninterrupted run's.

One uninterrupted `run_all.sh` (conftest's `tiny_pipeline`: tests/data/pipeline_tiny.yaml, 40 demo images, K = 2,
one ConvNeXt-atto step or two per fold) is the reference. A copy of its work folder keeps the data and the prompt
embeddings (the targets stages then reuse them, as any rerun does) and loses everything after; that copy is rebuilt
through kills:
- run_all killed between stages (after the baseline finished, before its stamp, the training stage running beside
  it: FAULT_AT=stage_end/baseline)
- the stacker (ensemble.fit) killed while writing its outputs (FAULT_AT=atomic_write/ensemble.json)
- models.train stopped by a full disk, then SIGKILLed, while writing the run's OOF artifacts
"""
import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.runs import ARTIFACT_FILES, RUN_MANIFEST, load_run
from tests.helpers import assert_one_error_line, assert_same_run, subprocess_env
from tests.model_fixtures import REPO
from tests.pipeline_fixtures import MODEL, MODEL_SET, fresh_copy
from tests.pipeline_fixtures import run_all as run_pipeline


@pytest.fixture(scope="module")
def reference(tiny_pipeline):
    return tiny_pipeline.work


@pytest.fixture(scope="module")
def run_all(tiny_pipeline):
    """run_all.sh with the reference's pipeline config on another work folder."""
    return lambda work, fault=None: run_pipeline(tiny_pipeline.config, work, fault=fault)


def temp_files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


def processes_naming(path):
    """Pids of the live processes whose command line names `path` (Linux /proc)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(path).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:  # ended meanwhile
            pass
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_run_all_killed_between_stages_and_inside_the_stacker(reference, run_all, tmp_path):
    work = fresh_copy(reference, tmp_path / "work")
    # 1. killed after the baseline finished, before its stamp was written, while the training stage that started
    # beside it runs (--jobs auto; it gets SIGTERM as run_all dies, so no orphan holds the run directory)
    cut = run_all(work, fault="stage_end/baseline")
    assert cut.returncode == -signal.SIGKILL, cut.stderr[-2000:]
    assert (work / "runs" / "mean_baseline" / RUN_MANIFEST).is_file()
    assert not (work / ".stages" / "baseline.sha256").exists()
    assert not (work / ".stages" / f"train_{MODEL}.sha256").exists()
    assert f"train:{MODEL}: started" in cut.stdout
    # the kernel sent the training stage SIGTERM as run_all died: it stops at once, no orphan trains on
    deadline = time.time() + 3  # an orphan would train on for longer (about 5 s here)
    while processes_naming(work / "runs" / MODEL) and time.time() < deadline:
        time.sleep(0.1)
    assert not processes_naming(work / "runs" / MODEL)
    # 2. the rerun skips the five stamped stages, redoes the baseline, trains, and dies in the stacker
    cut = run_all(work, fault="atomic_write/ensemble.json")
    assert cut.returncode == 128 + signal.SIGKILL, cut.stderr[-2000:]
    assert "stage ensemble failed (exit 137)" in cut.stderr and "Traceback" not in cut.stderr
    for stage in ("data", "scan", "targets", "test-targets", "folds"):
        assert f"{stage}: up to date, skipped" in cut.stdout
    ens = work / "ensemble"
    assert not (ens / "submission.csv").exists() and not (ens / "ensemble.json").exists()
    assert not (work / ".stages" / "ensemble.sha256").exists()
    # 3. the plain rerun finishes from the stacker on
    done = run_all(work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"train:{MODEL}: up to date, skipped" in done.stdout
    assert (work / "submission.csv").read_bytes() == (reference / "submission.csv").read_bytes()
    np.testing.assert_array_equal(np.load(ens / "oof_blend.npy"), np.load(reference / "ensemble" / "oof_blend.npy"))
    for name in ("mean_baseline", MODEL):
        assert_same_run(reference / "runs" / name, work / "runs" / name)
    assert temp_files(work) == []  # the killed writer's temporary file was removed by the next write


def train_command(pipeline, out):
    from pipeline.config import load_pipeline
    from pipeline.stages import build_stages

    args = argparse.Namespace(work=str(pipeline.work), n_train=None, n_test=None, size=None, model_set=MODEL_SET)
    stage = next(s for s in build_stages(load_pipeline(pipeline.config), args) if s.name == f"train:{MODEL}")
    cmd = [sys.executable if c == stage.cmd[0] else c for c in stage.cmd]
    return [f"out={out}" if c.startswith("out=") else c for c in cmd]


def test_train_stopped_by_full_disk_then_killed_while_writing_oof_artifacts(tiny_pipeline, reference, tmp_path):
    out = tmp_path / "run"
    cmd = train_command(tiny_pipeline, out)
    # the run's oof.npy is the 3rd oof.npy written (fold0, fold1, the run's): the disk is full there
    full = subprocess.run(cmd, cwd=REPO, env=subprocess_env("atomic_write/oof.npy:3:ENOSPC"), capture_output=True,
                          text=True)
    assert full.returncode == 2, full.stderr[-2000:]
    line = assert_one_error_line(full.stderr)
    assert line.startswith(f"error: {out / 'oof.npy'}: cannot write: No space left on device [ENOSPC]")
    assert not (out / "oof.npy").exists() and temp_files(out) == []
    with pytest.raises(Exception, match="manifest.json: missing: the run is unfinished"):
        load_run(out)
    # space freed, resumed: SIGKILL after every artifact is written but before manifest.json's rename
    cut = subprocess.run(cmd, cwd=REPO, env=subprocess_env("atomic_write/manifest.json"), capture_output=True,
                         text=True)
    assert cut.returncode == -signal.SIGKILL, cut.stderr[-2000:]
    assert all((out / name).is_file() for name in ARTIFACT_FILES) and not (out / RUN_MANIFEST).exists()
    with pytest.raises(Exception, match="manifest.json: missing: the run is unfinished"):
        load_run(out)  # every artifact is there, but without the manifest the run is not complete
    assert "fold 0: finished earlier; skipped" in subprocess.run(
        cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True).stdout
    assert_same_run(reference / "runs" / MODEL, out)
    assert temp_files(out) == []
