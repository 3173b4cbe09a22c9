"""CLI: python -m datagen.filter --data DIR --model NAME --pretrained TAG_OR_FILE
                               (--min-score S | --drop-fraction F) --out OUT"""
import argparse
import logging
import math
import sys
from pathlib import Path

import pandas as pd

from core.errors import DataError, exit_on_input_error
from core.io import save_csv, write_bytes

EPILOG = """\
examples:
  python -m datagen.filter --data work/data/sd/train --model ViT-H-14 --pretrained laion2b_s32b_b79k \\
      --drop-fraction 0.1 --out work/data/sd/train_clip
  python -m datagen.filter --data DIR --model ViT-H-14 --pretrained /kaggle/input/weights/vit_h14.bin \\
      --min-score 0.2 --out OUT

OUT is a training set (prompts.csv without the dropped pairs, images/ a link to DIR/images); a rerun
with the same --out reads the scores it already has and scores only new pairs.
"""


def _fraction(v):
    f = float(v)
    if not 0 <= f < 1:
        raise argparse.ArgumentTypeError(f"{v}: a fraction in [0, 1)")
    return f


def _score(v):
    s = float(v)
    if not math.isfinite(s):
        raise argparse.ArgumentTypeError(f"{v}: a finite cosine")
    return s


def parse_args(argv=None):
    from models.data import default_workers

    ap = argparse.ArgumentParser(prog="python -m datagen.filter", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="Score every (image, prompt) pair of a generated set with an open_clip "
                                             "model and write a view without the lowest-scoring pairs.")
    ap.add_argument("--data", required=True, help="training set: images/ + prompts.csv (imgId,prompt)")
    ap.add_argument("--model", required=True, help="open_clip model name (or one of configs/open_clip/*.json)")
    ap.add_argument("--pretrained", required=True, help="open_clip pretrained tag or a local checkpoint file")
    cut = ap.add_mutually_exclusive_group(required=True)
    cut.add_argument("--min-score", type=_score, help="drop pairs whose cosine is below this")
    cut.add_argument("--drop-fraction", type=_fraction, help="drop this fraction of the pairs, lowest scores first")
    ap.add_argument("--out", required=True, help="the filtered view's folder")
    ap.add_argument("--cache", default=None, help="score cache folder (default: OUT/clip_scores)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda when there is one)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--workers", type=int, default=default_workers(), help="decode processes (default: %(default)s)")
    ap.add_argument("--encoding", default="utf-8", help="prompts.csv's text encoding (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.batch_size < 1 or args.workers < 0:
        ap.error("--batch-size must be >= 1 and --workers >= 0")
    return args


def write_outputs(args, frame, scores, drop, cut):
    """scores.csv, the histogram, then the view (its prompts.csv last: the view is complete once it is there)."""
    from core.dataset import BAD_IMAGES_FILE, DROPPED_FILE, write_checked_view
    from datagen.filter.cut import HISTOGRAM_FILE, histogram_png
    from datagen.filter.scores import SCORE_COLUMNS, SCORES_FILE

    out, data = Path(args.out), Path(args.data)
    save_csv(out / SCORES_FILE, pd.DataFrame(dict(zip(SCORE_COLUMNS, (frame["imgId"], scores)))))
    write_bytes(out / HISTOGRAM_FILE, histogram_png(scores, cut, int(drop.sum()), title=f"CLIP scores: {args.model}"))
    if (data / BAD_IMAGES_FILE).is_file():  # DATA is a checked view: its unreadable images stay left out
        write_bytes(out / BAD_IMAGES_FILE, (data / BAD_IMAGES_FILE).read_bytes())
    dropped = [(p, f"clip_score {s:.6f}, cut {cut:.6f}") for p, s in zip(frame["path"][drop], scores[drop])]
    return write_checked_view(data, out, dropped, frame, left_out_file=DROPPED_FILE)


@exit_on_input_error
def main(argv=None):
    import torch

    from core.dataset import load_dataset
    from datagen.filter.cut import choose_cut
    from datagen.filter.scores import CACHE_DIR, cache_folder, score_pairs
    from models.clip_towers import clip_identity, load_clip

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    if Path(args.out).resolve() == Path(args.data).resolve():
        raise DataError(args.out, "is the input folder; write the filtered view to another --out")
    frame = load_dataset(args.data, require_prompts=True, encoding=args.encoding)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    clip = load_clip(args.model, args.pretrained, device=device)
    identity = clip_identity(args.model, args.pretrained)
    folder = cache_folder(args.cache or Path(args.out) / CACHE_DIR, identity,
                          {"model": args.model, "pretrained": str(args.pretrained)})
    scores, now = score_pairs(frame, clip, folder, args.batch_size, device, args.precision, args.workers)
    drop, cut = choose_cut(scores, frame["imgId"], args.min_score, args.drop_fraction)
    kept = write_outputs(args, frame, scores, drop, cut)
    print(f"{args.out}: kept {len(kept)} of {len(frame)} pairs, dropped {int(drop.sum())} (clip_score < {cut:.4f}; "
          f"median {float(pd.Series(scores).median()):.4f}); scored {now} now, {len(frame) - now} from the cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
