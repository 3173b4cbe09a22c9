"""What every method's evaluation in the nested procedure (ensemble.nested_cv) shares: its options, the data
with the statistics of the one pass over its rows, the ledger, cached per-model weights, the records of fits."""
import time
from dataclasses import dataclass, field

import numpy as np

from ensemble.fold_stats import SAMPLE_ROWS, collect
from ensemble.ledger import Ledger
from ensemble.weight_fits import fit_model_weights


@dataclass
class Options:
    """How the methods are fitted (nested_cv's keyword arguments, checked)."""
    shrinkage_grid: list  # strongest first
    ridge_alphas: list  # strongest first
    nonneg_model: bool = True
    nonneg_dim: bool = False
    seed: int = 0
    lgbm: dict = field(default_factory=dict)  # keyword arguments of fit_lgbm_stacker
    progress: bool = False
    sample_rows: int = SAMPLE_ROWS  # selection rows: the per-dim (and lgbm) fits' and the choices' rows
    oof_blend_path: object = None  # write the OOF blend there (row by row) instead of returning it in memory


@dataclass
class StackContext:
    """What every method's evaluation shares: the data and its folds, the statistics of the one pass over its
    rows, the selection rows, the ledger, the options, a cache of per-model weights, the records of every fit."""
    data: object  # StackData or RunFiles: every OOF row
    options: Options
    methods: list
    folds: list = field(init=False)
    everything: frozenset = field(init=False)  # all folds: the final refit's training set
    stats: object = field(init=False)  # ensemble.fold_stats.FoldStats
    ledger: Ledger = field(init=False)
    fits: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)  # (phase, perf_counter at its start, at its end)
    _model_weights: dict = field(default_factory=dict, repr=False)  # training folds -> (M,) weights

    def __post_init__(self):
        self.folds = list(self.data.fold_values)
        self.everything = frozenset(self.folds)
        t0 = time.perf_counter()
        self.stats = collect(self.data, ridge="ridge" in self.methods, sample_rows=self.options.sample_rows,
                             progress=self.options.progress)
        self.timings["statistics pass"] = round(time.perf_counter() - t0, 2)
        self.phases.append(("statistics pass", t0, time.perf_counter()))
        self.ledger = Ledger(self.selection, self.stats.model, self.data)

    @property
    def selection(self):
        """StackData of the rows the per-dim / lgbm fits and every hyper-parameter choice use."""
        return self.stats.sample

    def model_weights(self, train):
        """Per-model weights fitted on all rows of the folds in `train` (M parameters on row stats), once per set."""
        if train not in self._model_weights:
            rows = self.data.rows_of(train)
            self._model_weights[train] = fit_model_weights(self.stats.model, rows, nonneg=self.options.nonneg_model)
        return self._model_weights[train]

    def mean_gram(self, train):
        """(D, M, M) mean per-dimension Gram matrix over all rows of `train`, from the per-fold sums."""
        return sum(self.stats.grams[f] for f in sorted(train)) / self.data.count(train)

    def ridge_sums(self):
        return self.stats.ridge

    def broadcast(self, w):
        """(M,) per-model weights as the (M, D) weight matrix of a blend."""
        return np.repeat(np.asarray(w, dtype=np.float32)[:, None], self.data.dim, axis=1)

    def record(self, method, train, final, **info):
        """One entry of NestedResult.fits."""
        self.fits.append({"method": method, "trained_on": sorted(train), **info, **({"final": True} if final else {})})


@dataclass
class OuterScores:
    """A method without a hyper-parameter: its outer fits and (after the outer pass) their scores, the fields
    GridCV has too."""
    outer: dict  # outer fold -> the Fitted scored there
    sums: dict = field(default_factory=dict)  # outer fold -> (sum cos, n) on all rows of the fold
    notes: list = field(default_factory=list)
