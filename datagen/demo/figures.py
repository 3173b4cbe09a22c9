"""Things and plants, drawn like the shapes: centred on (x, y) with radius r; `ink` = (rgb, width) or None."""
import math

import numpy as np

from .imageops import shade
from .shapes import DARK, GLASS, LEAF, WOOD, _ink, box, disc, oval, poly, stroke


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
        stroke(d, [(x + 0.62 * r * math.cos(a), y + 0.62 * r * math.sin(a)),
                   (x + r * math.cos(a), y + r * math.sin(a))], c, 0.14 * r)
    disc(d, x, y, 0.58 * r, c, ink)


def draw_moon(d, x, y, r, c, ink):
    # A crescent: the part of the disc outside a second, shifted disc, traced as one polygon.
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    cx, cy, cr = x + 0.45 * r, y - 0.12 * r, 0.82 * r
    outer = [(x + r * np.cos(a), y + r * np.sin(a)) for a in t]
    outer = [p for p in outer if (p[0] - cx) ** 2 + (p[1] - cy) ** 2 > cr**2]
    inner = [(cx + cr * np.cos(a), cy + cr * np.sin(a)) for a in t[::-1]]
    inner = [p for p in inner if (p[0] - x) ** 2 + (p[1] - y) ** 2 < r**2]
    poly(d, sorted(outer, key=lambda p: math.atan2(p[1] - y, p[0] - x) % (2 * math.pi))
         + sorted(inner, key=lambda p: -(math.atan2(p[1] - cy, p[0] - cx) % (2 * math.pi))), c, ink)


def draw_car(d, x, y, r, c, ink):
    poly(d, [(x - 0.55 * r, y - 0.1 * r), (x - 0.35 * r, y - 0.55 * r), (x + 0.35 * r, y - 0.55 * r),
             (x + 0.6 * r, y - 0.1 * r)], c, ink)
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
    poly(d, [(x - 0.42 * r, y - 0.3 * r), (x - 0.15 * r, y - 0.85 * r), (x + 0.12 * r, y - 0.3 * r),
             (x - 0.15 * r, y - 0.4 * r)], (250, 250, 252))


def draw_boat(d, x, y, r, c, ink):
    stroke(d, [(x, y + 0.25 * r), (x, y - 0.95 * r)], WOOD, 0.08 * r)
    poly(d, [(x + 0.06 * r, y - 0.9 * r), (x + 0.06 * r, y + 0.1 * r), (x + 0.75 * r, y + 0.1 * r)],
         (250, 248, 240), ink)
    poly(d, [(x - 0.06 * r, y - 0.6 * r), (x - 0.06 * r, y + 0.1 * r), (x - 0.55 * r, y + 0.1 * r)],
         (240, 236, 225), ink)
    poly(d, [(x - r, y + 0.2 * r), (x + r, y + 0.2 * r), (x + 0.65 * r, y + 0.62 * r), (x - 0.65 * r, y + 0.62 * r)],
         c, ink)


def draw_balloon(d, x, y, r, c, ink):
    stroke(d, [(x, y + 0.45 * r), (x - 0.1 * r, y + r)], (90, 90, 90), 0.05 * r)
    oval(d, (x - 0.62 * r, y - r, x + 0.62 * r, y + 0.45 * r), c, ink)
    poly(d, [(x, y + 0.42 * r), (x - 0.1 * r, y + 0.56 * r), (x + 0.1 * r, y + 0.56 * r)], c)


def draw_mushroom(d, x, y, r, c, ink):
    d.rounded_rectangle((x - 0.25 * r, y - 0.15 * r, x + 0.25 * r, y + r), radius=max(1, int(0.1 * r)),
                        fill=(238, 228, 205), **_ink(ink))
    d.pieslice((x - r, y - 0.85 * r, x + r, y + 0.55 * r), 180, 360, fill=c, **_ink(ink))
    for dx, dy, s in ((-0.5, -0.3, 0.13), (0.05, -0.6, 0.12), (0.5, -0.3, 0.11)):
        disc(d, x + dx * r, y + dy * r, s * r, (250, 250, 245))


