"""SIGKILL (and a full disk) at the worst moments of the whole pipeline: the rerun finishes, nothing is lost,
and the artifacts equal an uninterrupted run's.

One uninterrupted `run_all.sh` (conftest's `tiny_pipeline`: tests/data/pipeline_tiny.yaml, 40 demo images, K = 2,
one ConvNeXt-atto step or two per fold) is the reference. A copy of its work folder keeps the data and the prompt
embeddings (the targets stages then reuse them, as any rerun does) and loses everything after; that copy is rebuilt
through kills:
- run_all killed between stages (after a stage finished, before its stamp: FAULT_AT=stage_end)
- the stacker (ensemble.fit) killed while writing its outputs (FAULT_AT=atomic_write/ensemble.json)
- models.train stopped by a full disk, then SIGKILLed, while writing the run's OOF artifacts
"""
import argparse
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from core.runs import ARTIFACT_FILES, RUN_MANIFEST, load_run
from tests.model_fixtures import REPO
from tests.pipeline_fixtures import MODEL, MODEL_SET, env_with
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


def fresh_copy(reference, dest):
    """The reference's data and prompt embeddings; no stamps, folds, runs or ensemble."""
    shutil.copytree(reference / "data", dest / "data")
    shutil.copytree(reference / "targets", dest / "targets")
    shutil.copytree(reference / "cache" / "text_embeddings", dest / "cache" / "text_embeddings")
    return dest


def assert_same_run(a, b):
    ra, rb = load_run(a), load_run(b)
    assert ra.oof_ids == rb.oof_ids and ra.test_ids == rb.test_ids
    np.testing.assert_array_equal(ra.oof, rb.oof)
    np.testing.assert_array_equal(ra.test, rb.test)
    np.testing.assert_array_equal(ra.mean_embedding, rb.mean_embedding)
    for key in ("oof_cosine", "fold_cosine", "config_hash"):
        assert ra.metrics.get(key) == rb.metrics.get(key), key


def test_run_all_killed_between_stages_and_inside_the_stacker(reference, run_all, tmp_path):
    work = fresh_copy(reference, tmp_path / "work")
    # 1. killed after the 6th stage (baseline) finished, before its stamp was written
    cut = run_all(work, fault="stage_end:6")
    assert cut.returncode == -signal.SIGKILL, cut.stderr[-2000:]
    assert (work / "runs" / "mean_baseline" / RUN_MANIFEST).is_file()
    assert not (work / ".stages" / "baseline.sha256").exists()
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
    from pipeline.run import build_stages, load_pipeline

    args = argparse.Namespace(work=str(pipeline.work), n_train=None, n_test=None, size=None, model_set=MODEL_SET,
                              gpus=1)
    stage = next(s for s in build_stages(load_pipeline(pipeline.config), args) if s.name == f"train:{MODEL}")
    cmd = [sys.executable if c == stage.cmd[0] else c for c in stage.cmd]
    return [f"out={out}" if c.startswith("out=") else c for c in cmd]


def test_train_stopped_by_full_disk_then_killed_while_writing_oof_artifacts(tiny_pipeline, reference, tmp_path):
    out = tmp_path / "run"
    cmd = train_command(tiny_pipeline, out)
    # the run's oof.npy is the 3rd oof.npy written (fold0, fold1, the run's): the disk is full there
    full = subprocess.run(cmd, cwd=REPO, env=env_with("atomic_write/oof.npy:3:ENOSPC"), capture_output=True, text=True)
    assert full.returncode == 2, full.stderr[-2000:]
    err = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in full.stderr
    assert err[0].startswith(f"error: {out / 'oof.npy'}: cannot write: No space left on device [ENOSPC]")
    assert not (out / "oof.npy").exists() and temp_files(out) == []
    with pytest.raises(Exception, match="manifest.json: missing: the run is unfinished"):
        load_run(out)
    # space freed, resumed: SIGKILL after every artifact is written but before manifest.json's rename
    cut = subprocess.run(cmd, cwd=REPO, env=env_with("atomic_write/manifest.json"), capture_output=True, text=True)
    assert cut.returncode == -signal.SIGKILL, cut.stderr[-2000:]
    assert all((out / name).is_file() for name in ARTIFACT_FILES) and not (out / RUN_MANIFEST).exists()
    with pytest.raises(Exception, match="manifest.json: missing: the run is unfinished"):
        load_run(out)  # every artifact is there, but without the manifest the run is not complete
    assert "fold 0: finished earlier; skipped" in subprocess.run(
        cmd, cwd=REPO, env=env_with(), capture_output=True, text=True).stdout
    assert_same_run(reference / "runs" / MODEL, out)
    assert temp_files(out) == []
