"""A fold's training state on disk (`last.pt`, named in models.fold_outputs) and the stop request
that triggers a final save.

`last.pt` is written atomically at every epoch end, every `train.checkpoint_every` (optimizer
updates, or minutes as "30min"), and when SIGTERM / SIGINT arrives (preemptible GPUs: the
launcher's notice becomes a checkpoint, then the process exits). It holds everything resume needs
to continue exactly where the run stopped, position inside the epoch included; the random
streams need no saving, because every step derives its seeds from (seed, fold, epoch, rank, step).
"""
import logging
import signal
import threading
import time
from pathlib import Path

import torch

from core.faults import fault_point
from core.io import atomic_path
from models.config import parse_checkpoint_every

_log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """A stop was requested; the state was saved to `path` first."""

    def __init__(self, path, signum, epoch, step):
        self.path, self.signum, self.epoch, self.step = Path(path), signum, epoch, step
        name = signal.Signals(signum).name if signum else "stop"
        super().__init__(f"{name}: saved {self.path} at epoch {epoch + 1}, step {step}; "
                         f"rerun with --resume to continue from there")


def save_train_state(path, state):
    """torch.save through a temporary file: a kill mid-write leaves the previous `last.pt` intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        fault_point("checkpoint_write")  # crash tests: killed after writing, before the rename


def load_train_state(path, device):
    return torch.load(path, map_location=device, weights_only=False)


class CheckpointSchedule:
    """Is a mid-epoch checkpoint due after this optimizer update?"""

    def __init__(self, every):
        self.updates, self.seconds = parse_checkpoint_every(every)
        self.last_time = time.monotonic()

    def due(self, num_updates):
        if self.updates and num_updates % self.updates == 0:
            return True
        return bool(self.seconds) and time.monotonic() - self.last_time >= self.seconds

    def saved(self):
        self.last_time = time.monotonic()


class StopRequest:
    """While active, SIGTERM / SIGINT set `signum` instead of killing the process.

    The training loop polls it at optimizer-update boundaries, saves and stops. A second SIGINT
    (Ctrl-C twice) is not caught: it interrupts at once, as usual.
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        self.signum = signum
        _log.warning("received %s: saving a checkpoint at the next optimizer step, then stopping",
                     signal.Signals(signum).name)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT, signal.default_int_handler))

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers only install there
            for s in (signal.SIGTERM, signal.SIGINT):
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}
        return False
