"""Animals, drawn like the shapes: centred on (x, y) with radius r; `ink` = (rgb, width) or None."""
from .imageops import shade
from .shapes import DARK, _ink, disc, oval, poly, sorted_box, stroke


def draw_fish(d, x, y, r, c, ink):
    poly(d, [(x + 0.3 * r, y), (x + r, y - 0.5 * r), (x + r, y + 0.5 * r)], shade(c, 0.8), ink)
    oval(d, (x - 0.85 * r, y - 0.45 * r, x + 0.45 * r, y + 0.45 * r), c, ink)
    disc(d, x - 0.5 * r, y - 0.1 * r, 0.1 * r, DARK)


def draw_cat(d, x, y, r, c, ink):
    for side in (-1, 1):
        poly(d, [(x + side * 0.85 * r, y - 0.25 * r), (x + side * 0.7 * r, y - r), (x + side * 0.2 * r, y - 0.65 * r)],
             c, ink)
    disc(d, x, y + 0.05 * r, 0.78 * r, c, ink)
    for side in (-1, 1):
        oval(d, (x + side * 0.32 * r - 0.14 * r, y - 0.2 * r, x + side * 0.32 * r + 0.14 * r, y + 0.08 * r),
             (170, 215, 60))
        oval(d, (x + side * 0.32 * r - 0.05 * r, y - 0.18 * r, x + side * 0.32 * r + 0.05 * r, y + 0.06 * r), DARK)
        for dy in (0.25, 0.38):
            stroke(d, [(x + side * 0.15 * r, y + 0.3 * r), (x + side * 0.95 * r, y + dy * r)], DARK, 0.04 * r)
    poly(d, [(x - 0.1 * r, y + 0.18 * r), (x + 0.1 * r, y + 0.18 * r), (x, y + 0.3 * r)], (240, 130, 150))


def draw_bird(d, x, y, r, c, ink):
    poly(d, [(x - 0.55 * r, y), (x - r, y - 0.35 * r), (x - r, y + 0.3 * r)], shade(c, 0.75), ink)
    oval(d, (x - 0.75 * r, y - 0.38 * r, x + 0.45 * r, y + 0.42 * r), c, ink)
    disc(d, x + 0.45 * r, y - 0.32 * r, 0.32 * r, c, ink)
    poly(d, [(x + 0.72 * r, y - 0.42 * r), (x + r, y - 0.3 * r), (x + 0.72 * r, y - 0.2 * r)], (245, 160, 30))
    poly(d, [(x - 0.45 * r, y - 0.05 * r), (x + 0.2 * r, y - 0.05 * r), (x - 0.2 * r, y - 0.75 * r)],
         shade(c, 0.7), ink)
    disc(d, x + 0.53 * r, y - 0.38 * r, 0.07 * r, DARK)


def draw_butterfly(d, x, y, r, c, ink):
    for side in (-1, 1):
        oval(d, sorted_box(x, y - 0.85 * r, x + side * r, y + 0.05 * r), c, ink)
        oval(d, sorted_box(x, y - 0.05 * r, x + side * 0.7 * r, y + 0.75 * r), shade(c, 0.8), ink)
        disc(d, x + side * 0.55 * r, y - 0.45 * r, 0.12 * r, DARK)
        stroke(d, [(x, y - 0.55 * r), (x + side * 0.3 * r, y - r)], DARK, 0.05 * r)
    oval(d, (x - 0.09 * r, y - 0.6 * r, x + 0.09 * r, y + 0.7 * r), DARK)


def draw_whale(d, x, y, r, c, ink):
    poly(d, [(x + 0.55 * r, y), (x + r, y - 0.55 * r), (x + 0.95 * r, y - 0.05 * r)], c, ink)
    d.chord((x - r, y - 0.6 * r, x + 0.7 * r, y + 0.6 * r), 180, 360, fill=c, **_ink(ink))
    d.chord((x - r, y - 0.25 * r, x + 0.7 * r, y + 0.25 * r), 0, 180,
            fill=shade(c, 1.3) if sum(c) < 400 else shade(c, 0.85), **_ink(ink))
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
        poly(d, [(x + side * 0.6 * r, y - 0.55 * r), (x + side * 0.55 * r, y - r), (x + side * 0.25 * r, y - 0.7 * r)],
             c, ink)
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
        oval(d, (x + side * 0.25 * r - 0.15 * r, y + 0.9 * r, x + side * 0.25 * r + 0.15 * r, y + r * 1.02),
             (245, 160, 30))


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
    d.arc((x - 0.2 * r, y - 0.35 * r, x + 0.5 * r, y + 0.35 * r), 0, 300, fill=shade(c, 0.55),
          width=max(1, int(0.08 * r)))
    d.arc((x + 0.02 * r, y - 0.13 * r, x + 0.28 * r, y + 0.13 * r), 0, 300, fill=shade(c, 0.55),
          width=max(1, int(0.08 * r)))
