"""How run_all runs its stages: their order (the DAG of `needs`), how many at once, and each one's threads or GPUs.

CPU (no GPUs): `--jobs N` stages run at once; `auto` runs as many as fit the cores at the thread count per
training run that measured best (THREADS_PER_RUN; bench/bench_run_all.py), never more than the pipeline's
independent training runs can use. Each stage's thread count is fixed by a dry run of the schedule with the
stages' weights (Stage.weight): cores / the most stages it runs beside. A stage's thread count never depends on
timing, so two runs with the same --jobs compute the same numbers.

GPUs (`--gpus 0-7`, a count, or found on the machine): each training run gets its `gpus:` share from the pipeline
config, by default an even split of the devices among the runs that can train at once, and is launched through
torchrun on that many devices (CUDA_VISIBLE_DEVICES, taken from the free ones when it starts).
"""
import itertools
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from core.errors import DataError

# CPU: torch threads per training run at which the cores give the most images/s. Measured on a 2-core machine
# (bench/bench_run_all.py): the trainer steps at 205 / 320 img/s with 1 / 2 threads (convnext_demo; eva 246 / 405,
# vit 401 / 625) and two 1-thread processes side by side at 394 together (eva 503, vit 809): 1.23-1.29x one 2-thread
# process. Whole runs (fold 0, 3 epochs, start-up included): two 1-thread runs side by side take 0.66-0.70x of two
# 2-thread runs one after the other.
THREADS_PER_RUN = 1
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MAX_WORKERS = 8  # decode processes per training process, as models.data.default_workers caps them
MAX_EXACT_WIDTH = 12  # training runs up to which the widest set of independent ones is searched exhaustively


@dataclass
class Slot:
    """What one stage runs with."""
    threads: int  # per process (OMP/MKL/OpenBLAS, train.num_threads)
    procs: int = 1  # processes: > 1 launches a training run through torchrun
    gpus: int = 0  # devices it needs (0: CPU)
    workers: int = None  # decode processes per training process (data.workers), None: not a training run


@dataclass
class Plan:
    order: list  # stages, needs first
    jobs: int
    cores: int
    devices: list  # GPU ids ("0", "1", ...); [] on CPU
    slots: dict  # stage name -> Slot
    rank: dict  # stage name -> its weight plus the heaviest path after it (ready stages start by it)
    auto: bool = True
    fixed_threads: int = None  # threads per stage set by the environment (OMP_NUM_THREADS)

    def dependents(self, name):
        """Every stage that reads, directly or through others, what `name` writes."""
        out, frontier = set(), {name}
        while frontier:
            frontier = {s.name for s in self.order if set(s.needs) & frontier} - out
            out |= frontier
        return out


def parse_jobs(text):
    """--jobs: 'auto' (None) or a number >= 1."""
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise DataError("--jobs", f"must be 'auto' or a number >= 1, got {text!r}")
    return int(text)


def parse_gpus(text):
    """--gpus: 'auto' (None: the machine's), a count ('8': 0-7; '0': none) or ids and ranges ('0-3,6')."""
    if text == "auto":
        return None
    if text.isdigit():
        return [str(i) for i in range(int(text))]
    ids = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and (not hi.isdigit() or int(hi) < int(lo))):
            raise DataError("--gpus", f"must be a count, ids and ranges (0-3,6) or 'auto', got {text!r}")
        ids += [str(i) for i in range(int(lo), int(hi or lo) + 1)]
    if len(set(ids)) != len(ids):
        raise DataError("--gpus", f"names a device twice: {text!r}")
    return ids


def detect_gpus():
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else those nvidia-smi lists (none here)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def cpu_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def topo_order(stages):
    """The stages with every stage after those it needs (list order otherwise); unknown needs or a cycle: an error."""
    names = {s.name for s in stages}
    for s in stages:
        unknown = [n for n in s.needs if n not in names]
        if unknown:
            raise ValueError(f"stage {s.name} needs unknown stage(s) {unknown}")
    order, done, left = [], set(), list(stages)
    while left:
        ready = next((s for s in left if set(s.needs) <= done), None)
        if ready is None:
            raise ValueError(f"stages wait for each other in a cycle: {[s.name for s in left]}")
        order.append(ready)
        done.add(ready.name)
        left.remove(ready)
    return order


def ranks(order):
    """Each stage's weight plus the heaviest path of stages after it: the critical path starts first."""
    rank = {}
    for s in reversed(order):
        after = [rank[d.name] for d in order if s.name in d.needs]
        rank[s.name] = s.weight + max(after, default=0.0)
    return rank


def ancestors(order):
    out = {}
    for s in order:
        out[s.name] = set(s.needs).union(*(out[n] for n in s.needs))
    return out


def train_width(order):
    """The most training runs that can run at once (none waits for another)."""
    trains = [s.name for s in order if s.train]
    anc = ancestors(order)
    if len(trains) > MAX_EXACT_WIDTH:
        return max(1, sum(1 for t in trains if not anc[t] & set(trains)))
    for k in range(len(trains), 1, -1):
        for combo in itertools.combinations(trains, k):
            if all(a not in anc[b] and b not in anc[a] for a, b in itertools.combinations(combo, 2)):
                return k
    return 1


