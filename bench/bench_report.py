"""Speed and memory of the OOF report (`python -m oof.report`) on synthetic runs.

    python -m bench.bench_report [--n 500000] [--m 4] [--k 5] [--dtype float32|float16] [--keep DIR]

Writes, in a temporary folder (or --keep DIR): a synthetic training set's prompts.csv (with a
`source` column), targets folder, folds.csv + groups.csv (prompt groups of 1-3 rows, each in one
fold), M run directories written with core.runs.write_run (OOF and test stored as --dtype,
train_log.csv with 3 epochs per fold, metrics.json with provenance), and test targets. Then it runs
the report on those files in a child process (it reads each oof.npy once) and reports its wall time
and peak memory (the child's ru_maxrss, which counts touched memory-mapped pages too). Targets:
< 120 s at 500,000 x 4; < 300 s and < 4 GiB at 2,000,000 x 4. The last line:
`report N x M: T s, peak RSS P GiB`.

The project is tests/synthetic.py's `write_report_project` (tests/test_report.py uses it at demo size).
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.synthetic import write_report_project

REPORT_CHILD = (  # runs the report and prints its own peak memory and CPU time
    "import resource, sys; from oof.report.cli import main; rc = main(sys.argv[1:]); "
    "r = resource.getrusage(resource.RUSAGE_SELF); "
    "print(f'child ru_maxrss {r.ru_maxrss / 2 ** 20:.3f} GiB, CPU {r.ru_utime + r.ru_stime:.1f} s (user+sys)'); "
    "sys.exit(rc)")
TARGETS = "< 120 s at 500,000 x 4; < 300 s and < 4 GiB at 2,000,000 x 4"


def generate(root, args, env):
    """The synthetic project, written by a child process (the report's process never inherits its memory)."""
    t0 = time.perf_counter()
    gen = [sys.executable, "-m", "bench.bench_report", "--generate-only", "--keep", str(root), "--n", str(args.n),
           "--m", str(args.m), "--k", str(args.k), "--n-test", str(args.n_test), "--dtype", args.dtype]
    subprocess.run(gen, env=env, check=True)
    print(f"wrote {args.n:,} rows x {args.m} runs ({args.dtype}) under {root} in {time.perf_counter() - t0:.0f} s",
          flush=True)


def run_report(root, args, env):
    """The report in a child process; returns (exit status, wall seconds, the child's peak RSS in GiB)."""
    report_args = ["--runs", *(str(root / "runs" / f"model{j}") for j in range(args.m)), "--test-targets",
                   str(root / "targets" / "test"), "--out", str(root / "report"), "--quiet"]
    print("$ python -m oof.report " + shlex.join(report_args), flush=True)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", REPORT_CHILD, *report_args], env=env, capture_output=True, text=True,
                         check=False)
    wall = time.perf_counter() - t0
    print(res.stdout.strip() + ("\n" + res.stderr.strip() if res.stderr.strip() else ""))
    peak = re.search(r"child ru_maxrss ([0-9.]+) GiB", res.stdout)
    return res.returncode, wall, float(peak.group(1)) if peak else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="run storage of the predictions")
    ap.add_argument("--keep", default=None, help="write the synthetic project here and keep it (reused when there)")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.generate_only:
        write_report_project(Path(args.keep), args.n, m=args.m, k=args.k, n_test=args.n_test, storage=args.dtype)
        return 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmpdir:
        root = Path(args.keep or tmpdir)
        if not (root / "runs" / f"model{args.m - 1}" / "manifest.json").is_file():
            generate(root, args, env)
        rc, wall, peak = run_report(root, args, env)
        if rc != 0:
            print(f"report failed (exit {rc})", file=sys.stderr)
            return rc
        timings = json.loads((root / "report" / "report.json").read_text())["meta"]["timings_s"]
        print(f"report: {wall:.1f} s wall (incl. interpreter start; 1-min load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores); peak memory: the child's ru_maxrss [targets: {TARGETS}]")
        print("stages (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
        print(f"html size {(root / 'report' / 'report.html').stat().st_size / 1e6:.2f} MB")
        print(f"report {args.n} x {args.m}: {wall:.0f} s, peak RSS {peak:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
