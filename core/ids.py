"""imgIds: the one rule every reader and writer applies, and the one reader of imgId tables.

An imgId is a file stem of [A-Za-z0-9_-] characters (Kaggle's are hex). Every CSV keyed by imgId
that the stages pass between them (folds.csv, groups.csv, a run's oof_ids.csv / test_ids.csv, a
targets folder's ids.csv, bad_images.csv, the ensemble's oof_blend_ids.csv, the ids given to
`core.submission write`) is read by `read_id_table`: ids stay strings ("NA", "null" and "nan" are
ids, not missing values), each follows the rule, a duplicate is named with its rows.
"""
import re
from pathlib import Path

import pandas as pd

from core.errors import DataError
from core.images import IMAGE_EXTENSIONS

ID_COLUMN = "imgId"
IMG_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


def check_img_id(img_id, path, row=None):
    """Return `img_id` if it is a file stem of [A-Za-z0-9_-] characters, else raise a DataError naming `path`.

    `row` (1-based data row) is added to the message when given."""
    s = str(img_id)
    if IMG_ID_PATTERN.fullmatch(s):
        return s
    where = f"row {row}: " if row is not None else ""
    stem, dot, ext = s.rpartition(".")
    if dot and "." + ext.lower() in IMAGE_EXTENSIONS and IMG_ID_PATTERN.fullmatch(stem):
        raise DataError(path,
                        f"{where}imgId {s!r} ends in the file extension .{ext}; ids are file stems: write {stem!r}")
    raise DataError(path, f"{where}imgId {s!r} is not a file stem of [A-Za-z0-9_-] characters")


def read_id_table(path, columns=(ID_COLUMN,), unique=True):
    """A CSV keyed by imgId as a DataFrame, every column as text (in file order).

    `columns`: those the file must have (imgId among them). Each id must follow the id rule; with
    `unique`, an id listed twice is refused naming both rows (1-based data rows). A missing file,
    one pandas cannot parse or one without a column: a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # an imgId "NA" is an id
    except pd.errors.EmptyDataError:
        raise DataError(path, f"empty file (expected the header {','.join(columns)})") from None
    except Exception as e:  # pandas raises several types for unparsable files
        raise DataError(path, f"cannot be parsed as CSV: {e}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; found {list(frame.columns)}")
    ids = frame[ID_COLUMN]
    invalid = ~ids.str.fullmatch(IMG_ID_PATTERN.pattern)
    if invalid.any():
        row = int(invalid.to_numpy().argmax())
        check_img_id(ids.iat[row], path, row=row + 1)
    if unique:
        twice = ids.duplicated()
        if twice.any():
            second = int(twice.to_numpy().argmax())
            first = int((ids == ids.iat[second]).to_numpy().argmax())
            raise DataError(path, f"duplicate imgIds: {ids.iat[second]!r} on rows {first + 1} and {second + 1}")
    return frame


def read_ids(path):
    """The imgId column of a one-column id file (a run's oof_ids.csv, a targets folder's ids.csv ...), as a list."""
    return read_id_table(path)[ID_COLUMN].tolist()
