"""Rendering a scene: layout, objects, lighting, style, tags and framing, drawn at 2x and downsampled."""
import io
import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .backgrounds import BACKGROUNDS, bg_plain
from .framings import FRAMINGS, Framing
from .imageops import blur, mix, odd, to_array, to_image
from .kinds import KINDS
from .shapes import DARK
from .streams import pick
from .styles import STYLES
from .tags import TAGS
from .vocab import COLOURS, SIZES

SUPERSAMPLE = 2  # draw at 2x and downsample: antialiased edges at 64 px


class Placed(NamedTuple):
    """One object on the canvas, in pixels."""

    kind: str
    rgb: tuple
    x: float
    y: float
    r: float


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
    return [(0.5 + radius * math.cos(turn + 2 * math.pi * k / count),
             0.5 + radius * math.sin(turn + 2 * math.pi * k / count)) for k in range(count)]


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
