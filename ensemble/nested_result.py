"""What the nested procedure returns (NestedResult, its table) and its progress bars."""
from dataclasses import dataclass, field

from ensemble.grid_cv import GridCV
from ensemble.ledger import Fitted


@dataclass
class NestedResult:
    folds: list
    fold_sizes: list
    methods: dict  # method -> {"per_fold": [...], "overall": float}
    single_models: dict  # run name -> {"per_fold": [...], "overall": float}
    chosen_method: str
    final: Fitted  # the chosen method refitted on all OOF rows
    final_linear: Fitted = None  # the best weight method refitted on all rows (= final when that is one)
    shrinkage_grid: list = field(default_factory=list)
    per_dim: GridCV = None  # GridCV of the per-dim shrinkage when per_dim was evaluated
    ridge: GridCV = None  # GridCV of the ridge alpha when ridge was evaluated
    model_weights: dict = field(default_factory=dict)  # per-model weights on all rows
    drop_one: dict = field(default_factory=dict)  # run name -> nested score of the per-model blend without it
    oof_blend: object = None  # (N, D) the chosen method's nested OOF predictions, rows as in the data (or its path)
    notes: list = field(default_factory=list)
    fits: list = field(default_factory=list)  # one entry per per-dim / ridge / lgbm fit: folds, parameter, seconds...
    ledger: list = field(default_factory=list)
    seconds: float = 0.0
    # phase or method -> seconds (statistics pass, per method, outer pass...)
    timings: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)  # (phase, perf_counter at its start, at its end), in order
    selection_rows: int = 0  # rows the per-dim fits and the hyper-parameter choices used (all rows up to SAMPLE_ROWS)

    @property
    def shrinkage_per_fold(self):
        """Outer fold -> shrinkage picked by the inner CV."""
        return self.per_dim.per_fold if self.per_dim else {}

    @property
    def inner_scores(self):
        """Outer fold -> {shrinkage: inner CV score}."""
        return self.per_dim.inner_scores if self.per_dim else {}

    @property
    def cv_by_shrinkage(self):
        """Shrinkage -> K-fold score (picks the final one)."""
        return self.per_dim.cv_by_value if self.per_dim else {}

    @property
    def chosen_shrinkage(self):
        return self.per_dim.chosen if self.per_dim else None

    @property
    def chosen_alpha(self):
        return self.ridge.chosen if self.ridge is not None else None

    def table(self):
        """Plain-text table of nested scores: methods, then single models."""
        head = "method".ljust(24) + "".join(f"fold {f}".rjust(10) for f in self.folds) + "overall".rjust(10)
        lines = [head]
        for name, s in list(self.methods.items()) + [(f"model:{k}", v) for k, v in self.single_models.items()]:
            mark = " *" if name == self.chosen_method else ""
            per_fold = "".join(f"{x:10.5f}" for x in s["per_fold"])
            lines.append(name[:24].ljust(24) + per_fold + f"{s['overall']:10.5f}{mark}")
        return "\n".join(lines)


def summary(sums):
    """{fold: (sum, n)} -> {"per_fold": [...], "overall": x} in fold order."""
    folds = sorted(sums)
    total = sum(sums[f][0] for f in folds)
    count = sum(sums[f][1] for f in folds)
    return {"per_fold": [sums[f][0] / sums[f][1] for f in folds], "overall": total / count}


class NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def progress_bar(enabled, total, desc):
    if not enabled or total == 0:
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="fit")


def dim_bar(enabled, desc):
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, unit="dim", leave=False)
