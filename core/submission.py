"""Write and read the competition's submission.csv.

    imgId_eId,val
    <imgId>_0,<float>
    ...
    <imgId>_383,<float>

Values are written with 9 significant digits, which round-trips any float32 exactly.
The writer formats one image at a time from a pre-built row template (one C-level
`%` per image), several times faster than `DataFrame.to_csv` on the same rows.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from core import EMBEDDING_DIM
from core.errors import DataError
from core.io import atomic_path

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


def read_submission(path, dim=EMBEDDING_DIM):
    """Read a submission into (ids, (N, dim) float32 array), ids in order of first appearance."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "submission file not found")
    frame = pd.read_csv(path, dtype={"imgId_eId": str, "val": np.float64})
    if list(frame.columns) != ["imgId_eId", "val"]:
        raise DataError(path, f"expected columns ['imgId_eId', 'val'], found {list(frame.columns)}")
    split = frame["imgId_eId"].str.rsplit("_", n=1, expand=True)
    if split.shape[1] != 2 or split[1].isna().any():
        raise DataError(path, "every imgId_eId must look like <imgId>_<d>")
    img = split[0].to_numpy()
    try:
        eid = split[1].astype(int).to_numpy()
    except ValueError as e:
        raise DataError(path, f"non-integer dimension index: {e}") from e
    ids, first = np.unique(img, return_index=True)
    ids = ids[np.argsort(first)]
    pos = {i: k for k, i in enumerate(ids)}
    if len(frame) != len(ids) * dim or eid.min() < 0 or eid.max() >= dim:
        raise DataError(path, f"expected {dim} rows per image (d = 0..{dim - 1}); got {len(frame)} rows for {len(ids)} images")
    out = np.full((len(ids), dim), np.nan, dtype=np.float32)
    rows = np.fromiter((pos[i] for i in img), dtype=np.int64, count=len(img))
    out[rows, eid] = frame["val"].to_numpy(np.float32)
    if np.isnan(out).any():
        bad = ids[int(np.flatnonzero(np.isnan(out).any(axis=1))[0])]
        raise DataError(path, f"imgId {bad!r} lacks some dimensions or has NaN values")
    return [str(i) for i in ids], out


def main(argv=None):
    import pandas as pd

    from core.metric import l2_normalize

    ap = argparse.ArgumentParser(description="Write or check a submission.csv (imgId_eId,val).")
    sub = ap.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="check shape, ids, finite values and row norms")
    chk.add_argument("submission")
    wr = sub.add_parser("write", help="write predictions (.npy, N x 384) as a submission, rows L2-normalised")
    wr.add_argument("--pred", required=True, help="float array (N, 384), e.g. a run's test.npy")
    wr.add_argument("--ids", required=True, help="CSV with column imgId, row order of --pred")
    wr.add_argument("--out", default="work/submission.csv")
    args = ap.parse_args(argv)
    try:
        if args.command == "write":
            ids = pd.read_csv(args.ids, dtype={"imgId": str})["imgId"].tolist()
            pred = np.load(args.pred)
            if pred.shape != (len(ids), EMBEDDING_DIM):
                raise DataError(args.pred, f"shape {pred.shape} does not match {len(ids)} ids in {args.ids}")
            write_submission(args.out, ids, l2_normalize(pred))
            print(f"wrote {args.out}: {len(ids)} images")
            return 0
        ids, emb = read_submission(args.submission)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    norms = np.linalg.norm(emb, axis=1)
    print(f"{args.submission}: {len(ids)} images x {emb.shape[1]} dims; row norms {norms.min():.6f}..{norms.max():.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
