"""The run-directory lock: two processes training into the same run directory at once are refused.

RUN/.lock holds {"host", "pid"} of the process (rank 0) that holds it; it is created atomically
(O_CREAT | O_EXCL) and removed when the run ends. A lock left by a killed run (same host, its
pid no longer alive) is taken over with a logged message; a live one, or one from another host
(whose pid cannot be checked from here), is refused with the holder named.
"""
import json
import logging
import os
import socket
from pathlib import Path

from core.io import pid_alive

LOCK_FILE = ".lock"
_log = logging.getLogger(__name__)
_held = set()  # lock files this process holds (a pid reused after a restart is still stale for us)


def _read_holder(path):
    """{"host", "pid"} of a lock file; None if it vanished; {} if it cannot be parsed (still being written?)."""
    try:
        holder = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else {}


def _create(path, me):
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    _held.add(str(path))


def take_run_lock(run_dir):
    """Take RUN/.lock for this process. Returns None when taken, else the reason it is refused."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(3):
        try:
            _create(path, me)
            return None
        except FileExistsError:
            pass
        holder = _read_holder(path)
        if holder is None:  # released in between: try again
            continue
        if not holder:
            return (f"{path}: the run directory is locked (unreadable lock file); if no run is writing "
                    f"{run_dir}, remove the lock file and rerun")
        host, pid = holder.get("host"), holder["pid"]
        ours = host == me["host"] and pid == me["pid"] and str(path) not in _held
        if host == me["host"] and (ours or not pid_alive(pid)):
            _log.warning("%s: taking over a stale lock of process %d on %s (no longer running)", path, pid, host)
            path.unlink(missing_ok=True)
            continue
        where = "this host" if host == me["host"] else f"host {host}"
        return (f"{path}: the run directory is in use by process {pid} on {where}; two runs cannot write "
                f"{run_dir} at once (wait for it, or set another `out:`; if that process is gone, remove the "
                f"lock file)")
    return f"{path}: could not take the run-directory lock (it keeps changing hands); rerun"


def release_run_lock(run_dir):
    """Remove RUN/.lock if this process holds it (never another process's lock)."""
    path = Path(run_dir) / LOCK_FILE
    if str(path) not in _held:
        return
    _held.discard(str(path))
    holder = _read_holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
