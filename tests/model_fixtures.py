"""A tiny demo dataset with real targets and folds, and config overrides that make training take seconds."""
from pathlib import Path

from core.dataset import read_prompts
from core.folds import make_folds, save_folds
from core.targets import compute_targets
from datagen.demo import generate_demo

REPO = Path(__file__).resolve().parents[1]


def make_tiny_project(root, n_train=36, n_test=6, size=32, k=2, seed=3):
    root = Path(root)
    data = root / "data"
    generate_demo(data, n_train=n_train, n_test=n_test, size=size, seed=seed, progress=False)
    frame = read_prompts(data / "train" / "prompts.csv")
    emb, _ = compute_targets(frame["imgId"], frame["prompt"], root / "targets", progress=False)
    folds, _ = make_folds(frame["imgId"], frame["prompt"], emb, k=k, threshold=0.9, seed=seed)
    save_folds(root / "folds.csv", frame["imgId"], folds, {"k": k})
    return root


def tiny_overrides(root, out, epochs=1, steps=2, size=32, extra=()):
    root = Path(root)
    return [
        f"data.train={root / 'data' / 'train'}",
        f"data.test={root / 'data' / 'test'}",
        f"data.targets={root / 'targets'}",
        f"data.folds={root / 'folds.csv'}",
        f"data.cache_dir={root / 'cache'}",
        f"out={out}",
        f"image.size={size}",
        f"train.epochs={epochs}",
        f"train.max_steps_per_epoch={steps}",
        "train.batch_size=8",
        "train.num_threads=1",
        "predict.batch_size=16",
        *extra,
    ]
