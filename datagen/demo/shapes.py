"""Drawing primitives and the geometric shapes.

Objects draw themselves centred on (x, y) with radius r; `ink` = (rgb, width) or None.
"""
import math

import numpy as np

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
    return [(x + r * math.cos(turn + 2 * math.pi * k / n),
             y + r * math.sin(turn + 2 * math.pi * k / n)) for k in range(n)]


def star_points(x, y, r, n=5, inner=0.45):
    outer, inside = regular(x, y, r, n), regular(x, y, r * inner, n, -math.pi / 2 + math.pi / n)
    return [p for pair in zip(outer, inside) for p in pair]


def sorted_box(x0, y0, x1, y1):
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


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
    poly(d, [(x - r, y - s), (x + 0.15 * r, y - s), (x + 0.15 * r, y - h), (x + r, y), (x + 0.15 * r, y + h),
             (x + 0.15 * r, y + s), (x - r, y + s)], c, ink)
