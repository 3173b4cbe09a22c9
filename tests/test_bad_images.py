"""Odd image files: every readable one decodes to the right RGB pixels; unreadable ones are named, all at once."""
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.dataset import (
    BAD_IMAGES_FILE,
    DECODE_VERSION,
    check_images,
    load_dataset,
    load_images,
    open_image,
    read_bad_images,
    scan_images,
    write_bad_images,
)
from core.errors import DataError
from core.images import MAX_IMAGE_PIXELS, image_problem

# A 4-colour test card: orientation and channel mix-ups change it visibly.
CARD = np.zeros((24, 32, 3), np.uint8)
CARD[:12, :16] = (250, 10, 10)
CARD[:12, 16:] = (10, 250, 10)
CARD[12:, :16] = (10, 10, 250)
CARD[12:, 16:] = (240, 240, 20)


def png_bytes(im, **kw):
    buf = io.BytesIO()
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def rgb_png_bytes(width, height, bit_depth, idat):
    """An RGB PNG built chunk by chunk, for the files PIL will not write (48-bit, a lying header)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def decoded(tmp_path, data, name="x.png"):
    path = tmp_path / name
    path.write_bytes(data)
    return np.asarray(open_image(path))


def test_cache_key_follows_decode_version_size_interpolation_and_mtime(tmp_path, monkeypatch):
    """The image cache's key changes (and the cache is decoded again) when the decode rules' version, the size,
    the interpolation or a file's mtime changes; with none of them changed it is reused."""
    import models.image_cache as image_cache

    assert isinstance(DECODE_VERSION, int) and image_cache.DECODE_VERSION == DECODE_VERSION
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png_bytes(Image.fromarray(np.roll(CARD, i, axis=1))))
    decoded = []
    real_job = image_cache._decode_job
    monkeypatch.setattr(image_cache, "_decode_job", lambda job: decoded.append(job[1]) or real_job(job))

    def build(size=16, interpolation="bicubic"):
        """(cache key, number of images decoded by this call)."""
        before = len(decoded)
        image_cache.build_image_cache(paths, size, tmp_path / "cache", interpolation, workers=1, progress=False)
        return image_cache.cache_key(paths, size, interpolation), len(decoded) - before

    key, n = build()
    assert n == 2 and build() == (key, 0)  # same inputs: the cache is read, nothing decoded
    keys = {key}
    monkeypatch.setattr(image_cache, "DECODE_VERSION", DECODE_VERSION + 1)
    for change in ({}, {"size": 20}, {"interpolation": "nearest"}):
        key, n = build(**change)
        assert n == 2 and key not in keys, change
        keys.add(key)
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes, newer mtime
    key, n = build()
    assert n == 2 and key not in keys
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 5


