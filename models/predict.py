"""Offline inference of a finished run on a new image folder: every fold checkpoint, averaged.

    python -m models.predict --run work/runs/convnext_demo --images DIR [--out DIR] [--batch-size 128]
                             [--tta flip | --tta none,flip,norm2,resize] [--workers 4] [--folds-at-once 5]

Writes OUT/pred.npy (float32 (N, 384), the mean of the folds' L2-normalised predictions) and
OUT/ids.csv. Needs no network and no training data: each fold checkpoint holds its config,
weights and the target statistics (a kNN run also holds its neighbour bank; a retrieval run's bank
lies in RUN/bank/ beside its folds).

Images stream through decode workers (models/data), no cache on disk: the fold models that share
an image size are run together on each decoded batch, so each image is decoded once per size
(--folds-at-once caps how many fold models are on the device together).

The images are scanned first (core.dataset.scan_images): unreadable ones are one error listing all
of them, or with --skip-bad-images they get the run's mean embedding (every row is still written)
and are listed in OUT/bad_images.csv.
"""
import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from core.dataset import BAD_IMAGES_FILE, load_images, scan_images, unreadable_images_error, write_bad_images
from core.errors import DataError, exit_on_input_error
from core.io import read_json, save_csv, save_npy, sha256_strings
from core.metric import l2_normalize
from core.runs import MEAN_FILE, METRICS_FILE
from models.config import ConfigError, canonical_tta
from models.fold_outputs import fold_checkpoints
from models.mean_baseline import CONSTANT_MODEL

PRED_FILE = "pred.npy"
PRED_IDS_FILE = "ids.csv"  # imgId, the row order of pred.npy


def is_constant_run(run_dir):
    metrics = Path(run_dir) / METRICS_FILE
    return metrics.is_file() and read_json(metrics).get("model") == CONSTANT_MODEL


def _predict_group(names, ckpts, image_paths, batch_size, tta, device, workers, progress):
    """Predictions of fold checkpoints (`ckpts`, named `names` in the progress bar) that share image settings,
    from one pass over the images."""
    from models.data import StreamSource
    from models.engine import build_model_for_inference, predict_many

    models, cfg = [], None
    for ckpt in ckpts:
        cfg = ckpt["config"]
        model, pre = build_model_for_inference(cfg, ckpt["state_dict"], device)
        models.append((model, pre, None))
    source = StreamSource(image_paths, [Path(p).stem for p in image_paths], cfg["image"]["size"],
                          cfg["image"]["interpolation"], workers)
    try:
        return predict_many(models, source, np.arange(len(image_paths)), batch_size or cfg["predict"]["batch_size"],
                            device, cfg["train"]["precision"], tta or cfg["predict"]["tta"], progress=progress,
                            desc=",".join(names))
    finally:
        source.close()


_SHARED = []  # inside shared_fold_predictions(): {memo key: predictions}


@contextlib.contextmanager
def shared_fold_predictions():
    """Within this block a trained fold model predicts a set of images once: a retrieval run querying with a
    blended run's fold models (models.retrieval) reuses that run's predictions. Keyed by the fold model's
    config hash and fold, the views and the images, so it is scoped to one submission, whose runs come from
    one place."""
    _SHARED.append({})
    try:
        yield
    finally:
        _SHARED.pop()


def _memo_key(ckpt, image_paths, tta):
    if not _SHARED or ckpt.get("config_hash") is None or ckpt.get("fold") is None:
        return None
    views = tta or ckpt["config"]["predict"]["tta"]
    return ckpt["config_hash"], int(ckpt["fold"]), json.dumps(views), sha256_strings(image_paths)


def predict_fold_models(ckpts, image_paths, batch_size=None, tta=None, device="cpu", workers=0, progress=False,
                        folds_at_once=None, names=None):
    """Predictions of trained fold models (checkpoints: config + state_dict) on `image_paths`, in `ckpts` order:
    the models that share an image size run together on each decoded batch, `folds_at_once` at a time."""
    names = names or [f"fold{c.get('fold')}" for c in ckpts]
    out, groups = [None] * len(ckpts), {}
    for i, ckpt in enumerate(ckpts):
        key = _memo_key(ckpt, image_paths, tta)
        if key is not None and key in _SHARED[-1]:
            out[i] = _SHARED[-1][key]
        else:
            groups.setdefault((ckpt["config"]["image"]["size"], ckpt["config"]["image"]["interpolation"]), []).append(i)
    for members in groups.values():
        step = folds_at_once or len(members)
        for s in range(0, len(members), step):
            part = members[s:s + step]
            preds = _predict_group([names[i] for i in part], [ckpts[i] for i in part], image_paths, batch_size, tta,
                                   device, workers, progress)
            for i, pred in zip(part, preds):
                out[i] = pred
                key = _memo_key(ckpts[i], image_paths, tta)
                if key is not None:
                    _SHARED[-1][key] = pred
    return out


