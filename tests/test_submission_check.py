"""`python -m core.submission check`: every way a submission.csv can be wrong gets its own clear error."""
import numpy as np
import pytest
from PIL import Image

from core.errors import DataError
from core.submission import HEADER, check_submission, main, read_submission, write_submission

DIM = 384


@pytest.fixture()
def good(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = ["a1b2c3", "ff00aa", "0badc0de"]
    path = write_submission(tmp_path / "submission.csv", ids, emb)
    return path, ids, emb


def lines_of(path):
    return path.read_text().splitlines()


def rewrite(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_good_submission_passes_both(good, tmp_path):
    path, ids, emb = good
    got_ids, got = check_submission(path)
    assert got_ids == ids and np.array_equal(got, emb)
    (tmp_path / "images").mkdir()
    for i in ids:
        Image.new("RGB", (2, 2)).save(tmp_path / "images" / f"{i}.png")
    check_submission(path, images=tmp_path)


def mutate(lines, kind):
    rows = lines[1:]
    if kind == "missing_row":
        del rows[5]
    elif kind == "missing_image":
        rows = rows[:DIM * 2]
    elif kind == "duplicated_row":
        rows.insert(10, rows[3])
    elif kind == "nan":
        rows[7] = rows[7].split(",")[0] + ",nan"
    elif kind == "inf":
        rows[7] = rows[7].split(",")[0] + ",-inf"
    elif kind == "empty_value":
        rows[7] = rows[7].split(",")[0] + ","
    elif kind == "text_value":
        rows[7] = rows[7].split(",")[0] + ",abc"
    elif kind == "huge_value":
        rows[7] = rows[7].split(",")[0] + ",1e300"
    elif kind == "dim_out_of_range":
        rows[DIM - 1] = rows[DIM - 1].replace(f"_{DIM - 1},", f"_{DIM},")
    elif kind == "leading_zero":
        rows[3] = rows[3].replace("_3,", "_03,")
    elif kind == "no_underscore":
        rows[0] = rows[0].replace("_0,", "0,")
    elif kind == "bad_id":
        rows[0] = rows[0].replace("a1b2c3_0", "a1b2c3.png_0")
    elif kind == "bad_header":
        return ["id,value"] + rows
    elif kind == "extra_column":
        return [lines[0] + ",x"] + [r + ",1" for r in rows]
    elif kind == "header_only":
        return lines[:1]
    return lines[:1] + rows


READ_ERRORS = {
    "missing_row": r"imgId 'a1b2c3' lacks 1 of its 384 rows, e.g. \['a1b2c3_5'\]",
    "missing_image": r"imgId '0badc0de' lacks 384 of its 384 rows|expected 384 rows",
    "duplicated_row": r"line 12: duplicate row a1b2c3_3 \(first on line 5\)",
    "nan": r"line 9: the value of 'a1b2c3_7' is missing or not finite",
    "inf": r"line 9: the value of 'a1b2c3_7' is missing or not finite",
    "empty_value": r"line 9: the value of 'a1b2c3_7' is missing or not finite",
    "text_value": r"line 9: value 'abc' of 'a1b2c3_7' is not a number",
    "huge_value": r"line 9: the value of 'a1b2c3_7' is missing or not finite \(NaN, inf or beyond float32",
    "dim_out_of_range": r"line 385: 'a1b2c3_384': dimension 384 out of range 0\.\.383",
    "leading_zero": r"line 5: 'a1b2c3_03' is not <imgId>_<d>",
    "no_underscore": r"line 2: 'a1b2c30' is not <imgId>_<d>",
    "bad_id": r"line 2: 'a1b2c3\.png_0' is not <imgId>_<d>",
    "bad_header": r"expected columns \['imgId_eId', 'val'\], found \['id', 'value'\]",
    "extra_column": r"expected columns \['imgId_eId', 'val'\]",
    "header_only": r"no rows \(only the header\)",
}


@pytest.mark.parametrize("kind", sorted(READ_ERRORS))
def test_malformed_rows_are_refused_by_reader_and_check(good, kind):
    path, _, _ = good
    # a missing image is a missing id: the reader accepts the two complete images, `check` with the folder does not
    if kind == "missing_image":
        rewrite(path, mutate(lines_of(path), kind))
        assert len(read_submission(path)[0]) == 2
        return
    rewrite(path, mutate(lines_of(path), kind))
    for fn in (read_submission, check_submission):
        with pytest.raises(DataError, match=r"submission\.csv: " + READ_ERRORS[kind]):
            fn(path)


def test_out_of_order_rows_are_refused_by_check_only(good):
    path, ids, emb = good
    lines = lines_of(path)
    swapped = lines[:1] + [lines[2], lines[1]] + lines[3:]
    rewrite(path, swapped)
    assert np.array_equal(read_submission(path)[1], emb)  # the reader keys rows by id: order-free
    with pytest.raises(DataError, match=r"line 2: row a1b2c3_1 out of order; expected a1b2c3_0"):
        check_submission(path)
    interleaved = lines[:1] + lines[1 + DIM:1 + DIM + 5] + lines[1:1 + DIM] + lines[1 + DIM + 5:]
    rewrite(path, interleaved)
    with pytest.raises(DataError, match=r"out of order; expected ff00aa_5"):
        check_submission(path)


def test_non_unit_rows_are_refused_by_check(tmp_path):
    emb = np.ones((2, DIM), np.float32) / np.sqrt(DIM)
    emb[1] *= 2
    path = write_submission(tmp_path / "s.csv", ["u1", "u2"], emb)
    with pytest.raises(DataError, match=r"imgId 'u2': row norm 2, expected 1"):
        check_submission(path)


def test_ids_must_match_the_images_folder(good, tmp_path):
    path, ids, _ = good
    (tmp_path / "imgs").mkdir()
    for i in ids[:2] + ["extra1"]:
        Image.new("RGB", (2, 2)).save(tmp_path / "imgs" / f"{i}.png")
    with pytest.raises(DataError, match=r"imgIds differ from the images in .*imgs: 1 image\(s\) have no rows "
                                        r"\(e.g. \['extra1'\]\), 1 imgId\(s\) have no image \(e.g. \['0badc0de'\]\)"):
        check_submission(path, images=tmp_path / "imgs")


@pytest.mark.parametrize("data,match", [
    (b"", r"empty file"),
    (b"\xff\xfe\x00\x01garbage", r"not UTF-8 text|cannot be parsed"),
    (HEADER.encode() + b'"a_0,1\n', r"cannot be parsed as CSV|is not <imgId>_<d>"),
])
def test_unparsable_files(tmp_path, data, match):
    path = tmp_path / "s.csv"
    path.write_bytes(data)
    with pytest.raises(DataError, match=match):
        read_submission(path)


def test_cli_check_exit_codes(good, tmp_path, capsys):
    path, ids, _ = good
    assert main(["check", str(path)]) == 0
    assert "OK, 3 images" in capsys.readouterr().out
    rewrite(path, mutate(lines_of(path), "duplicated_row"))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: line 12: duplicate row") and err.count("\n") == 1
    assert main(["check", str(tmp_path / "nope.csv")]) == 2
    assert "submission file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse usage errors keep argparse's exit 2
        main(["check"])
    assert e.value.code == 2


def test_cli_write_refuses_bad_inputs(tmp_path, capsys):
    ids = tmp_path / "ids.csv"
    ids.write_text("imgId\na\nb\n")
    pred = tmp_path / "p.npy"
    np.save(pred, np.ones((2, DIM), np.float32))
    assert main(["write", "--pred", str(pred), "--ids", str(ids), "--out", str(tmp_path / "s.csv")]) == 0
    np.save(pred, np.full((2, DIM), np.nan, np.float32))
    assert main(["write", "--pred", str(pred), "--ids", str(ids), "--out", str(tmp_path / "s.csv")]) == 2
    assert "NaN or inf" in capsys.readouterr().err
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert main(["write", "--pred", str(tmp_path / "bad.npy"), "--ids", str(ids),
                 "--out", str(tmp_path / "s.csv")]) == 2
    assert "cannot be read as a .npy array" in capsys.readouterr().err
    assert main(["write", "--pred", str(tmp_path / "none.npy"), "--ids", str(ids)]) == 2
    assert "none.npy: file not found" in capsys.readouterr().err
