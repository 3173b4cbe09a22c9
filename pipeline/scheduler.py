"""Run a plan's stages, up to `jobs` at once, each as soon as the stages it needs are done.

A stage whose fingerprint (pipeline/stages.py) is stored in WORK/.stages/ and whose outputs exist is skipped;
`--from STAGE` forces that stage and every stage that depends on it. Each stage runs in its own process group
with its output in WORK/logs/<stage>.log. The first failing stage stops new starts; the running ones get SIGTERM
(the trainer saves its position, so a rerun continues there) and run_all exits with the failed stage's code,
its `error:` lines on stderr. Ctrl-C (SIGINT) or SIGTERM to run_all does the same, exit 128 + the signal.
If run_all itself is killed, its stages get SIGTERM from the kernel (Linux: PR_SET_PDEATHSIG).
"""
import ctypes
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import DataError
from core.faults import fault_point
from core.io import write_text
from pipeline.console import Console, log_tail
from pipeline.layout import WorkTree
from pipeline.plan import launch
from pipeline.stages import REPO, fingerprint

TICK = 0.2  # seconds between polls of the running stages
REDRAW = 1.0  # seconds between redraws of the live lines
STOP_GRACE = 120  # seconds a stopped stage has to save its position before it is killed
SHOWN_LOG_LINES = 20  # a failed stage without an `error:` line: the end of its log is shown


def stage_file(name):
    return name.replace(":", "_")