def predict_images(run_dir, image_paths, batch_size=None, tta=None, cache_dir=None, device=None, progress=True,
                   workers=None, folds_at_once=None):
    """(N, 384) predictions of a run for `image_paths`: the mean of its folds' L2-normalised outputs."""
    import torch

    from models.data import default_workers

    run_dir = Path(run_dir)
    if is_constant_run(run_dir):  # the mean-embedding baseline predicts the same vector for every image
        return np.tile(run_mean_embedding(run_dir), (len(image_paths), 1))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    workers = default_workers() if workers is None else workers
    image_paths = [str(p) for p in image_paths]
    preds, trained = {}, []
    paths = fold_checkpoints(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            # memory-mapped: a fold model's weights are read when its model is built, once
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
            model = ckpt["config"]["model"]
            if model == "knn":
                from models.knn import predict_knn_fold

                preds[path] = predict_knn_fold(ckpt, image_paths, cache_dir or tmp, device, batch_size, progress,
                                               ckpt_path=path, workers=workers)
            elif model == "retrieval":
                from models.retrieval import predict_retrieval_fold

                preds[path] = predict_retrieval_fold(ckpt, image_paths, path, device, batch_size, tta, workers,
                                                     progress)
            else:
                trained.append((path, ckpt))
            del ckpt
    if trained:
        done = predict_fold_models([c for _, c in trained], image_paths, batch_size, tta, device, workers, progress,
                                   folds_at_once, names=[p.parent.name for p, _ in trained])
        preds.update(zip([p for p, _ in trained], done))
    return sum(l2_normalize(preds[p]) for p in paths) / len(preds)


def scan_test_images(frame, skip_bad_images, progress=True):
    """Scan the images once: (bool mask of the readable rows, [(path, reason)] of the others).

    Without skip_bad_images an unreadable image is one DataError listing every unreadable file."""
    bad = scan_images(frame["path"], progress=progress)
    if bad and not skip_bad_images:
        raise unreadable_images_error(bad, "; pass --skip-bad-images to predict the rest (the unreadable ones "
                                           "get the mean embedding and are listed in bad_images.csv)", shown=None)
    unreadable = {p for p, _ in bad}
    return np.array([str(p) not in unreadable for p in frame["path"]], dtype=bool), bad


def write_skipped(out_dir, bad):
    """The sidecar listing the images --skip-bad-images left out (written even when empty: no stale list)."""
    path = write_bad_images(Path(out_dir) / BAD_IMAGES_FILE, bad)
    if bad:
        print(f"{len(bad)} unreadable image(s) given the mean embedding, listed in {path}", flush=True)
    return path


def run_mean_embedding(run_dir):
    """The run's fallback prediction: its L2-normalised mean training embedding."""
    path = Path(run_dir) / MEAN_FILE
    if not path.is_file():
        raise DataError(path, "missing: the run has no mean embedding to give unreadable images")
    return l2_normalize(np.load(path).reshape(1, -1))[0]


def predict_readable(run_dir, image_paths, readable, **kw):
    """predict_images for the readable images; the other rows get the run's mean embedding."""
    readable = np.asarray(readable, dtype=bool)
    if readable.all():
        return predict_images(run_dir, image_paths, **kw)
    out = np.tile(run_mean_embedding(run_dir), (len(image_paths), 1))
    if readable.any():
        out[readable] = predict_images(run_dir, [p for p, ok in zip(image_paths, readable) if ok], **kw)
    return out


def parse_tta(text):
    """--tta: a preset (none, flip, crops) or comma-separated views (none,flip,norm2,resize)."""
    try:
        return canonical_tta(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_inference_args(ap):
    """Options models.predict and models.submit share."""
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--tta", type=parse_tta, default=None, metavar="VIEWS",
                    help="none | flip | crops, or views joined by commas from none,flip,crops,norm2,resize "
                         "(default: each run's config)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    ap.add_argument("--workers", type=int, default=None, help="image decode processes (default: cores, <= 8)")
    ap.add_argument("--folds-at-once", type=int, default=None,
                    help="fold models on the device together (default: all of a run's folds that share a size)")
    ap.add_argument("--skip-bad-images", action="store_true",
                    help=f"give unreadable images the mean embedding (listed in {BAD_IMAGES_FILE} beside the "
                         "output) instead of failing")


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run directory (work/runs/<name>)")
    ap.add_argument("--images", required=True, help="dataset folder with images/ (or a folder of images)")
    ap.add_argument("--out", default=None, help="output folder (default: RUN/predict/<images folder name>)")
    add_inference_args(ap)
    ap.add_argument("--cache-dir", default=None, help="kNN runs: image cache folder (default: a temporary one)")
    args = ap.parse_args(argv)
    images_dir = Path(args.images)
    frame = load_images(images_dir)
    readable, bad = scan_test_images(frame, args.skip_bad_images)
    pred = predict_readable(args.run, frame["path"].tolist(), readable, batch_size=args.batch_size, tta=args.tta,
                            cache_dir=args.cache_dir, device=args.device, workers=args.workers,
                            folds_at_once=args.folds_at_once)
    out = Path(args.out or Path(args.run) / "predict" / images_dir.resolve().name)
    if args.skip_bad_images:
        write_skipped(out, bad)
    save_npy(out / PRED_FILE, pred)
    save_csv(out / PRED_IDS_FILE, pd.DataFrame({"imgId": frame["imgId"]}))
    print(f"wrote {out / PRED_FILE}: {pred.shape[0]} x {pred.shape[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
