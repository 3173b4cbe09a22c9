"""Styles: whole-image transforms fn(img, mask, rng) -> img (mask = where objects are)."""
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from .imageops import (
    blur,
    gradient_edges,
    grain,
    gray3,
    luminance,
    mask_edges,
    mix,
    rgb01,
    saturate,
    smooth_noise,
    to_array,
    to_image,
    vignette,
)


def style_pixel_art(img, mask, rng):
    w = img.shape[0]
    small = to_image(img).resize((16, 16), Image.BOX).quantize(colors=10, dither=Image.Dither.NONE)
    return to_array(small.convert("RGB").resize((w, w), Image.NEAREST))


def style_watercolour(img, mask, rng):
    w = img.shape[0]
    # Pigment bleeds: sample the picture through a smooth random displacement, then soften.
    yy, xx = np.mgrid[0:w, 0:w]
    dy = (smooth_noise(rng, w, 6) - 0.5) * 0.08 * w
    dx = (smooth_noise(rng, w, 6) - 0.5) * 0.08 * w
    bled = img[np.clip(yy + dy, 0, w - 1).astype(int), np.clip(xx + dx, 0, w - 1).astype(int)]
    wash = blur(bled, w / 90) * 0.78 + 0.22  # translucent: paper shows through
    pooled = mask_edges(blur(mask, w / 100), w / 60)[..., None] * 0.18  # pigment pools at the rims
    paper = 1.0 - 0.06 * smooth_noise(rng, w, 20) - 0.04 * rng.random((w, w))
    return (wash - pooled) * paper[..., None]


def style_neon(img, mask, rng):
    w = img.shape[0]
    bright = np.clip(saturate(img / np.maximum(img.max(axis=2, keepdims=True), 0.08), 1.6), 0, 1)
    line = bright * mask_edges(mask, w / 42)[..., None]
    dark = img * 0.12 + rgb01((6, 0, 16))
    return dark * (1 - mask[..., None]) + img * 0.15 * mask[..., None] + line + 1.8 * blur(line, w / 28)


