"""A tiny demo dataset with real targets, folds and prompt groups; config overrides that make training take seconds."""
from pathlib import Path

from core.dataset import read_prompts
from core.folds import groups_path, make_folds, save_folds, save_groups
from core.targets import compute_targets
from datagen.demo import generate_demo

REPO = Path(__file__).resolve().parents[1]


def make_tiny_project(root, n_train=36, n_test=6, size=32, k=2, seed=3):
    """data/{train,test}, targets/, folds.csv and groups.csv beside it (as `python -m core.folds` writes them)."""
    root = Path(root)
    data = root / "data"
    generate_demo(data, n_train=n_train, n_test=n_test, size=size, seed=seed, progress=False)
    frame = read_prompts(data / "train" / "prompts.csv")
    emb, _ = compute_targets(frame["imgId"], frame["prompt"], root / "targets", progress=False)
    folds, groups = make_folds(frame["imgId"], frame["prompt"], emb, k=k, threshold=0.9, seed=seed)
    save_folds(root / "folds.csv", frame["imgId"], folds, {"k": k})
    save_groups(groups_path(root / "folds.csv"), frame["imgId"], groups)
    return root


def _project_overrides(root, out, size, epochs, steps):
    """The tiny project's paths, the run's folder, the image size and a few short epochs."""
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
    ]


def tiny_overrides(root, out, epochs=1, steps=2, size=32, extra=()):
    return [
        *_project_overrides(root, out, size, epochs, steps),
        "train.batch_size=8",
        "train.num_threads=1",
        "predict.batch_size=16",
        *extra,
    ]


def frozen_backbone_overrides(folder):
    """A kNN run's overrides for a frozen convnext_atto whose "pretrained" weights are a local file: random init
    (seed 0) saved to `folder`/convnext_atto.pth, loaded by the real local-checkpoint code.

    Returns (the weights file, the overrides)."""
    import torch

    from models.backbones import create_backbone

    torch.manual_seed(0)
    weights = Path(folder) / "convnext_atto.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(create_backbone({"source": "timm", "name": "convnext_atto", "pretrained": None, "kwargs": {}},
                               32).module.state_dict(), weights)
    return weights, ["knn.features_from=null",
                     f"knn.backbone={{source: timm, name: convnext_atto, pretrained: {weights}}}"]


# The production configs' backbones swapped for tiny random-init members of the same families: the
# only backbone keys changed (name, pretrained, kwargs); drop_path_rate and grad_checkpointing stay.
PRODUCTION_CONFIGS = {
    "convnext_xxl": ["backbone.name=convnext_atto", "backbone.pretrained=null"],
    "eva02_l": ["backbone.name=eva02_tiny_patch14_224", "backbone.pretrained=null", "backbone.kwargs={depth: 2}"],
    "vit_h14": ["backbone.name=demo-ViT-4L-192-p8", "backbone.pretrained=null"],
}


def production_overrides(name, root, out, size=32, epochs=2, steps=2, extra=()):
    """A production config's overrides for a CPU test: the tiny backbone, the tiny project's paths, a few
    short epochs and `image.size` (the production sizes, 224-336 px, cost minutes on a CPU). Everything
    else, batch size and grad_accum included, stays as the config has it."""
    return [
        *PRODUCTION_CONFIGS[name],
        *_project_overrides(root, out, size, epochs, steps),
        "train.num_threads=1",
        *extra,
    ]
