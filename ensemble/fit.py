"""Fit a blend of model runs on their OOF predictions, score it by nested CV, write submission.csv.

    python -m ensemble.fit --runs work/runs/a work/runs/b [--method auto] [--out work/ensemble]

Methods (all fitted on OOF rows only, all scored by the same nested CV over the runs' folds):
    equal      1/M each (the reference)
    per_model  one weight per model, maximising mean cosine (non-negative by default)
    per_dim    a weight per model and dimension, shrunk toward the per-model weights
               (shrinkage chosen by inner CV)
    ridge      multi-output ridge regression on the M*384 concatenated predictions: every
               output dimension may use every model's every dimension (alpha chosen by inner CV)
    lgbm       one LightGBM regressor per dimension (features: the models' values of that
               dimension and the models' pairwise cosines); costly, so `auto` includes it only
               for small OOF sets unless --lgbm on/off says otherwise
    auto       all of the above that are enabled; the best nested score wins

Writes under --out: weights.npz + weights.csv (the chosen weight method's, or the best weight
method's when ridge or lgbm was chosen), ridge.npz / lgbm_stacker.json.gz (if chosen),
ensemble.json (which file applies), scores.json (the nested-CV table, each model's drop-one
score, the command line), oof_blend.npy + oof_blend_ids.csv (the chosen blend's nested OOF
predictions), submission.csv.
"""
import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError, exit_on_input_error
from core.io import save_csv, save_npy, write_json
from core.submission import SUBMISSION_FILE, write_submission
from ensemble.apply import (
    ENSEMBLE_MANIFEST,
    LGBM_FILE,
    OOF_BLEND_FILE,
    OOF_BLEND_IDS_FILE,
    RIDGE_FILE,
    SCORES_FILE,
    WEIGHTS_CSV,
    WEIGHTS_FILE,
)
from ensemble.blend import blend, save_weights, weights_table
from ensemble.inputs import load_inputs
from ensemble.nested_cv import AUTO_METHODS, DEFAULT_RIDGE_ALPHAS, DEFAULT_SHRINKAGE_GRID, LGBM_MIN_FOLDS, nested_cv
from ensemble.ridge_stacker import predict_ridge, save_ridge

# `auto` includes the LightGBM stacker up to this many OOF rows. Measured with
# bench/bench_stacker.py on this 2-core machine (1 thread, early stopping): 0.024 s per dimension
# at 2,000 rows (~0.9 min for the K + 1 fits of the nested procedure), 0.092 s at 20,000 (~3.5 min),
# 0.62 s at 160,000 (~24 min). The whole default procedure (equal, per_model, per_dim, ridge) takes
# minutes at 2,000,000 rows (docs/benchmarks.md).
LGBM_AUTO_MAX_ROWS = 10_000


def parse_grid(text, option="--shrinkage-grid", positive=False, example="10,1,0.1,0.01,0"):
    try:
        grid = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{option}: {e}") from e
    if not grid or any(x < 0 or (positive and x == 0) or x != x for x in grid):
        kind = "positive" if positive else "non-negative"
        raise argparse.ArgumentTypeError(f"{option} needs {kind} numbers, e.g. {example}")
    return grid


def parse_alphas(text):
    return parse_grid(text, "--ridge-alphas", positive=True, example="100,10,1,0.1")


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m ensemble.fit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR",
                    help="finished run directories (oof/ format)")
    ap.add_argument("--method", choices=["auto", "equal", "per_model", "per_dim", "ridge", "lgbm"], default="auto",
                    help="blend method; auto = best nested-CV score (default: %(default)s)")
    ap.add_argument("--out", default="work/ensemble", help="output folder (default: %(default)s)")
    ap.add_argument("--targets", default=None, help="targets folder (default: from the runs' metrics.json)")
    ap.add_argument("--folds", default=None,
                    help="folds.csv (default: from the runs' metrics.json; its sha256 must match)")
    ap.add_argument("--seed", type=int, default=0, help="seed (LightGBM; the linear fits are deterministic)")
    ap.add_argument("--lgbm", choices=["auto", "on", "off"], default="auto",
                    help="include the LightGBM stacker in --method auto: auto = only up to "
                         f"{LGBM_AUTO_MAX_ROWS:,} OOF rows "
                         "(default: %(default)s)")
    ap.add_argument("--no-lgbm", dest="lgbm", action="store_const", const="off", help="same as --lgbm off")
    ap.add_argument("--lgbm-threads", type=int, default=1, help="LightGBM threads (default: %(default)s)")
    ap.add_argument("--shrinkage-grid", type=parse_grid, default=list(DEFAULT_SHRINKAGE_GRID),
                    help="per-dim shrinkage values for the inner CV (default: %s)"
                         % ",".join(map(str, DEFAULT_SHRINKAGE_GRID)))
    ap.add_argument("--ridge-alphas", type=parse_alphas, default=list(DEFAULT_RIDGE_ALPHAS),
                    help="ridge alphas (scikit-learn's, > 0) for the inner CV (default: %s)"
                         % ",".join(f"{a:g}" for a in DEFAULT_RIDGE_ALPHAS))
    ap.add_argument("--nonneg-dim", action="store_true", help="constrain per-dimension weights to be >= 0")
    ap.add_argument("--allow-negative-model-weights", action="store_true",
                    help="do not constrain per-model weights to >= 0")
    ap.add_argument("--no-verify-hashes", action="store_true", help="skip checking run files against their manifest")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def methods_to_run(method, lgbm, n_rows):
    """(methods evaluated, reason lgbm is in or out of auto)."""
    if method != "auto":
        base = ["equal", "per_model"]
        return list(dict.fromkeys(base + [method])), f"--method {method}"
    if lgbm == "on":
        return list(AUTO_METHODS) + ["lgbm"], "--lgbm on"
    if lgbm == "off":
        return list(AUTO_METHODS), "--lgbm off"
    if n_rows <= LGBM_AUTO_MAX_ROWS:
        return list(AUTO_METHODS) + ["lgbm"], f"{n_rows} OOF rows <= {LGBM_AUTO_MAX_ROWS}"
    return list(AUTO_METHODS), f"{n_rows} OOF rows > {LGBM_AUTO_MAX_ROWS} (too slow; --lgbm on to force)"


