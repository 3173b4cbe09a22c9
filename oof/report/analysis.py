"""Everything the report computes from its inputs, once: per-image scores, fold means, test scores, bootstrap,
the residual correlation. Each prediction file is read once (oof.report.rows.one_pass); every later number
comes from the per-image scores (the bootstrap: per-group sums of them, then resampled groups)."""
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from oof.report import stats
from oof.report.rows import one_pass

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    inputs: object  # load.Inputs
    scores: dict  # name -> float32 (N,) per-image cosine: runs, the ensemble's OOF blend, the constant baseline
    readers: dict  # name -> NpyRows of the predictions (runs and the ensemble blend)
    fold_values: list
    per_fold: dict
    overall: dict
    unit_mean: np.ndarray  # the constant baseline's test-time prediction
    ensemble_name: str = None  # key of the ensemble's OOF blend in `scores`
    residuals: object = None  # pandas DataFrame: the runs' residual correlation (oof.residuals), None for one run
    test: dict = field(default_factory=dict)  # name -> held-out test score (only with --test-targets)
    boot: np.ndarray = None  # (n_boot, len(boot_names)) resampled means
    boot_index: dict = field(default_factory=dict)
    n_boot: int = 0
    pairs: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def run_names(self):
        return self.inputs.names

    @property
    def best_run(self):
        return max(self.run_names, key=lambda n: self.overall[n])

    @property
    def reference(self):
        """The model whose failures the report shows: the ensemble's blend if present, else the best run."""
        return self.ensemble_name or self.best_run


def _timed(timings, key, t0):
    timings[key] = round(time.perf_counter() - t0, 2)
    log.info("%s: %.1f s", key.replace("_", " "), timings[key])
    return time.perf_counter()


def analyze(inputs, n_boot=stats.N_BOOTSTRAP, seed=0, progress=False, pairs=None):
    """Score every model on every row, the baseline, the test set, and the bootstrap of their means."""
    timings = {}
    t = time.perf_counter()
    readers = {run.name: run.oof for run in inputs.runs}
    ens_name = None
    if inputs.ensemble is not None and inputs.ensemble.blend is not None:
        ens_name = f"ensemble ({inputs.ensemble.method})"
        readers[ens_name] = inputs.ensemble.blend
    scores, unit_mean, residuals = one_pass(readers, inputs.targets, inputs.folds, inputs.ids, inputs.names,
                                            progress=progress)
    t = _timed(timings, "per_image_scores", t)
    fold_values = sorted(int(f) for f in np.unique(inputs.folds))
    per_fold = {n: stats.fold_means(v, inputs.folds, fold_values) for n, v in scores.items()}
    overall = {n: float(np.mean(v, dtype=np.float64)) for n, v in scores.items()}
    an = Analysis(inputs, scores, readers, fold_values, per_fold, overall, unit_mean, ens_name, residuals,
                  timings=timings)
    if inputs.test_targets is not None:
        an.test = test_scores(an)
        t = _timed(timings, "test_scores", t)
    names = list(scores)
    an.boot = stats.bootstrap_means([scores[n] for n in names], inputs.groups, n_boot=n_boot, seed=seed,
                                    progress=progress)
    an.boot_index = {n: k for k, n in enumerate(names)}
    an.n_boot = n_boot
    pairs = pairs if pairs is not None else stats.comparison_pairs(an.run_names, overall, ens_name)
    an.pairs = stats.difference_table(pairs, scores, an.boot_index, an.boot, inputs.folds, fold_values)
    _timed(timings, "bootstrap", t)
    return an


def test_scores(an):
    """Held-out test score of each run's test.npy, the constant baseline and the ensemble's submission."""
    inputs = an.inputs
    out = {}
    for run in inputs.runs:
        out[run.name] = stats.test_score(run.test, run.test_ids, inputs.test_targets)
    out[stats.BASELINE] = stats.baseline_test_score(an.unit_mean, inputs.runs[0].test_ids, inputs.test_targets)
    ens = inputs.ensemble
    if ens is not None and ens.submission is not None:
        out[f"ensemble ({ens.method})"] = stats.submission_test_score(ens.submission, inputs.test_targets)
    return out
