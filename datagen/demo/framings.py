"""Framings: how the picture is presented ("a postage stamp of ...")."""
from typing import Callable, NamedTuple, Optional

import numpy as np
from PIL import Image

from .imageops import blur, draw_on, grain, luminance, mix, rgb01, saturate, to_array, to_image, vignette
from .streams import pick


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
    paper[margin : w - margin, margin : w - margin] = to_array(
        to_image(img).resize((w - 2 * margin, w - 2 * margin), Image.LANCZOS))

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
    "childrens": Framing(("a children's book illustration of", "a storybook illustration of",
                          "a children's book drawing of"), finish_pastel, outline="ink"),
    "album": Framing(("an album cover showing", "an album cover with", "album art of"), finish_album),
    "stamp": Framing(("a postage stamp of", "a postage stamp showing", "a stamp depicting"), finish_stamp),
    "poster": Framing(("a poster of", "a poster showing", "a movie poster featuring"), finish_poster,
                      place=(0.85, 0.8, 0.8, 0.4)),
    "closeup": Framing(("a close-up of", "a closeup photo of", "a macro shot of"), prepare_bg=prepare_closeup,
                       place=(1.6, 1.4, 1.4, 0.5)),
    "wide": Framing(("a wide shot of", "a wide-angle view of", "a distant view of"), prepare_bg=prepare_wide,
                    place=(0.45, 0.55, 0.3, 0.66)),  # small, near the horizon
    "polaroid": Framing(("a polaroid of", "a polaroid photo of", "an instant photo of"), finish_polaroid),
    "sticker": Framing(("a sticker of", "a die-cut sticker of", "a vinyl sticker of"), outline="sticker"),
    "cctv": Framing(("a security camera still of", "cctv footage of", "a surveillance camera image of"), finish_cctv),
}
