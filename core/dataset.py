"""The competition's data layout.

    DIR/images/<imgId>.png     any image PIL opens (the stem is the imgId; .PNG, .jpg, .webp ... too)
    DIR/prompts.csv            imgId,prompt[,extra columns...]   (absent for a test set)
    DIR/test_prompts.csv       a generated set's test prompts (imgId,prompt), beside its test images, for scoring

`load_dataset` returns a DataFrame with `imgId`, `path` and, for a training set, `prompt`
plus any extra columns of prompts.csv, in prompts.csv order (test sets: sorted by imgId).
Images without a row in prompts.csv are listed in a warning and left out (a set still being
generated trains on what is there); rows without an image are an error listing them.

Unreadable images: `scan_images` (core.images) finds all of them in one pass;
`write_bad_images` records them in bad_images.csv, whose ids `load_dataset(skip_ids=...)` leaves out.
The imgId rule and the one reader of imgId tables (bad_images.csv among them) are core.ids's.
"""
import argparse
import csv
import io
import logging
import re
import sys
from pathlib import Path

import pandas as pd

from core.errors import DataError, exit_on_input_error
from core.ids import IMG_ID_PATTERN, check_img_id, read_id_table
from core.images import DECODE_VERSION, IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, open_image, scan_images  # noqa: F401

_log = logging.getLogger(__name__)

PROMPTS_FILE = "prompts.csv"
IMAGES_DIR = "images"
TEST_PROMPTS_FILE = "test_prompts.csv"  # imgId,prompt of a test set's images, beside its folder (demo, generated sets)
REQUIRED_COLUMNS = ("imgId", "prompt")
# The unreadable images a scan found: imgId (the file stem), path, reason.
BAD_IMAGES_FILE = "bad_images.csv"
BAD_IMAGES_COLUMNS = ("imgId", "path", "reason")
# The pairs a filter left out of a view (datagen.filter: low CLIP score), in bad_images.csv's columns.
DROPPED_FILE = "dropped.csv"
LEFT_OUT_FILES = (BAD_IMAGES_FILE, DROPPED_FILE)  # a view's lists of images it leaves out on purpose
_SHOWN = 10  # ids listed in an error or warning message


