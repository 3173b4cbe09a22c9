"""What run_all prints while stages run: start and end lines, never two stages' output interleaved.

Each stage writes to its own log file; the console gets the scheduler's lines only. On a terminal a block of live
lines at the bottom shows every running stage (its fold, epoch and seconds per epoch, read from its log, or the
log's last line) and is redrawn in place; elsewhere (CI, nohup, a pipe) only the plain lines are printed.
"""
import re
import shutil
import sys
import time

TAIL_BYTES = 4096  # how much of a log's end is read for its live line
EPOCH_LINE = re.compile(r"fold (\d+) epoch (\d+)/(\d+):.* ([0-9.]+)s$")  # models.loop's line at each epoch end


def clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def log_tail(path, size=TAIL_BYTES):
    """The last lines of a log (progress bars' carriage returns end lines too)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - size))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln.strip() for ln in re.split(r"[\r\n]", text) if ln.strip()]


def progress_text(lines):
    """A running stage's progress from its log's last lines: fold, epoch and s/epoch of a trainer, else the last line
    (not the command line run_all writes first)."""
    lines = [ln for ln in lines if not ln.startswith("$ ")]
    for line in reversed(lines):
        m = EPOCH_LINE.search(line)
        if m:
            fold, epoch, epochs, seconds = m.groups()
            return f"fold {fold} epoch {epoch}/{epochs} {float(seconds):.1f} s/epoch"
    return lines[-1] if lines else ""


class Console:
    """Plain lines on `out` (and `err`); on a terminal, also a live block redrawn below them."""

    def __init__(self, out=None, err=None, live=None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.t0 = time.time()
        self._shown = 0  # live lines on the screen now
        self._status = []

    def elapsed(self):
        return f"[{time.time() - self.t0:6.0f}s]"

    def say(self, text, err=False):
        """Permanent lines: the live block is cleared first and drawn again below them."""
        self._clear()
        print(text, file=self.err if err else self.out, flush=True)
        self._draw()

    def status(self, running):
        """Redraw the live block: one line per running stage, {name: (start time, log path, what it runs on)}."""
        if not self.live:
            return
        now = time.time()
        self._status = [f"   {name:<22} {clock(now - t0):>6}  {use:<12} {progress_text(log_tail(log))}"
                        for name, (t0, log, use) in running.items()]
        self._clear()
        self._draw()

    def close(self):
        self._status = []
        self._clear()

    def _clear(self):
        if self._shown:
            self.out.write(f"\x1b[{self._shown}F\x1b[J")  # to the block's first line, then erase to the end
            self._shown = 0

    def _draw(self):
        if not (self.live and self._status):
            return
        width = max(20, shutil.get_terminal_size().columns - 1)  # a wrapped line would break the count
        self.out.write("".join(line[:width] + "\n" for line in self._status))
        self.out.flush()
        self._shown = len(self._status)
