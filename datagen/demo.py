"""The embedded demo dataset: small images rendered procedurally from Stable-Diffusion-style prompts.

No diffusion weights exist here, so a scene grammar stands in for them. A `Scene` (one or two
groups of objects, their spatial relation, a background, a style, a framing such as "a postage
stamp of", quality tags) is sampled, worded as a prompt, and rendered with PIL/numpy so that
nearly every word changes the picture. Wording draws its own synonyms and clause order, so one
scene can be worded several ways: some scenes appear two or three times, reworded and freshly
rendered, like the near-duplicates of real prompt corpora (the `scene` column says which rows
share one). Duplicates are shuffled across train and test, as in the real data.

    python -m datagen.demo --out work/data/demo --n-train 1500 --n-test 300 --size 64 --seed 0

writes OUT/train/images/<imgId>.png, OUT/train/prompts.csv (imgId,prompt,scene),
OUT/test/images/<imgId>.png and OUT/test_prompts.csv. Every image has its own random stream
seeded from (seed, scene, copy), so output is byte-identical for the same settings whatever
the order of rendering.
"""
import argparse
import hashlib
import io
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from core.io import save_csv, write_bytes

SUPERSAMPLE = 2  # draw at 2x and downsample: antialiased edges at 64 px
DUPLICATE_RATE = 0.12  # share of scenes that appear 2-3 times, reworded
TWO_GROUP_RATE = 0.38
# How often a scene leaves each part out: varied prompt structure keeps the mean-embedding
# baseline near real corpora (every extra clause pulls prompts toward a common direction).
P_NO_BACKGROUND, P_NO_STYLE, P_NO_FRAMING = 0.2, 0.5, 0.5
TAG_COUNT_WEIGHTS = {0: 0.65, 1: 0.25, 2: 0.1}

# ---------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    kind: str  # key of KINDS
    colour: Optional[str]  # key of COLOURS; None: not named (the kind's usual colour)
    count: int
    size: str  # key of SIZES


@dataclass(frozen=True)
class Scene:
    groups: tuple  # one or two Groups
    relation: Optional[str]  # where groups[0] sits relative to groups[1] (key of RELATIONS)
    background: Optional[str]
    style: Optional[str]
    framing: Optional[str]
    tags: tuple = ()


class Placed(NamedTuple):
    """One object on the canvas, in pixels."""

    kind: str
    rgb: tuple
    x: float
    y: float
    r: float


# ---------------------------------------------------------------------------------------------
# Small image helpers (images are float32 arrays H x W x 3 in [0, 1])
# ---------------------------------------------------------------------------------------------


def to_array(img):
    return np.asarray(img, dtype=np.float32) / 255.0


def to_image(a):
    return Image.fromarray((np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def rgb01(rgb):
    return np.asarray(rgb, dtype=np.float32) / 255.0


def blur(a, sigma):
    sigma = max(float(sigma), 0.3)
    return ndimage.gaussian_filter(a, (sigma, sigma, 0) if a.ndim == 3 else sigma, mode="nearest")


def luminance(a):
    return a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def gray3(lum):
    return np.repeat(lum[..., None], 3, axis=2)


def saturate(a, factor):
    lum = luminance(a)[..., None]
    return np.clip(lum + (a - lum) * factor, 0.0, 1.0)


def mix(a, b, t):
    return a * (1.0 - t) + b * t


def odd(n):
    n = max(3, int(n))
    return n if n % 2 else n + 1


def smooth_noise(rng, w, cells):
    """Low-frequency noise in [0, 1]: a cells x cells random grid upsampled bicubically."""
    grid = Image.fromarray(rng.random((cells, cells)).astype(np.float32))
    return np.clip(np.asarray(grid.resize((w, w), Image.BICUBIC)), 0.0, 1.0)


def mask_edges(mask, width):
    """A band of `width` px around the border of a soft mask."""
    k = odd(width)
    return np.clip(ndimage.maximum_filter(mask, k) - ndimage.minimum_filter(mask, k), 0.0, 1.0)


def gradient_edges(lum):
    gy, gx = np.gradient(lum)
    return np.clip((np.abs(gx) + np.abs(gy)) * 4.0, 0.0, 1.0)


def vertical_gradient(w, top, bottom, y0=0.0, y1=1.0, out=None):
    """Fill rows y0..y1 (fractions of height) of `out` with a top->bottom colour gradient."""
    out = np.zeros((w, w, 3), np.float32) if out is None else out
    a, b = int(round(y0 * w)), int(round(y1 * w))
    t = np.linspace(0.0, 1.0, max(b - a, 1), dtype=np.float32)[:, None, None]
    out[a:b] = mix(rgb01(top), rgb01(bottom), t)
    return out


def vignette(a, strength):
    w = a.shape[0]
    yy, xx = np.mgrid[0:w, 0:w] / (w - 1) - 0.5
    return a * (1.0 - strength * np.clip((xx**2 + yy**2) * 2.0, 0.0, 1.0))[..., None]


def grain(a, rng, amount):
    return a + rng.normal(0.0, amount, a.shape[:2] + (1,)).astype(np.float32)


def shade(rgb, factor):
    return tuple(int(min(255, max(0, c * factor))) for c in rgb)


def draw_on(a, paint):
    """Run `paint(ImageDraw, w)` on an array image and return the result as an array."""
    img = to_image(a)
    paint(ImageDraw.Draw(img), a.shape[0])
    return to_array(img)


# ---------------------------------------------------------------------------------------------
# Objects: each draws itself centred on (x, y) with radius r; `ink` = (rgb, width) or None
# ---------------------------------------------------------------------------------------------

DARK = (35, 30, 30)
WOOD = (120, 75, 35)
LEAF = (45, 150, 55)
GLASS = (170, 215, 240)


def _ink(ink):
    return {"outline": ink[0], "width": ink[1]} if ink else {}


def poly(d, pts, fill, ink=None):
    d.polygon([(float(px), float(py)) for px, py in pts], fill=fill, **_ink(ink))


def oval(d, box, fill, ink=None):
    d.ellipse(box, fill=fill, **_ink(ink))


def box(d, xy, fill, ink=None):
    d.rectangle(xy, fill=fill, **_ink(ink))


def stroke(d, pts, fill, width):
    d.line(pts, fill=fill, width=max(1, int(round(width))))


def disc(d, x, y, r, fill, ink=None):
    oval(d, (x - r, y - r, x + r, y + r), fill, ink)


def regular(x, y, r, n, turn=-math.pi / 2):
    return [(x + r * math.cos(turn + 2 * math.pi * k / n), y + r * math.sin(turn + 2 * math.pi * k / n)) for k in range(n)]


def star_points(x, y, r, n=5, inner=0.45):
    outer, inside = regular(x, y, r, n), regular(x, y, r * inner, n, -math.pi / 2 + math.pi / n)
    return [p for pair in zip(outer, inside) for p in pair]


def draw_circle(d, x, y, r, c, ink):
    disc(d, x, y, r, c, ink)


def draw_square(d, x, y, r, c, ink):
    box(d, (x - 0.82 * r, y - 0.82 * r, x + 0.82 * r, y + 0.82 * r), c, ink)


def draw_triangle(d, x, y, r, c, ink):
    poly(d, regular(x, y + 0.15 * r, r, 3), c, ink)


def draw_star(d, x, y, r, c, ink):
    poly(d, star_points(x, y, r), c, ink)


def draw_heart(d, x, y, r, c, ink):
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    hx = 16 * np.sin(t) ** 3
    hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)) - 2.5
    s = r / 16.5
    poly(d, zip(x + hx * s, y + hy * s), c, ink)


def draw_hexagon(d, x, y, r, c, ink):
    poly(d, regular(x, y, r, 6, 0.0), c, ink)


def draw_diamond(d, x, y, r, c, ink):
    poly(d, [(x, y - r), (x + 0.68 * r, y), (x, y + r), (x - 0.68 * r, y)], c, ink)


def draw_cross(d, x, y, r, c, ink):
    a = 0.33 * r
    pts = [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a)]
    poly(d, [(x + px, y + py) for px, py in pts], c, ink)


def draw_ring(d, x, y, r, c, ink):
    d.ellipse((x - r, y - r, x + r, y + r), outline=c, width=max(1, int(0.34 * r)))
    if ink:
        d.ellipse((x - r, y - r, x + r, y + r), outline=ink[0], width=ink[1])
        inner = r - 0.34 * r
        d.ellipse((x - inner, y - inner, x + inner, y + inner), outline=ink[0], width=ink[1])


def draw_arrow(d, x, y, r, c, ink):
    s, h = 0.25 * r, 0.62 * r
    poly(d, [(x - r, y - s), (x + 0.15 * r, y - s), (x + 0.15 * r, y - h), (x + r, y), (x + 0.15 * r, y + h), (x + 0.15 * r, y + s), (x - r, y + s)], c, ink)


def draw_house(d, x, y, r, c, ink):
    box(d, (x - 0.7 * r, y - 0.1 * r, x + 0.7 * r, y + 0.85 * r), c, ink)
    poly(d, [(x - 0.9 * r, y - 0.1 * r), (x, y - 0.9 * r), (x + 0.9 * r, y - 0.1 * r)], (150, 45, 35), ink)
    box(d, (x - 0.18 * r, y + 0.3 * r, x + 0.18 * r, y + 0.85 * r), WOOD, ink)
    box(d, (x + 0.3 * r, y + 0.1 * r, x + 0.55 * r, y + 0.35 * r), GLASS, ink)


def draw_tree(d, x, y, r, c, ink):
    box(d, (x - 0.14 * r, y + 0.2 * r, x + 0.14 * r, y + r), WOOD, ink)
    oval(d, (x - 0.72 * r, y - r, x + 0.72 * r, y + 0.4 * r), c, ink)


def draw_sun(d, x, y, r, c, ink):
    for k in range(10):
        a = 2 * math.pi * k / 10
        stroke(d, [(x + 0.62 * r * math.cos(a), y + 0.62 * r * math.sin(a)), (x + r * math.cos(a), y + r * math.sin(a))], c, 0.14 * r)
    disc(d, x, y, 0.58 * r, c, ink)


