"""Offline inference of a finished run on a new image folder: every fold checkpoint, averaged.

    python -m models.predict --run work/runs/convnext_demo --images DIR [--out DIR] [--batch-size 128] [--tta flip]

Writes OUT/pred.npy (float32 (N, 384), the mean of the folds' L2-normalised predictions) and
OUT/ids.csv. Needs no network and no training data: each fold checkpoint holds its config,
weights and the target statistics (a kNN run also holds its neighbour bank).
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from core.dataset import load_images
from core.errors import DataError, exit_on_data_error
from core.io import read_json, save_csv, save_npy
from core.metric import l2_normalize
from models.mean_baseline import CONSTANT_MODEL
from oof.runs import MEAN_FILE, METRICS_FILE


def is_constant_run(run_dir):
    metrics = Path(run_dir) / METRICS_FILE
    return metrics.is_file() and read_json(metrics).get("model") == CONSTANT_MODEL


def fold_checkpoints(run_dir):
    paths = sorted(Path(run_dir).glob("folds/fold*/model.pt"), key=lambda p: int(p.parent.name[4:]))
    if not paths:
        raise DataError(Path(run_dir) / "folds", "no fold checkpoints (folds/fold*/model.pt): is this a trained run?")
    return paths


def predict_images(run_dir, image_paths, batch_size=None, tta=None, cache_dir=None, device=None, progress=True):
    """(N, 384) predictions of a run for `image_paths`: the mean of its folds' L2-normalised outputs."""
    import torch

    from models.engine import build_model_for_inference, predict_rows
    from models.image_cache import build_image_cache

    run_dir = Path(run_dir)
    if is_constant_run(run_dir):  # the mean-embedding baseline predicts the same vector for every image
        mean = np.load(run_dir / MEAN_FILE)
        return np.tile(l2_normalize(mean[None]), (len(image_paths), 1))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    total, n_folds = None, 0
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = cache_dir or tmp
        for path in fold_checkpoints(run_dir):
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            cfg = ckpt["config"]
            if cfg["model"] == "knn":
                from models.knn import predict_knn_fold

                pred = predict_knn_fold(ckpt, image_paths, cache_dir, device, batch_size, progress)
            else:
                model, pre = build_model_for_inference(cfg, ckpt["state_dict"], device)
                images = build_image_cache(image_paths, cfg["image"]["size"], cache_dir, cfg["image"]["interpolation"],
                                           progress=progress)
                pred = predict_rows(model, images, np.arange(len(images)), pre,
                                    batch_size or cfg["predict"]["batch_size"], device, cfg["train"]["precision"],
                                    tta or cfg["predict"]["tta"], progress=progress, desc=f"{path.parent.name}")
            total = l2_normalize(pred) if total is None else total + l2_normalize(pred)
            n_folds += 1
    return total / n_folds


@exit_on_data_error
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run directory (work/runs/<name>)")
    ap.add_argument("--images", required=True, help="dataset folder with images/ (or a folder of images)")
    ap.add_argument("--out", default=None, help="output folder (default: RUN/predict/<images folder name>)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--tta", choices=["none", "flip", "crops"], default=None, help="default: the run's config")
    ap.add_argument("--cache-dir", default=None, help="image cache folder (default: a temporary one)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    args = ap.parse_args(argv)
    images_dir = Path(args.images)
    frame = load_images(images_dir)
    pred = predict_images(args.run, frame["path"].tolist(), args.batch_size, args.tta, args.cache_dir, args.device)
    out = Path(args.out or Path(args.run) / "predict" / images_dir.resolve().name)
    save_npy(out / "pred.npy", pred)
    save_csv(out / "ids.csv", pd.DataFrame({"imgId": frame["imgId"]}))
    print(f"wrote {out}/pred.npy: {pred.shape[0]} x {pred.shape[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
