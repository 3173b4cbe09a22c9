"""prompts.csv as people really write it: every odd file is read right or refused with the file, row and fix."""
import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.dataset import load_dataset, load_images, main, read_prompts
from core.errors import DataError


def write(tmp_path, data, name="prompts.csv"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def make_images(root, ids):
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(root / "images" / f"{i}.png")


@pytest.mark.parametrize("text,match", [
    ("", r"empty file"),
    ("\n\n  \n", r"missing column|empty file"),
    ("imgId,prompt\n", r"no data rows"),
    ("id,text\na,b\n", r"missing column\(s\) \['imgId', 'prompt'\]; found \['id', 'text'\]"),
    ("imgId,prompt\na1,ok\n,no id\n", r"empty imgId on data row\(s\) \[2\]"),
    ("imgId,prompt\na1,x\nb2,  \n", r"1 empty prompt\(s\), e.g. imgId \['b2'\] \(data row\(s\) \[2\]\)"),
    ("imgId,prompt\na1,x\nb2\n", r"1 empty prompt.*'b2'"),
    ("imgId,prompt\na1,x\na1,y\n", r"1 duplicate imgId\(s\), e.g. \['a1'\]"),
    ("imgId,prompt\nabc.png,a cat\n",
     r"row 1: imgId 'abc.png' ends in the file extension \.png; ids are file stems: write 'abc'"),
    ("imgId,prompt\nok,x\nA.JPG,y\n", r"row 2: imgId 'A.JPG' ends in the file extension \.JPG"),
    ("imgId,prompt\nmy image,x\n", r"row 1: imgId 'my image' is not a file stem"),
    ("imgId,prompt\n../etc,x\nb/c,y\n", r"row 1: imgId '\.\./etc' is not a file stem.*\(1 more invalid imgIds\)"),
    ("imgId,prompt\na1,a dog, a cat\n", r"data row 1: 3 fields, the header has 2.*must be quoted"),
    ("imgId,prompt\na1,\"unterminated\n", r"cannot be parsed as CSV"),
    ("imgId,imgId,prompt\na,b,c\n", r"duplicate column name\(s\) \['imgId'\]"),
])
def test_bad_prompts_csv_is_a_clear_error(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=r"prompts\.csv: " + match):
        read_prompts(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"prompts\.csv: file not found \(a training set needs"):
        read_prompts(tmp_path / "prompts.csv")


def test_quoted_commas_quotes_newlines_round_trip(tmp_path):
    prompts = ['a cat, a dog', 'the "best" photo', 'two\nlines', 'crlf\r\nline',
               ' leading and trailing ', 'ünïcödé ✓ 猫']
    ids = [f"id{i}" for i in range(len(prompts))]
    path = tmp_path / "prompts.csv"
    pd.DataFrame({"imgId": ids, "prompt": prompts}).to_csv(path, index=False)
    frame = read_prompts(path)
    assert frame["imgId"].tolist() == ids and frame["prompt"].tolist() == prompts


def test_crlf_line_ends_and_padded_ids(tmp_path):
    frame = read_prompts(write(tmp_path, "imgId,prompt\r\n a1 ,x\r\nb2,y\r\n"))
    assert frame["imgId"].tolist() == ["a1", "b2"] and frame["prompt"].tolist() == ["x", "y"]


def test_utf8_bom_is_read(tmp_path):
    frame = read_prompts(write(tmp_path, b"\xef\xbb\xbfimgId,prompt\na1,caf\xc3\xa9\n"))
    assert frame.columns.tolist() == ["imgId", "prompt"] and frame["prompt"].tolist() == ["café"]


def test_non_utf8_bytes_name_the_row_and_the_fix(tmp_path):
    path = write(tmp_path, b"imgId,prompt\na1,fine\nb2,\"two\nlines\"\nc3,caf\xe9 au lait\n")
    with pytest.raises(DataError, match=r"prompts\.csv: data row 3, line 5, byte \d+ \(imgId 'c3'\): bytes "
                                        r"b'\\xe9' are not valid utf-8.*encoding='latin-1'"):
        read_prompts(path)
    assert read_prompts(path, encoding="latin-1")["prompt"].tolist()[-1] == "café au lait"
    with pytest.raises(DataError, match="unknown encoding 'nope'"):
        read_prompts(path, encoding="nope")


def test_utf16_file_gets_its_own_hint(tmp_path):
    path = write(tmp_path, "imgId,prompt\na1,x\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        read_prompts(path)
    assert read_prompts(path, encoding="utf-16")["imgId"].tolist() == ["a1"]


def test_extra_columns_are_kept_with_their_types(tmp_path):
    frame = read_prompts(write(tmp_path, "imgId,prompt,source,seed,note\na1,x,sd2,7,\nb2,y,mj,8,hi\n"))
    assert frame.columns.tolist() == ["imgId", "prompt", "source", "seed", "note"]
    assert frame["seed"].tolist() == [7, 8] and frame["source"].tolist() == ["sd2", "mj"]
    assert frame["note"].tolist() == ["", "hi"]


def test_ids_without_an_image_are_listed(tmp_path):
    make_images(tmp_path, ["a1"])
    write(tmp_path, "imgId,prompt\na1,x\nb2,y\nc3,z\n")
    with pytest.raises(DataError, match=r"b2\.png: image file not found for imgId 'b2' \(2 of 3 ids in .* have no "
                                        r"image: \['b2', 'c3'\]\)"):
        load_dataset(tmp_path)


def test_images_without_an_id_are_a_warning_and_left_out(tmp_path, caplog):
    make_images(tmp_path, ["a1", "b2", "zz9", "late0"])
    write(tmp_path, "imgId,prompt\na1,x\nb2,y\n")
    with caplog.at_level(logging.WARNING):
        frame = load_dataset(tmp_path)
    assert frame["imgId"].tolist() == ["a1", "b2"]
    assert "2 image(s) have no row in prompts.csv" in caplog.text and "['late0', 'zz9']" in caplog.text


def test_other_files_in_the_image_folder_are_skipped_with_a_warning(tmp_path, caplog):
    make_images(tmp_path, ["a1"])
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    (tmp_path / "images" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING):
        frame = load_images(tmp_path)
    assert frame["imgId"].tolist() == ["a1"] and "notes.txt" in caplog.text


def test_test_folder_file_stems_follow_the_id_rule(tmp_path):
    make_images(tmp_path, ["ok1"])
    Image.new("RGB", (2, 2)).save(tmp_path / "images" / "bad name.png")
    with pytest.raises(DataError, match=r"bad name\.png: imgId 'bad name' is not a file stem"):
        load_images(tmp_path)
    with pytest.raises(DataError, match=r"bad name\.png: imgId 'bad name'"):
        load_images(tmp_path / "images")  # a bare folder of images too


def test_cli_takes_an_encoding_and_errors_in_one_line(tmp_path, capsys):
    make_images(tmp_path, ["a1"])
    write(tmp_path, b"imgId,prompt\na1,caf\xe9\n")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "data row 1" in err
    assert main([str(tmp_path), "--encoding", "latin-1"]) == 0
    assert "1 images (train)" in capsys.readouterr().out
