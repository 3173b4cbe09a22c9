"""run_all's work folder: where each stage writes. Its folder names are defined here, once; the files in them are
named by the modules that own their formats (core.targets, core.folds, ensemble.apply, core.runs, oof.report)."""
from dataclasses import dataclass
from pathlib import Path

from core.folds import FOLDS_FILE, GROUPS_FILE
from core.submission import SUBMISSION_FILE

OFFLINE_SUBMISSION_FILE = "submission_offline.csv"  # models.submit's output, checked against the stacker's
BASELINE_RUN = "mean_baseline"


@dataclass(frozen=True)
class WorkTree:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def demo(self):  # datagen.demo's dataset: train/, test/, test_prompts.csv
        return self.root / "data" / "demo"

    @property
    def checked(self):  # --skip-bad-images: the training set without its unreadable images
        return self.root / "data" / "checked"

    def targets(self, split):  # "train" or "test": core.targets' folder
        return self.root / "targets" / split

    @property
    def cache(self):  # image caches (models.image_cache)
        return self.root / "cache"

    @property
    def text_cache(self):
        return self.root / "cache" / "text_embeddings"

    @property
    def folds(self):
        return self.root / FOLDS_FILE

    @property
    def groups(self):
        return self.root / GROUPS_FILE

    def run(self, name):
        return self.root / "runs" / name

    @property
    def baseline(self):
        return self.run(BASELINE_RUN)

    @property
    def ensemble(self):
        return self.root / "ensemble"

    @property
    def submission(self):
        return self.root / SUBMISSION_FILE

    @property
    def offline_submission(self):
        return self.root / OFFLINE_SUBMISSION_FILE

    @property
    def report(self):
        return self.root / "report"

    @property
    def logs(self):  # one log per stage
        return self.root / "logs"

    @property
    def stamps(self):  # each finished stage's fingerprint
        return self.root / ".stages"
