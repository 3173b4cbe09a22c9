"""Decoding an image file to the RGB pixels every stage trains and predicts on, and scanning for bad files.

One decode for every source (image cache, streaming workers, shards, predict, the Kaggle notebook):
- the format is read from the bytes, not the name: a JPEG, WebP or GIF saved as `.png` decodes;
  a multi-frame file (animated GIF / WebP / APNG) gives its first frame
- EXIF orientation is applied (a phone photo stored sideways comes out upright)
- transparency (RGBA, LA, palette or colour-key transparency) is composited on white
- 16-bit greyscale is scaled to 8 bits (PIL's own conversion clips it to white), 16-bit RGB(A)
  keeps its high byte, CMYK / palette / 1-bit / greyscale become RGB
- images up to MAX_IMAGE_PIXELS decode; larger ones, and empty, truncated or non-image files,
  raise a DataError naming the file and the reason

DECODE_VERSION changes whenever these rules change the pixels of some file, so caches of decoded
pixels (models/image_cache.py) key on it and rebuild.
"""
import logging
import os
import warnings

import numpy as np

from core.errors import DataError

_log = logging.getLogger(__name__)

# The file extensions read as images (any case); the format itself is read from the bytes.
IMAGE_EXTENSIONS = (".png", ".webp", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff")
# 1: PIL's convert("RGB"). 2: EXIF orientation, alpha on white, 16-bit scaled, pixel limit.
DECODE_VERSION = 2
# Generous (a 16k x 16k image, 0.8 GB of RGB) but finite: a corrupt header claiming 10^12 pixels
# must not allocate them. PIL's own default (89 MP) would refuse 10k x 10k scans.
MAX_IMAGE_PIXELS = 1 << 28
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_PREFIX = "cannot be decoded as an image: "


def _pil():
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # PIL warns above this and refuses above twice it
        # above the limit open_image raises its own DataError: PIL's warning would only repeat it
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    return Image


def _name(src):
    return src if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "<image bytes>")


def to_rgb(im):
    """A loaded PIL image -> a new RGB image by the rules above (EXIF orientation included)."""
    Image = _pil()
    from PIL import ImageOps

    if im.getexif().get(0x0112, 1) not in (1, None):  # EXIF Orientation: 1 = upright
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in _SIXTEEN_BIT:  # 16-bit greyscale: 0..65535 -> 0..255, rounded
        a = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        g = ((a * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(np.repeat(g[..., None], 3, axis=2), "RGB")
    if mode == "F":  # float greyscale: 0..1 when it fits, else 0..255
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        a = a * 255 if a.size and a.max() <= 1.0 else a
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(g[..., None], 3, axis=2), "RGB")
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    return im.convert("RGB")  # a copy for RGB: the caller owns it after the file closes


def _check_size(im, src):
    w, h = im.size
    if w < 1 or h < 1:
        raise DataError(_name(src), f"{_PREFIX}size {w}x{h}")
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(_name(src), f"{_PREFIX}{w}x{h} = {w * h:,} pixels is above core.images.MAX_IMAGE_PIXELS "
                                    f"= {MAX_IMAGE_PIXELS:,} (a corrupt header, or downscale the file)")


def _unidentified(src):
    """Why PIL found no image format in `src` (a path): empty, text, or unknown bytes."""
    if not isinstance(src, (str, os.PathLike)):
        return "no image format recognised in the bytes"
    with open(src, "rb") as f:
        head = f.read(64)
    if not head:
        return "empty file (0 bytes)"
    try:
        text = head.decode("utf-8")
        if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
            return f"the file holds text, not an image (starts with {text[:24]!r})"
    except UnicodeDecodeError:
        pass
    return f"no image format recognised (starts with bytes {head[:8].hex(' ')})"


INTERPOLATION = ("bicubic", "bilinear", "nearest", "lanczos")  # names of PIL's resampling filters


def square_resize(im, size, interpolation="bicubic"):
    """Centre square crop (SD images are mostly square), then resize to (size, size); PIL in, PIL out.

    The one geometry every pixel path shares: the image cache, the streaming workers and shards."""
    w, h = im.size
    if w != h:
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if im.size != (size, size):
        im = im.resize((size, size), getattr(_pil().Resampling, interpolation.upper()), reducing_gap=3.0)
    return im


def open_image(src):
    """Decode an image (a path or a binary file object) to RGB; any failure is a DataError naming the file."""
    Image = _pil()
    try:
        with Image.open(src) as im:
            _check_size(im, src)
            im.load()
            return to_rgb(im)
    except DataError:
        raise
    except Exception as e:  # PIL raises many types for corrupt files
        raise _decode_error(src, e) from e


def _decode_error(src, e):
    """The DataError for an exception raised while opening or decoding `src`."""
    if isinstance(e, FileNotFoundError):
        return DataError(_name(src), "image file not found")
    if isinstance(e, _pil().UnidentifiedImageError):
        return DataError(_name(src), _PREFIX + _unidentified(src))
    return DataError(_name(src), f"{_PREFIX}{type(e).__name__}: {e}")


# A PNG's verify() checks every chunk's CRC up to IEND (truncation, bit rot) without inflating the
# pixels: 0.3 ms against 20 ms for a full decode of a 512-px SD image. Other formats' verify()
# checks little, so they (rare in these sets) and small images get the full decode.
_FULL_DECODE_PIXELS = 128 * 128


def image_problem(src, decode=False):
    """None if `src` is a readable image, else the reason (the DataError's message without the path).

    `decode=False`: PNGs are checked with PIL's verify (every chunk's CRC), everything else decoded."""
    Image = _pil()
    try:
        if not decode:
            with Image.open(src) as im:
                _check_size(im, src)
                cheap = im.format == "PNG" and im.size[0] * im.size[1] > _FULL_DECODE_PIXELS
                if cheap and getattr(im, "n_frames", 1) == 1:
                    im.verify()
                    return None
        open_image(src)
        return None
    except DataError as e:
        return e.problem
    except Exception as e:
        return _decode_error(src, e).problem


def scan_images(paths, progress=True, decode=False, workers=None):
    """Check every image once; return [(path, reason)] for ALL unreadable ones, in input order.

    Threads, not processes: PIL releases the GIL while it inflates and decodes."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    paths = [str(p) for p in paths]
    workers = workers or min(8, os.cpu_count() or 1)
    bad = []
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(paths), desc="scan images", unit="img",
                                                     disable=not progress) as bar:
        for path, reason in zip(paths, pool.map(lambda p: image_problem(p, decode), paths)):
            if reason is not None:
                bad.append((path, reason))
            bar.update()
    if bad:
        _log.warning("%d of %d images unreadable, e.g. %s: %s", len(bad), len(paths), *bad[0])
    return bad
