"""Small image helpers: images are float32 arrays H x W x 3 in [0, 1]."""
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage


def to_array(img):
    return np.asarray(img, dtype=np.float32) / 255.0


def to_image(a):
    return Image.fromarray((np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def rgb01(rgb):
    return np.asarray(rgb, dtype=np.float32) / 255.0


def blur(a, sigma):
    sigma = max(float(sigma), 0.3)
    return ndimage.gaussian_filter(a, (sigma, sigma, 0) if a.ndim == 3 else sigma, mode="nearest")


LUMA = tuple(np.float32(w) for w in (0.299, 0.587, 0.114))


def split(x):
    """Veltkamp's split of float64 `x` into halves whose products are exact."""
    t = 134217729.0 * x  # 2**27 + 1
    hi = t - (t - x)
    return hi, x - hi


def fused_multiply_add(x, y, z):
    """x * y + z rounded once, as an FMA instruction does (bar rare double-rounding ties), in the inputs' dtype,
    from plain IEEE operations that give the same bits on every CPU: Dekker's exact product, Knuth's two-sum."""
    dtype = np.result_type(x, y, z)
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    p = x * y
    (xh, xl), (yh, yl) = split(x), split(y)
    p_err = ((xh * yh - p) + xh * yl + xl * yh) + xl * yl
    s = p + z
    b = s - p
    s_err = (p - (s - b)) + (z - b)
    return (s + (s_err + p_err)).astype(dtype)


def luminance(a):
    """Rec. 601 luma. Not `a @ LUMA`: BLAS picks its kernel per CPU and each rounds differently (1 level on a few
    pixels). This sums in the order OpenBLAS's AVX-512 kernel used at the demo's sizes, where the figures in the
    README were measured (float32: r, then g and b fused in; float64: g, then r and b), on every CPU."""
    r, g, b = (a[..., i] for i in range(3))
    wr, wg, wb = LUMA
    if a.dtype == np.float32:
        return fused_multiply_add(b, wb, fused_multiply_add(g, wg, r * wr))
    return fused_multiply_add(b, wb, fused_multiply_add(r, wr, g * wg))


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
