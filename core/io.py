"""Atomic artifact writes and content hashes.

Every artifact is written to a temporary file in the same directory and renamed into
place, so a killed process never leaves a half-written file behind a valid name.
"""
import errno
import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.errors import WriteError
from core.faults import fault_point

_UMASK = os.umask(0)
os.umask(_UMASK)


# failures of the write itself; others (a missing source file inside the block...) pass through as they are
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO}


def _write_error(path, e):
    """An OSError while writing `path` -> WriteError (one clear line for the CLIs), else None."""
    if not isinstance(e, OSError) or e.errno not in _WRITE_ERRNOS:
        return None
    name = errno.errorcode.get(e.errno, str(e.errno))
    hint = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space (quota)",
            errno.EACCES: "check the folder's permissions", errno.EPERM: "check the folder's permissions",
            errno.EROFS: "write to another folder (read-only file system)"}.get(e.errno, "check the disk")
    return WriteError(path, f"cannot write: {e.strerror} [{name}]; {hint} and rerun. The previous "
                            f"{Path(path).name}, if any, is unchanged and no temporary file was left", e.errno)


_stale_temps = {}  # folder -> {file name: [(writer pid, temporary file)]}, listed once per process


def _remove_stale_temps(path):
    """Temporary files of `path` left by killed writers (their pid no longer runs on this host).

    The folder is listed once per process, not at every write: writing N images into one folder
    would otherwise cost O(N^2). Only `path`'s own temporaries are touched (other hosts' writers
    may share the folder)."""
    folder = str(path.parent)
    if folder not in _stale_temps:
        found = {}
        for tmp in path.parent.glob(".*.tmp"):  # .<name>.<pid>.<random>.tmp (mkstemp's random part has no dot)
            parts = tmp.name[1:-len(".tmp")].rsplit(".", 2)
            if len(parts) == 3 and parts[1].isdigit():
                found.setdefault(parts[0], []).append((int(parts[1]), tmp))
        _stale_temps[folder] = found
    for pid, tmp in _stale_temps[folder].pop(path.name, ()):
        if pid != os.getpid() and not pid_alive(pid):
            tmp.unlink(missing_ok=True)


def pid_alive(pid):
    """Whether process `pid` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    On any failure the temporary file is removed and `path` keeps its previous content; an OSError
    (disk full, permission denied, ...) becomes a WriteError naming `path`. Crash tests can stop
    here after the bytes are written, before the rename: FAULT_AT=atomic_write (every file, counted)
    or FAULT_AT=atomic_write/<file name> (see core.faults)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        # the pid in the name lets a later writer remove what a killed one left behind
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
    except OSError as e:
        raise (_write_error(path, e) or e) from e
    try:
        yield Path(tmp)
        fault_point("atomic_write")
        fault_point(f"atomic_write/{path.name}")
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        err = _write_error(path, e)
        if err is not None:
            raise err from e
        raise


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_npy(path, array):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    write_bytes(path, buf.getvalue())


@contextmanager
def npy_writer(path, shape, dtype=np.float32):
    """Write a C-ordered .npy of `shape` block by block, atomically: yields write(start, stop, block), to be
    called with consecutive row ranges; the file appears under `path` once every row was written."""
    dtype = np.dtype(dtype)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_1_0(f, header)
        written = [0]

        def write(start, stop, block):
            if start != written[0] or np.shape(block) != (stop - start, *shape[1:]):
                raise ValueError(f"{path}: rows {start}..{stop} of shape {np.shape(block)} after row {written[0]}")
            f.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
            written[0] = stop

        yield write
        if written[0] != shape[0]:
            raise ValueError(f"{path}: {written[0]} of {shape[0]} rows written")


def save_csv(path, frame):
    """Write a DataFrame atomically (no index)."""
    write_text(path, frame.to_csv(index=False))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, chunk=1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def sha256_strings(strings) -> str:
    """Hash a sequence of strings, order-sensitive and unambiguous (length-prefixed)."""
    h = hashlib.sha256()
    for s in strings:
        b = str(s).encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def sha256_json(obj) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=_json_default).encode("utf-8"))
