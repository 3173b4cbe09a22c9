"""A fake pipeline for the scheduler tests: stages that record when they ran and with what, then sleep.

Each stage runs tests/fake_stages.py's STAGE_SCRIPT (a file, so torchrun can launch it too): it appends a JSON line
per event (start, end, term) to WORK/record.jsonl with its environment and extra arguments, sleeps, prints an
`error:` line and exits with its code when it has one, and writes WORK/out/<name> (its output) when it succeeds.
On SIGTERM it records `term` and exits 143, as the trainer does after saving its position.

    python -m tests.fake_stages SPEC.json WORK    # run_all's scheduler on the stages of SPEC (for signal tests)
"""
import json
import sys
from pathlib import Path

STAGE_SCRIPT = r'''
import json, os, signal, sys, time
work, name, seconds, code = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
KEYS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "WORLD_SIZE",
        "LOCAL_RANK")

def record(event):
    line = json.dumps({"name": name, "event": event, "t": time.time(), "pid": os.getpid(),
                       "env": {k: os.environ.get(k) for k in KEYS}, "args": sys.argv[5:]})
    with open(os.path.join(work, "record.jsonl"), "a") as f:
        f.write(line + "\n")

def stop(signum, frame):
    record("term")
    sys.exit(143)

signal.signal(signal.SIGTERM, stop)
record("start")
time.sleep(seconds)
if code:
    print(f"some output of {name}")
    print(f"error: {name}.csv: bad input", file=sys.stderr)
    sys.exit(code)
os.makedirs(os.path.join(work, "out"), exist_ok=True)
open(os.path.join(work, "out", name), "w").write("done")
if os.environ.get("RANK", "0") == "0":
    print(f"{name} finished")
record("end")
'''


def fake_stage(work, name, seconds=0.0, needs=(), code=0, **kw):
    """A Stage running STAGE_SCRIPT; `kw` sets other Stage fields (train, gpus, weight, show ...)."""
    from pipeline.stages import Stage

    work = Path(work)
    script = work / "stage.py"
    if not script.is_file():
        work.mkdir(parents=True, exist_ok=True)
        script.write_text(STAGE_SCRIPT)
    return Stage(name, [sys.executable, str(script), str(work), name, str(seconds), str(code)],
                 outputs=[work / "out" / name], needs=list(needs), **kw)


def records(work):
    """{stage: {event: record}} (a stage launched as several processes: the last record of each event)."""
    path = Path(work) / "record.jsonl"
    out = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        r = json.loads(line)
        out.setdefault(r["name"], {})[r["event"]] = r
    return out


def all_records(work):
    path = Path(work) / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def main(argv=None):
    from pipeline.plan import make_plan
    from pipeline.scheduler import run_stages

    spec_path, work = argv or sys.argv[1:]
    spec = json.loads(Path(spec_path).read_text())
    stages = [fake_stage(work, **s) for s in spec["stages"]]
    plan = make_plan(stages, spec.get("jobs"), spec.get("devices", []), spec.get("cores"))
    return run_stages(plan, work)


if __name__ == "__main__":
    sys.exit(main())
