"""OOF analysis report: one self-contained HTML page, summary.md and report.json.

    python -m oof.report --runs work/runs/mean_baseline work/runs/convnext_demo ...
        [--ensemble work/ensemble] [--test-targets work/targets/test] [--out work/report]
    python -m oof.report --compare work/runs/old work/runs/new [--out work/report/compare-old-vs-new]
    python -m oof.report --compare work_a/ensemble work_b/ensemble   # two stacks: their nested-CV OOF blends

Targets, folds, groups, prompts and images are found through the runs' metrics.json unless
given as options. A run folder without manifest.json (still training) is listed, not read.
Bad input (a run missing a file, misaligned ids, runs on other folds): one
`error: <file>: <problem>` line and exit code 2.
"""
import argparse
import logging
import sys
import time
from pathlib import Path

from core.errors import exit_on_input_error
from oof.report.build import JSON_FILE, SUMMARY_FILE, build_compare, build_report, write_report
from oof.report.ensemble_pair import is_ensemble_dir, load_ensemble_pair
from oof.report.load import load_inputs
from oof.report.plots import SAMPLE_ROWS
from oof.report.stats import N_BOOTSTRAP


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m oof.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--runs", nargs="+", metavar="RUN_DIR", help="run directories (core/runs.py format)")
    what.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                      help="the comparison page of two runs, or of two fitted ensembles' nested-CV OOF blends "
                           "(oof_blend.npy; same ids and folds): B - A")
    ap.add_argument("--ensemble", default=None, metavar="ENS_DIR", help="a fitted ensemble folder (ensemble.fit --out)")
    ap.add_argument("--test-targets", default=None, metavar="DIR",
                    help="held-out test targets (core.targets folder): adds test scores; left out without it")
    ap.add_argument("--out", default=None,
                    help="output folder (default: work/report, or work/report/compare-A-vs-B with --compare)")
    ap.add_argument("--targets", default=None, help="training targets folder (default: from the runs' metrics.json)")
    ap.add_argument("--folds", default=None, help="folds.csv (default: from the runs' metrics.json; sha256 checked)")
    ap.add_argument("--prompts", default=None, help="prompts.csv or the training dataset folder "
                                                    "(default: metrics.json train_images.path)")
    ap.add_argument("--images", default=None, help="training images folder (default: train_images.path/images)")
    ap.add_argument("--by-column", default="source", help="prompts.csv column to break scores down by "
                                                          "(default: %(default)s)")
    ap.add_argument("--bootstrap", type=int, default=N_BOOTSTRAP, help="bootstrap resamples (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap and plot-sample seed (default: %(default)s)")
    ap.add_argument("--sample", type=int, default=SAMPLE_ROWS,
                    help="rows drawn in per-image plots (default: %(default)s)")
    ap.add_argument("--no-verify-hashes", action="store_true", help="skip checking run files against their manifest")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    return ap


def compare_inputs(parser, args, common):
    """--compare: two runs, or two ensembles' nested-CV OOF blends."""
    ensembles = [is_ensemble_dir(p) for p in args.compare]
    if all(ensembles):
        if args.test_targets:
            parser.error("--test-targets: the comparison of two ensembles compares their nested-CV OOF blends only")
        return load_ensemble_pair(args.compare, args.targets, args.folds, args.prompts, args.images)
    if any(ensembles):
        parser.error("--compare takes two runs or two ensemble folders, not one of each")
    return load_inputs(args.compare, require_all_finished=True, **common)


@exit_on_input_error
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.bootstrap < 100:
        parser.error("--bootstrap needs at least 100 resamples for a 95% interval")
    if args.sample < 100:
        parser.error("--sample needs at least 100 rows")
    if args.compare and args.ensemble:
        parser.error("--ensemble belongs to a --runs report; --compare compares two runs")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("oof.report").setLevel(logging.WARNING if args.quiet else logging.INFO)
    t0 = time.perf_counter()
    report_argv = list(sys.argv) if argv is None else ["python", "-m", "oof.report", *argv]
    common = dict(targets=args.targets, folds=args.folds, prompts=args.prompts, images=args.images,
                  test_targets=args.test_targets, verify_hashes=not args.no_verify_hashes)
    opts = dict(n_boot=args.bootstrap, seed=args.seed, sample_size=args.sample, by_column=args.by_column,
                progress=not args.quiet)
    if args.compare:
        inputs = compare_inputs(parser, args, common)
        a, b = inputs.names
        out = Path(args.out or f"work/report/compare-{Path(a).name}-vs-{Path(b).name}")
        t_load = time.perf_counter() - t0
        doc = build_compare(inputs, report_argv, **opts)
    else:
        inputs = load_inputs(args.runs, ensemble=args.ensemble, **common)
        out = Path(args.out or "work/report")
        t_load = time.perf_counter() - t0
        doc = build_report(inputs, report_argv, **opts)
    doc.meta["timings_s"]["load"] = round(t_load, 2)
    doc.meta["timings_s"]["total_before_writing"] = round(time.perf_counter() - t0, 2)
    path = write_report(doc, out)
    if not args.quiet:
        for note in inputs.notes:
            print(f"note: {note}")
    print(f"report: {path}  (+ {out / SUMMARY_FILE}, {out / JSON_FILE}; {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
