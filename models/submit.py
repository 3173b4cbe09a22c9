"""Offline Kaggle inference: trained runs + a fitted ensemble + a folder of test images -> submission.csv.

    python -m models.submit --runs work/runs/convnext_demo work/runs/eva_demo ... \
        --ensemble work/ensemble --images /kaggle/input/stable-diffusion-image-to-prompts/images \
        --out /kaggle/working/submission.csv

Each run predicts the images with all its fold checkpoints (`models.predict`: streamed through
decode workers, no image cache); the fitted ensemble (`ensemble.apply`: numpy for the weight
blends and ridge, lightgbm for the LightGBM stacker) combines them into unit-norm rows. No network,
no training data.

The test images are scanned first: an unreadable one is an error listing all of them, or, with
--skip-bad-images (the Kaggle notebook's default), each run gives it its mean embedding, which the
ensemble blends like any prediction, so the submission still has every row; the skipped files are
listed in bad_images.csv beside the submission.
"""
import argparse
import sys
import time
from pathlib import Path

from core.dataset import load_images
from core.errors import DataError, exit_on_input_error
from core.submission import write_submission
from ensemble.apply import ENSEMBLE_MANIFEST, apply_ensemble, read_manifest
from models.predict import (
    add_inference_args,
    predict_readable,
    scan_test_images,
    shared_fold_predictions,
    write_skipped,
)


def make_submission(run_dirs, ensemble_dir, images_dir, out, batch_size=None, tta=None, device=None, progress=True,
                    workers=None, folds_at_once=None, skip_bad_images=False):
    frame = load_images(images_dir)
    manifest = read_manifest(ensemble_dir)
    runs = {Path(r).name: Path(r) for r in run_dirs}
    missing = [m for m in manifest["models"] if m not in runs]
    if missing:
        raise DataError(Path(ensemble_dir) / ENSEMBLE_MANIFEST,
                        f"the ensemble blends {manifest['models']}; no run directory given for {missing}")
    readable, bad = scan_test_images(frame, skip_bad_images, progress)
    preds = {}
    with shared_fold_predictions():  # a retrieval run's query reuses its query run's fold predictions
        for name in manifest["models"]:
            t0 = time.time()
            preds[name] = predict_readable(runs[name], frame["path"].tolist(), readable, batch_size=batch_size,
                                           tta=tta, device=device, progress=progress, workers=workers,
                                           folds_at_once=folds_at_once)
            print(f"{name}: {len(frame)} images in {time.time() - t0:.1f} s", flush=True)
    blended = apply_ensemble(ensemble_dir, preds)
    write_submission(out, frame["imgId"].tolist(), blended)
    if skip_bad_images:
        write_skipped(Path(out).parent, bad)
    return frame["imgId"].tolist(), blended


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="run directories named in the ensemble")
    ap.add_argument("--ensemble", required=True, help="folder written by `python -m ensemble.fit`")
    ap.add_argument("--images", required=True, help="test images: a folder of images or a dataset folder with images/")
    ap.add_argument("--out", default="work/submission.csv")
    add_inference_args(ap)
    args = ap.parse_args(argv)
    ids, blended = make_submission(args.runs, args.ensemble, args.images, args.out, args.batch_size, args.tta,
                                   args.device, workers=args.workers, folds_at_once=args.folds_at_once,
                                   skip_bad_images=args.skip_bad_images)
    print(f"wrote {args.out}: {len(ids)} images x {blended.shape[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