def draw_moon(d, x, y, r, c, ink):
    # A crescent: the part of the disc outside a second, shifted disc, traced as one polygon.
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    cx, cy, cr = x + 0.45 * r, y - 0.12 * r, 0.82 * r
    outer = [(x + r * np.cos(a), y + r * np.sin(a)) for a in t]
    outer = [p for p in outer if (p[0] - cx) ** 2 + (p[1] - cy) ** 2 > cr**2]
    inner = [(cx + cr * np.cos(a), cy + cr * np.sin(a)) for a in t[::-1]]
    inner = [p for p in inner if (p[0] - x) ** 2 + (p[1] - y) ** 2 < r**2]
    poly(d, sorted(outer, key=lambda p: math.atan2(p[1] - y, p[0] - x) % (2 * math.pi)) + sorted(inner, key=lambda p: -(math.atan2(p[1] - cy, p[0] - cx) % (2 * math.pi))), c, ink)


def draw_fish(d, x, y, r, c, ink):
    poly(d, [(x + 0.3 * r, y), (x + r, y - 0.5 * r), (x + r, y + 0.5 * r)], shade(c, 0.8), ink)
    oval(d, (x - 0.85 * r, y - 0.45 * r, x + 0.45 * r, y + 0.45 * r), c, ink)
    disc(d, x - 0.5 * r, y - 0.1 * r, 0.1 * r, DARK)


def draw_cat(d, x, y, r, c, ink):
    for side in (-1, 1):
        poly(d, [(x + side * 0.85 * r, y - 0.25 * r), (x + side * 0.7 * r, y - r), (x + side * 0.2 * r, y - 0.65 * r)], c, ink)
    disc(d, x, y + 0.05 * r, 0.78 * r, c, ink)
    for side in (-1, 1):
        oval(d, (x + side * 0.32 * r - 0.14 * r, y - 0.2 * r, x + side * 0.32 * r + 0.14 * r, y + 0.08 * r), (170, 215, 60))
        oval(d, (x + side * 0.32 * r - 0.05 * r, y - 0.18 * r, x + side * 0.32 * r + 0.05 * r, y + 0.06 * r), DARK)
        for dy in (0.25, 0.38):
            stroke(d, [(x + side * 0.15 * r, y + 0.3 * r), (x + side * 0.95 * r, y + dy * r)], DARK, 0.04 * r)
    poly(d, [(x - 0.1 * r, y + 0.18 * r), (x + 0.1 * r, y + 0.18 * r), (x, y + 0.3 * r)], (240, 130, 150))


def draw_car(d, x, y, r, c, ink):
    poly(d, [(x - 0.55 * r, y - 0.1 * r), (x - 0.35 * r, y - 0.55 * r), (x + 0.35 * r, y - 0.55 * r), (x + 0.6 * r, y - 0.1 * r)], c, ink)
    box(d, (x - 0.4 * r, y - 0.45 * r, x + 0.4 * r, y - 0.15 * r), GLASS)
    box(d, (x - r, y - 0.12 * r, x + r, y + 0.42 * r), c, ink)
    for side in (-1, 1):
        disc(d, x + side * 0.55 * r, y + 0.42 * r, 0.26 * r, DARK, ink)


def draw_flower(d, x, y, r, c, ink):
    stroke(d, [(x, y), (x, y + r)], LEAF, 0.12 * r)
    for k in range(6):
        a = 2 * math.pi * k / 6
        disc(d, x + 0.42 * r * math.cos(a), y - 0.2 * r + 0.42 * r * math.sin(a), 0.3 * r, c, ink)
    disc(d, x, y - 0.2 * r, 0.24 * r, (250, 210, 40) if c[2] > 60 or c[0] < 200 else WOOD, ink)


def draw_mountain(d, x, y, r, c, ink):
    poly(d, [(x + 0.05 * r, y + 0.8 * r), (x + 0.5 * r, y - 0.3 * r), (x + r, y + 0.8 * r)], shade(c, 0.7), ink)
    poly(d, [(x - r, y + 0.8 * r), (x - 0.15 * r, y - 0.85 * r), (x + 0.7 * r, y + 0.8 * r)], c, ink)
    poly(d, [(x - 0.42 * r, y - 0.3 * r), (x - 0.15 * r, y - 0.85 * r), (x + 0.12 * r, y - 0.3 * r), (x - 0.15 * r, y - 0.4 * r)], (250, 250, 252))


def draw_boat(d, x, y, r, c, ink):
    stroke(d, [(x, y + 0.25 * r), (x, y - 0.95 * r)], WOOD, 0.08 * r)
    poly(d, [(x + 0.06 * r, y - 0.9 * r), (x + 0.06 * r, y + 0.1 * r), (x + 0.75 * r, y + 0.1 * r)], (250, 248, 240), ink)
    poly(d, [(x - 0.06 * r, y - 0.6 * r), (x - 0.06 * r, y + 0.1 * r), (x - 0.55 * r, y + 0.1 * r)], (240, 236, 225), ink)
    poly(d, [(x - r, y + 0.2 * r), (x + r, y + 0.2 * r), (x + 0.65 * r, y + 0.62 * r), (x - 0.65 * r, y + 0.62 * r)], c, ink)


def draw_balloon(d, x, y, r, c, ink):
    stroke(d, [(x, y + 0.45 * r), (x - 0.1 * r, y + r)], (90, 90, 90), 0.05 * r)
    oval(d, (x - 0.62 * r, y - r, x + 0.62 * r, y + 0.45 * r), c, ink)
    poly(d, [(x, y + 0.42 * r), (x - 0.1 * r, y + 0.56 * r), (x + 0.1 * r, y + 0.56 * r)], c)


def draw_bird(d, x, y, r, c, ink):
    poly(d, [(x - 0.55 * r, y), (x - r, y - 0.35 * r), (x - r, y + 0.3 * r)], shade(c, 0.75), ink)
    oval(d, (x - 0.75 * r, y - 0.38 * r, x + 0.45 * r, y + 0.42 * r), c, ink)
    disc(d, x + 0.45 * r, y - 0.32 * r, 0.32 * r, c, ink)
    poly(d, [(x + 0.72 * r, y - 0.42 * r), (x + r, y - 0.3 * r), (x + 0.72 * r, y - 0.2 * r)], (245, 160, 30))
    poly(d, [(x - 0.45 * r, y - 0.05 * r), (x + 0.2 * r, y - 0.05 * r), (x - 0.2 * r, y - 0.75 * r)], shade(c, 0.7), ink)
    disc(d, x + 0.53 * r, y - 0.38 * r, 0.07 * r, DARK)


def draw_mushroom(d, x, y, r, c, ink):
    d.rounded_rectangle((x - 0.25 * r, y - 0.15 * r, x + 0.25 * r, y + r), radius=max(1, int(0.1 * r)), fill=(238, 228, 205), **_ink(ink))
    d.pieslice((x - r, y - 0.85 * r, x + r, y + 0.55 * r), 180, 360, fill=c, **_ink(ink))
    for dx, dy, s in ((-0.5, -0.3, 0.13), (0.05, -0.6, 0.12), (0.5, -0.3, 0.11)):
        disc(d, x + dx * r, y + dy * r, s * r, (250, 250, 245))


def draw_rocket(d, x, y, r, c, ink):
    poly(d, [(x - 0.3 * r, y + 0.55 * r), (x, y + r), (x + 0.3 * r, y + 0.55 * r)], (250, 150, 30))
    for side in (-1, 1):
        poly(d, [(x + side * 0.3 * r, y + 0.05 * r), (x + side * 0.62 * r, y + 0.6 * r), (x + side * 0.3 * r, y + 0.55 * r)], (205, 45, 45), ink)
    poly(d, [(x, y - r), (x + 0.3 * r, y - 0.45 * r), (x + 0.3 * r, y + 0.55 * r), (x - 0.3 * r, y + 0.55 * r), (x - 0.3 * r, y - 0.45 * r)], c, ink)
    disc(d, x, y - 0.15 * r, 0.15 * r, (70, 140, 230), ink)


def draw_umbrella(d, x, y, r, c, ink):
    stroke(d, [(x, y - 0.1 * r), (x, y + 0.8 * r)], DARK, 0.08 * r)
    d.arc((x - 0.25 * r, y + 0.6 * r, x + 0.05 * r, y + r), 0, 180, fill=DARK, width=max(1, int(0.08 * r)))
    d.pieslice((x - r, y - 0.85 * r, x + r, y + 0.65 * r), 180, 360, fill=c, **_ink(ink))


def draw_apple(d, x, y, r, c, ink):
    stroke(d, [(x, y - 0.5 * r), (x + 0.1 * r, y - r)], WOOD, 0.1 * r)
    oval(d, (x + 0.1 * r, y - r, x + 0.6 * r, y - 0.72 * r), LEAF, ink)
    oval(d, (x - 0.8 * r, y - 0.62 * r, x + 0.8 * r, y + 0.9 * r), c, ink)


def draw_cactus(d, x, y, r, c, ink):
    rr = max(1, int(0.2 * r))
    d.rounded_rectangle((x - 0.75 * r, y - 0.5 * r, x - 0.5 * r, y + 0.15 * r), radius=rr, fill=c, **_ink(ink))
    d.rounded_rectangle((x + 0.5 * r, y - 0.75 * r, x + 0.75 * r, y - 0.05 * r), radius=rr, fill=c, **_ink(ink))
    box(d, (x - 0.7 * r, y - 0.05 * r, x, y + 0.15 * r), c)
    box(d, (x, y - 0.25 * r, x + 0.7 * r, y - 0.05 * r), c)
    d.rounded_rectangle((x - 0.25 * r, y - r, x + 0.25 * r, y + r), radius=rr, fill=c, **_ink(ink))


def draw_butterfly(d, x, y, r, c, ink):
    for side in (-1, 1):
        oval(d, sorted_box(x, y - 0.85 * r, x + side * r, y + 0.05 * r), c, ink)
        oval(d, sorted_box(x, y - 0.05 * r, x + side * 0.7 * r, y + 0.75 * r), shade(c, 0.8), ink)
        disc(d, x + side * 0.55 * r, y - 0.45 * r, 0.12 * r, DARK)
        stroke(d, [(x, y - 0.55 * r), (x + side * 0.3 * r, y - r)], DARK, 0.05 * r)
    oval(d, (x - 0.09 * r, y - 0.6 * r, x + 0.09 * r, y + 0.7 * r), DARK)


