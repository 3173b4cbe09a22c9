"""The command line: python -m datagen.demo --out DIR --n-train N --n-test N --size PX --seed S."""
import argparse
import sys

from .writer import generate_demo


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m datagen.demo",
        description="Render the procedural demo dataset (images from SD-style prompts) in the competition layout."
    )
    ap.add_argument("--out", default="work/data/demo", help="output folder (default: %(default)s)")
    ap.add_argument("--n-train", type=int, default=1500, help="training images (default: %(default)s)")
    ap.add_argument("--n-test", type=int, default=300, help="test images (default: %(default)s)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0,
                    help="the same seed and sizes give the same ids, prompts and pixels (default: %(default)s)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        summary = generate_demo(args.out, args.n_train, args.n_test, args.size, args.seed, progress=not args.quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0
