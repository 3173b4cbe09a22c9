"""Image file formats for a generated set: size, encode time, decode(+resize) time, fidelity.

    python -m bench.bench_image_formats [--images DIR] [--repeat 3] [--size 224]

Re-encodes the Kaggle sample images (512 px PNGs from SD2) in each format the generator can
write (datagen.generate.encode) plus PNG / WebP variants, and times, per image on one core:
encode (what a GPU worker pays per image), decode (open + full decode) and decode + resize to
`--size` through the trainer's own path (models.image_cache.decode_resized), and the PSNR
against the PNG pixels at 512 px and after the resize the trainer does.
"""
import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from core.dataset import open_image
from datagen.generate.encode import FORMATS, encode_image
from models.image_cache import decode_resized

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "kaggle_sample" / "images"

# (label, datagen format, PIL save options). The first of each format is what `--format` writes.
VARIANTS = [
    ("png (PIL default, level 6)", "png", {}),
    ("png optimize=True", "png", {"optimize": True}),
    ("png compress_level=1", "png", {"compress_level": 1}),
    ("webp q90", "webp", {"quality": 90}),
    ("webp lossless", "webp", {"lossless": True}),
    ("jpeg q95", "jpeg", {"quality": 95}),
]


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder of PNGs (default: the Kaggle sample)")
    ap.add_argument("--repeat", type=int, default=3, help="timings per image; the median is kept")
    ap.add_argument("--size", type=int, default=224, help="trainer resolution for decode + resize")
    args = ap.parse_args(argv)
    paths = sorted(Path(args.images).glob("*.png"))
    if not paths:
        raise SystemExit(f"error: {args.images}: no .png images")
    originals = [open_image(p) for p in paths]
    ref_small = [decode_resized(p, args.size) for p in paths]
    print(f"{len(paths)} images from {args.images} ({originals[0].size[0]} px), median of {args.repeat} "
          f"runs per image, one thread")
    head = (f"{'format':<28}{'KiB/img':>9}{'GB/1M':>8}{'encode ms':>11}{'decode ms':>11}"
            f"{'dec+resize ms':>15}{'PSNR 512':>10}{f'PSNR {args.size}':>10}")
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        for label, fmt, options in VARIANTS:
            sizes, enc, dec, dec_rs, p_full, p_small = [], [], [], [], [], []
            for i, (path, im) in enumerate(zip(paths, originals)):
                t, data = median_time(partial(encode_image, im, fmt, **options), args.repeat)
                enc.append(t)
                sizes.append(len(data))
                out = Path(tmp) / f"{path.stem}{FORMATS[fmt].ext}"
                out.write_bytes(data)
                t, decoded = median_time(partial(open_image, out), args.repeat)
                dec.append(t)
                t, small = median_time(partial(decode_resized, out, args.size), args.repeat)
                dec_rs.append(t)
                p_full.append(psnr(np.asarray(im), np.asarray(decoded)))
                p_small.append(psnr(ref_small[i], small))
            kib = np.mean(sizes) / 1024
            fmt_psnr = lambda v: "lossless" if np.isinf(v) else f"{v:.1f} dB"  # noqa: E731
            print(f"{label:<28}{kib:>9.0f}{np.mean(sizes) * 1e6 / 1e9:>8.0f}{1e3 * np.mean(enc):>11.1f}"
                  f"{1e3 * np.mean(dec):>11.1f}{1e3 * np.mean(dec_rs):>15.1f}"
                  f"{fmt_psnr(np.mean(p_full)):>10}{fmt_psnr(np.mean(p_small)):>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