def draw_snowman(d, x, y, r, c, ink):
    disc(d, x, y + 0.5 * r, 0.5 * r, c, ink)
    disc(d, x, y - 0.15 * r, 0.36 * r, c, ink)
    disc(d, x, y - 0.65 * r, 0.26 * r, c, ink)
    poly(d, [(x, y - 0.67 * r), (x + 0.35 * r, y - 0.6 * r), (x, y - 0.58 * r)], (245, 130, 30))
    box(d, (x - 0.28 * r, y - 0.95 * r, x + 0.28 * r, y - 0.85 * r), DARK)
    box(d, (x - 0.18 * r, y - r * 1.2, x + 0.18 * r, y - 0.9 * r), DARK)


def draw_ice_cream(d, x, y, r, c, ink):
    poly(d, [(x - 0.45 * r, y - 0.1 * r), (x + 0.45 * r, y - 0.1 * r), (x, y + r)], (215, 165, 95), ink)
    disc(d, x, y - 0.4 * r, 0.5 * r, c, ink)
    disc(d, x + 0.05 * r, y - 0.95 * r, 0.1 * r, (200, 20, 40))


def draw_crown(d, x, y, r, c, ink):
    poly(d, [(x - 0.9 * r, y + 0.5 * r), (x - 0.9 * r, y - 0.6 * r), (x - 0.45 * r, y - 0.05 * r), (x, y - 0.8 * r), (x + 0.45 * r, y - 0.05 * r), (x + 0.9 * r, y - 0.6 * r), (x + 0.9 * r, y + 0.5 * r)], c, ink)
    for dx in (-0.45, 0, 0.45):
        disc(d, x + dx * r, y + 0.22 * r, 0.1 * r, (200, 30, 60))


def draw_kite(d, x, y, r, c, ink):
    stroke(d, [(x, y + 0.5 * r), (x - 0.2 * r, y + 0.75 * r), (x + 0.1 * r, y + r)], DARK, 0.05 * r)
    poly(d, [(x, y - r), (x + 0.5 * r, y - 0.35 * r), (x, y + 0.5 * r), (x - 0.5 * r, y - 0.35 * r)], c, ink)
    stroke(d, [(x, y - r), (x, y + 0.5 * r)], shade(c, 0.6), 0.04 * r)


def draw_lighthouse(d, x, y, r, c, ink):
    poly(d, [(x - 0.3 * r, y + r), (x - 0.18 * r, y - 0.55 * r), (x + 0.18 * r, y - 0.55 * r), (x + 0.3 * r, y + r)], (245, 245, 240), ink)
    for k in range(3):  # painted bands
        t0, t1 = -0.3 + 0.45 * k, -0.08 + 0.45 * k
        poly(d, [(x - 0.2 * r - 0.04 * k * r, y + t0 * r), (x + 0.2 * r + 0.04 * k * r, y + t0 * r), (x + 0.22 * r + 0.04 * k * r, y + t1 * r), (x - 0.22 * r - 0.04 * k * r, y + t1 * r)], c)
    box(d, (x - 0.16 * r, y - 0.85 * r, x + 0.16 * r, y - 0.55 * r), (255, 235, 120), ink)
    poly(d, [(x - 0.24 * r, y - 0.85 * r), (x, y - r * 1.05), (x + 0.24 * r, y - 0.85 * r)], DARK)


def draw_castle(d, x, y, r, c, ink):
    for tx in (-0.75, 0.45):
        box(d, (x + tx * r, y - 0.75 * r, x + (tx + 0.3) * r, y + 0.8 * r), shade(c, 0.85), ink)
        poly(d, [(x + (tx - 0.05) * r, y - 0.75 * r), (x + (tx + 0.15) * r, y - 1.05 * r), (x + (tx + 0.35) * r, y - 0.75 * r)], (60, 70, 150))
    box(d, (x - 0.5 * r, y - 0.3 * r, x + 0.5 * r, y + 0.8 * r), c, ink)
    for k in range(4):  # battlements
        box(d, (x - 0.5 * r + k * 0.28 * r, y - 0.45 * r, x - 0.36 * r + k * 0.28 * r, y - 0.3 * r), c)
    d.pieslice((x - 0.2 * r, y + 0.2 * r, x + 0.2 * r, y + 0.6 * r), 180, 360, fill=DARK)
    box(d, (x - 0.2 * r, y + 0.4 * r, x + 0.2 * r, y + 0.8 * r), DARK)


def draw_teacup(d, x, y, r, c, ink):
    d.ellipse((x + 0.35 * r, y - 0.35 * r, x + 0.85 * r, y + 0.2 * r), outline=c, width=max(1, int(0.12 * r)))
    oval(d, (x - 0.9 * r, y + 0.45 * r, x + 0.9 * r, y + 0.75 * r), (240, 240, 235), ink)
    d.chord((x - 0.65 * r, y - 0.9 * r, x + 0.65 * r, y + 0.65 * r), 0, 180, fill=c, **_ink(ink))
    stroke(d, [(x - 0.15 * r, y - 0.35 * r), (x - 0.05 * r, y - 0.8 * r)], (200, 200, 200), 0.06 * r)


def draw_clock(d, x, y, r, c, ink):
    disc(d, x, y, r, c, ink)
    disc(d, x, y, 0.8 * r, (250, 250, 245))
    for k in range(12):
        a = 2 * math.pi * k / 12
        disc(d, x + 0.68 * r * math.cos(a), y + 0.68 * r * math.sin(a), 0.05 * r, DARK)
    stroke(d, [(x, y), (x, y - 0.55 * r)], DARK, 0.08 * r)
    stroke(d, [(x, y), (x + 0.4 * r, y + 0.1 * r)], DARK, 0.1 * r)


def draw_pizza(d, x, y, r, c, ink):
    poly(d, [(x - 0.85 * r, y - 0.75 * r), (x + 0.85 * r, y - 0.75 * r), (x, y + r)], (250, 205, 90), ink)
    box(d, (x - 0.9 * r, y - r, x + 0.9 * r, y - 0.72 * r), (200, 130, 60), ink)
    for dx, dy in ((-0.35, -0.45), (0.3, -0.4), (0, 0.05), (-0.05, -0.6)):
        disc(d, x + dx * r, y + dy * r, 0.13 * r, c)


def draw_candle(d, x, y, r, c, ink):
    box(d, (x - 0.3 * r, y - 0.35 * r, x + 0.3 * r, y + r), c, ink)
    oval(d, (x - 0.16 * r, y - r, x + 0.16 * r, y - 0.45 * r), (255, 190, 40))
    oval(d, (x - 0.07 * r, y - 0.8 * r, x + 0.07 * r, y - 0.5 * r), (255, 250, 210))


def draw_robot(d, x, y, r, c, ink):
    stroke(d, [(x, y - 0.6 * r), (x, y - 0.95 * r)], DARK, 0.06 * r)
    disc(d, x, y - 0.95 * r, 0.1 * r, (230, 40, 40))
    d.rounded_rectangle((x - 0.8 * r, y - 0.6 * r, x + 0.8 * r, y + 0.75 * r), radius=max(1, int(0.15 * r)), fill=c, **_ink(ink))
    for side in (-1, 1):
        disc(d, x + side * 0.35 * r, y - 0.1 * r, 0.17 * r, (120, 230, 250))
    box(d, (x - 0.45 * r, y + 0.3 * r, x + 0.45 * r, y + 0.45 * r), DARK)


def draw_whale(d, x, y, r, c, ink):
    poly(d, [(x + 0.55 * r, y), (x + r, y - 0.55 * r), (x + 0.95 * r, y - 0.05 * r)], c, ink)
    d.chord((x - r, y - 0.6 * r, x + 0.7 * r, y + 0.6 * r), 180, 360, fill=c, **_ink(ink))
    d.chord((x - r, y - 0.25 * r, x + 0.7 * r, y + 0.25 * r), 0, 180, fill=shade(c, 1.3) if sum(c) < 400 else shade(c, 0.85), **_ink(ink))
    disc(d, x - 0.55 * r, y - 0.12 * r, 0.07 * r, DARK)
    stroke(d, [(x - 0.3 * r, y - 0.6 * r), (x - 0.4 * r, y - 0.95 * r)], (160, 210, 250), 0.08 * r)
    stroke(d, [(x - 0.3 * r, y - 0.6 * r), (x - 0.15 * r, y - 0.95 * r)], (160, 210, 250), 0.08 * r)


def draw_dog(d, x, y, r, c, ink):
    for side in (-1, 1):
        oval(d, sorted_box(x + side * 0.55 * r, y - 0.7 * r, x + side * 0.98 * r, y + 0.35 * r), shade(c, 0.7), ink)
    disc(d, x, y - 0.05 * r, 0.68 * r, c, ink)
    oval(d, (x - 0.32 * r, y + 0.12 * r, x + 0.32 * r, y + 0.58 * r), (245, 235, 220), ink)
    oval(d, (x - 0.12 * r, y + 0.14 * r, x + 0.12 * r, y + 0.3 * r), DARK)
    for side in (-1, 1):
        disc(d, x + side * 0.28 * r, y - 0.2 * r, 0.09 * r, DARK)


def draw_owl(d, x, y, r, c, ink):
    for side in (-1, 1):
        poly(d, [(x + side * 0.6 * r, y - 0.55 * r), (x + side * 0.55 * r, y - r), (x + side * 0.25 * r, y - 0.7 * r)], c, ink)
    oval(d, (x - 0.65 * r, y - 0.75 * r, x + 0.65 * r, y + r), c, ink)
    oval(d, (x - 0.4 * r, y + 0.05 * r, x + 0.4 * r, y + 0.85 * r), shade(c, 1.35) if sum(c) < 500 else shade(c, 0.85))
    for side in (-1, 1):
        disc(d, x + side * 0.3 * r, y - 0.35 * r, 0.24 * r, (250, 250, 240), ink)
        disc(d, x + side * 0.3 * r, y - 0.35 * r, 0.1 * r, DARK)
    poly(d, [(x - 0.08 * r, y - 0.15 * r), (x + 0.08 * r, y - 0.15 * r), (x, y + 0.05 * r)], (245, 160, 30))


def draw_penguin(d, x, y, r, c, ink):
    oval(d, (x - 0.55 * r, y - 0.6 * r, x + 0.55 * r, y + r), c, ink)
    oval(d, (x - 0.38 * r, y - 0.2 * r, x + 0.38 * r, y + 0.92 * r), (250, 250, 250))
    disc(d, x, y - 0.6 * r, 0.38 * r, c, ink)
    for side in (-1, 1):
        disc(d, x + side * 0.14 * r, y - 0.65 * r, 0.07 * r, (250, 250, 250))
    poly(d, [(x - 0.1 * r, y - 0.5 * r), (x + 0.1 * r, y - 0.5 * r), (x, y - 0.35 * r)], (245, 160, 30))
    for side in (-1, 1):
        oval(d, (x + side * 0.25 * r - 0.15 * r, y + 0.9 * r, x + side * 0.25 * r + 0.15 * r, y + r * 1.02), (245, 160, 30))


