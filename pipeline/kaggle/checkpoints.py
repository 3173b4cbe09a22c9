"""Fold checkpoints for a Kaggle pack: fp32 tensors / arrays cast to fp16, and each frozen kNN
backbone written once to PACK/backbones/ instead of into every fold checkpoint.

A kNN fold on a frozen (pretrained) backbone names its weights by file (`feature_model.weights_file`);
models.knn finds the file beside the pack's runs or through SDI2P_BACKBONES (the notebook sets it).
ViT-H-14 is ~1.3 GB in fp16: stored once, not once per fold.
"""
import shutil
from pathlib import Path

import numpy as np

from core.io import atomic_path, sha256_file, sha256_json
from models.knn_features import PACKED_BACKBONES_DIR, backbone_identity

# Kept exact: buffers turning head outputs into embeddings, and the kNN's IVF cells (inference must
# probe the cells the OOF predictions probed). All tiny.
KEEP_FP32 = ("target_mean", "target_std", "centroids")


def _half(obj, key=None, counts=None):
    """`obj` with fp32 tensors / arrays cast to fp16 (recursively through dicts, lists, tuples)."""
    import torch

    if isinstance(obj, dict):
        return {k: _half(v, k, counts) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_half(v, key, counts) for v in obj)
    last = str(key).rsplit(".", 1)[-1]
    if isinstance(obj, torch.Tensor) and obj.dtype == torch.float32 and last not in KEEP_FP32:
        h = obj.half()
        if torch.isfinite(h).all() or not torch.isfinite(obj).all():  # never overflow a value to inf
            counts["cast"] += 1
            counts["saved"] += obj.nelement() * 2
            return h
        counts["kept"] += 1
    elif isinstance(obj, np.ndarray) and obj.dtype == np.float32 and last not in KEEP_FP32:
        with np.errstate(over="ignore"):
            h = obj.astype(np.float16)
        if np.isfinite(h).all() or not np.isfinite(obj).all():
            counts["cast"] += 1
            counts["saved"] += obj.size * 2
            return h
        counts["kept"] += 1
    return obj


def _new_counts():
    return {"cast": 0, "kept": 0, "saved": 0}


class FrozenBackbones:
    """The pack's backbones/ folder: each frozen backbone's weights written once, by identity."""

    def __init__(self, pack_dir, fp16=True):
        self.dir, self.fp16, self.entries = Path(pack_dir) / PACKED_BACKBONES_DIR, fp16, {}

    def packed_spec(self, spec, src_ckpt, rel):
        """The feature spec a packed checkpoint holds: the frozen backbone named by file (written on first use)."""
        import torch

        from models.knn import backbone_state

        ident = backbone_identity(spec)
        if ident not in self.entries:
            bb = spec["config"]["backbone"]
            print(f"  frozen backbone {bb['source']}:{bb['name']} (weights: {bb.get('pretrained')}) "
                  f"-> {PACKED_BACKBONES_DIR}/", flush=True)
            state = backbone_state(spec, src_ckpt)
            if self.fp16:
                state = _half(state, counts=_new_counts())
            path = self.dir / f"{ident[:24]}.pt"
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
            sha = sha256_file(path)
            self.entries[ident] = {
                "file": path.name, "sha256": sha, "bytes": path.stat().st_size, "fp16": bool(self.fp16),
                "backbone": f"{bb['source']}:{bb['name']}", "pretrained": str(bb.get("pretrained")),
                "source_identity": ident,
                # the packed (maybe fp16) weights give other features than the originals: their own identity
                "identity": sha256_json({"backbone": ident, "weights_sha256": sha}), "used_by": []}
        entry = self.entries[ident]
        entry["used_by"].append(rel)
        return {"config": spec["config"], "state_dict": None, "weights_file": entry["file"],
                "identity": entry["identity"]}

    def manifest(self):
        return {e["file"]: {k: v for k, v in e.items() if k != "file"} for e in self.entries.values()}


def pack_checkpoint(src, dst, rel, fp16=True, backbones=None):
    """Copy one fold checkpoint (fp16 where it was fp32; a frozen backbone by reference); its MANIFEST entry."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    spec, frozen = ckpt.get("feature_model"), None
    if spec and spec.get("state_dict") is None and backbones is not None:
        ckpt["feature_model"] = backbones.packed_spec(spec, src, rel)
        frozen = ckpt["feature_model"]["weights_file"]
    counts = _new_counts()
    if fp16:
        ckpt = _half(ckpt, counts=counts)
    if counts["cast"] or frozen:
        with atomic_path(dst) as tmp:
            torch.save(ckpt, tmp)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return {"bytes": dst.stat().st_size, "source_bytes": Path(src).stat().st_size, "sha256": sha256_file(dst),
            "fp16_tensors": counts["cast"], "fp16_saved_bytes": counts["saved"], "fp32_overflow_kept": counts["kept"],
            "frozen_backbone": frozen}


def pack_state_file(src, dst, fp16=True):
    """Copy a saved state dict (a retrieval run's image tower) with its fp32 tensors cast to fp16; its bytes."""
    import torch

    state = torch.load(src, map_location="cpu", weights_only=True)
    if fp16:
        state = _half(state, counts=_new_counts())
    with atomic_path(dst) as tmp:
        torch.save(state, tmp)
    return Path(dst).stat().st_size