def style_pencil(img, mask, rng):
    w = img.shape[0]
    lum = luminance(img)
    edges = np.maximum(gradient_edges(blur(lum, 0.6)), mask_edges(mask, 3) * 0.9)
    yy, xx = np.mgrid[0:w, 0:w]
    hatch = ((xx + yy) % max(3, w // 24) == 0) & (lum < 0.45)  # cross-hatching in the shadows
    paper = 0.96 + 0.03 * rng.random((w, w))
    return gray3(paper - 0.65 * edges - 0.25 * hatch)


def style_oil(img, mask, rng):
    w = img.shape[0]
    dabs = to_array(to_image(img).filter(ImageFilter.ModeFilter(5)))
    noise = rng.random((w, w)).astype(np.float32)
    length = max(3, w // 14)
    strokes_h = ndimage.uniform_filter1d(noise, length, axis=1)
    strokes_v = ndimage.uniform_filter1d(noise, length, axis=0)
    strokes = mix(strokes_h, strokes_v, smooth_noise(rng, w, 4) > 0.5) - 0.5
    return saturate(dabs * (1 + 0.9 * strokes[..., None]), 1.3)


def style_black_white(img, mask, rng):
    lum = (luminance(img) - 0.5) * 1.3 + 0.5
    return grain(gray3(lum), rng, 0.05)


def style_sepia(img, mask, rng):
    w = img.shape[0]
    lum = luminance(img)[..., None]
    out = vignette(lum * rgb01((255, 210, 155)) * 0.85 + rgb01((35, 20, 5)), 0.45)
    for _ in range(int(rng.integers(2, 5))):  # film scratches
        out[:, int(rng.integers(w))] += 0.25
    return grain(out, rng, 0.03)


def style_low_poly(img, mask, rng):
    w = img.shape[0]
    cell = w / 9
    yy, xx = np.mgrid[0:w, 0:w] / cell
    row, col = yy.astype(int), xx.astype(int)
    fy, fx = yy - row, xx - col
    # Alternate the diagonal per cell so facets tile like a triangulated mesh.
    upper = np.where((row + col) % 2 == 0, fx + fy < 1, fx > fy)
    tri = ((row * 10 + col) * 2 + upper).ravel()
    n = tri.max() + 1
    counts = np.maximum(np.bincount(tri, minlength=n), 1)
    means = np.stack([np.bincount(tri, img[..., k].ravel(), minlength=n) / counts for k in range(3)], 1)
    light = rng.uniform(0.85, 1.12, n)[:, None]
    return (means * light)[tri].reshape(w, w, 3).astype(np.float32)


def style_pop_art(img, mask, rng):
    w = img.shape[0]
    flat = np.round(saturate(img, 1.8) * 3) / 3
    cell = max(3, w // 22)
    yy, xx = np.mgrid[0:w, 0:w]
    dist = np.hypot(xx % cell - cell / 2, yy % cell - cell / 2)
    dots = dist < cell * 0.5 * (1 - luminance(flat)) + cell * 0.12  # halftone: bigger dots where darker
    out = flat * np.where(dots, 0.7, 1.0)[..., None]
    return out * (1 - mask_edges(mask, w / 30))[..., None]  # bold black outlines


def style_blueprint(img, mask, rng):
    w = img.shape[0]
    lines = np.maximum(gradient_edges(blur(luminance(img), 0.6)), mask_edges(mask, 3))
    grid = ((np.arange(w) % max(4, w // 8)) == 0).astype(np.float32)
    lines = np.maximum(lines, 0.25 * np.maximum(grid[:, None], grid[None, :]))
    return mix(rgb01((18, 62, 140)), rgb01((230, 240, 255)), lines[..., None])


THERMAL_STOPS = np.array([(0, 0, 10), (80, 0, 120), (200, 30, 60), (250, 140, 0), (255, 240, 120), (255, 255, 255)],
                         np.float32) / 255


def style_thermal(img, mask, rng):
    w = img.shape[0]
    heat = 0.4 * luminance(blur(img, w / 60)) + 0.55 * blur(mask, w / 40) + 0.06 * smooth_noise(rng, w, 5)
    pos = np.linspace(0, 1, len(THERMAL_STOPS))
    return np.stack([np.interp(heat, pos, THERMAL_STOPS[:, k]) for k in range(3)], -1).astype(np.float32)


def style_mosaic(img, mask, rng):
    w = img.shape[0]
    cells = 12
    tiles = to_array(to_image(img).resize((cells, cells), Image.BOX)) * rng.uniform(0.85, 1.12, (cells, cells, 1))
    out = to_array(to_image(tiles).resize((w, w), Image.NEAREST))
    edge = np.arange(w) % (w / cells) < max(1, w // 64)  # grout between the tiles
    grout = edge[:, None] | edge[None, :]
    return np.where(grout[..., None], rgb01((215, 210, 198)), out)


def style_stained_glass(img, mask, rng):
    w = img.shape[0]
    seeds = rng.random((44, 2)) * w
    yy, xx = np.mgrid[0:w, 0:w]
    label = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=2)
    # Cells cut by an object outline split in two so the shapes keep their silhouettes.
    label = (label * 2 + (mask > 0.5)).ravel()
    n = label.max() + 1
    counts = np.maximum(np.bincount(label, minlength=n), 1)
    means = np.stack([np.bincount(label, img[..., k].ravel(), minlength=n) / counts for k in range(3)], 1)
    glass = saturate(means[label].reshape(w, w, 3).astype(np.float32), 1.7) * 1.1
    label = label.reshape(w, w)
    seams = np.zeros((w, w), bool)
    seams[:, 1:] |= label[:, 1:] != label[:, :-1]
    seams[1:, :] |= label[1:, :] != label[:-1, :]
    lead = ndimage.maximum_filter(seams, max(2, w // 50))
    return np.where(lead[..., None], rgb01((25, 22, 20)), glass)


class Style(NamedTuple):
    prefixes: tuple  # open the prompt: "<pixel art of> two stars"
    suffixes: tuple  # a clause after a comma: "two stars, <pixel art>"
    apply: Callable


STYLES = {
    "pixel": Style(("pixel art of", "8-bit pixel art of"),
                   ("pixel art", "8-bit pixel art", "pixelated"), style_pixel_art),
    "watercolour": Style(("a watercolor painting of", "a watercolour of"),
                         ("watercolor", "watercolour painting", "soft watercolor wash"), style_watercolour),
    "neon": Style(("a neon illustration of", "neon art of"), ("neon", "neon glow", "glowing neon lights"), style_neon),
    "pencil": Style(("a pencil sketch of", "a pencil drawing of"),
                    ("pencil sketch", "graphite drawing", "pencil drawing"), style_pencil),
    "oil": Style(("an oil painting of",), ("oil painting", "oil on canvas", "thick brush strokes"), style_oil),
    "bw": Style(("a black and white photo of",),
                ("black and white photo", "monochrome", "black and white"), style_black_white),
    "sepia": Style(("a vintage sepia photo of", "an old sepia photograph of"),
                   ("vintage sepia", "sepia tone", "old sepia photograph"), style_sepia),
    "lowpoly": Style(("a low-poly render of", "low poly art of"),
                     ("low-poly", "low poly 3d art", "faceted low poly"), style_low_poly),
    "popart": Style(("a pop art print of", "a comic book panel of"),
                    ("pop art", "comic book style", "halftone comic art"), style_pop_art),
    "blueprint": Style(("a blueprint of", "a technical blueprint of"),
                       ("blueprint", "technical drawing on blueprint paper"), style_blueprint),
    "thermal": Style(("a thermal camera image of", "an infrared thermal image of"),
                     ("thermal imaging", "infrared heat map"), style_thermal),
    "mosaic": Style(("a mosaic of", "a tile mosaic of"), ("mosaic", "ceramic tile mosaic"), style_mosaic),
    "stained": Style(("a stained glass window of", "stained glass art of"),
                     ("stained glass", "stained glass window"), style_stained_glass),
}
