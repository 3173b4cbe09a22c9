"""The image file formats a generated set is written in: pixels -> resized PIL image -> file bytes.

Lossless PNG matches the competition's images; WebP q90 / JPEG q95 are ~7x / ~4x smaller
(`python -m bench.bench_image_formats` measures size, encode and decode time).
"""
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Format:
    ext: str  # file extension of the written files
    pil: str  # PIL format name
    default_quality: int | None  # None: lossless, no quality setting


FORMATS = {
    "png": Format(".png", "PNG", None),
    "webp": Format(".webp", "WEBP", 90),
    "jpeg": Format(".jpg", "JPEG", 95),
}


def to_pil(pixels):
    """float [0, 1] (H, W, 3) -> RGB PIL image, rounded as diffusers' numpy_to_pil does."""
    return Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8), "RGB")


def resize(image, size):
    """Square `size` px with LANCZOS (the competition's images are 512 px); size 0/None keeps it."""
    if not size or image.size == (size, size):
        return image
    return image.resize((size, size), Image.LANCZOS)


def encode_image(image, fmt="png", quality=None, **options):
    """File bytes of `image` in format `fmt` (a FORMATS key); `options` go to PIL's save."""
    spec = FORMATS[fmt]
    if spec.default_quality is not None:
        options.setdefault("quality", quality if quality is not None else spec.default_quality)
    buf = io.BytesIO()
    image.save(buf, format=spec.pil, **options)
    return buf.getvalue()


def check_image_file(path, size=None):
    """None if `path` decodes completely (and is `size` px square when given), else the reason."""
    try:
        with Image.open(path) as im:
            im.load()
            got = im.size
    except Exception as e:  # PIL raises many types for broken files
        return f"cannot be decoded ({type(e).__name__}: {e})"
    if size and got != (size, size):
        return f"is {got[0]}x{got[1]}, expected {size}x{size}"
    return None
