"""Bad input gives a clear error naming the file."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.dataset import check_images, load_dataset, open_image, read_prompts
from core.errors import DataError


def make_set(root, ids=("a1", "b2", "c3"), prompts=None, extra=True):
    (root / "images").mkdir(parents=True)
    for i in ids:
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(root / "images" / f"{i}.png")
    prompts = prompts or [f"prompt {i}" for i in ids]
    lines = ["imgId,prompt,source" if extra else "imgId,prompt"]
    lines += [f"{i},{p},demo" if extra else f"{i},{p}" for i, p in zip(ids, prompts)]
    (root / "prompts.csv").write_text("\n".join(lines) + "\n")
    return root


def test_loads_train_with_extra_columns(tmp_path):
    frame = load_dataset(make_set(tmp_path))
    assert frame.columns.tolist() == ["imgId", "path", "prompt", "source"]
    assert frame["imgId"].tolist() == ["a1", "b2", "c3"]


def test_test_set_without_prompts(tmp_path):
    make_set(tmp_path)
    (tmp_path / "prompts.csv").unlink()
    frame = load_dataset(tmp_path)
    assert frame.columns.tolist() == ["imgId", "path"] and len(frame) == 3


def test_kaggle_sample_loads(kaggle_sample):
    frame = load_dataset(kaggle_sample)
    assert len(frame) == 7
    check_images(frame["path"], progress=False)


def test_missing_prompts_csv(tmp_path):
    make_set(tmp_path)
    (tmp_path / "prompts.csv").unlink()
    with pytest.raises(DataError, match=r"prompts\.csv: file not found"):
        load_dataset(tmp_path, require_prompts=True)


def test_missing_column(tmp_path):
    make_set(tmp_path)
    (tmp_path / "prompts.csv").write_text("imgId,text\na1,x\n")
    with pytest.raises(DataError, match=r"prompts\.csv: missing column.*prompt"):
        load_dataset(tmp_path)


def test_image_id_without_file(tmp_path):
    make_set(tmp_path)
    (tmp_path / "images" / "b2.png").unlink()
    with pytest.raises(DataError, match=r"b2\.png: image file not found for imgId 'b2'"):
        load_dataset(tmp_path)


def test_corrupt_image(tmp_path):
    make_set(tmp_path)
    (tmp_path / "images" / "c3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    frame = load_dataset(tmp_path)
    with pytest.raises(DataError, match=r"c3\.png: cannot be decoded"):
        check_images(frame["path"], progress=False)
    with pytest.raises(DataError, match=r"c3\.png"):
        open_image(tmp_path / "images" / "c3.png")


def test_empty_prompt(tmp_path):
    make_set(tmp_path, prompts=["x", " ", "z"])
    with pytest.raises(DataError, match=r"prompts\.csv: 1 empty prompt.*b2"):
        load_dataset(tmp_path)


def test_duplicate_ids(tmp_path):
    make_set(tmp_path)
    (tmp_path / "prompts.csv").write_text("imgId,prompt\na1,x\na1,y\n")
    with pytest.raises(DataError, match=r"prompts\.csv: 1 duplicate imgId.*a1"):
        read_prompts(tmp_path / "prompts.csv")


def test_an_id_with_several_image_files_uses_the_png(tmp_path, caplog):
    make_set(tmp_path)
    for name in ("a1.jpg", "b2.jpg", "b2.webp"):  # a1: .jpg beside the .png; b2 (no .png left): two others
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / name)
    (tmp_path / "images" / "b2.png").unlink()
    with caplog.at_level("WARNING", logger="core.dataset"):
        frame = load_dataset(tmp_path)
    assert [Path(p).name for p in frame["path"]] == ["a1.png", "b2.jpg", "c3.png"]  # the .png, else the first by name
    assert "2 id(s) have several image files (the .png is used, else the first by name): ['a1', 'b2']" in caplog.text


@pytest.mark.parametrize("text", [
    "imgId,prompt\r\na,x\r\nb,y", "imgId,prompt\ra,x\rb,y\r", "imgId,prompt\na,\"two\nlines\"\n\nb,\"cr\r\nin\rit\"\n",
    "imgId,prompt\na,line\u2028sep\x85nel\x0bvt\x0cff\x1cfs\nb,y\n", "", "\n", "\r\n\r\n", "a", "a\r", "\r\r\n\n"])
def test_prompts_lines_split_as_the_csv_module_reads_a_file(text):
    """read_prompts hands csv.reader one line at a time: lines end at \\r\\n, \\r or \\n only (as a file opened
    with newline="" gives them), not at the other line breaks str.splitlines knows."""
    import io

    from core.dataset import _lines

    assert list(_lines(text)) == list(io.StringIO(text, newline=""))