def draw_ghost(d, x, y, r, c, ink):
    body = [(x + 0.65 * r * math.cos(a), y - 0.25 * r + 0.65 * r * math.sin(a)) for a in np.linspace(math.pi, 2 * math.pi, 16)]
    hem = [(x + 0.65 * r - k * 0.26 * r, y + (0.95 if k % 2 == 0 else 0.7) * r) for k in range(6)]
    poly(d, body + hem, c, ink)
    for side in (-1, 1):
        oval(d, (x + side * 0.25 * r - 0.1 * r, y - 0.4 * r, x + side * 0.25 * r + 0.1 * r, y - 0.1 * r), DARK)
    oval(d, (x - 0.1 * r, y + 0.05 * r, x + 0.1 * r, y + 0.3 * r), DARK)


def draw_pumpkin(d, x, y, r, c, ink):
    box(d, (x - 0.08 * r, y - 0.95 * r, x + 0.08 * r, y - 0.55 * r), (80, 120, 40))
    for dx, f in ((-0.35, 0.85), (0.35, 0.85), (0, 1.0)):
        oval(d, (x + dx * r - 0.5 * r, y - 0.65 * r, x + dx * r + 0.5 * r, y + 0.8 * r), shade(c, f), ink)


def draw_ladybug(d, x, y, r, c, ink):
    disc(d, x, y - 0.65 * r, 0.3 * r, DARK)
    disc(d, x, y + 0.1 * r, 0.8 * r, c, ink)
    stroke(d, [(x, y - 0.7 * r), (x, y + 0.9 * r)], DARK, 0.07 * r)
    for dx, dy in ((-0.4, -0.15), (0.4, -0.15), (-0.35, 0.4), (0.35, 0.4)):
        disc(d, x + dx * r, y + dy * r, 0.14 * r, DARK)


def draw_snail(d, x, y, r, c, ink):
    oval(d, (x - r, y + 0.35 * r, x + 0.9 * r, y + 0.75 * r), (200, 190, 140), ink)
    stroke(d, [(x - 0.75 * r, y + 0.45 * r), (x - 0.9 * r, y - 0.05 * r)], DARK, 0.05 * r)
    disc(d, x + 0.15 * r, y, 0.62 * r, c, ink)
    d.arc((x - 0.2 * r, y - 0.35 * r, x + 0.5 * r, y + 0.35 * r), 0, 300, fill=shade(c, 0.55), width=max(1, int(0.08 * r)))
    d.arc((x + 0.02 * r, y - 0.13 * r, x + 0.28 * r, y + 0.13 * r), 0, 300, fill=shade(c, 0.55), width=max(1, int(0.08 * r)))


def draw_anchor(d, x, y, r, c, ink):
    w = 0.13 * r
    d.ellipse((x - 0.22 * r, y - r, x + 0.22 * r, y - 0.56 * r), outline=c, width=max(1, int(w)))
    stroke(d, [(x, y - 0.6 * r), (x, y + 0.85 * r)], c, w)
    stroke(d, [(x - 0.45 * r, y - 0.35 * r), (x + 0.45 * r, y - 0.35 * r)], c, w)
    d.arc((x - 0.75 * r, y - 0.15 * r, x + 0.75 * r, y + 0.9 * r), 20, 160, fill=c, width=max(1, int(w)))


def draw_leaf(d, x, y, r, c, ink):
    poly(d, [(x - 0.75 * r, y + 0.75 * r), (x - 0.6 * r, y - 0.2 * r), (x - 0.1 * r, y - 0.7 * r), (x + 0.8 * r, y - 0.8 * r), (x + 0.7 * r, y + 0.05 * r), (x + 0.2 * r, y + 0.6 * r)], c, ink)
    stroke(d, [(x - 0.95 * r, y + 0.95 * r), (x + 0.6 * r, y - 0.6 * r)], shade(c, 0.6), 0.06 * r)


def draw_key(d, x, y, r, c, ink):
    d.ellipse((x - r, y - 0.35 * r, x - 0.3 * r, y + 0.35 * r), outline=c, width=max(1, int(0.18 * r)))
    box(d, (x - 0.32 * r, y - 0.09 * r, x + r, y + 0.09 * r), c, ink)
    for tx in (0.55, 0.8):
        box(d, (x + tx * r, y + 0.05 * r, x + (tx + 0.12) * r, y + 0.35 * r), c, ink)


def draw_cupcake(d, x, y, r, c, ink):
    poly(d, [(x - 0.6 * r, y), (x + 0.6 * r, y), (x + 0.42 * r, y + 0.9 * r), (x - 0.42 * r, y + 0.9 * r)], (225, 180, 120), ink)
    for dx, dy, s in ((-0.35, -0.15, 0.3), (0.35, -0.15, 0.3), (0, -0.45, 0.38)):
        disc(d, x + dx * r, y + dy * r, s * r, c, ink)
    disc(d, x, y - 0.88 * r, 0.13 * r, (200, 20, 40))


def sorted_box(x0, y0, x1, y1):
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


class Kind(NamedTuple):
    nouns: tuple  # (singular, plural) pairs, all naming the same thing
    colour: Optional[str]  # usual colour when the prompt names none; None: any
    draw: Callable


KINDS = {
    "circle": Kind((("circle", "circles"), ("disc", "discs")), None, draw_circle),
    "square": Kind((("square", "squares"), ("box", "boxes")), None, draw_square),
    "triangle": Kind((("triangle", "triangles"),), None, draw_triangle),
    "star": Kind((("star", "stars"),), None, draw_star),
    "heart": Kind((("heart", "hearts"),), None, draw_heart),
    "hexagon": Kind((("hexagon", "hexagons"),), None, draw_hexagon),
    "diamond": Kind((("diamond", "diamonds"), ("rhombus", "rhombuses")), None, draw_diamond),
    "cross": Kind((("cross", "crosses"), ("plus sign", "plus signs")), None, draw_cross),
    "ring": Kind((("ring", "rings"), ("donut", "donuts")), None, draw_ring),
    "arrow": Kind((("arrow", "arrows"),), None, draw_arrow),
    "house": Kind((("house", "houses"), ("cottage", "cottages")), "yellow", draw_house),
    "tree": Kind((("tree", "trees"),), "green", draw_tree),
    "sun": Kind((("sun", "suns"),), "yellow", draw_sun),
    "moon": Kind((("crescent moon", "crescent moons"), ("moon", "moons")), "yellow", draw_moon),
    "fish": Kind((("fish", "fish"), ("goldfish", "goldfish")), "orange", draw_fish),
    "cat": Kind((("cat face", "cat faces"), ("cat", "cats"), ("kitten", "kittens")), "orange", draw_cat),
    "car": Kind((("car", "cars"),), "blue", draw_car),
    "flower": Kind((("flower", "flowers"), ("daisy", "daisies")), "pink", draw_flower),
    "mountain": Kind((("mountain", "mountains"), ("mountain peak", "mountain peaks")), "grey", draw_mountain),
    "boat": Kind((("sailboat", "sailboats"), ("boat", "boats")), "brown", draw_boat),
    "balloon": Kind((("balloon", "balloons"),), "red", draw_balloon),
    "bird": Kind((("bird", "birds"), ("songbird", "songbirds")), "blue", draw_bird),
    "mushroom": Kind((("mushroom", "mushrooms"), ("toadstool", "toadstools")), "red", draw_mushroom),
    "rocket": Kind((("rocket", "rockets"), ("spaceship", "spaceships")), "white", draw_rocket),
    "umbrella": Kind((("umbrella", "umbrellas"),), "red", draw_umbrella),
    "apple": Kind((("apple", "apples"),), "red", draw_apple),
    "cactus": Kind((("cactus", "cacti"),), "green", draw_cactus),
    "butterfly": Kind((("butterfly", "butterflies"),), "orange", draw_butterfly),
    "snowman": Kind((("snowman", "snowmen"),), "white", draw_snowman),
    "icecream": Kind((("ice cream cone", "ice cream cones"), ("ice cream", "ice creams")), "pink", draw_ice_cream),
    "crown": Kind((("crown", "crowns"),), "yellow", draw_crown),
    "kite": Kind((("kite", "kites"),), "red", draw_kite),
    "lighthouse": Kind((("lighthouse", "lighthouses"),), "red", draw_lighthouse),
    "castle": Kind((("castle", "castles"),), "grey", draw_castle),
    "teacup": Kind((("teacup", "teacups"), ("cup of tea", "cups of tea")), "blue", draw_teacup),
    "clock": Kind((("clock", "clocks"), ("wall clock", "wall clocks")), "brown", draw_clock),
    "pizza": Kind((("pizza slice", "pizza slices"), ("slice of pizza", "slices of pizza")), "red", draw_pizza),
    "candle": Kind((("candle", "candles"),), "white", draw_candle),
    "robot": Kind((("robot", "robots"), ("robot head", "robot heads")), "grey", draw_robot),
    "whale": Kind((("whale", "whales"),), "blue", draw_whale),
    "dog": Kind((("dog face", "dog faces"), ("puppy", "puppies"), ("dog", "dogs")), "brown", draw_dog),
    "owl": Kind((("owl", "owls"),), "brown", draw_owl),
    "penguin": Kind((("penguin", "penguins"),), "black", draw_penguin),
    "ghost": Kind((("ghost", "ghosts"),), "white", draw_ghost),
    "pumpkin": Kind((("pumpkin", "pumpkins"),), "orange", draw_pumpkin),
    "ladybug": Kind((("ladybug", "ladybugs"), ("ladybird", "ladybirds")), "red", draw_ladybug),
    "snail": Kind((("snail", "snails"),), "brown", draw_snail),
    "anchor": Kind((("anchor", "anchors"),), "grey", draw_anchor),
    "leaf": Kind((("leaf", "leaves"),), "green", draw_leaf),
    "key": Kind((("key", "keys"),), "yellow", draw_key),
    "cupcake": Kind((("cupcake", "cupcakes"),), "pink", draw_cupcake),
}