def command_line(argv):
    """{"argv", "command"}: the command as run (sys.argv), or as it would be typed when main() got `argv`."""
    full = list(sys.argv) if argv is None else ["python", "-m", "ensemble.fit", *argv]
    return {"argv": full, "command": shlex.join(full)}


def ridge_document(tuned):
    key = lambda a: f"{a:g}"  # noqa: E731
    if tuned is None:
        return None
    return {
        "alpha_grid": tuned.grid,
        "alpha_per_fold": {str(k): v for k, v in tuned.per_fold.items()},
        "inner_scores": {str(k): {key(a): s for a, s in v.items()} for k, v in tuned.inner_scores.items()},
        "cv_by_alpha": {key(a): s for a, s in tuned.cv_by_value.items()},
        "chosen_alpha": tuned.chosen,
    }


def scores_document(result, inputs, args, methods, lgbm_reason, timings, argv=None):
    key = lambda lam: f"{lam:g}"  # noqa: E731
    return {
        **command_line(argv),
        "chosen_method": result.chosen_method,
        "chosen_shrinkage": result.chosen_shrinkage,
        "folds": result.folds,
        "fold_sizes": result.fold_sizes,
        "methods": result.methods,
        "single_models": result.single_models,
        "per_dim": {
            "shrinkage_grid": result.shrinkage_grid,
            "shrinkage_per_fold": {str(k): v for k, v in result.shrinkage_per_fold.items()},
            "inner_scores": {str(k): {key(x): s for x, s in v.items()} for k, v in result.inner_scores.items()},
            "cv_by_shrinkage": {key(x): s for x, s in result.cv_by_shrinkage.items()},
            "nonneg": bool(args.nonneg_dim),
        },
        "ridge": ridge_document(result.ridge),
        "per_model_weights": dict(zip(inputs.names, result.model_weights["all"])),
        # each model's marginal value: the per_model blend refitted without it, nested CV (per_fold keyed by fold)
        "drop_one": {m: {"overall": v["overall"], "per_fold": dict(zip(map(str, result.folds), v["per_fold"]))}
                     for m, v in result.drop_one.items()},
        "oof_blend": {"method": result.chosen_method, "file": OOF_BLEND_FILE, "ids_file": OOF_BLEND_IDS_FILE,
                      "rows": inputs.data.n_rows} if result.oof_blend is not None else None,
        "methods_evaluated": methods,
        "lgbm": {"evaluated": "lgbm" in result.methods, "reason": lgbm_reason},
        "runs": [{"name": n, "path": str(r.path)} for n, r in zip(inputs.names, inputs.runs)],
        "targets": str(inputs.targets_path),
        "folds_file": {"path": str(inputs.folds_path), "sha256": inputs.folds_sha256},
        "n_oof": inputs.data.n_rows,
        "n_test": len(inputs.test_ids),
        "seed": args.seed,
        "seconds": timings,
        "notes": inputs.notes + result.notes,
        "fits": result.fits,
        "evaluations": result.ledger,
    }


