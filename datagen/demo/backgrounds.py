"""Backgrounds: each paints a w x w canvas from `rng`, and has the words that name it."""
import math
from typing import Callable, NamedTuple

import numpy as np

from .imageops import draw_on, gray3, mix, rgb01, shade, smooth_noise, vertical_gradient
from .streams import pick
from .vocab import COLOURS


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
    return draw_on(a, lambda d, w: scatter_dots(d, w, rng, w * w // 180,
                                                [(255, 255, 255), (255, 240, 200), (190, 200, 255)], 1.4))


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
            d.line([(x, y), (x + rng.normal(0, 0.01) * w, y - 0.03 * w)],
                   fill=shade((60, 140, 45), rng.uniform(0.7, 1.3)), width=1)

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
                d.rectangle((x + gap, y + gap, x + bw - gap, y + bh - gap),
                            fill=shade((170, 72, 52), rng.uniform(0.8, 1.15)))

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
            d.ellipse((x - r, y - r * 0.6, x + r, y + r * 0.6),
                      fill=pick(rng, ((220, 80, 20), (240, 170, 30), (170, 40, 20))))

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
    "sky": Background(("in the sky", "in a clear blue sky", "against a blue sky"),
                      ("blue sky background", "clear sky"), bg_sky),
    "sea": Background(("over the sea", "on the ocean", "above the ocean waves"),
                      ("ocean background", "seascape"), bg_sea),
    "desert": Background(("in a desert", "in the desert", "on sand dunes"),
                         ("desert landscape", "sand dunes"), bg_desert),
    "forest": Background(("in a forest", "in a dense forest", "in the woods"),
                         ("forest background", "woodland"), bg_forest),
    "starry": Background(("on a starry night sky", "under a starry night sky", "under the stars at night"),
                         ("starry night", "night sky full of stars"), bg_starry),
    "city": Background(("in a city at night", "in front of a city skyline at night", "in a big city at night"),
                       ("city at night", "night cityscape"), bg_city),
    "paper": Background(("on white paper", "on a sheet of paper", "on textured paper"),
                        ("paper background", "textured paper"), bg_paper),
    "snow": Background(("in a snowy field", "in the snow", "in a winter landscape"),
                       ("snowy landscape", "winter scene"), bg_snow),
    "meadow": Background(("in a green meadow", "on a grassy field", "in a field of grass"),
                         ("grassy meadow", "green field"), bg_meadow),
    "sunset": Background(("at sunset", "against a sunset sky", "at dusk"), ("sunset", "golden hour sunset"), bg_sunset),
    "underwater": Background(("underwater", "under the sea", "deep under water"),
                             ("underwater scene", "ocean floor"), bg_underwater),
    "space": Background(("in outer space", "floating in space", "in deep space"),
                        ("outer space", "cosmos background"), bg_space),
    "studio": Background(("on a white background", "isolated on white", "on a plain white background"),
                         ("white background", "studio backdrop"), bg_studio),
    "brick": Background(("in front of a brick wall", "against a red brick wall", "on a brick wall"),
                        ("brick wall background", "brick wall"), bg_brick),
    "beach": Background(("on a sandy beach", "at the beach", "on the seashore"),
                        ("beach scene", "sandy beach"), bg_beach),
    "rain": Background(("in the rain", "on a rainy day", "in a rainstorm"), ("rainy weather", "pouring rain"), bg_rain),
    "wood": Background(("on a wooden table", "on a wooden floor", "on wooden planks"),
                       ("wood texture", "wooden tabletop"), bg_wood),
    "checker": Background(("on a checkered floor", "on a chessboard", "on a black and white checkerboard"),
                          ("checkerboard pattern", "checkered background"), bg_checker),
    "moon": Background(("on the surface of the moon", "on the moon", "on a lunar landscape"),
                       ("lunar surface", "moonscape"), bg_moon_surface),
    "autumn": Background(("in an autumn park", "on fallen autumn leaves", "in the fall"),
                         ("autumn scenery", "fall foliage"), bg_autumn),
}
