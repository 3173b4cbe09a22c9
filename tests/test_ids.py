"""core.ids.read_id_table: the one reader of every imgId table, and the readers that go through it."""
import numpy as np
import pandas as pd
import pytest

from core import EMBEDDING_DIM
from core.dataset import read_bad_images, write_bad_images
from core.errors import DataError
from core.folds import load_folds, load_groups, save_folds, save_groups
from core.ids import read_id_table, read_ids
from core.io import save_csv, save_npy, write_json
from core.submission import main as submission_main
from core.targets import IDS_FILE, META_FILE, TARGETS_FILE, load_targets

NA_LIKE = ["NA", "null", "nan", "None", "NULL", "NaN", "b"]


def _ids_file(path, ids, column="imgId"):
    save_csv(path, pd.DataFrame({column: ids}))
    return path


def test_na_like_ids_are_ids_in_every_reader(tmp_path):
    """pandas reads NA / null / nan / None / NULL / NaN as missing values; every id table keeps them as ids."""
    ids = NA_LIKE
    save_folds(tmp_path / "folds.csv", ids, np.arange(len(ids)) % 2, {"k": 2})
    save_groups(tmp_path / "groups.csv", ids, np.arange(len(ids)))
    assert load_folds(tmp_path / "folds.csv", ids).tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert load_groups(tmp_path / "folds.csv", ids).tolist() == list(range(len(ids)))
    assert read_ids(_ids_file(tmp_path / "oof_ids.csv", ids)) == ids
    targets = tmp_path / "targets"
    _ids_file(targets / IDS_FILE, ids)
    save_npy(targets / TARGETS_FILE, np.ones((len(ids), EMBEDDING_DIM), dtype=np.float32))
    write_json(targets / META_FILE, {"key": "k"})
    assert load_targets(targets)[0] == ids
    write_bad_images(tmp_path / "bad_images.csv", [(f"/d/images/{i}.png", "truncated") for i in ids])
    assert read_bad_images(tmp_path / "bad_images.csv")["imgId"].tolist() == ids


def test_submission_write_keeps_na_like_ids(tmp_path, capsys):
    ids = NA_LIKE
    save_npy(tmp_path / "pred.npy", np.ones((len(ids), EMBEDDING_DIM), dtype=np.float32))
    _ids_file(tmp_path / "ids.csv", ids)
    assert submission_main(["write", "--pred", str(tmp_path / "pred.npy"), "--ids", str(tmp_path / "ids.csv"),
                            "--out", str(tmp_path / "sub.csv")]) == 0
    assert pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)["imgId_eId"].iloc[0] == "NA_0"


@pytest.mark.parametrize("text, message", [
    ("imgId\na\nb\nc\nb\n", r"dup\.csv: duplicate imgIds: 'b' on rows 2 and 4"),
    ("imgId\nNA\nx\nNA\n", r"dup\.csv: duplicate imgIds: 'NA' on rows 1 and 3"),
    ("imgId\nok\nmy image\n", r"dup\.csv: row 2: imgId 'my image' is not a file stem"),
    ("imgId\nok\na1.png\n", r"dup\.csv: row 2: imgId 'a1\.png' ends in the file extension \.png"),
    ("imgId\nok\n\n", None),  # a blank line is no row
    ("imgId,fold\nok,1\n,0\n", r"dup\.csv: row 2: imgId '' is not a file stem"),
    ("id\nx\n", r"dup\.csv: missing column\(s\) \['imgId'\]; found \['id'\]"),
    ("", r"dup\.csv: empty file"),
])
def test_bad_tables_are_one_error_naming_the_file_and_row(tmp_path, text, message):
    path = tmp_path / "dup.csv"
    path.write_text(text)
    if message is None:
        assert read_ids(path) == ["ok"]
        return
    with pytest.raises(DataError, match=message):
        read_id_table(path)


def test_missing_file_and_columns_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_id_table(tmp_path / "nope.csv")
    _ids_file(tmp_path / "t.csv", ["a"])
    with pytest.raises(DataError, match=r"t\.csv: missing column\(s\) \['fold'\]"):
        read_id_table(tmp_path / "t.csv", ("imgId", "fold"))


def test_duplicates_allowed_when_asked_and_every_column_is_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("imgId,fold\na,007\na,NA\n")
    frame = read_id_table(path, ("imgId", "fold"), unique=False)
    assert frame["imgId"].tolist() == ["a", "a"] and frame["fold"].tolist() == ["007", "NA"]


def test_repeated_id_in_a_folds_or_targets_file_is_refused(tmp_path):
    save_folds(tmp_path / "folds.csv", ["a", "b", "a"], [0, 1, 0], {"k": 2})
    with pytest.raises(DataError, match=r"folds\.csv: duplicate imgIds: 'a' on rows 1 and 3"):
        load_folds(tmp_path / "folds.csv", ["a", "b"])
    targets = tmp_path / "targets"
    _ids_file(targets / IDS_FILE, ["a", "a"])
    save_npy(targets / TARGETS_FILE, np.ones((2, EMBEDDING_DIM), dtype=np.float32))
    write_json(targets / META_FILE, {"key": "k"})
    with pytest.raises(DataError,
                       match=r"ids\.csv: duplicate imgIds: 'a' on rows 1 and 2; rerun `python -m core\.targets`"):
        load_targets(targets)


def test_a_fold_that_is_no_integer_names_its_row(tmp_path):
    (tmp_path / "folds.csv").write_text("imgId,fold\na,0\nb,x\n")
    with pytest.raises(DataError, match=r"folds\.csv: row 2: fold 'x' is not an integer"):
        load_folds(tmp_path / "folds.csv", ["a", "b"])