COLOURS = {  # concept: (RGB, words)
    "red": ((212, 35, 40), ("red", "crimson", "scarlet")),
    "orange": ((245, 135, 25), ("orange", "tangerine")),
    "yellow": ((250, 215, 35), ("yellow", "golden", "lemon yellow")),
    "green": ((45, 165, 65), ("green", "emerald green")),
    "teal": ((20, 160, 160), ("teal", "turquoise")),
    "blue": ((35, 85, 220), ("blue", "cobalt blue", "azure")),
    "purple": ((130, 55, 185), ("purple", "violet")),
    "pink": ((245, 125, 185), ("pink", "rose pink")),
    "brown": ((125, 80, 40), ("brown", "chocolate brown")),
    "black": ((25, 25, 30), ("black", "jet black")),
    "white": ((245, 245, 245), ("white", "snow-white")),
    "grey": ((135, 135, 140), ("grey", "gray", "silver")),
}

SIZES = {  # concept: (radius factor, words); "medium" is never worded
    "tiny": (0.55, ("tiny", "miniature")),
    "small": (0.75, ("small", "little")),
    "medium": (1.0, ("",)),
    "large": (1.35, ("large", "big")),
    "huge": (1.75, ("huge", "giant", "enormous")),
}
SIZE_WEIGHTS = {"tiny": 0.1, "small": 0.12, "medium": 0.5, "large": 0.16, "huge": 0.12}

COUNT_WORDS = {1: ("a", "one", "a single"), 2: ("two", "a pair of"), 3: ("three",), 4: ("four",), 5: ("five",)}
COUNT_WEIGHTS = {1: 0.45, 2: 0.2, 3: 0.15, 4: 0.1, 5: 0.1}

# Relations of groups[0] to groups[1]; the inverse lets a rewording swap the two groups.
RELATIONS = {
    "above": ("above", "over", "floating above"),
    "below": ("below", "under", "beneath"),
    "left": ("to the left of", "left of"),
    "right": ("to the right of", "right of"),
    "beside": ("next to", "beside"),
    "around": ("surrounding", "around", "encircling"),
    "and": ("and", "with"),
    "inside": ("surrounded by", "encircled by"),  # only as the inverse of "around"
}
INVERSE = {"above": "below", "below": "above", "left": "right", "right": "left", "beside": "beside", "and": "and", "around": "inside"}
SAMPLED_RELATIONS = ("above", "below", "left", "right", "beside", "around", "and")

# Unit-square boxes (x0, y0, x1, y1) for groups[0] and groups[1] under each relation.
REGIONS = {
    None: ((0.1, 0.1, 0.9, 0.9),),
    "above": ((0.08, 0.05, 0.92, 0.45), (0.08, 0.55, 0.92, 0.95)),
    "below": ((0.08, 0.55, 0.92, 0.95), (0.08, 0.05, 0.92, 0.45)),
    "left": ((0.05, 0.12, 0.45, 0.88), (0.55, 0.12, 0.95, 0.88)),
    "right": ((0.55, 0.12, 0.95, 0.88), (0.05, 0.12, 0.45, 0.88)),
    "beside": ((0.14, 0.28, 0.5, 0.72), (0.5, 0.28, 0.86, 0.72)),
    "and": ((0.06, 0.06, 0.94, 0.94), (0.06, 0.06, 0.94, 0.94)),
}
BASE_RADIUS = 0.19  # of the canvas width, for one medium object
COUNT_SHRINK = {1: 1.0, 2: 0.82, 3: 0.7, 4: 0.62, 5: 0.55}


# ---------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------


def scatter_dots(d, w, rng, n, colours, max_r=1.0, y_max=1.0):
    for _ in range(n):
        x, y, r = rng.random() * w, rng.random() * w * y_max, max(0.5, rng.random() * max_r * w / 128)
        d.ellipse((x - r, y - r, x + r, y + r), fill=colours[rng.integers(len(colours))])


def bg_sky(w, rng):
    a = vertical_gradient(w, (75, 140, 228), (195, 225, 250))

    def clouds(d, w):
        for _ in range(rng.integers(1, 4)):
            cx, cy, s = rng.uniform(0.1, 0.9) * w, rng.uniform(0.08, 0.6) * w, rng.uniform(0.05, 0.1) * w
            for dx in (-1.2, 0, 1.2):
                r = s * (1.3 if dx == 0 else 1.0)
                d.ellipse((cx + dx * s - r, cy - r * 0.7, cx + dx * s + r, cy + r * 0.7), fill=(250, 250, 252))

    return draw_on(a, clouds)