def write_outputs(out, result, inputs):
    """Weights / stacker, ensemble.json, the OOF blend and submission.csv; returns the test blend.

    weights.npz / weights.csv always hold a weight-matrix blend: the chosen method, or, when a
    stacker (ridge, lgbm) was chosen, the best weight method as a fallback (ensemble.json says
    which file applies)."""
    final, linear = result.final, result.final_linear
    names = inputs.names
    if linear is not None:
        save_weights(out / WEIGHTS_FILE, linear.weights, names, linear.method, linear.shrinkage)
        save_csv(out / WEIGHTS_CSV, weights_table(linear.weights, names))
    fallback = {"method": linear.method, "file": WEIGHTS_FILE} if linear is not None else None
    if final.method == "lgbm":
        from ensemble.lgbm_stacker import predict_lgbm_stacker, save_lgbm_stacker

        save_lgbm_stacker(out / LGBM_FILE, final.stacker)
        test_blend = predict_lgbm_stacker(final.stacker, inputs.test)
        manifest = {"method": "lgbm", "models": names, "file": LGBM_FILE, "linear_fallback": fallback}
    elif final.method == "ridge":
        save_ridge(out / RIDGE_FILE, final.stacker)
        test_blend = predict_ridge(final.stacker, inputs.test)
        manifest = {"method": "ridge", "models": names, "file": RIDGE_FILE, "alpha": final.stacker.alpha,
                    "linear_fallback": fallback}
    else:
        test_blend = blend(list(inputs.test), final.weights, names=names)
        manifest = {"method": final.method, "models": names, "file": WEIGHTS_FILE, "shrinkage": final.shrinkage}
    if getattr(result, "oof_blend", None) is not None:
        if not isinstance(result.oof_blend, (str, Path)):  # else nested_cv wrote it there, row block by row block
            save_npy(out / OOF_BLEND_FILE, result.oof_blend)
        save_csv(out / OOF_BLEND_IDS_FILE, pd.DataFrame({"imgId": list(inputs.data.ids)}))
    write_json(out / ENSEMBLE_MANIFEST, manifest)
    write_submission(out / SUBMISSION_FILE, inputs.test_ids, test_blend)
    return test_blend


def check_folds(inputs, method):
    """DataError naming the folds file when its OOF rows have too few folds for the nested CV (or --method lgbm)."""
    k = len(inputs.data.fold_values)
    if k < 2:
        raise DataError(inputs.folds_path,
                        f"the runs' OOF imgIds fall in {k} fold(s) of this file; nested CV needs at least 2")
    if method == "lgbm" and k < LGBM_MIN_FOLDS:
        raise DataError(inputs.folds_path, f"--method lgbm needs at least {LGBM_MIN_FOLDS} folds (an early-stopping "
                                           f"fold inside each training set); the runs' OOF imgIds fall in {k}")


def print_result(result, out, inputs, test_blend, lgbm_reason, timings):
    norms = np.linalg.norm(test_blend, axis=1)
    print(result.table())
    if result.chosen_shrinkage is not None:
        print(f"per_dim shrinkage per outer fold {result.shrinkage_per_fold}; final {result.chosen_shrinkage:g}")
    if result.ridge is not None:
        print(f"ridge alpha per outer fold {result.ridge.per_fold}; final {result.ridge.chosen:g}")
    if result.drop_one:
        print("per_model blend without each model (nested CV): "
              + ", ".join(f"{m} {s['overall']:.5f}" for m, s in result.drop_one.items()))
    print(f"chosen: {result.chosen_method}   (lgbm: {lgbm_reason})")
    print(f"wrote {out}/: {SUBMISSION_FILE} ({len(inputs.test_ids)} images, "
          f"row norms {norms.min():.6f}..{norms.max():.6f}), "
          f"{SCORES_FILE}, {ENSEMBLE_MANIFEST}, {OOF_BLEND_FILE}  [{timings['total']:.1f} s]")


@exit_on_input_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    inputs = load_inputs(args.runs, targets=args.targets, folds=args.folds, verify_hashes=not args.no_verify_hashes)
    check_folds(inputs, args.method)
    t_load = time.perf_counter() - t0
    data = inputs.data
    print(f"{len(inputs.runs)} runs, {data.n_rows} OOF rows in {len(data.fold_values)} folds, "
          f"{len(inputs.test_ids)} test rows ({t_load:.1f} s to load)", flush=True)
    for note in inputs.notes:
        print(f"note: {note}", flush=True)
    methods, lgbm_reason = methods_to_run(args.method, args.lgbm, data.n_rows)
    result = nested_cv(
        data, methods=methods, shrinkage_grid=args.shrinkage_grid,
        choose=None if args.method == "auto" else args.method,
        nonneg_model=not args.allow_negative_model_weights, nonneg_dim=args.nonneg_dim, seed=args.seed,
        lgbm_options={"num_threads": args.lgbm_threads}, progress=not args.quiet,
        ridge_alphas=args.ridge_alphas, drop_one=True, predict_oof=True, oof_blend_path=out / OOF_BLEND_FILE,
    )
    t_fit = time.perf_counter() - t0 - t_load
    test_blend = write_outputs(out, result, inputs)
    timings = {"load": round(t_load, 2), "nested_cv_and_refit": round(t_fit, 2),
               "total": round(time.perf_counter() - t0, 2)}
    write_json(out / SCORES_FILE, scores_document(result, inputs, args, methods, lgbm_reason, timings, argv))
    print_result(result, out, inputs, test_blend, lgbm_reason, timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