def _die_with_parent():
    """In the child: SIGTERM when run_all dies, even by SIGKILL (Linux; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Running:
    stage: object
    proc: subprocess.Popen
    log: Path
    header: int  # bytes of the command line at the log's start
    t0: float
    gpus: list
    use: str  # threads or devices, for the console


class Scheduler:
    def __init__(self, plan, work, forced=(), console=None):
        self.plan, self.work = plan, WorkTree(work)
        self.forced = set(forced)
        self.console = console or Console()
        self.pending = list(plan.order)
        self.running, self.done = {}, set()
        self.free_gpus = list(plan.devices)
        self.failed = None  # (stage name, exit code) of the first failure
        self.signal = None  # SIGINT / SIGTERM received by run_all
        self.stop_time = None
        self.stopped = []  # stages stopped by run_all
        self.stale = set()  # ready stages found not up to date (waiting for a free slot: not hashed again)
        base = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO),
                    PYTHONUNBUFFERED="1")  # a log line is in the file when it is printed (live lines, kills)
        self.base_env = base

    # -- the loop -----------------------------------------------------------------------------------
    def run(self):
        self.work.stamps.mkdir(parents=True, exist_ok=True)
        self.work.logs.mkdir(parents=True, exist_ok=True)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            last_draw = 0.0
            while True:
                if self.stop_time is None and (self.failed or self.signal):
                    self._stop_all()
                if self.stop_time is None:
                    self._start_ready()
                if not self.running:
                    break
                time.sleep(TICK)
                reaped = self._reap()
                if self.stop_time and time.time() - self.stop_time > STOP_GRACE:
                    self._kill_all(signal.SIGKILL)
                if reaped or time.time() - last_draw >= REDRAW:
                    self._show_running()
                    last_draw = time.time()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.console.close()
        return self._result()

    def _on_signal(self, signum, frame):
        if self.signal is not None:  # the second Ctrl-C: no more waiting for the stages to save
            self._kill_all(signal.SIGKILL)
        self.signal = signum

    def _ready(self):
        ready = [s for s in self.pending if set(s.needs) <= self.done]
        return sorted(ready, key=lambda s: -self.plan.rank[s.name])

    def _start_ready(self):
        """Skip every ready stage that is up to date, then start ready stages while jobs and devices allow."""
        progress = True
        while progress:
            progress = False
            for stage in self._ready():
                if self._up_to_date(stage):
                    self.console.say(f"== {self.console.elapsed()} {stage.name}: up to date, skipped")
                    self.pending.remove(stage)
                    self.done.add(stage.name)
                    progress = True
                elif len(self.running) < self.plan.jobs and len(self.free_gpus) >= self.plan.slots[stage.name].gpus:
                    self._start(stage)
                    progress = True
                if progress:
                    break  # the ready set changed

    def _stamp(self, stage):
        return self.work.stamps / (stage_file(stage.name) + ".sha256")

    def _up_to_date(self, stage):
        if stage.name in self.stale:
            return False
        stamp = self._stamp(stage)
        fresh = (stage.name not in self.forced and bool(stage.outputs) and stamp.is_file()
                 and all(Path(o).exists() for o in stage.outputs) and stamp.read_text() == fingerprint(stage))
        if not fresh:
            self.stale.add(stage.name)
        return fresh

    # -- one stage --------------------------------------------------------------------------------------
    def _start(self, stage):
        slot = self.plan.slots[stage.name]
        gpus, self.free_gpus = self.free_gpus[:slot.gpus], self.free_gpus[slot.gpus:]
        argv, extra_env = launch(stage, slot, gpus)
        log = self.work.logs / (stage_file(stage.name) + ".log")
        header = f"$ {shlex.join(argv)}\n\n".encode()
        with open(log, "wb") as f:
            f.write(header)
            proc = subprocess.Popen(argv, cwd=REPO, env=dict(self.base_env, **extra_env), stdin=subprocess.DEVNULL,
                                    stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        use = f"GPUs {','.join(gpus)}" if gpus else f"{slot.threads} thread{'s' * (slot.threads != 1)}"
        if slot.procs > 1 and not gpus:
            use += f" x {slot.procs}"
        self.pending.remove(stage)
        self.running[stage.name] = Running(stage, proc, log, len(header), time.time(), gpus, use)
        text = f"== {self.console.elapsed()} {stage.name}: started ({use})"
        self.console.say(text if self.console.live else f"{text}\n$ {shlex.join(argv)}")

    def _reap(self):
        """Handle the stages that ended; True if any did."""
        ended = [(self.running.pop(name), code) for name, code in
                 [(n, r.proc.poll()) for n, r in list(self.running.items())] if code is not None]
        if ended:  # the live lines lose the ended stages before their end lines are printed
            self._show_running()
        for r, code in ended:
            self.free_gpus = sorted(self.free_gpus + r.gpus, key=self.plan.devices.index)
            self._finished(r, code if code >= 0 else 128 - code)  # killed by signal N: 128 + N, as shells say
        return bool(ended)

    def _show_running(self):
        self.console.status({n: (r.t0, r.log, r.use) for n, r in self.running.items()})

    def _finished(self, r, code):
        name, took = r.stage.name, f"{time.time() - r.t0:.0f} s"
        if code == 0:
            fault_point("stage_end")  # crash tests: killed after a stage finished, before its stamp
            fault_point(f"stage_end/{name}")
            write_text(self._stamp(r.stage), fingerprint(r.stage))
            self.done.add(name)
            self.console.say(f"-- {self.console.elapsed()} {name}: done in {took}")
            if r.stage.show:
                self.console.say(r.log.read_bytes()[r.header:].decode("utf-8", "replace").rstrip("\n"))
        elif self.stop_time is not None:
            self.stopped.append(name)
            self.console.say(f"-- {self.console.elapsed()} {name}: stopped after {took} (exit {code}); "
                             f"a rerun continues it")
        else:
            self.failed = (name, code, r.log)
            self.console.say(f"!! {self.console.elapsed()} {name}: failed after {took} (exit {code})")

    # -- stopping --------------------------------------------------------------------------------------
    def _stop_all(self):
        self.stop_time = time.time()
        self._kill_all(signal.SIGTERM)

    def _kill_all(self, sig):
        for r in self.running.values():
            try:
                os.killpg(r.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _result(self):
        if self.failed:
            name, code, log = self.failed
            lines = log_tail(log, 1 << 16)
            errors = list(dict.fromkeys(ln for ln in lines if ln.startswith("error:")))  # torchrun: once, not per rank
            self.console.say("\n".join(errors or lines[-SHOWN_LOG_LINES:]), err=True)
            self.console.say(f"\nrun_all: stage {name} failed (exit {code}); its log: {log}. "
                             f"{self._left()}Fix the error above and re-run: finished stages are skipped.", err=True)
            return code
        if self.signal:
            self.console.say(f"\nrun_all: stopped by {signal.Signals(self.signal).name}. {self._left()}"
                             f"Re-run to continue: finished stages are skipped.", err=True)
            return 128 + self.signal
        self.console.say(f"\nrun_all: all stages done in {time.time() - self.console.t0:.0f} s")
        return 0

    def _left(self):
        stopped = f"Stopped: {', '.join(self.stopped)}. " if self.stopped else ""
        return stopped + (f"Not run: {', '.join(s.name for s in self.pending)}. " if self.pending else "")


def forced_stages(plan, start_from):
    """--from STAGE: that stage and every stage that depends on it."""
    if not start_from:
        return set()
    names = [s.name for s in plan.order]
    if start_from not in names:
        raise DataError(f"--from {start_from}", f"no such stage; stages are {names}")
    return {start_from} | plan.dependents(start_from)


def run_stages(plan, work, start_from=None, console=None):
    """Run the plan's stages under WORK; returns run_all's exit code."""
    return Scheduler(plan, work, forced_stages(plan, start_from), console).run()
