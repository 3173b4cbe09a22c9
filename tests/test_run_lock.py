"""The run-directory lock: a second run writing the same run directory is refused; a stale lock is taken over."""
import json
import logging
import os
import socket
import subprocess

import pytest

from core.runs import load_run
from models.config import load_config
from models.run_lock import LOCK_FILE, release_run_lock, take_run_lock
from models.train import RunError, train_run
from models.train import main as train_main
from tests.model_fixtures import REPO, make_tiny_project, tiny_overrides

CONFIG = REPO / "configs/convnext_demo.yaml"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_tiny_project(tmp_path_factory.mktemp("lock"), n_train=24, n_test=4)


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_lock(run_dir, host, pid):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_FILE).write_text(json.dumps({"host": host, "pid": pid}))


def test_lock_file_holds_host_and_pid_and_is_exclusive(tmp_path):
    assert take_run_lock(tmp_path / "run") is None
    holder = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
    assert holder == {"host": socket.gethostname(), "pid": os.getpid()}
    refused = take_run_lock(tmp_path / "run")  # held: not even this process takes it twice
    assert refused and f"process {os.getpid()}" in refused
    release_run_lock(tmp_path / "run")
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_never_releases_another_process_lock(tmp_path, live_pid):
    _write_lock(tmp_path, socket.gethostname(), live_pid)
    assert take_run_lock(tmp_path) is not None
    release_run_lock(tmp_path)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == live_pid


def test_live_lock_refuses_a_second_run(project, tmp_path, live_pid, capsys):
    out = tmp_path / "run"
    _write_lock(out, socket.gethostname(), live_pid)
    with pytest.raises(RunError, match=rf"{LOCK_FILE}: .*in use by process {live_pid} on this host"):
        train_run(load_config(CONFIG, tiny_overrides(project, out)), progress=False)
    # through the CLI: exit 2, one `error: RUN/.lock: ...` line naming the holder
    argv = ["--config", str(CONFIG), "--no-progress"]
    for o in tiny_overrides(project, out):
        argv += ["--set", o]
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {out / LOCK_FILE}: " in err and f"process {live_pid}" in err and "Traceback" not in err
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == live_pid  # still theirs
    assert not (out / "config.json").exists()  # nothing written into a directory in use


def test_lock_from_another_host_is_refused(project, tmp_path):
    out = tmp_path / "run"
    _write_lock(out, "gpu-node-7", _dead_pid())  # a pid elsewhere cannot be checked: never taken over
    with pytest.raises(RunError, match=r"in use by process \d+ on host gpu-node-7.*remove the lock file"):
        train_run(load_config(CONFIG, tiny_overrides(project, out)), progress=False)


def test_stale_lock_is_taken_over_and_removed_at_the_end(project, tmp_path, caplog):
    out = tmp_path / "run"
    dead = _dead_pid()
    _write_lock(out, socket.gethostname(), dead)
    with caplog.at_level(logging.WARNING, logger="models.run_lock"):
        assert train_run(load_config(CONFIG, tiny_overrides(project, out)), progress=False) is not None
    assert f"taking over a stale lock of process {dead}" in caplog.text
    assert not (out / LOCK_FILE).exists()
    load_run(out)  # complete and valid
    # a refused run (another config) also releases the lock it took
    with pytest.raises(RunError, match="config hash"):
        train_run(load_config(CONFIG, tiny_overrides(project, out, extra=["train.lr=0.01"])), progress=False)
    assert not (out / LOCK_FILE).exists()
    # --overwrite keeps its own lock while it empties the directory, and releases it at the end
    train_run(load_config(CONFIG, tiny_overrides(project, out, extra=["train.lr=0.01"])), overwrite=True,
              progress=False)
    assert load_run(out).metrics["config"]["train"]["lr"] == 0.01 and not (out / LOCK_FILE).exists()
