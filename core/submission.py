"""Write and read the competition's submission.csv.

    imgId_eId,val
    <imgId>_0,<float>
    ...
    <imgId>_383,<float>

Values are written with 9 significant digits, which round-trips any float32 exactly.
The writer formats one image at a time from a pre-built row template (one C-level
`%` per image), several times faster than `DataFrame.to_csv` on the same rows.

`read_submission` takes the rows in any order; `check_submission` (`python -m core.submission check
FILE [--images DIR]`) is the strict check before an upload: every row once and in order, finite
values, unit-norm rows, exactly the ids of the test images. Each problem is a DataError naming the line.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from core import EMBEDDING_DIM
from core.errors import DataError, exit_on_input_error
from core.ids import IMG_ID_PATTERN, read_ids
from core.io import atomic_path

SUBMISSION_FILE = "submission.csv"
HEADER = "imgId_eId,val\n"


def _row_template(dim):
    # "{id}" is substituted per image; each "%.9g" takes one value.
    return "".join(f"{{id}}_{d},%.9g\n" for d in range(dim))


def format_submission(ids, embeddings):
    """Return the submission text for (N, D) `embeddings` keyed by `ids`, in the given order."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    ids = [str(i) for i in ids]
    if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
        raise ValueError(f"embeddings shape {embeddings.shape} does not match {len(ids)} ids")
    if not np.isfinite(embeddings).all():
        bad = int(np.flatnonzero(~np.isfinite(embeddings).all(axis=1))[0])
        raise ValueError(f"NaN or inf in the embedding of imgId {ids[bad]!r}")
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate imgIds in submission")
    bad = [i for i in ids if not IMG_ID_PATTERN.fullmatch(i)]
    if bad:
        raise ValueError(f"imgId {bad[0]!r} is not a file stem of [A-Za-z0-9_-] characters ({len(bad)} such ids)")
    template = _row_template(embeddings.shape[1])
    # Python floats (float64) of float32 values: %.9g of them round-trips the float32.
    rows = embeddings.astype(np.float64).tolist()
    parts = [HEADER]
    for img_id, row in zip(ids, rows):
        parts.append(template.replace("{id}", img_id.replace("%", "%%")) % tuple(row))
    return "".join(parts)


def write_submission(path, ids, embeddings):
    """Write submission.csv atomically."""
    text = format_submission(ids, embeddings)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return Path(path)


UNIT_TOLERANCE = 1e-4  # |row norm - 1| allowed by `check` (values are written with 9 digits)


def _line(i):
    return i + 2  # data row i (0-based) is on this line: the header is line 1, rows hold no newlines


# <imgId>_<d>: the id rule of core.dataset, then the dimension without leading zeros
KEY_PATTERN = IMG_ID_PATTERN.pattern + r"_(?:0|[1-9][0-9]{0,5})"


def _read_frame(path, dim):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "submission file not found")
    try:
        try:  # floats parsed by pandas' C reader; a value that is not a number falls back to find its line
            return pd.read_csv(path, encoding="utf-8", dtype={"imgId_eId": str, "val": np.float64})
        except ValueError as e:
            if "convert" not in str(e) and "cannot safely" not in str(e):
                raise
            frame = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False)
            if "val" in frame.columns:
                num = pd.to_numeric(frame["val"], errors="coerce")
                bad = np.flatnonzero(num.isna().to_numpy() & (frame["val"].str.strip() != "").to_numpy())
                if len(bad):
                    i = int(bad[0])
                    raise DataError(path, f"line {_line(i)}: value {frame['val'].iat[i]!r} of "
                                          f"{frame['imgId_eId'].iat[i]!r} is not a number") from None
            raise
    except pd.errors.EmptyDataError:
        raise DataError(path, f"empty file (expected the header {HEADER.strip()} and {dim} rows per image)") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text (byte {e.start})") from None
    except DataError:
        raise
    except Exception as e:  # pandas raises several types for unparsable files
        raise DataError(path, f"cannot be parsed as CSV: {e}") from None


