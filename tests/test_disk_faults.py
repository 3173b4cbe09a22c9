"""Disk full and permission denied while writing: a clear error naming the file, the previous file intact,
no temporary file left. Injected at the write (tests run as root, so chmod cannot refuse a write)."""
import errno
import json

import numpy as np
import pandas as pd
import pytest

import core.faults
from core.errors import DataError, WriteError
from core.io import atomic_path, save_csv, save_npy, write_bytes, write_json

ERRNOS = ["ENOSPC", "EACCES", "EROFS", "EDQUOT"]


@pytest.fixture()
def fault(monkeypatch):
    """Arm FAULT_AT in this process (counts start from zero)."""
    monkeypatch.setattr(core.faults, "_reached", {})

    def arm(spec):
        monkeypatch.setenv(core.faults.FAULT_ENV, spec)

    return arm


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("code", ERRNOS)
def test_fault_hook_at_the_rename(tmp_path, fault, code):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    fault(f"atomic_write/a.json:1:{code}")
    with pytest.raises(WriteError, match=rf"a\.json: cannot write: .*\[{code}\].*previous a\.json, if any, is "
                                         r"unchanged") as e:
        write_json(path, {"v": 2})
    assert e.value.errno == getattr(errno, code) and isinstance(e.value, DataError)
    assert json.loads(path.read_text()) == {"v": 1} and leftovers(tmp_path) == []
    write_json(path, {"v": 3})  # the fault fired once; the next write goes through
    assert json.loads(path.read_text()) == {"v": 3}


def test_disk_full_in_the_middle_of_the_bytes(tmp_path, monkeypatch):
    """A real ENOSPC arrives from write(): half the bytes are in the temporary file, none in the artifact."""
    path = tmp_path / "big.npy"
    save_npy(path, np.arange(10))
    def half_then_full(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", half_then_full)
    with pytest.raises(WriteError, match=r"big\.npy: cannot write: No space left on device \[ENOSPC\]"):
        save_npy(path, np.arange(1000))
    monkeypatch.undo()
    assert np.array_equal(np.load(path), np.arange(10)) and leftovers(tmp_path) == []


def test_permission_denied_creating_the_temporary_file(tmp_path, monkeypatch):
    import tempfile

    def denied(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    write_bytes(tmp_path / "x.bin", b"old")
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(WriteError, match=r"x\.bin: cannot write: Permission denied \[EACCES\]; check the folder's"):
        write_bytes(tmp_path / "x.bin", b"new")
    assert (tmp_path / "x.bin").read_bytes() == b"old"


def test_other_errors_inside_the_block_pass_through_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError):  # a missing source file is not a write failure
        with atomic_path(tmp_path / "copy.bin") as tmp:
            tmp.write_bytes(open(tmp_path / "missing.bin", "rb").read())
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "y.bin"):
            raise KeyError("bug")
    assert leftovers(tmp_path) == [] and not (tmp_path / "y.bin").exists()


def test_stale_temporary_files_of_killed_writers_are_removed(tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid no longer runs
    (tmp_path / f".a.csv.{dead.pid}.abc123.tmp").write_text("half")
    (tmp_path / ".a.csv.1.alive.tmp").write_text("pid 1 runs")  # init: alive, left alone
    save_csv(tmp_path / "a.csv", pd.DataFrame({"x": [1]}))
    assert leftovers(tmp_path) == [".a.csv.1.alive.tmp"]


def test_oof_run_write_failure_keeps_the_run_unreadable_as_complete(tmp_path, fault):
    from core.runs import load_run, write_run

    rng = np.random.default_rng(0)
    ids, test_ids = [f"t{i}" for i in range(6)], ["x1", "x2"]

    def artifacts(scale):
        return (ids, rng.normal(size=(6, 384)) * scale, test_ids, rng.normal(size=(2, 384)), np.ones(384),
                {"name": "r"}, [])

    run = tmp_path / "run"
    fault("atomic_write/test.npy:1:ENOSPC")
    with pytest.raises(WriteError, match=r"run/test\.npy: cannot write: No space left on device"):
        write_run(run, *artifacts(1))
    assert leftovers(run) == [] and not (run / "manifest.json").exists()
    with pytest.raises(DataError, match="manifest.json: missing: the run is unfinished"):
        load_run(run)
    write_run(run, *artifacts(1))  # disk freed: the same call completes the run
    good = load_run(run)
    fault("atomic_write/metrics.json:1:EACCES")  # a later overwrite fails half way
    with pytest.raises(WriteError, match=r"metrics\.json: cannot write: Permission denied \[EACCES\]"):
        write_run(run, *artifacts(2))
    assert leftovers(run) == []
    with pytest.raises(DataError, match="content differs from manifest.json"):  # never a mix read as complete
        load_run(run)
    assert not np.array_equal(np.load(run / "test.npy"), good.test)  # written before the failure
    from core.io import sha256_file

    # the old manifest, intact: it still lists the old test.npy
    assert json.loads((run / "manifest.json").read_text())["test.npy"] != sha256_file(run / "test.npy")


def test_submission_write_failure_keeps_the_previous_submission(tmp_path, fault):
    from core.submission import read_submission, write_submission

    emb = np.eye(2, 384, dtype=np.float32)
    path = write_submission(tmp_path / "submission.csv", ["a", "b"], emb)
    fault("atomic_write/submission.csv:1:ENOSPC")
    with pytest.raises(WriteError, match=r"submission\.csv: cannot write: No space left on device"):
        write_submission(path, ["c", "d"], emb)
    assert read_submission(path)[0] == ["a", "b"] and leftovers(tmp_path) == []


def test_checkpoint_write_failure_keeps_the_previous_checkpoint(tmp_path, fault):
    import torch

    from models.checkpoint import save_train_state

    path = tmp_path / "last.pt"
    save_train_state(path, {"epoch": 1})
    fault("atomic_write/last.pt:1:ENOSPC")
    with pytest.raises(WriteError, match=r"last\.pt: cannot write: No space left on device"):
        save_train_state(path, {"epoch": 2, "big": torch.zeros(1000)})
    assert torch.load(path, weights_only=False) == {"epoch": 1} and leftovers(tmp_path) == []


def test_image_cache_write_failure_leaves_no_cache(tmp_path, fault):
    from PIL import Image

    from models.image_cache import build_image_cache

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"i{i}.png")
        Image.new("RGB", (8, 8), (i, i, i)).save(paths[-1])
    cache = tmp_path / "cache"
    fault("atomic_write:1:ENOSPC")  # the cache array is the first file written
    with pytest.raises(WriteError, match=r"cache/\w+\.npy: cannot write: No space left on device"):
        build_image_cache(paths, 8, cache, workers=1, progress=False)
    assert list(cache.iterdir()) == []
    arr = build_image_cache(paths, 8, cache, workers=1, progress=False)  # rerun: built
    assert arr.shape == (3, 8, 8, 3) and arr[2, 0, 0, 0] == 2