@pytest.mark.parametrize("fmt,tol", [("JPEG", 3), ("WEBP", 0), ("GIF", 0), ("BMP", 0), ("TIFF", 0)])
def test_other_formats_under_a_png_name_decode(tmp_path, fmt, tol):
    kw = {"quality": 98, "subsampling": 0} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    got = decoded(tmp_path, png_bytes(Image.fromarray(CARD), format=fmt, **kw))
    assert got.shape == CARD.shape
    assert np.abs(got.astype(int) - CARD).mean() <= tol  # JPEG: lossy at the colour edges


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.fromarray(CARD), Image.fromarray(255 - CARD)]
    data = png_bytes(frames[0], format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert np.array_equal(decoded(tmp_path, data), CARD)


def test_upper_case_extension_is_an_image(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "abc.PNG").write_bytes(png_bytes(Image.fromarray(CARD)))
    frame = load_images(tmp_path)
    assert frame["imgId"].tolist() == ["abc"]
    assert np.array_equal(np.asarray(open_image(frame["path"][0])), CARD)


def test_grayscale_and_one_bit(tmp_path):
    g = (np.arange(24 * 32).reshape(24, 32) % 256).astype(np.uint8)
    got = decoded(tmp_path, png_bytes(Image.fromarray(g, "L")))
    assert np.array_equal(got, np.repeat(g[..., None], 3, axis=2))
    bits = (g > 127) ^ (np.arange(32) % 3 == 0)  # both values in every row and column
    b = decoded(tmp_path, png_bytes(Image.fromarray(bits).convert("1")))
    assert np.array_equal(b, np.repeat(np.where(bits, 255, 0).astype(np.uint8)[..., None], 3, axis=2))


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
    got = decoded(tmp_path, png_bytes(Image.fromarray(a)))
    expected = np.round(a / 257.0).astype(np.uint8)
    assert np.abs(got[..., 0].astype(int) - expected).max() <= 1
    assert got[..., 0].min() == 0 and got[..., 0].max() == 255 and len(np.unique(got)) > 200  # not a white sheet


def test_sixteen_bit_rgb_keeps_the_high_byte(tmp_path):
    # PIL cannot write 48-bit PNGs: build one by hand. Each channel holds the card's value c in its high
    # byte and 255 - c in its low byte (never equal), so a byte-swapped decode gives another image.
    rows = b"".join(b"\x00" + b"".join(struct.pack(">HHH", *(int(c) * 256 + 255 - int(c) for c in px)) for px in row)
                    for row in CARD)

    data = rgb_png_bytes(32, 24, 16, zlib.compress(rows))
    assert np.array_equal(decoded(tmp_path, data), CARD)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.dstack([CARD, np.full(CARD.shape[:2], 255, np.uint8)])
    rgba[:, :8, 3] = 0  # fully transparent (hidden colour: the card's)
    rgba[:, 8:16, 3] = 128
    got = decoded(tmp_path, png_bytes(Image.fromarray(rgba, "RGBA"))).astype(int)
    assert (got[:, :8] == 255).all()
    half = CARD[:, 8:16].astype(int) * 128 / 255 + 255 * 127 / 255
    assert np.abs(got[:, 8:16] - half).max() <= 1
    assert np.array_equal(got[:, 16:], CARD[:, 16:])
    la = np.dstack([CARD[..., 0], np.zeros(CARD.shape[:2], np.uint8)])
    assert (decoded(tmp_path, png_bytes(Image.fromarray(la, "LA"))) == 255).all()


def test_palette_with_transparency(tmp_path):
    p = Image.fromarray(CARD).quantize(4)
    idx = np.asarray(p)[0, 0]
    got = decoded(tmp_path, png_bytes(p, transparency=int(idx)))
    assert (got[:12, :16] == 255).all()  # the transparent colour's quarter is white
    assert np.abs(got[12:, 16:].astype(int) - CARD[12:, 16:]).max() <= 8
    opaque = decoded(tmp_path, png_bytes(Image.fromarray(CARD).quantize(4)))
    assert np.abs(opaque.astype(int) - CARD).max() <= 8


def test_cmyk(tmp_path):
    cmyk = Image.fromarray(CARD).convert("CMYK")
    for fmt in ("JPEG", "TIFF"):
        got = decoded(tmp_path, png_bytes(cmyk, format=fmt, **({"quality": 98} if fmt == "JPEG" else {})))
        assert got.shape == CARD.shape and np.abs(got.astype(int) - CARD).max() <= 16


def test_exif_orientation_is_applied(tmp_path):
    upright = Image.fromarray(CARD)
    # what a camera stores for orientation 6 ("rotate 90 CW to view"): the image turned 90 CCW
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    for fmt in ("JPEG", "PNG"):
        kw = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
        got = decoded(tmp_path, png_bytes(stored, format=fmt, exif=exif, **kw))
        assert got.shape == CARD.shape
        assert np.abs(got.astype(int) - CARD).max() <= (10 if fmt == "JPEG" else 0)


def test_tiny_and_large_images(tmp_path):
    assert decoded(tmp_path, png_bytes(Image.new("RGB", (1, 1), (1, 2, 3)))).tolist() == [[[1, 2, 3]]]
    big = Image.new("RGB", (6000, 4000), (9, 8, 7))
    got = decoded(tmp_path, png_bytes(big, compress_level=1))
    assert got.shape == (4000, 6000, 3) and (got[::500, ::500] == (9, 8, 7)).all()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets core.images' filter
def test_header_above_the_pixel_limit_is_refused(tmp_path):
    # a 20000 x 20000 header (400 MP) with hardly any pixel data: refused before anything is allocated
    data = rgb_png_bytes(20000, 20000, 8, zlib.compress(b"\0" * 100))
    with pytest.raises(DataError, match=r"huge\.png: .*pixels is above .*MAX_IMAGE_PIXELS"):
        decoded(tmp_path, data, "huge.png")
    assert 20000 * 20000 > MAX_IMAGE_PIXELS >= 6000 * 4000


BAD = {
    "zero": (b"", "empty file"),
    "text": (b"hello, this is not an image\n", "holds text"),
    "truncated": (None, "truncated|Truncated|broken|ended"),
    "garbage": (bytes(range(256)) * 4, "no image format"),
}


def bad_bytes(kind):
    data, _ = BAD[kind]
    if data is None:
        full = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)))
        data = full[: len(full) // 2]
    return data


@pytest.mark.parametrize("kind", sorted(BAD))
def test_unreadable_file_is_a_data_error_naming_file_and_reason(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    path.write_bytes(bad_bytes(kind))
    with pytest.raises(DataError, match=rf"{kind}\.png: cannot be decoded as an image: .*({BAD[kind][1]})"):
        open_image(path)
    for decode in (False, True):  # the fast scan finds it as well as a full decode
        assert image_problem(path, decode=decode) is not None


def make_set(root, n_good=5, bad=("zero", "text", "truncated")):
    (root / "images").mkdir(parents=True)
    ids = []
    for i in range(n_good):
        Image.fromarray(np.full((300, 300, 3), 20 * i, np.uint8)).save(root / "images" / f"good{i}.png")
        ids.append(f"good{i}")
    for kind in bad:
        (root / "images" / f"{kind}.png").write_bytes(bad_bytes(kind))
        ids.append(kind)
    (root / "prompts.csv").write_text("imgId,prompt\n" + "".join(f"{i},prompt {i}\n" for i in ids))
    return root


def test_scan_reports_every_unreadable_image_at_once(tmp_path):
    frame = load_dataset(make_set(tmp_path))
    for decode in (False, True):
        bad = scan_images(frame["path"], progress=False, decode=decode)
        assert sorted(p.split("/")[-1] for p, _ in bad) == ["text.png", "truncated.png", "zero.png"]
    with pytest.raises(DataError, match=r"images: 3 unreadable images: ") as e:
        check_images(frame["path"], progress=False)
    assert all(f"{kind}.png: cannot be decoded" in str(e.value) for kind in ("text", "truncated", "zero"))


def test_bad_images_csv_round_trip_and_skipping(tmp_path):
    data = make_set(tmp_path / "set")
    frame = load_dataset(data)
    bad = scan_images(frame["path"], progress=False)
    out = write_bad_images(tmp_path / "work" / BAD_IMAGES_FILE, bad)
    back = read_bad_images(out)
    assert (back.columns.tolist() == ["imgId", "path", "reason"]
            and sorted(back["imgId"]) == ["text", "truncated", "zero"])
    kept = load_dataset(data, skip_ids=back["imgId"])
    assert kept["imgId"].tolist() == [f"good{i}" for i in range(5)]
    assert scan_images(kept["path"], progress=False) == []
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_bad_images(tmp_path / "nope.csv")
    (tmp_path / "broken.csv").write_text("imgId,path\nx.png,a\n")
    with pytest.raises(DataError, match="missing column"):
        read_bad_images(tmp_path / "broken.csv")


def test_dataset_cli_lists_all_bad_images_and_writes_the_file(tmp_path, capsys):
    from core.dataset import main

    data = make_set(tmp_path / "set")
    assert main([str(data), "--scan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 1
    assert "3 unreadable images" in err[-1] and "Traceback" not in "\n".join(err)
    assert main([str(data), "--write-bad-images", str(tmp_path / BAD_IMAGES_FILE)]) == 0
    assert "3 unreadable of 8 images" in capsys.readouterr().out
    assert len(read_bad_images(tmp_path / BAD_IMAGES_FILE)) == 3


def test_checked_view_leaves_the_bad_images_out_of_every_stage(tmp_path, capsys):
    """`python -m core.dataset DATA --write-checked DIR` (run_all --skip-bad-images): a training set view
    without the unreadable images, read by every later stage like any dataset folder."""
    from core.dataset import main
    from pipeline.stages import Stage, fingerprint

    data = make_set(tmp_path / "set")
    view = tmp_path / "work" / "checked"
    for _ in range(2):  # idempotent: a rerun finds its own link
        assert main([str(data), "--write-checked", str(view)]) == 0
    out = capsys.readouterr().out
    assert "5 of 8 images readable; 3 left out" in out and "left out" in out and "zero.png" in out
    frame = load_dataset(view)
    assert frame["imgId"].tolist() == [f"good{i}" for i in range(5)]
    assert sorted(read_bad_images(view / BAD_IMAGES_FILE)["imgId"]) == ["text", "truncated", "zero"]
    assert scan_images(frame["path"], progress=False) == []
    # later stages fingerprint the view's images folder (a link): its files are seen through it, so a change
    # behind the link (new bytes; or only a newer mtime) reruns them, and no change reruns nothing
    def view_fingerprint():
        return fingerprint(Stage("x", ["x"], inputs=[view / "images"]))

    before = view_fingerprint()
    assert view_fingerprint() == before
    (data / "images" / "good0.png").write_bytes(png_bytes(Image.new("RGB", (3, 3))))
    changed = view_fingerprint()
    assert changed != before
    st = os.stat(data / "images" / "good1.png")
    os.utime(data / "images" / "good1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert view_fingerprint() not in (before, changed)


def test_rotated_copy_predicts_like_the_upright_image(tmp_path):
    """Through the model's own decode + resize (models.image_cache.decode_resized): the same pixels, so the
    same prediction, for an image stored sideways with its EXIF orientation and its upright copy."""
    from models.image_cache import decode_resized

    rng = np.random.default_rng(1)
    upright = Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 270 CW to view": stored turned 90 CW
    (tmp_path / "up.png").write_bytes(png_bytes(upright))
    (tmp_path / "side.png").write_bytes(png_bytes(upright.transpose(Image.Transpose.ROTATE_270), exif=exif))
    assert np.array_equal(decode_resized(tmp_path / "up.png", 32), decode_resized(tmp_path / "side.png", 32))
