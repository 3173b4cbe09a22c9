"""Fault injection for crash tests: the code names the points where a crash must lose nothing.

    FAULT_AT=train_step:5          SIGKILL this process the 5th time it reaches `train_step`
    FAULT_AT=train_step:5:TERM     send SIGTERM instead (a preemption notice)
    FAULT_AT=checkpoint_write      SIGKILL the first time (count defaults to 1)
    FAULT_AT=atomic_write/oof.npy:1:ENOSPC   raise OSError(ENOSPC) there instead (disk full;
                                   any errno name: EACCES, EROFS, ...)

Tests set the variable on a subprocess; unset, `fault_point` is a dictionary lookup and returns.
"""
import errno
import os
import signal

FAULT_ENV = "FAULT_AT"
_SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}
_reached = {}


def fault_point(name):
    """Crash here if FAULT_AT names this point and it has now been reached the given number of times."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    parts = spec.split(":")
    if parts[0] != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    count = int(parts[1]) if len(parts) > 1 and parts[1] else 1
    if _reached[name] == count:
        what = parts[2] if len(parts) > 2 else "KILL"
        if what.startswith("E") and hasattr(errno, what):  # an I/O failure, not a crash
            code = getattr(errno, what)
            raise OSError(code, os.strerror(code), f"<fault {name}>")
        os.kill(os.getpid(), _SIGNALS[what])