def simulate(order, jobs, rank):
    """A dry run of the schedule with each stage taking its weight in time: the most stages each one runs beside
    (itself included). Ready stages start by rank, as the scheduler starts them."""
    t, running, done, pending, most = 0.0, {}, set(), list(order), {}
    while pending or running:
        ready = sorted((s for s in pending if set(s.needs) <= done), key=lambda s: -rank[s.name])
        for s in ready[:max(0, jobs - len(running))]:
            running[s.name] = t + s.weight
            pending.remove(s)
        for name in running:
            most[name] = max(most.get(name, 0), len(running))
        t = min(running.values())
        for name in [n for n, end in running.items() if end <= t]:
            done.add(name)
            del running[name]
    return most


def _env_threads(env):
    value = env.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def make_plan(stages, jobs=None, devices=None, cores=None, env=None):
    """The plan for `stages`: jobs None = auto, devices None = the machine's GPUs, cores None = this process's."""
    env = os.environ if env is None else env
    order = topo_order(stages)
    cores = cores or cpu_cores()
    devices = detect_gpus() if devices is None else list(devices)
    width = train_width(order)
    fixed = _env_threads(env)
    auto = jobs is None
    if devices:
        jobs = jobs or width + 1  # the runs side by side, and one CPU stage beside them
    elif auto:
        per_run = fixed or max(THREADS_PER_RUN, cores // width)
        jobs = max(1, cores // per_run)
    rank = ranks(order)
    plan = Plan(order, jobs, cores, devices, {}, rank, auto, fixed)
    plan.slots = _gpu_slots(plan, width) if devices else _cpu_slots(plan)
    return plan


def _cpu_slots(plan):
    most = simulate(plan.order, plan.jobs, plan.rank)
    slots = {}
    for s in plan.order:
        threads = plan.fixed_threads or max(1, plan.cores // min(plan.jobs, most[s.name]))
        if not s.train:
            slots[s.name] = Slot(threads)
            continue
        procs = s.gpus or 1  # a `gpus:` share on a machine without GPUs: that many CPU processes (gloo)
        per_proc = s.threads or max(1, threads // procs)
        workers = s.workers if s.workers is not None else max(1, min(MAX_WORKERS, plan.cores // (plan.jobs * procs)))
        slots[s.name] = Slot(per_proc, procs, 0, workers)
    return slots


def _gpu_slots(plan, width):
    n = len(plan.devices)
    even, extra = max(1, n // width), max(0, n - max(1, n // width) * width)
    per_proc = plan.fixed_threads or max(1, plan.cores // n)
    workers = max(1, min(MAX_WORKERS, plan.cores // n))
    slots = {}
    for s in plan.order:
        if not s.train:
            slots[s.name] = Slot(plan.fixed_threads or max(1, plan.cores // plan.jobs))
            continue
        share = s.gpus
        if share is None:
            share, extra = even + (extra > 0), extra - (extra > 0)
        if share > n:
            raise DataError("--gpus",
                            f"{s.name} asks for {share} GPUs (its `gpus:`), {n} given ({','.join(plan.devices)})")
        slots[s.name] = Slot(s.threads or per_proc, share, share, s.workers if s.workers is not None else workers)
    return slots


def launch(stage, slot, gpu_ids=()):
    """The command and environment variables that run `stage` in `slot` on the devices `gpu_ids`."""
    argv = list(stage.cmd)
    if stage.train:
        if slot.procs > 1:  # --standalone: a free rendezvous port, so several runs launch side by side
            argv = argv[:1] + ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(slot.procs)] \
                + argv[1:]
        if stage.threads is None:
            argv += ["--set", f"train.num_threads={slot.threads}"]
        if stage.workers is None:
            argv += ["--set", f"data.workers={slot.workers}"]
    env = {var: str(slot.threads) for var in THREAD_VARS}
    if slot.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    return argv, env


def describe(plan):
    """--list: the plan's lines, each stage with what it waits for, its threads or devices, and its command."""
    if plan.devices:
        head = f"GPUs {','.join(plan.devices)}, {plan.cores} cores, up to {plan.jobs} stages at once"
    else:
        threads = f"{plan.fixed_threads} (OMP_NUM_THREADS)" if plan.fixed_threads else "as below"
        head = f"no GPUs, {plan.cores} cores, up to {plan.jobs} stages at once, threads per stage {threads}"
    lines = [f"plan: {head}{' (--jobs auto)' if plan.auto else ''}"]
    for s in plan.order:
        slot = plan.slots[s.name]
        use = f"{slot.gpus} GPU{'s' * (slot.gpus != 1)} x {slot.threads} thread{'s' * (slot.threads != 1)}" \
            if slot.gpus else f"{slot.threads} thread{'s' * (slot.threads != 1)}" + \
            (f" x {slot.procs} processes" if slot.procs > 1 else "")
        argv, env = launch(s, slot, [f"<{slot.gpus} free>"] if slot.gpus else ())
        lines.append(f"{s.name}: waits for {', '.join(s.needs) or 'nothing'}; {use}")
        lines.append("  $ " + " ".join(f"{k}={v}" for k, v in env.items() if k not in THREAD_VARS[1:]) + " "
                     + shlex.join(argv))
    return lines