def draw_rocket(d, x, y, r, c, ink):
    poly(d, [(x - 0.3 * r, y + 0.55 * r), (x, y + r), (x + 0.3 * r, y + 0.55 * r)], (250, 150, 30))
    for side in (-1, 1):
        poly(d, [(x + side * 0.3 * r, y + 0.05 * r), (x + side * 0.62 * r, y + 0.6 * r),
                 (x + side * 0.3 * r, y + 0.55 * r)], (205, 45, 45), ink)
    poly(d, [(x, y - r), (x + 0.3 * r, y - 0.45 * r), (x + 0.3 * r, y + 0.55 * r), (x - 0.3 * r, y + 0.55 * r),
             (x - 0.3 * r, y - 0.45 * r)], c, ink)
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
    poly(d, [(x - 0.9 * r, y + 0.5 * r), (x - 0.9 * r, y - 0.6 * r), (x - 0.45 * r, y - 0.05 * r), (x, y - 0.8 * r),
             (x + 0.45 * r, y - 0.05 * r), (x + 0.9 * r, y - 0.6 * r), (x + 0.9 * r, y + 0.5 * r)], c, ink)
    for dx in (-0.45, 0, 0.45):
        disc(d, x + dx * r, y + 0.22 * r, 0.1 * r, (200, 30, 60))


def draw_kite(d, x, y, r, c, ink):
    stroke(d, [(x, y + 0.5 * r), (x - 0.2 * r, y + 0.75 * r), (x + 0.1 * r, y + r)], DARK, 0.05 * r)
    poly(d, [(x, y - r), (x + 0.5 * r, y - 0.35 * r), (x, y + 0.5 * r), (x - 0.5 * r, y - 0.35 * r)], c, ink)
    stroke(d, [(x, y - r), (x, y + 0.5 * r)], shade(c, 0.6), 0.04 * r)


def draw_lighthouse(d, x, y, r, c, ink):
    poly(d, [(x - 0.3 * r, y + r), (x - 0.18 * r, y - 0.55 * r), (x + 0.18 * r, y - 0.55 * r), (x + 0.3 * r, y + r)],
         (245, 245, 240), ink)
    for k in range(3):  # painted bands
        t0, t1 = -0.3 + 0.45 * k, -0.08 + 0.45 * k
        poly(d, [(x - 0.2 * r - 0.04 * k * r, y + t0 * r), (x + 0.2 * r + 0.04 * k * r, y + t0 * r),
                 (x + 0.22 * r + 0.04 * k * r, y + t1 * r), (x - 0.22 * r - 0.04 * k * r, y + t1 * r)], c)
    box(d, (x - 0.16 * r, y - 0.85 * r, x + 0.16 * r, y - 0.55 * r), (255, 235, 120), ink)
    poly(d, [(x - 0.24 * r, y - 0.85 * r), (x, y - r * 1.05), (x + 0.24 * r, y - 0.85 * r)], DARK)


def draw_castle(d, x, y, r, c, ink):
    for tx in (-0.75, 0.45):
        box(d, (x + tx * r, y - 0.75 * r, x + (tx + 0.3) * r, y + 0.8 * r), shade(c, 0.85), ink)
        poly(d, [(x + (tx - 0.05) * r, y - 0.75 * r), (x + (tx + 0.15) * r, y - 1.05 * r),
                 (x + (tx + 0.35) * r, y - 0.75 * r)], (60, 70, 150))
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
    d.rounded_rectangle((x - 0.8 * r, y - 0.6 * r, x + 0.8 * r, y + 0.75 * r), radius=max(1, int(0.15 * r)),
                        fill=c, **_ink(ink))
    for side in (-1, 1):
        disc(d, x + side * 0.35 * r, y - 0.1 * r, 0.17 * r, (120, 230, 250))
    box(d, (x - 0.45 * r, y + 0.3 * r, x + 0.45 * r, y + 0.45 * r), DARK)