def _parse_rows(path, dim):
    """The rows, validated one by one: (ids in order of first appearance, per row: id index, dimension, value)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    frame = _read_frame(path, dim)
    if list(frame.columns) != ["imgId_eId", "val"]:
        raise DataError(path, f"expected columns ['imgId_eId', 'val'], found {list(frame.columns)}")
    if frame.empty:
        raise DataError(path, "no rows (only the header)")
    keys = frame["imgId_eId"].fillna("").astype(str)
    ok = keys.str.fullmatch(KEY_PATTERN).fillna(False).to_numpy(bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(path, f"line {_line(i)}: {keys.iat[i]!r} is not <imgId>_<d>: an imgId of [A-Za-z0-9_-] "
                              f"characters, then the dimension d = 0..{dim - 1}")
    arr = pa.array(keys.to_numpy(dtype=object), type=pa.string())
    parts = pc.split_pattern(arr, "_", reverse=True, max_splits=1)
    eid = pc.cast(pc.list_element(parts, 1), pa.int64()).to_numpy(zero_copy_only=False)
    high = np.flatnonzero(eid >= dim)
    if len(high):
        i = int(high[0])
        raise DataError(path, f"line {_line(i)}: {keys.iat[i]!r}: dimension {eid[i]} out of range 0..{dim - 1}")
    enc = pc.dictionary_encode(pc.list_element(parts, 0))  # codes in order of first appearance
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = [str(i) for i in enc.dictionary.to_pylist()]
    vals = frame["val"].to_numpy(np.float64)
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.isfinite(vals.astype(np.float32)))
    if len(bad):
        i = int(bad[0])
        raise DataError(path, f"line {_line(i)}: the value of {keys.iat[i]!r} is missing or not finite (NaN, inf "
                              f"or beyond float32: {vals[i]!r}); {len(bad)} such value(s)")
    return ids, codes, eid, vals


def read_submission(path, dim=EMBEDDING_DIM):
    """Read a submission into (ids, (N, dim) float32 array), ids in order of first appearance.

    Every imgId needs all `dim` rows exactly once, with finite values; row order is free (see `check_submission`)."""
    ids, _, _, out = _read_checked(path, dim)
    return ids, out


def _read_checked(path, dim):
    import pandas as pd

    ids, codes, eid, vals = _parse_rows(path, dim)
    key = codes * dim + eid
    counts = np.bincount(key, minlength=len(ids) * dim).reshape(len(ids), dim)
    if counts.max() > 1:
        i = int(np.flatnonzero(pd.Series(key).duplicated().to_numpy())[0])
        first = int(np.flatnonzero(key == key[i])[0])
        raise DataError(path, f"line {_line(i)}: duplicate row {ids[codes[i]]}_{eid[i]} (first on line {_line(first)})")
    short = np.flatnonzero((counts == 0).any(axis=1))
    if len(short):
        k = int(short[0])
        lacking = np.flatnonzero(counts[k] == 0)
        raise DataError(path, f"imgId {ids[k]!r} lacks {len(lacking)} of its {dim} rows, e.g. "
                              f"{[f'{ids[k]}_{d}' for d in lacking[:3]]} ({len(short)} incomplete image(s); expected "
                              f"{dim} rows per image, d = 0..{dim - 1})")
    out = np.empty((len(ids), dim), dtype=np.float32)
    out[codes, eid] = vals.astype(np.float32)
    return ids, codes, eid, out


def check_submission(path, images=None, dim=EMBEDDING_DIM):
    """The strict check before uploading: `read_submission`'s rules, plus rows in order (each image's d = 0..dim-1,
    images contiguous), unit-norm rows, and, given an `images` folder, exactly its imgIds. Returns (ids, array)."""
    ids, codes, eid, emb = _read_checked(path, dim)
    row = np.arange(len(eid))
    wrong = np.flatnonzero((eid != row % dim) | (codes != row // dim))
    if len(wrong):
        i = int(wrong[0])
        raise DataError(path, f"line {_line(i)}: row {ids[codes[i]]}_{eid[i]} out of order; expected "
                              f"{ids[i // dim]}_{i % dim} (each image's {dim} rows in order d = 0..{dim - 1}, "
                              f"one image after another)")
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    off = np.flatnonzero(np.abs(norms - 1) > UNIT_TOLERANCE)
    if len(off):
        k = int(off[0])
        raise DataError(path, f"imgId {ids[k]!r}: row norm {norms[k]:.6g}, expected 1 (L2-normalise each image's "
                              f"row; {len(off)} such image(s))")
    if images is not None:
        from core.dataset import load_images

        folder_ids = load_images(images)["imgId"].tolist()
        missing = sorted(set(folder_ids) - set(ids))
        extra = sorted(set(ids) - set(folder_ids))
        if missing or extra:
            raise DataError(path, f"imgIds differ from the images in {images}: {len(missing)} image(s) have no rows "
                                  f"(e.g. {missing[:3]}), {len(extra)} imgId(s) have no image (e.g. {extra[:3]})")
    return ids, emb


@exit_on_input_error
def main(argv=None):
    from core.metric import l2_normalize

    ap = argparse.ArgumentParser(description="Write or check a submission.csv (imgId_eId,val).")
    sub = ap.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="check rows (all present, once, in order), finite values, unit row norms "
                                       "and, with --images, the imgIds")
    chk.add_argument("submission")
    chk.add_argument("--images", default=None, help="the test images folder: the submission must hold exactly its ids")
    wr = sub.add_parser("write", help="write predictions (.npy, N x 384) as a submission, rows L2-normalised")
    wr.add_argument("--pred", required=True, help="float array (N, 384), e.g. a run's test.npy")
    wr.add_argument("--ids", required=True, help="CSV with column imgId, row order of --pred")
    wr.add_argument("--out", default=f"work/{SUBMISSION_FILE}")
    args = ap.parse_args(argv)
    if args.command == "write":
        for f in (args.pred, args.ids):
            if not Path(f).is_file():
                raise DataError(f, "file not found")
        ids = read_ids(args.ids)
        try:
            pred = np.load(args.pred)
        except Exception as e:
            raise DataError(args.pred, f"cannot be read as a .npy array ({type(e).__name__}: {e})") from None
        if pred.shape != (len(ids), EMBEDDING_DIM):
            raise DataError(args.pred, f"shape {pred.shape} does not match {len(ids)} ids in {args.ids}")
        if not np.isfinite(pred).all():
            raise DataError(args.pred, "NaN or inf values")
        write_submission(args.out, ids, l2_normalize(pred))
        print(f"wrote {args.out}: {len(ids)} images")
        return 0
    ids, emb = check_submission(args.submission, images=args.images)
    norms = np.linalg.norm(emb, axis=1)
    print(f"{args.submission}: OK, {len(ids)} images x {emb.shape[1]} dims; "
          f"row norms {norms.min():.6f}..{norms.max():.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