def _shown(items):
    items = list(items)
    return f"{items[:_SHOWN]}" + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _decode_text(path, data, encoding):
    """Bytes -> text; a byte the encoding cannot read is an error naming its row, line and byte."""
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return data.decode(enc)
    except LookupError:
        raise DataError(path, f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as e:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise DataError(path, "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8 "
                                  "or pass encoding='utf-16' (--encoding utf-16)") from None
        before = data[:e.start].decode(enc, errors="replace")
        line_start = before.rfind("\n") + 1
        try:  # records before the bad one's line (quoted prompts may span lines): header = record 1
            row = sum(1 for _ in csv.reader(io.StringIO(before[:line_start], newline="")))
        except csv.Error:
            row = None
        first = data[e.start:e.end]
        where = f"data row {row}, " if row else ("the header, " if row == 0 else "")
        field = before[line_start:].split(",", 1)[0] if row else ""
        raise DataError(path, f"{where}line {before.count(chr(10)) + 1}, byte {e.start}"
                              f"{f' (imgId {field!r})' if field and row else ''}: bytes {first!r} are not valid "
                              f"{encoding}; save the file as UTF-8, or pass its encoding "
                              f"(e.g. encoding='latin-1', --encoding latin-1)") from None


# A line and its terminator (\r\n, \r or \n, kept), as io.StringIO(text, newline="") yields them.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines(text):
    """The lines of `text` for csv.reader, one at a time: io.StringIO would first copy the whole text into
    4 bytes per character (1.9 GB more for a 475 MB prompts.csv of 2,000,000 rows)."""
    return map(re.Match.group, _LINE.finditer(text))  # map, not a generator expression: no Python frame per line


def _parse_rows(path, text):
    """CSV text -> (header, rows); a row with more fields than the header is an error (an unquoted comma)."""
    try:
        records = [r for r in csv.reader(_lines(text), strict=True) if r]
    except csv.Error as e:
        raise DataError(path, f"cannot be parsed as CSV ({e}); quote prompts that hold commas, quotes or "
                              f"newlines (\"a, \"\"b\"\"\")") from None
    if not records:
        raise DataError(path, "empty file (expected a header imgId,prompt and one row per image)")
    header = [c.strip() for c in records[0]]
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise DataError(path, f"duplicate column name(s) {dup} in the header {header}")
    width = len(header)
    rows = records[1:]
    long = next((i for i, r in enumerate(rows) if len(r) > width), None)
    if long is not None:
        raise DataError(path, f"data row {long + 1}: {len(rows[long])} fields, the header has {width} ({header}); "
                              f"a prompt holding commas must be quoted: \"a, b\"")
    return header, [r if len(r) == width else r + [""] * (width - len(r)) for r in rows]


def read_prompts(path, encoding="utf-8"):
    """Read and validate a prompts.csv: columns imgId,prompt (+ extras, kept); ids valid and unique; prompts non-empty.

    A UTF-8 byte-order mark is fine; other encodings: pass `encoding`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found (a training set needs prompts.csv with columns imgId,prompt)")
    header, rows = _parse_rows(path, _decode_text(path, path.read_bytes(), encoding))
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; found {header}")
    if not rows:
        raise DataError(path, "no data rows (only the header)")
    columns = {c: [r[k] for r in rows] for k, c in enumerate(header)}
    del rows  # one list per row: at 2,000,000 rows ~200 MB, no longer needed once the columns hold the values
    ids = columns["imgId"] = [i.strip() for i in columns["imgId"]]
    bad_ids = [k for k, i in enumerate(ids) if not i]
    if bad_ids:
        raise DataError(path, f"empty imgId on data row(s) {[i + 1 for i in bad_ids[:5]]}")
    match = IMG_ID_PATTERN.fullmatch
    invalid = [k for k, i in enumerate(ids) if not match(i)]
    if invalid:
        try:
            check_img_id(ids[invalid[0]], path, row=invalid[0] + 1)
        except DataError as e:
            more = f" ({len(invalid) - 1} more invalid imgIds)" if len(invalid) > 1 else ""
            raise DataError(path, e.problem + more) from None
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique().tolist()
        raise DataError(path, f"{len(dup)} duplicate imgId(s), e.g. {dup[:5]}")
    empty = [k for k, p in enumerate(columns["prompt"]) if not p.strip()]
    if empty:
        raise DataError(path, f"{len(empty)} empty prompt(s), e.g. imgId {[ids[k] for k in empty[:5]]} "
                              f"(data row(s) {[k + 1 for k in empty[:5]]})")
    frame = pd.DataFrame(columns)
    for col in header:
        if col not in REQUIRED_COLUMNS:  # extra columns: numbers where every value is one, else text
            try:
                frame[col] = pd.to_numeric(frame[col])
            except (ValueError, TypeError):
                pass
    return frame


def _index_images(images_dir):
    """{file stem: path} of the image files in a folder (other files are listed in a warning and skipped)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(images_dir, "image folder not found")
    found, other, twice = {}, [], []
    for p in sorted(images_dir.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            other.append(p.name)
            continue
        if p.stem in found:
            twice.append(p.stem)
        # Prefer <id>.png when an id has several files, else the first by name.
        if p.stem not in found or p.suffix.lower() == ".png":
            found[p.stem] = p
    if other:
        _log.warning("%s: %d file(s) without an image extension %s skipped: %s", images_dir, len(other),
                     IMAGE_EXTENSIONS, _shown(other))
    if twice:
        _log.warning("%s: %d id(s) have several image files (the .png is used, else the first by name): %s",
                     images_dir, len(twice), _shown(twice))
    return found


def _skip(frame, skip_ids, what):
    if skip_ids is None:
        return frame
    keep = ~frame["imgId"].isin(set(skip_ids))
    if not keep.all():
        _log.warning("%s: %d image(s) left out as unreadable (bad_images.csv)", what, int((~keep).sum()))
    return frame[keep].reset_index(drop=True)


def _test_frame(images, where, skip_ids=None):
    for stem, p in images.items():
        check_img_id(stem, p)
    ids = sorted(images)
    return _skip(pd.DataFrame({"imgId": ids, "path": [str(images[i]) for i in ids]}), skip_ids, where)


def load_dataset(data_dir, require_prompts=False, encoding="utf-8", skip_ids=None):
    """Return the dataset in `data_dir` as a DataFrame (imgId, path[, prompt, extras]).

    `skip_ids`: imgIds to leave out (the unreadable images of bad_images.csv, see read_bad_images)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "dataset folder not found")
    images = _index_images(data_dir / IMAGES_DIR)
    prompts_path = data_dir / PROMPTS_FILE
    if prompts_path.exists() or require_prompts:
        frame = _skip(read_prompts(prompts_path, encoding), skip_ids, data_dir)
        missing = [i for i in frame["imgId"] if i not in images]
        if missing:
            raise DataError(
                data_dir / IMAGES_DIR / f"{missing[0]}.png",
                f"image file not found for imgId {missing[0]!r} ({len(missing)} of {len(frame)} ids in "
                f"{prompts_path} have no image: {_shown(missing)})",
            )
        left_out = set(() if skip_ids is None else skip_ids)
        for name in LEFT_OUT_FILES:  # a view (write_checked_view): the images it leaves out on purpose
            if (data_dir / name).is_file():
                left_out |= set(read_bad_images(data_dir / name)["imgId"])
        unlisted = sorted(set(images) - set(frame["imgId"]) - left_out)
        if unlisted:
            _log.warning("%s: %d image(s) have no row in %s and are left out (a set still being generated?): %s",
                         data_dir / IMAGES_DIR, len(unlisted), PROMPTS_FILE, _shown(unlisted))
        frame.insert(1, "path", [str(images[i]) for i in frame["imgId"]])
        return frame
    if not images:
        raise DataError(data_dir / IMAGES_DIR, "no image files found")
    return _test_frame(images, data_dir, skip_ids)


def load_images(folder, skip_ids=None):
    """Images to predict: a dataset folder (with images/) or a bare folder of image files."""
    folder = Path(folder)
    if (folder / IMAGES_DIR).is_dir():
        return load_dataset(folder, skip_ids=skip_ids)
    images = _index_images(folder)
    if not images:
        raise DataError(folder, "no image files found")
    return _test_frame(images, folder, skip_ids)


def check_images(paths, progress=True, decode=True):
    """Check every image (all at once); raise one DataError naming the unreadable ones.

    decode=False: the fast scan (PNG chunk checksums, see core.images.image_problem)."""
    bad = scan_images(paths, progress=progress, decode=decode)
    if bad:
        raise unreadable_images_error(bad, " (to leave unreadable images out: python -m core.dataset DATA "
                                           "--write-checked DIR, or ./run_all.sh --skip-bad-images)")


def unreadable_images_error(bad, hint, shown=5):
    """One DataError for the [(path, reason)] a scan found: the file itself when there is one, else
    their folder with the first `shown` listed (None: all), then `hint`."""
    if len(bad) == 1:
        return DataError(bad[0][0], bad[0][1] + hint)
    listed = "; ".join(f"{Path(p).name}: {r}" for p, r in bad[:shown])
    more = " ..." if shown is not None and len(bad) > shown else ""
    return DataError(Path(bad[0][0]).parent, f"{len(bad)} unreadable images: {listed}{more}{hint}")


def write_bad_images(path, bad):
    """Write [(image path, reason)] as bad_images.csv (imgId, path, reason); returns the path."""
    from core.io import save_csv

    rows = [(Path(p).stem, str(p), r) for p, r in bad]
    save_csv(path, pd.DataFrame(rows, columns=list(BAD_IMAGES_COLUMNS)))
    return Path(path)


def read_bad_images(path):
    """Read a bad_images.csv: DataFrame (imgId, path, reason), ids checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"file not found (write it with `python -m core.dataset DATA --write-bad-images {path}`)")
    return read_id_table(path, BAD_IMAGES_COLUMNS, unique=False)


def write_checked_view(data_dir, out_dir, bad, frame, left_out_file=BAD_IMAGES_FILE):
    """A training set without its unreadable images, for every later stage to read as one:
    OUT/prompts.csv (the rows of the readable images, extra columns kept), OUT/images -> DATA/images
    (a link: nothing copied) and OUT/bad_images.csv (the rows left out, with the reasons).
    `frame`: DATA as load_dataset read it. `bad`: [(image path, reason)] left out, listed in
    OUT/`left_out_file` (datagen.filter's view: dropped.csv, the pairs it scored too low)."""
    import os

    from core.io import save_csv

    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir)
    frame = frame.drop(columns="path")  # prompts.csv's own columns
    bad_ids = {Path(p).stem for p, _ in bad}
    kept = frame[~frame["imgId"].isin(bad_ids)]
    if kept.empty:
        what = "is readable" if left_out_file == BAD_IMAGES_FILE else "is kept"
        raise DataError(data_dir / IMAGES_DIR, f"none of the {len(frame)} images {what}")
    out_dir.mkdir(parents=True, exist_ok=True)
    link = out_dir / IMAGES_DIR
    if link.is_symlink() or link.exists():
        if not (link.is_symlink() and Path(os.readlink(link)) == data_dir / IMAGES_DIR):
            raise DataError(link, f"exists and is not a link to {data_dir / IMAGES_DIR}; remove it")
    else:
        link.symlink_to(data_dir / IMAGES_DIR, target_is_directory=True)
    write_bad_images(out_dir / left_out_file, bad)
    save_csv(out_dir / PROMPTS_FILE, kept)  # last: the view is complete once its prompts.csv is there
    return kept


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(description="Validate a dataset in the competition layout (images/ + prompts.csv); "
                                             "image checks report every unreadable image at once.")
    ap.add_argument("data", help="dataset folder")
    ap.add_argument("--require-prompts", action="store_true", help="fail if prompts.csv is absent")
    ap.add_argument("--decode", action="store_true", help="also decode every image (slow: ~20 ms per 512-px PNG)")
    ap.add_argument("--scan", action="store_true",
                    help="also check every image fast (PNG chunk checksums; other formats decoded)")
    ap.add_argument("--write-bad-images", metavar="FILE", default=None,
                    help=f"record unreadable images in FILE ({BAD_IMAGES_FILE}) instead of failing")
    ap.add_argument("--write-checked", metavar="DIR", default=None,
                    help="scan, then write DIR/prompts.csv without the unreadable images' rows, DIR/images (a link to "
                         f"DATA/images) and DIR/{BAD_IMAGES_FILE}: a training set every stage reads the same way")
    ap.add_argument("--encoding", default="utf-8", help="prompts.csv's text encoding (default: %(default)s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    frame = load_dataset(args.data, require_prompts=args.require_prompts or bool(args.write_checked),
                         encoding=args.encoding)
    if args.write_checked:
        bad = scan_images(frame["path"], decode=args.decode)
        kept = write_checked_view(args.data, args.write_checked, bad, frame)
        print(f"wrote {args.write_checked}: {len(kept)} of {len(frame)} images readable; "
              f"{len(bad)} left out, listed in {Path(args.write_checked) / BAD_IMAGES_FILE}")
        for path, reason in bad:
            print(f"  left out {path}: {reason}")
    elif args.decode or args.scan or args.write_bad_images:
        if args.write_bad_images:
            bad = scan_images(frame["path"], decode=args.decode)
            write_bad_images(args.write_bad_images, bad)
            print(f"wrote {args.write_bad_images}: {len(bad)} unreadable of {len(frame)} images")
        else:
            check_images(frame["path"], decode=args.decode)
    kind = "train" if "prompt" in frame.columns else "test"
    print(f"{args.data}: {len(frame)} images ({kind}); columns {list(frame.columns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