def draw_ghost(d, x, y, r, c, ink):
    body = [(x + 0.65 * r * math.cos(a),
             y - 0.25 * r + 0.65 * r * math.sin(a)) for a in np.linspace(math.pi, 2 * math.pi, 16)]
    hem = [(x + 0.65 * r - k * 0.26 * r, y + (0.95 if k % 2 == 0 else 0.7) * r) for k in range(6)]
    poly(d, body + hem, c, ink)
    for side in (-1, 1):
        oval(d, (x + side * 0.25 * r - 0.1 * r, y - 0.4 * r, x + side * 0.25 * r + 0.1 * r, y - 0.1 * r), DARK)
    oval(d, (x - 0.1 * r, y + 0.05 * r, x + 0.1 * r, y + 0.3 * r), DARK)


def draw_pumpkin(d, x, y, r, c, ink):
    box(d, (x - 0.08 * r, y - 0.95 * r, x + 0.08 * r, y - 0.55 * r), (80, 120, 40))
    for dx, f in ((-0.35, 0.85), (0.35, 0.85), (0, 1.0)):
        oval(d, (x + dx * r - 0.5 * r, y - 0.65 * r, x + dx * r + 0.5 * r, y + 0.8 * r), shade(c, f), ink)


def draw_anchor(d, x, y, r, c, ink):
    w = 0.13 * r
    d.ellipse((x - 0.22 * r, y - r, x + 0.22 * r, y - 0.56 * r), outline=c, width=max(1, int(w)))
    stroke(d, [(x, y - 0.6 * r), (x, y + 0.85 * r)], c, w)
    stroke(d, [(x - 0.45 * r, y - 0.35 * r), (x + 0.45 * r, y - 0.35 * r)], c, w)
    d.arc((x - 0.75 * r, y - 0.15 * r, x + 0.75 * r, y + 0.9 * r), 20, 160, fill=c, width=max(1, int(w)))


def draw_leaf(d, x, y, r, c, ink):
    poly(d, [(x - 0.75 * r, y + 0.75 * r), (x - 0.6 * r, y - 0.2 * r), (x - 0.1 * r, y - 0.7 * r),
             (x + 0.8 * r, y - 0.8 * r), (x + 0.7 * r, y + 0.05 * r), (x + 0.2 * r, y + 0.6 * r)], c, ink)
    stroke(d, [(x - 0.95 * r, y + 0.95 * r), (x + 0.6 * r, y - 0.6 * r)], shade(c, 0.6), 0.06 * r)


def draw_key(d, x, y, r, c, ink):
    d.ellipse((x - r, y - 0.35 * r, x - 0.3 * r, y + 0.35 * r), outline=c, width=max(1, int(0.18 * r)))
    box(d, (x - 0.32 * r, y - 0.09 * r, x + r, y + 0.09 * r), c, ink)
    for tx in (0.55, 0.8):
        box(d, (x + tx * r, y + 0.05 * r, x + (tx + 0.12) * r, y + 0.35 * r), c, ink)


def draw_cupcake(d, x, y, r, c, ink):
    poly(d, [(x - 0.6 * r, y), (x + 0.6 * r, y), (x + 0.42 * r, y + 0.9 * r), (x - 0.42 * r, y + 0.9 * r)],
         (225, 180, 120), ink)
    for dx, dy, s in ((-0.35, -0.15, 0.3), (0.35, -0.15, 0.3), (0, -0.45, 0.38)):
        disc(d, x + dx * r, y + dy * r, s * r, c, ink)
    disc(d, x, y - 0.88 * r, 0.13 * r, (200, 20, 40))
