"""Quality tags: each maps to a visible change, except the rare "hype" ones."""
from typing import Callable, NamedTuple, Optional

import numpy as np

from .imageops import blur, mix, saturate


def tag_detail(img, rng):
    return img + (rng.random(img.shape[:2] + (1,)).astype(np.float32) - 0.5) * 0.14


def tag_sharp(img, rng):
    return img + 1.5 * (img - blur(img, img.shape[0] / 64))


def tag_soft(img, rng):
    soft = blur(img, img.shape[0] / 40)
    return mix(img, np.maximum(img, soft) * 1.05, 0.75)


def tag_vibrant(img, rng):
    return saturate(img, 1.8)


def tag_muted(img, rng):
    return saturate(img, 0.35) * 0.9 + 0.07


def tag_contrast(img, rng):
    return (img - 0.5) * 1.6 + 0.5


class Tag(NamedTuple):
    words: tuple
    weight: float  # how often it is sampled
    apply: Optional[Callable] = None  # fn(img, rng); None: no whole-image effect


TAGS = {
    "detail": Tag(("highly detailed", "intricate details", "ultra detailed"), 1.0, tag_detail),
    "sharp": Tag(("4k", "8k", "sharp focus", "uhd"), 1.0, tag_sharp),
    "soft": Tag(("soft focus", "dreamy", "bokeh"), 1.0, tag_soft),
    "render3d": Tag(("3d render", "octane render", "unreal engine"), 1.0),  # lights the objects: see light_objects
    "vibrant": Tag(("vibrant colors", "vivid colors", "saturated colors"), 1.0, tag_vibrant),
    "muted": Tag(("muted colors", "desaturated", "faded colors"), 1.0, tag_muted),
    "contrast": Tag(("high contrast", "dramatic lighting"), 1.0, tag_contrast),
    "hype": Tag(("trending on artstation", "award winning", "masterpiece"), 0.3),  # invisible: kept rare
}