def bg_sea(w, rng):
    h = rng.uniform(0.36, 0.5)
    a = vertical_gradient(w, (120, 175, 235), (205, 228, 248), 0, h)
    vertical_gradient(w, (45, 115, 195), (12, 48, 112), h, 1, out=a)

    def waves(d, w):
        for _ in range(int(30 * rng.uniform(0.8, 1.2))):
            x, y = rng.random() * w, (h + rng.random() * (1 - h)) * w
            d.arc((x, y, x + w * 0.08, y + w * 0.03), 200, 340, fill=(150, 195, 235), width=max(1, w // 100))

    return draw_on(a, waves)


def bg_desert(w, rng):
    h = rng.uniform(0.42, 0.55)
    a = vertical_gradient(w, (250, 200, 140), (252, 236, 205), 0, h)
    vertical_gradient(w, (238, 198, 128), (200, 145, 78), h, 1, out=a)

    def dunes(d, w):
        xs = np.linspace(0, w, 24)
        for k in range(2):
            base, amp, ph = (h + 0.15 + 0.2 * k) * w, 0.05 * w, rng.random() * 6
            top = [(x, base + amp * math.sin(ph + 3 * x / w * math.pi)) for x in xs]
            d.polygon(top + [(w, w), (0, w)], fill=shade((225, 180, 105), 0.92 - 0.07 * k))

    return draw_on(a, dunes)


def bg_forest(w, rng):
    a = vertical_gradient(w, (150, 190, 160), (120, 165, 130), 0, 0.3)
    vertical_gradient(w, (70, 105, 55), (40, 70, 35), 0.3, 1, out=a)

    def trees(d, w):
        for k in range(int(rng.integers(12, 20))):
            x, base = rng.random() * w, (0.35 + 0.55 * k / 20) * w
            s = (0.07 + 0.05 * rng.random()) * w
            g = (20 + int(rng.integers(20)), 70 + int(rng.integers(35)), 35 + int(rng.integers(15)))
            d.rectangle((x - s * 0.12, base - s * 0.5, x + s * 0.12, base + s * 0.2), fill=(70, 45, 30))
            d.polygon([(x - s, base - s * 0.4), (x, base - s * 2.6), (x + s, base - s * 0.4)], fill=g)

    return draw_on(a, trees)


def bg_starry(w, rng):
    a = vertical_gradient(w, (5, 8, 30), (28, 38, 90))
    return draw_on(a, lambda d, w: scatter_dots(d, w, rng, w * w // 180, [(255, 255, 255), (255, 240, 200), (190, 200, 255)], 1.4))


def bg_city(w, rng):
    a = vertical_gradient(w, (8, 6, 24), (40, 30, 70))

    def skyline(d, w):
        x = 0.0
        while x < w:
            bw, bh = rng.uniform(0.08, 0.17) * w, rng.uniform(0.25, 0.62) * w
            d.rectangle((x, w - bh, x + bw, w), fill=shade((22, 22, 34), rng.uniform(0.7, 1.3)))
            step = max(2.0, w / 40)
            for wy in np.arange(w - bh + step, w - step, step * 1.6):
                for wx in np.arange(x + step * 0.6, x + bw - step, step * 1.4):
                    if rng.random() < 0.35:
                        d.rectangle((wx, wy, wx + step * 0.6, wy + step * 0.7), fill=(250, 215, 110))
            x += bw + rng.uniform(0, 0.02) * w

    return draw_on(a, skyline)


def bg_paper(w, rng):
    a = np.broadcast_to(rgb01((244, 239, 226)), (w, w, 3)).copy()
    fibres = 0.05 * (smooth_noise(rng, w, 24) - 0.5) + 0.035 * (rng.random((w, w)) - 0.5)
    return a + fibres[..., None]


def bg_snow(w, rng):
    h = rng.uniform(0.4, 0.55)
    a = vertical_gradient(w, (195, 205, 222), (228, 233, 242), 0, h)
    vertical_gradient(w, (252, 252, 254), (215, 226, 242), h, 1, out=a)
    return draw_on(a, lambda d, w: scatter_dots(d, w, rng, w * w // 300, [(255, 255, 255)], 1.6))


def bg_meadow(w, rng):
    h = rng.uniform(0.4, 0.55)
    a = vertical_gradient(w, (100, 160, 235), (190, 220, 245), 0, h)
    vertical_gradient(w, (105, 180, 70), (40, 115, 35), h, 1, out=a)

    def grass(d, w):
        for _ in range(w * 2):
            x, y = rng.random() * w, (h + rng.random() * (1 - h)) * w
            d.line([(x, y), (x + rng.normal(0, 0.01) * w, y - 0.03 * w)], fill=shade((60, 140, 45), rng.uniform(0.7, 1.3)), width=1)

    return draw_on(a, grass)


def bg_sunset(w, rng):
    h = rng.uniform(0.62, 0.75)
    a = vertical_gradient(w, (70, 40, 110), (252, 150, 70), 0, h)
    vertical_gradient(w, (60, 30, 50), (30, 15, 30), h, 1, out=a)

    def sun(d, w):
        x, r = rng.uniform(0.25, 0.75) * w, 0.14 * w
        d.pieslice((x - r, h * w - r, x + r, h * w + r), 180, 360, fill=(255, 205, 110))

    return draw_on(a, sun)


def bg_underwater(w, rng):
    a = vertical_gradient(w, (35, 165, 185), (5, 38, 88))
    yy, xx = np.mgrid[0:w, 0:w] / w
    rays = np.clip(np.sin((xx + 0.5 * yy) * rng.uniform(14, 20) + rng.random() * 6), 0, 1) ** 4 * (1 - yy)
    a = a + 0.18 * rays[..., None]

    def bubbles(d, w):
        for _ in range(int(rng.integers(6, 14))):
            x, y, r = rng.random() * w, rng.random() * w, rng.uniform(0.01, 0.03) * w
            d.ellipse((x - r, y - r, x + r, y + r), outline=(210, 240, 250), width=max(1, w // 128))

    return draw_on(a, bubbles)


def bg_space(w, rng):
    a = np.broadcast_to(rgb01((4, 4, 12)), (w, w, 3)).copy()

    def planet(d, w):
        scatter_dots(d, w, rng, w * w // 260, [(255, 255, 255), (200, 210, 255)], 1.2)
        x, y = pick(rng, ((0.1, 0.1), (0.9, 0.1), (0.1, 0.9), (0.9, 0.9)))
        r, c = rng.uniform(0.18, 0.3) * w, COLOURS[pick(rng, ("orange", "teal", "purple", "red", "blue"))][0]
        d.ellipse((x * w - r, y * w - r, x * w + r, y * w + r), fill=shade(c, 0.8))

    return draw_on(a, planet)


def bg_studio(w, rng):
    yy, xx = np.mgrid[0:w, 0:w] / (w - 1) - 0.5
    return gray3(0.98 - 0.18 * (xx**2 + yy**2)).astype(np.float32)


def bg_brick(w, rng):
    a = np.broadcast_to(rgb01((200, 194, 184)), (w, w, 3)).copy()

    def bricks(d, w):
        bh, bw, gap = w / 10, w / 5, max(1, w // 64)
        for row in range(11):
            off = (row % 2) * bw / 2
            for col in range(-1, 6):
                x, y = col * bw + off, row * bh
                d.rectangle((x + gap, y + gap, x + bw - gap, y + bh - gap), fill=shade((170, 72, 52), rng.uniform(0.8, 1.15)))

    return draw_on(a, bricks)


def bg_beach(w, rng):
    a = vertical_gradient(w, (110, 170, 235), (200, 228, 248), 0, 0.35)
    vertical_gradient(w, (40, 130, 190), (70, 170, 200), 0.35, 0.55, out=a)
    vertical_gradient(w, (245, 225, 175), (225, 195, 135), 0.55, 1, out=a)
    a[int(0.55 * w) : int(0.55 * w) + max(1, w // 50)] = 0.97
    return a


def bg_rain(w, rng):
    a = vertical_gradient(w, (95, 100, 110), (150, 155, 160))

    def rain(d, w):
        for _ in range(w * 2):
            x, y, n = rng.random() * w, rng.random() * w, rng.uniform(0.03, 0.07) * w
            d.line([(x, y), (x - 0.3 * n, y + n)], fill=(200, 210, 225), width=1)

    return draw_on(a, rain)


def bg_wood(w, rng):
    yy, xx = np.mgrid[0:w, 0:w] / w
    warp = smooth_noise(rng, w, 5) * 3
    grain_ = 0.5 + 0.5 * np.sin((yy * 18 + warp) * math.pi)  # the grain runs across the planks
    a = mix(rgb01((150, 95, 50)), rgb01((105, 62, 30)), grain_[..., None])
    a[(np.arange(w) % max(4, w // 4)) < max(1, w // 96)] *= 0.6  # seams between planks
    return a


def bg_checker(w, rng):
    cell = max(2, w // 8)
    yy, xx = np.mgrid[0:w, 0:w] // cell
    return np.where(((yy + xx) % 2 == 0)[..., None], rgb01((235, 235, 230)), rgb01((40, 40, 45))).astype(np.float32)


def bg_moon_surface(w, rng):
    a = np.broadcast_to(rgb01((3, 3, 10)), (w, w, 3)).copy()
    vertical_gradient(w, (170, 170, 172), (110, 110, 115), 0.58, 1, out=a)

    def craters(d, w):
        scatter_dots(d, w, rng, w * w // 400, [(255, 255, 255)], 1.0, y_max=0.58)
        for _ in range(int(rng.integers(5, 10))):
            x, y, r = rng.random() * w, rng.uniform(0.62, 0.97) * w, rng.uniform(0.02, 0.06) * w
            d.ellipse((x - r, y - r * 0.4, x + r, y + r * 0.4), fill=(85, 85, 90))

    return draw_on(a, craters)


def bg_autumn(w, rng):
    h = rng.uniform(0.4, 0.5)
    a = vertical_gradient(w, (150, 185, 220), (225, 215, 190), 0, h)
    vertical_gradient(w, (200, 120, 45), (140, 70, 25), h, 1, out=a)

    def leaves(d, w):
        for _ in range(w // 2):
            x, y, r = rng.random() * w, (h + rng.random() * (1 - h)) * w, rng.uniform(0.01, 0.025) * w
            d.ellipse((x - r, y - r * 0.6, x + r, y + r * 0.6), fill=pick(rng, ((220, 80, 20), (240, 170, 30), (170, 40, 20))))

    return draw_on(a, leaves)


def bg_plain(w, rng):
    """No background named: a flat, pale colour."""
    c = np.clip(0.82 + 0.15 * rng.random(3), 0, 1).astype(np.float32)
    return vertical_gradient(w, tuple(c * 255), tuple(c * 235))


class Background(NamedTuple):
    phrases: tuple  # follow the subject: "two stars <in the desert>"
    clauses: tuple  # stand alone after a comma: "..., desert landscape"
    paint: Callable


BACKGROUNDS = {
    "sky": Background(("in the sky", "in a clear blue sky", "against a blue sky"), ("blue sky background", "clear sky"), bg_sky),
    "sea": Background(("over the sea", "on the ocean", "above the ocean waves"), ("ocean background", "seascape"), bg_sea),
    "desert": Background(("in a desert", "in the desert", "on sand dunes"), ("desert landscape", "sand dunes"), bg_desert),
    "forest": Background(("in a forest", "in a dense forest", "in the woods"), ("forest background", "woodland"), bg_forest),
    "starry": Background(("on a starry night sky", "under a starry night sky", "under the stars at night"), ("starry night", "night sky full of stars"), bg_starry),
    "city": Background(("in a city at night", "in front of a city skyline at night", "in a big city at night"), ("city at night", "night cityscape"), bg_city),
    "paper": Background(("on white paper", "on a sheet of paper", "on textured paper"), ("paper background", "textured paper"), bg_paper),
    "snow": Background(("in a snowy field", "in the snow", "in a winter landscape"), ("snowy landscape", "winter scene"), bg_snow),
    "meadow": Background(("in a green meadow", "on a grassy field", "in a field of grass"), ("grassy meadow", "green field"), bg_meadow),
    "sunset": Background(("at sunset", "against a sunset sky", "at dusk"), ("sunset", "golden hour sunset"), bg_sunset),
    "underwater": Background(("underwater", "under the sea", "deep under water"), ("underwater scene", "ocean floor"), bg_underwater),
    "space": Background(("in outer space", "floating in space", "in deep space"), ("outer space", "cosmos background"), bg_space),
    "studio": Background(("on a white background", "isolated on white", "on a plain white background"), ("white background", "studio backdrop"), bg_studio),
    "brick": Background(("in front of a brick wall", "against a red brick wall", "on a brick wall"), ("brick wall background", "brick wall"), bg_brick),
    "beach": Background(("on a sandy beach", "at the beach", "on the seashore"), ("beach scene", "sandy beach"), bg_beach),
    "rain": Background(("in the rain", "on a rainy day", "in a rainstorm"), ("rainy weather", "pouring rain"), bg_rain),
    "wood": Background(("on a wooden table", "on a wooden floor", "on wooden planks"), ("wood texture", "wooden tabletop"), bg_wood),
    "checker": Background(("on a checkered floor", "on a chessboard", "on a black and white checkerboard"), ("checkerboard pattern", "checkered background"), bg_checker),
    "moon": Background(("on the surface of the moon", "on the moon", "on a lunar landscape"), ("lunar surface", "moonscape"), bg_moon_surface),
    "autumn": Background(("in an autumn park", "on fallen autumn leaves", "in the fall"), ("autumn scenery", "fall foliage"), bg_autumn),
}


# ---------------------------------------------------------------------------------------------
# Styles: whole-image transforms fn(img, mask, rng) -> img (mask = where objects are)
# ---------------------------------------------------------------------------------------------


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


THERMAL_STOPS = np.array([(0, 0, 10), (80, 0, 120), (200, 30, 60), (250, 140, 0), (255, 240, 120), (255, 255, 255)], np.float32) / 255


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
    "pixel": Style(("pixel art of", "8-bit pixel art of"), ("pixel art", "8-bit pixel art", "pixelated"), style_pixel_art),
    "watercolour": Style(("a watercolor painting of", "a watercolour of"), ("watercolor", "watercolour painting", "soft watercolor wash"), style_watercolour),
    "neon": Style(("a neon illustration of", "neon art of"), ("neon", "neon glow", "glowing neon lights"), style_neon),
    "pencil": Style(("a pencil sketch of", "a pencil drawing of"), ("pencil sketch", "graphite drawing", "pencil drawing"), style_pencil),
    "oil": Style(("an oil painting of",), ("oil painting", "oil on canvas", "thick brush strokes"), style_oil),
    "bw": Style(("a black and white photo of",), ("black and white photo", "monochrome", "black and white"), style_black_white),
    "sepia": Style(("a vintage sepia photo of", "an old sepia photograph of"), ("vintage sepia", "sepia tone", "old sepia photograph"), style_sepia),
    "lowpoly": Style(("a low-poly render of", "low poly art of"), ("low-poly", "low poly 3d art", "faceted low poly"), style_low_poly),
    "popart": Style(("a pop art print of", "a comic book panel of"), ("pop art", "comic book style", "halftone comic art"), style_pop_art),
    "blueprint": Style(("a blueprint of", "a technical blueprint of"), ("blueprint", "technical drawing on blueprint paper"), style_blueprint),
    "thermal": Style(("a thermal camera image of", "an infrared thermal image of"), ("thermal imaging", "infrared heat map"), style_thermal),
    "mosaic": Style(("a mosaic of", "a tile mosaic of"), ("mosaic", "ceramic tile mosaic"), style_mosaic),
    "stained": Style(("a stained glass window of", "stained glass art of"), ("stained glass", "stained glass window"), style_stained_glass),
}


# ---------------------------------------------------------------------------------------------
# Framings: how the picture is presented ("a postage stamp of ...")
# ---------------------------------------------------------------------------------------------


def text_bars(d, x, y, w, rng, lines, height, colour, align="left"):
    """Rows of bars standing in for lettering (unreadable at 64 px anyway)."""
    for k in range(lines):
        length = w * rng.uniform(0.35, 1.0) * (1.0 if k == 0 else 0.7)
        x0 = x if align == "left" else x + (w - length) / 2
        y0 = y + k * height * 1.7
        d.rectangle((x0, y0, x0 + length, y0 + height), fill=colour)


def finish_photo(img, rng):
    return grain(vignette(blur(img, 0.6) * rgb01((262, 255, 240)), 0.5), rng, 0.035)


def finish_pastel(img, rng):
    return mix(saturate(img, 0.8), 1.0, 0.32)


def finish_album(img, rng):
    w = img.shape[0]
    frame = rgb01(pick(rng, ((20, 20, 20), (240, 238, 230), (180, 30, 40))))
    b = max(2, w // 14)
    out = img.copy()
    out[:b], out[-b:], out[:, :b], out[:, -b:] = frame, frame, frame, frame
    ink = (250, 250, 250) if frame.mean() < 0.5 else (20, 20, 20)

    def lettering(d, w):
        text_bars(d, b * 2, b * 1.6, w * 0.55, rng, 2, max(2, w // 22), ink)
        d.rectangle((w - b - w * 0.2, w - b - w * 0.1, w - b * 1.5, w - b * 1.5), fill=(15, 15, 15))

    return draw_on(out, lettering)


def finish_stamp(img, rng):
    w = img.shape[0]
    margin = int(0.12 * w)
    paper = np.broadcast_to(rgb01((250, 248, 240)), (w, w, 3)).copy()
    paper[margin : w - margin, margin : w - margin] = to_array(to_image(img).resize((w - 2 * margin, w - 2 * margin), Image.LANCZOS))

    def perforate(d, w):
        step, r = w / 11, w / 34
        for k in range(12):
            for cx, cy in ((k * step, 0), (k * step, w - 1), (0, k * step), (w - 1, k * step)):
                d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(70, 60, 55))  # the desk through the holes
        d.rectangle((margin * 1.3, margin * 1.3, margin * 1.3 + w * 0.16, margin * 1.3 + w * 0.07), fill=(30, 30, 30))

    return draw_on(paper, perforate)


def finish_poster(img, rng):
    w = img.shape[0]
    band = int(0.26 * w)
    out = img.copy()
    out[w - band :] = rgb01(pick(rng, ((20, 20, 30), (150, 20, 25), (240, 200, 40), (15, 60, 110))))
    ink = (250, 250, 250) if out[-1, 0].mean() < 0.6 else (20, 20, 20)

    def lettering(d, w):
        text_bars(d, w * 0.12, w - band + w * 0.04, w * 0.76, rng, 1, w * 0.08, ink, "centre")
        text_bars(d, w * 0.2, w - band + w * 0.16, w * 0.6, rng, 2, max(1, w // 50), ink, "centre")
        text_bars(d, w * 0.25, w * 0.03, w * 0.5, rng, 1, max(1, w // 40), ink, "centre")

    return draw_on(out, lettering)


def finish_polaroid(img, rng):
    w = img.shape[0]
    side, bottom = int(0.07 * w), int(0.22 * w)
    inner = w - 2 * side
    out = np.broadcast_to(rgb01((246, 244, 236)), (w, w, 3)).copy()
    photo = to_array(to_image(img).resize((inner, inner), Image.LANCZOS).crop((0, 0, inner, w - side - bottom)))
    out[side : w - bottom, side : w - side] = mix(photo, rgb01((250, 235, 200)), 0.12)  # instant film fades warm
    return out


def finish_cctv(img, rng):
    w = img.shape[0]
    lum = luminance(blur(img, w / 100))
    out = grain(lum[..., None] * rgb01((175, 235, 170)) + 0.04, rng, 0.06)
    out[::2] *= 0.82  # scanlines

    def overlay(d, w):
        text_bars(d, w * 0.05, w * 0.05, w * 0.45, rng, 1, max(2, w // 28), (240, 240, 240))
        d.ellipse((w * 0.86, w * 0.05, w * 0.93, w * 0.12), fill=(230, 30, 30))

    return draw_on(out, overlay)


def prepare_closeup(bg, rng):
    return blur(bg, bg.shape[0] / 40)  # shallow depth of field


def prepare_wide(bg, rng):
    w = bg.shape[0]
    out = bg.copy()
    h = int(0.72 * w)
    out[h:] = out[h:] * 0.72 + rgb01((40, 60, 30)) * 0.28  # ground up to a low horizon
    return out


class Framing(NamedTuple):
    words: tuple
    finish: Optional[Callable] = None  # fn(img, rng) after the style
    prepare_bg: Optional[Callable] = None  # fn(bg, rng) before objects are drawn
    place: tuple = (1.0, 1.0, 1.0, 0.5)  # (radius scale, x spread, y spread about the centre, centre y)
    outline: Optional[str] = None  # "ink": dark outlines; "sticker": white die-cut border


FRAMINGS = {
    "photo": Framing(("a photo of", "a photograph of", "a snapshot of"), finish_photo),
    "childrens": Framing(("a children's book illustration of", "a storybook illustration of", "a children's book drawing of"), finish_pastel, outline="ink"),
    "album": Framing(("an album cover showing", "an album cover with", "album art of"), finish_album),
    "stamp": Framing(("a postage stamp of", "a postage stamp showing", "a stamp depicting"), finish_stamp),
    "poster": Framing(("a poster of", "a poster showing", "a movie poster featuring"), finish_poster, place=(0.85, 0.8, 0.8, 0.4)),
    "closeup": Framing(("a close-up of", "a closeup photo of", "a macro shot of"), prepare_bg=prepare_closeup, place=(1.6, 1.4, 1.4, 0.5)),
    "wide": Framing(("a wide shot of", "a wide-angle view of", "a distant view of"), prepare_bg=prepare_wide, place=(0.45, 0.55, 0.3, 0.66)),  # small, near the horizon
    "polaroid": Framing(("a polaroid of", "a polaroid photo of", "an instant photo of"), finish_polaroid),
    "sticker": Framing(("a sticker of", "a die-cut sticker of", "a vinyl sticker of"), outline="sticker"),
    "cctv": Framing(("a security camera still of", "cctv footage of", "a surveillance camera image of"), finish_cctv),
}


# ---------------------------------------------------------------------------------------------
# Quality tags: each maps to a visible change, except the rare "hype" ones
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Sampling scenes and wording them
# ---------------------------------------------------------------------------------------------


def pick(rng, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def pick_weighted(rng, weights):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def maybe(rng, options, p_none):
    return None if rng.random() < p_none else pick(rng, options)


def sample_group(rng, max_count=5):
    counts = {c: w for c, w in COUNT_WEIGHTS.items() if c <= max_count}
    colour = maybe(rng, COLOURS, p_none=0.2)
    return Group(pick(rng, KINDS), colour, pick_weighted(rng, counts), pick_weighted(rng, SIZE_WEIGHTS))


def sample_tags(rng):
    n = pick_weighted(rng, TAG_COUNT_WEIGHTS)
    tags = []
    while len(tags) < n:
        t = pick_weighted(rng, {k: t.weight for k, t in TAGS.items()})
        if t not in tags:
            tags.append(t)
    return tuple(tags)


def sample_scene(rng):
    """One random scene: what is drawn, where, on what, and how."""
    first = sample_group(rng)
    groups, relation = (first,), None
    if rng.random() < TWO_GROUP_RATE:
        first = sample_group(rng, max_count=3)
        second = sample_group(rng, max_count=3)
        while (second.kind, second.colour) == (first.kind, first.colour):
            second = sample_group(rng, max_count=3)
        relation = pick(rng, SAMPLED_RELATIONS)
        if relation == "around":  # a ring needs several objects around a single one
            first = Group(first.kind, first.colour, max(first.count, 3), first.size)
            second = Group(second.kind, second.colour, 1, second.size)
        groups = (first, second)
    return Scene(
        groups=groups,
        relation=relation,
        background=maybe(rng, BACKGROUNDS, P_NO_BACKGROUND),
        style=maybe(rng, STYLES, P_NO_STYLE),
        framing=maybe(rng, FRAMINGS, P_NO_FRAMING),
        tags=sample_tags(rng),
    )


def with_article(phrase):
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def word_group(group, rng):
    singular, plural = pick(rng, KINDS[group.kind].nouns)
    words = [pick(rng, SIZES[group.size][1])]
    if group.colour:
        words.append(pick(rng, COLOURS[group.colour][1]))
    words.append(singular if group.count == 1 else plural)
    head = " ".join(w for w in words if w)
    count = pick(rng, COUNT_WORDS[group.count])
    return with_article(head) if count == "a" else f"{count} {head}"


def word_subject(scene, rng):
    first = word_group(scene.groups[0], rng)
    if len(scene.groups) == 1:
        return first
    second, relation = word_group(scene.groups[1], rng), scene.relation
    if rng.random() < 0.35:  # say the same layout from the other group's side
        first, second, relation = second, first, INVERSE[relation]
    return f"{first} {pick(rng, RELATIONS[relation])} {second}"


def word_prompt(scene, rng):
    """A prompt for `scene`; synonyms and clause order come from `rng`, so rewordings differ."""
    head, clauses = word_subject(scene, rng), []
    if scene.background:
        bg = BACKGROUNDS[scene.background]
        if rng.random() < 0.75:
            head = f"{head} {pick(rng, bg.phrases)}"
        else:
            clauses.append(pick(rng, bg.clauses))
    style_leads = scene.style and not scene.framing and rng.random() < 0.4
    if scene.framing:
        head = f"{pick(rng, FRAMINGS[scene.framing].words)} {head}"
    elif style_leads:
        head = f"{pick(rng, STYLES[scene.style].prefixes)} {head}"
    if scene.style and not style_leads:
        clauses.append(pick(rng, STYLES[scene.style].suffixes))
    clauses += [pick(rng, TAGS[t].words) for t in scene.tags]
    rng.shuffle(clauses)
    return ", ".join([head] + clauses)


def sample_prompts(n, seed=0):
    """n (scene, prompt) pairs, one fresh scene each (no near-duplicates): for vocabulary checks."""
    out = []
    for k in range(n):
        rng = stream(seed, "scene", k)
        scene = sample_scene(rng)
        out.append((scene, word_prompt(scene, stream(seed, "wording", k, 0, 0))))
    return out


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def group_positions(count, region, rng):
    """Unit-square centres for `count` objects spread over `region` in a jittered row or grid."""
    x0, y0, x1, y1 = region
    wide = (x1 - x0) >= (y1 - y0)
    lines = 1 if count <= 3 else 2
    per_line = math.ceil(count / lines)
    out = []
    for k in range(count):
        line, slot = divmod(k, per_line)
        n_here = min(per_line, count - line * per_line)
        u, v = (slot + 0.5) / n_here, (line + 0.5) / lines
        if not wide:
            u, v = v, u
        u += rng.uniform(-0.12, 0.12) / max(n_here, lines)
        v += rng.uniform(-0.12, 0.12) / max(n_here, lines)
        out.append((x0 + u * (x1 - x0), y0 + v * (y1 - y0)))
    return out


def scattered_positions(count, region, rng):
    x0, y0, x1, y1 = region
    return [(rng.uniform(x0 + 0.1, x1 - 0.1), rng.uniform(y0 + 0.1, y1 - 0.1)) for _ in range(count)]


def ring_positions(count, rng, radius=0.33):
    turn = rng.random() * 2 * math.pi
    return [(0.5 + radius * math.cos(turn + 2 * math.pi * k / count), 0.5 + radius * math.sin(turn + 2 * math.pi * k / count)) for k in range(count)]


def group_rgb(group, rng):
    """The named colour, else the kind's usual one, else any: one per group, as a prompt implies."""
    return COLOURS[group.colour or KINDS[group.kind].colour or pick(rng, COLOURS)][0]


def jitter(rgb, rng, amount=14):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def layout(scene, w, rng):
    """Where every object goes, in pixels, honouring the relation and the framing's zoom."""
    r_scale, spread_x, spread_y, cy = FRAMINGS[scene.framing].place if scene.framing else Framing(()).place
    regions = REGIONS[None] if scene.relation in (None, "around") else REGIONS[scene.relation]
    if scene.relation == "beside" and rng.random() < 0.5:
        regions = regions[::-1]
    placed = []
    for i, group in enumerate(scene.groups):
        if scene.relation == "around":
            centres = ring_positions(group.count, rng) if i == 0 else [(0.5, 0.5)]
        elif scene.relation == "and":
            centres = scattered_positions(group.count, regions[i], rng)
        else:
            centres = group_positions(group.count, regions[min(i, len(regions) - 1)], rng)
        r = BASE_RADIUS * SIZES[group.size][0] * COUNT_SHRINK[group.count] * (0.85 if len(scene.groups) > 1 else 1.0)
        rgb = group_rgb(group, rng)
        for ux, uy in centres:
            x, y = 0.5 + (ux - 0.5) * spread_x, cy + (uy - 0.5) * spread_y
            placed.append(Placed(group.kind, jitter(rgb, rng), x * w, y * w, r * r_scale * rng.uniform(0.9, 1.1) * w))
    return placed


def draw_objects(placed, w, outline):
    """The objects on a transparent layer, back to front."""
    layer = Image.new("RGBA", (w, w), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    for p in placed:
        ink = (DARK, max(1, int(round(p.r * 0.12)))) if outline == "ink" else None
        KINDS[p.kind].draw(d, p.x, p.y, p.r, p.rgb, ink)
    return layer


def light_objects(rgb, mask, placed, bg):
    """'3d render': shade each object from the top left and cast a soft shadow on the background."""
    w = rgb.shape[0]
    yy, xx = np.mgrid[0:w, 0:w].astype(np.float32)
    light = np.ones((w, w), np.float32)
    for p in placed:
        from_light = np.hypot(xx - (p.x - 0.35 * p.r), yy - (p.y - 0.35 * p.r)) / (1.6 * p.r)
        inside = np.hypot(xx - p.x, yy - p.y) < 1.1 * p.r
        light[inside] = np.clip(1.45 - from_light[inside], 0.45, 1.45)
    shadow = ndimage.shift(blur(mask, w / 50), (w / 30, w / 40), order=1)
    return np.clip(rgb * light[..., None], 0, 1), bg * (1 - 0.5 * shadow[..., None])


def sticker_border(rgb, mask, bg):
    """'sticker': a white die-cut margin and a drop shadow around the objects."""
    w = rgb.shape[0]
    cut = ndimage.maximum_filter(mask, odd(w / 16))
    shadow = ndimage.shift(blur(cut, w / 60), (w / 60, w / 60), order=1)
    bg = bg * (1 - 0.4 * shadow[..., None])
    return mix(bg, 1.0, cut[..., None])


def render(scene, size, rng):
    """Draw `scene` as a size x size RGB image; `rng` supplies everything the scene leaves open."""
    w = size * SUPERSAMPLE
    framing = FRAMINGS[scene.framing] if scene.framing else Framing(())
    bg = BACKGROUNDS[scene.background].paint(w, rng) if scene.background else bg_plain(w, rng)
    if framing.prepare_bg:
        bg = framing.prepare_bg(bg, rng)
    placed = layout(scene, w, rng)
    layer = to_array(draw_objects(placed, w, framing.outline).convert("RGBA"))
    # to_array divides by 255: alpha is the object mask, rgb the object colours.
    rgb, mask = layer[..., :3], layer[..., 3]
    if "render3d" in scene.tags:
        rgb, bg = light_objects(rgb, mask, placed, bg)
    if framing.outline == "sticker":
        bg = sticker_border(rgb, mask, bg)
    img = np.clip(mix(bg, rgb, mask[..., None]), 0, 1)
    if scene.style:
        img = np.clip(STYLES[scene.style].apply(img, mask, rng), 0, 1)
    for t in scene.tags:
        if TAGS[t].apply:
            img = np.clip(TAGS[t].apply(img, rng), 0, 1)
    if framing.finish:
        img = framing.finish(img, rng)
    return to_image(img).resize((size, size), Image.LANCZOS)


def png_bytes(img):
    """PNG without metadata: identical pixels give identical bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------

STREAMS = {"scene": 1, "wording": 2, "render": 3, "split": 4, "copies": 5}


def stream(seed, name, *index):
    """An independent random stream per (seed, purpose, index): order-independent generation."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[name], *map(int, index)]))


class Row(NamedTuple):
    img_id: str
    scene_id: int
    copy: int
    scene: Scene
    prompt: str


def image_id(seed, scene_id, copy, taken):
    """9 hex characters like Kaggle's imgIds, from a hash of the row's identity (rehashed on a clash)."""
    salt = 0
    while True:
        h = hashlib.sha256(f"demo:{seed}:{scene_id}:{copy}:{salt}".encode()).hexdigest()[:9]
        if h not in taken:
            return h
        salt += 1


def copies_of(seed, scene_id):
    rng = stream(seed, "copies", scene_id)
    return 1 if rng.random() >= DUPLICATE_RATE else int(pick(rng, (2, 2, 3)))


def distinct_wordings(scene, seed, scene_id, copies):
    """`copies` different prompts for one scene (a few tries each; a scene with little to reword may repeat)."""
    prompts = []
    for c in range(copies):
        for attempt in range(20):
            p = word_prompt(scene, stream(seed, "wording", scene_id, c, attempt))
            if p not in prompts:
                break
        prompts.append(p)
    return prompts


def plan_rows(n, seed):
    """n rows: scenes in order, some repeated with a new wording, then shuffled (the split is a cut)."""
    rows, taken, scene_id = [], set(), 0
    while len(rows) < n:
        scene = sample_scene(stream(seed, "scene", scene_id))
        copies = copies_of(seed, scene_id)
        for c, prompt in enumerate(distinct_wordings(scene, seed, scene_id, copies)):
            img_id = image_id(seed, scene_id, c, taken)
            taken.add(img_id)
            rows.append(Row(img_id, scene_id, c, scene, prompt))
        scene_id += 1
    rows = rows[:n]
    order = stream(seed, "split").permutation(len(rows))
    return [rows[i] for i in order]


def render_row(row, size, seed):
    return render(row.scene, size, stream(seed, "render", row.scene_id, row.copy))


HEX_ID = re.compile(r"^[0-9a-f]{9}$")


def write_images(rows, images_dir, size, seed, progress):
    from tqdm import tqdm

    images_dir.mkdir(parents=True, exist_ok=True)
    for row in tqdm(rows, desc=f"render {images_dir.parent.name}", unit="img", disable=not progress):
        write_bytes(images_dir / f"{row.img_id}.png", png_bytes(render_row(row, size, seed)))
    # Ids from an earlier run with other settings would otherwise join this split.
    keep = {r.img_id for r in rows}
    stale = [p for p in images_dir.glob("*.png") if HEX_ID.match(p.stem) and p.stem not in keep]
    for p in stale:
        p.unlink()
    return len(stale)


def prompts_frame(rows):
    return pd.DataFrame({"imgId": [r.img_id for r in rows], "prompt": [r.prompt for r in rows], "scene": [r.scene_id for r in rows]})


def generate_demo(out_dir, n_train=1500, n_test=300, size=64, seed=0, progress=True):
    """Write the demo dataset in the competition layout under `out_dir`; return a summary dict."""
    if n_train < 1 or n_test < 0 or size < 8 or seed < 0:
        raise ValueError(f"need n_train >= 1, n_test >= 0, size >= 8, seed >= 0; got {n_train}, {n_test}, {size}, {seed}")
    start = time.time()
    out = Path(out_dir)
    rows = plan_rows(n_train + n_test, seed)
    train, test = rows[:n_train], rows[n_train:]
    stale = write_images(train, out / "train" / "images", size, seed, progress)
    stale += write_images(test, out / "test" / "images", size, seed, progress)
    # CSVs last: a run killed earlier leaves no prompts.csv pointing at missing images.
    save_csv(out / "train" / "prompts.csv", prompts_frame(train))
    save_csv(out / "test_prompts.csv", prompts_frame(test))
    scene_rows = pd.Series([r.scene_id for r in rows]).value_counts()
    train_scenes = {r.scene_id for r in train}
    return {
        "out": str(out),
        "n_train": len(train),
        "n_test": len(test),
        "size": size,
        "seed": seed,
        "scenes": int(len(scene_rows)),
        "rows_in_repeated_scenes": int(scene_rows[scene_rows > 1].sum()),
        "test_rows_sharing_a_train_scene": sum(r.scene_id in train_scenes for r in test),
        "stale_images_removed": stale,
        "seconds": round(time.time() - start, 2),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Render the procedural demo dataset (images from SD-style prompts) in the competition layout."
    )
    ap.add_argument("--out", default="work/data/demo", help="output folder (default: %(default)s)")
    ap.add_argument("--n-train", type=int, default=1500, help="training images (default: %(default)s)")
    ap.add_argument("--n-test", type=int, default=300, help="test images (default: %(default)s)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="same seed and sizes give byte-identical files (default: %(default)s)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        summary = generate_demo(args.out, args.n_train, args.n_test, args.size, args.seed, progress=not args.quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
