"""A generated set on disk, per-shard plan files, and merging them into prompts.csv.

    DIR/images/<imgId>.<ext>              training images
    DIR/test/images/<imgId>.<ext>         held-out images (--holdout)
    DIR/prompts.<i>-of-<n>.csv            shard i's training rows (imgId,prompt[,extras]), written
    DIR/test_prompts.<i>-of-<n>.csv       before it renders; the held-out rows likewise
    DIR/prompts.csv, DIR/test_prompts.csv the merge: rows of every shard file whose image exists
    DIR/generate.json                     the settings the images were rendered with
    DIR/holdout.json                      the held-out prompt ids (cached; see holdout.py)

Image files are written through core.io.atomic_path (a `.<name>.<random>.tmp` dotfile beside
the image, renamed into place), so an image file that exists is complete.
"""
import logging
import os
import re
from pathlib import Path

import pandas as pd

from core.dataset import IMAGES_DIR, PROMPTS_FILE, TEST_PROMPTS_FILE
from core.errors import DataError
from core.images import IMAGE_EXTENSIONS
from core.io import save_csv

log = logging.getLogger(__name__)

TEST_DIR = "test"
SETTINGS_FILE = "generate.json"
SPLITS = {"train": (IMAGES_DIR, PROMPTS_FILE), "test": (f"{TEST_DIR}/{IMAGES_DIR}", TEST_PROMPTS_FILE)}
_SHARD_FILE = re.compile(r"(?P<base>.+)\.(?P<i>\d+)-of-(?P<n>\d+)\.csv")
_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.[^.]+\.tmp")  # core.io.atomic_path: .<name>.<random>.tmp


def images_dir(out, split):
    return Path(out) / SPLITS[split][0]


def shard_file(out, split, index, count):
    stem, ext = os.path.splitext(SPLITS[split][1])
    return Path(out) / f"{stem}.{index}-of-{count}{ext}"


def shard_files(out, split):
    """Every shard plan file of `split` in `out`, ordered by (n, i)."""
    base = os.path.splitext(SPLITS[split][1])[0]
    found = []
    for p in Path(out).glob(f"{base}.*-of-*.csv"):
        m = _SHARD_FILE.fullmatch(p.name)
        if m and m.group("base") == base:
            found.append((int(m.group("n")), int(m.group("i")), p))
    return [p for _, _, p in sorted(found)]


def existing_names(folder):
    """File names of the finished images in `folder` (dotfiles are temporaries)."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        return set()
    with entries:
        return {e.name for e in entries if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file()}


def existing_images(folder):
    """{imgId: file name} of the finished images in `folder`."""
    return {os.path.splitext(name)[0]: name for name in sorted(existing_names(folder))}


def remove_stale_temps(folder, names):
    """Delete the temporaries a killed run left for the file names in `names`; return how many.

    Only this shard's names: other shards may be writing into the same folder right now."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for e in entries:
        m = _TEMP_FILE.fullmatch(e.name)
        if m and m.group("name") in names:
            try:
                os.unlink(e.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def write_shard_plan(out, split, index, count, rows):
    """The rows a shard will render (imgId,prompt[,extras]), written before any image."""
    save_csv(shard_file(out, split, index, count), rows)


def _merge_split(out, split):
    files = shard_files(out, split)
    if not files:
        return None
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in files]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows.drop_duplicates()
    dup = rows["imgId"][rows["imgId"].duplicated()]
    if len(dup):
        raise DataError(Path(out) / files[0].name, f"shard files disagree on the row of imgId {dup.iloc[0]!r}: "
                        "they were planned from different prompts.csv files; delete the stale ones")
    have = existing_images(images_dir(out, split))
    done = rows[rows["imgId"].isin(have.keys())].sort_values("imgId", kind="stable")
    extra = len(set(have) - set(rows["imgId"]))
    if extra:
        log.warning("%s: %d image(s) have no row in any shard file; not listed", images_dir(out, split), extra)
    target = Path(out) / SPLITS[split][1]
    save_csv(target, done.reset_index(drop=True))
    return {"file": str(target), "planned": len(rows), "listed": len(done), "unlisted_images": extra}


def merge(out):
    """Join the shard plan files into prompts.csv / test_prompts.csv for the images that exist.

    Idempotent and atomic: safe to run while shards are still rendering (training can start on
    the images so far) and again when they finish."""
    out = Path(out)
    if not out.is_dir():
        raise DataError(out, "generated set folder not found")
    result = {split: _merge_split(out, split) for split in SPLITS}
    if result["train"] is None:
        raise DataError(out, "no shard files prompts.<i>-of-<n>.csv here; run `python -m datagen.generate` first")
    return result
