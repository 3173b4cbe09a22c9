"""Speed and memory of the OOF report (`python -m oof.report`) on synthetic runs.

    python -m bench.bench_report [--n 500000] [--m 4] [--k 5] [--keep DIR]

Writes, in a temporary folder (or --keep DIR): a synthetic training set's prompts.csv (with a
`source` column), targets folder, folds.csv + groups.csv (prompt groups of 1-3 rows, each in one
fold), M run directories written with core.runs.write_run (OOF, test, train_log.csv with 3 epochs
per fold, metrics.json with provenance), and test targets. Then it runs the report in a child
process and reports its wall time and peak memory (the child's ru_maxrss, which counts touched
memory-mapped pages too). Target (issue 9): < 2 minutes and < 4 GiB at 500,000 rows x 4 models.

The project is tests/synthetic.py's `write_report_project` (tests/test_report.py uses it at demo size).
"""
import argparse
import json
import os
import resource
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--keep", default=None, help="write the synthetic project here and keep it")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.generate_only:  # in a child process, so that the report's process never inherits its memory
        write_report_project(Path(args.keep), args.n, m=args.m, k=args.k, n_test=args.n_test)
        return 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmpdir:
        root = Path(args.keep or tmpdir)
        t0 = time.perf_counter()
        gen = [sys.executable, "-m", "bench.bench_report", "--generate-only", "--keep", str(root), "--n", str(args.n),
               "--m", str(args.m), "--k", str(args.k), "--n-test", str(args.n_test)]
        subprocess.run(gen, env=env, check=True)
        print(f"wrote {args.n:,} rows x {args.m} runs under {root} in {time.perf_counter() - t0:.0f} s", flush=True)
        report_args = ["--runs", *(str(root / "runs" / f"model{j}") for j in range(args.m)), "--test-targets",
                       str(root / "targets" / "test"), "--out", str(root / "report"), "--quiet"]
        print("$ python -m oof.report " + shlex.join(report_args), flush=True)
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", REPORT_CHILD, *report_args], env=env, capture_output=True,
                             text=True)
        wall = time.perf_counter() - t0
        print(res.stdout.strip() + ("\n" + res.stderr.strip() if res.stderr.strip() else ""))
        if res.returncode != 0:
            print(f"report failed (exit {res.returncode})", file=sys.stderr)
            return res.returncode
        timings = json.loads((root / "report" / "report.json").read_text())["meta"]["timings_s"]
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        load = os.getloadavg()[0]
        print(f"report: {wall:.1f} s wall (incl. interpreter start; 1-min load average {load:.1f} on "
              f"{os.cpu_count()} cores), peak memory: the child's ru_maxrss above (it includes this process's "
              f"{own:.2f} GiB at fork) [targets: < 120 s, < 4 GiB]")
        print("stages (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
        print(f"html size {(root / 'report' / 'report.html').stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
