"""The competition's data layout.

    DIR/images/<imgId>.png     any image PIL opens (the stem is the imgId)
    DIR/prompts.csv            imgId,prompt[,extra columns...]   (absent for a test set)

`load_dataset` returns a DataFrame with `imgId`, `path` and, for a training set, `prompt`
plus any extra columns of prompts.csv, in prompts.csv order (test sets: sorted by imgId).
"""
import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from core.errors import DataError, exit_on_data_error

PROMPTS_FILE = "prompts.csv"
IMAGES_DIR = "images"
REQUIRED_COLUMNS = ("imgId", "prompt")
# One id rule for every reader and writer: an imgId is a file stem (Kaggle's are hex).
IMG_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
IMAGE_EXTENSIONS = (".png", ".webp", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff")


def check_img_id(img_id, path, row=None):
    """Return `img_id` if it is a file stem of [A-Za-z0-9_-] characters, else raise a DataError naming `path`.

    `row` (1-based data row) is added to the message when given."""
    s = str(img_id)
    if IMG_ID_PATTERN.fullmatch(s):
        return s
    where = f"row {row}: " if row is not None else ""
    stem, dot, ext = s.rpartition(".")
    if dot and "." + ext.lower() in IMAGE_EXTENSIONS and IMG_ID_PATTERN.fullmatch(stem):
        raise DataError(path, f"{where}imgId {s!r} ends in the file extension .{ext}; ids are file stems: write {stem!r}")
    raise DataError(path, f"{where}imgId {s!r} is not a file stem of [A-Za-z0-9_-] characters")



def read_prompts(path):
    """Read and validate a prompts.csv: columns imgId,prompt; ids unique; prompts non-empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found (a training set needs prompts.csv with columns imgId,prompt)")
    try:
        frame = pd.read_csv(path, dtype={"imgId": str, "prompt": str}, keep_default_na=False)
    except Exception as e:  # pandas raises several types for unparsable files
        raise DataError(path, f"cannot be parsed as CSV: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; found {list(frame.columns)}")
    frame["imgId"] = frame["imgId"].str.strip()
    bad_ids = frame.index[frame["imgId"] == ""].tolist()
    if bad_ids:
        raise DataError(path, f"empty imgId on data row(s) {[i + 1 for i in bad_ids[:5]]}")
    dup = frame["imgId"][frame["imgId"].duplicated()].unique().tolist()
    if dup:
        raise DataError(path, f"{len(dup)} duplicate imgId(s), e.g. {dup[:5]}")
    empty = frame.index[frame["prompt"].str.strip() == ""].tolist()
    if empty:
        ids = frame["imgId"].iloc[empty[:5]].tolist()
        raise DataError(path, f"{len(empty)} empty prompt(s), e.g. imgId {ids}")
    return frame.reset_index(drop=True)


def _index_images(images_dir):
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(images_dir, "image folder not found")
    found = {}
    for p in sorted(images_dir.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            # Prefer <id>.png when an id has several files.
            if p.stem not in found or p.suffix.lower() == ".png":
                found[p.stem] = p
    return found


def load_dataset(data_dir, require_prompts=False):
    """Return the dataset in `data_dir` as a DataFrame (imgId, path[, prompt, extras])."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "dataset folder not found")
    images = _index_images(data_dir / IMAGES_DIR)
    prompts_path = data_dir / PROMPTS_FILE
    if prompts_path.exists() or require_prompts:
        frame = read_prompts(prompts_path)
        missing = [i for i in frame["imgId"] if i not in images]
        if missing:
            raise DataError(
                data_dir / IMAGES_DIR / f"{missing[0]}.png",
                f"image file not found for imgId {missing[0]!r} ({len(missing)} of {len(frame)} ids in {prompts_path} have no image)",
            )
        frame.insert(1, "path", [str(images[i]) for i in frame["imgId"]])
        return frame
    if not images:
        raise DataError(data_dir / IMAGES_DIR, "no image files found")
    ids = sorted(images)
    return pd.DataFrame({"imgId": ids, "path": [str(images[i]) for i in ids]})


def load_images(folder):
    """Images to predict: a dataset folder (with images/) or a bare folder of image files."""
    folder = Path(folder)
    if (folder / IMAGES_DIR).is_dir():
        return load_dataset(folder)
    images = _index_images(folder)
    if not images:
        raise DataError(folder, "no image files found")
    ids = sorted(images)
    return pd.DataFrame({"imgId": ids, "path": [str(images[i]) for i in ids]})


def open_image(path):
    """Open an image as RGB, turning any decode failure into a DataError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(path, "image file not found") from e
    except Exception as e:  # PIL raises many types for corrupt files
        raise DataError(path, f"cannot be decoded as an image ({type(e).__name__}: {e})") from e


def check_images(paths, progress=True):
    """Decode every image once; raise a DataError for the first unreadable one."""
    from tqdm import tqdm

    for p in tqdm(paths, desc="check images", disable=not progress, unit="img"):
        open_image(p)


@exit_on_data_error
def main(argv=None):
    ap = argparse.ArgumentParser(description="Validate a dataset in the competition layout (images/ + prompts.csv).")
    ap.add_argument("data", help="dataset folder")
    ap.add_argument("--require-prompts", action="store_true", help="fail if prompts.csv is absent")
    ap.add_argument("--decode", action="store_true", help="also decode every image")
    args = ap.parse_args(argv)
    frame = load_dataset(args.data, require_prompts=args.require_prompts)
    if args.decode:
        check_images(frame["path"])
    kind = "train" if "prompt" in frame.columns else "test"
    print(f"{args.data}: {len(frame)} images ({kind}); columns {list(frame.columns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
