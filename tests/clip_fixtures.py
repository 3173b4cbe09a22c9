"""A tiny open_clip model (both towers) trained contrastively for a few steps on demo pairs, saved as a local
checkpoint file: shared by the CLIP-tower, filter and head-init tests (conftest's `tiny_clip`, once per session)."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TINY_CLIP = "tiny-ViT-2L-64-p8"  # configs/open_clip/tiny-ViT-2L-64-p8.json: 32 px, embed_dim 64
TINY_SIZE = 32
# 30 AdamW steps of 50 pairs at lr 2e-3 lift true-vs-shuffled AUC from ~0.5 to ~0.83 on 200 demo pairs.
TRAIN_STEPS, TRAIN_LR, TRAIN_BATCH = 30, 2e-3, 50


@dataclass
class TinyClip:
    data: Path  # demo dataset: data/train/{images/, prompts.csv}
    weights: Path  # the trained model's state dict (a "pretrained" local file)
    images: np.ndarray  # uint8 (N, 32, 32, 3), row i = prompts[i]'s image
    prompts: list
    img_ids: list
    losses: list  # the fine-tune's loss per step


def demo_pairs(root, n=200, seed=0):
    """n demo (image, prompt) pairs at 32 px under `root`; returns (data dir, uint8 images, prompts, imgIds)."""
    from core.dataset import read_prompts
    from datagen.demo import generate_demo
    from models.image_cache import decode_resized

    data = Path(root) / "data"
    generate_demo(data, n_train=n, n_test=0, size=TINY_SIZE, seed=seed, progress=False)
    frame = read_prompts(data / "train" / "prompts.csv")
    ids = frame["imgId"].astype(str).tolist()
    images = np.stack([decode_resized(data / "train" / "images" / f"{i}.png", TINY_SIZE) for i in ids])
    return data, images, frame["prompt"].astype(str).tolist(), ids


def train_tiny_clip(root):
    import torch

    from models.clip_towers import finetune_contrastive, load_clip

    data, images, prompts, ids = demo_pairs(root)
    model, pre, tokenizer = load_clip(TINY_CLIP)
    model, losses = finetune_contrastive(model, tokenizer, pre, images, prompts, steps=TRAIN_STEPS, lr=TRAIN_LR,
                                         batch_size=TRAIN_BATCH, seed=0)
    weights = Path(root) / "tiny_clip.pt"
    torch.save(model.state_dict(), weights)
    return TinyClip(data, weights, images, prompts, ids, losses)


def pair_auc(image_feats, text_feats, seed=1):
    """AUC of true (image i, text i) cosines against shuffled (image i, text perm(i)) ones."""
    from sklearn.metrics import roc_auc_score

    true = np.sum(image_feats * text_feats, axis=1)
    order = np.random.default_rng(seed).permutation(len(text_feats))
    perm = np.empty_like(order)
    perm[order] = np.roll(order, 1)  # a derangement: no image keeps its own text
    shuffled = np.sum(image_feats * text_feats[perm], axis=1)
    return float(roc_auc_score(np.r_[np.ones(len(true)), np.zeros(len(shuffled))], np.r_[true, shuffled]))
