"""Batched image augmentation on tensors (no per-image PIL work).

One affine warp per image does the random resized crop, RandAugment-style rotation / shear /
translation and the optional flip (a single grid_sample for the whole batch); photometric ops
(brightness, contrast, sharpness, small hue-free colour balance) are per-image scalars. Colours,
grey-scale and style are what the prompts describe, so no op recolours the image.
"""
import math

import torch
import torch.nn.functional as F

GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
PHOTOMETRIC_OPS = ("brightness", "contrast", "sharpness")
ALL_OPS = GEOMETRIC_OPS + PHOTOMETRIC_OPS


def to_float(batch_uint8):
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float in [0, 1]."""
    return batch_uint8.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x, mean, std):
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _uniform(gen, n, lo, hi, device):
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def random_affine(n, aug, gen, device):
    """(n, 2, 3) affine matrices mapping output to input coordinates (grid_sample convention)."""
    lo, hi = aug["rrc_scale"]
    area = _uniform(gen, n, lo, hi, device)
    log_r = _uniform(gen, n, math.log(aug["rrc_ratio"][0]), math.log(aug["rrc_ratio"][1]), device)
    ratio = torch.exp(log_r)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / image width
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (torch.rand(n, generator=gen, device=device) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=gen, device=device) * 2 - 1) * (1 - sy)
    rot = torch.zeros(n, device=device)
    shx = torch.zeros(n, device=device)
    shy = torch.zeros(n, device=device)
    n_ops, mag = aug["randaugment_ops"], aug["randaugment_magnitude"] / 10.0
    chosen = _choose_ops(n, n_ops, gen, device)
    sign = lambda: torch.where(torch.rand(n, generator=gen, device=device) < 0.5, -1.0, 1.0)  # noqa: E731
    rot = rot + chosen["rotate"] * sign() * math.radians(30) * mag
    shx = shx + chosen["shear_x"] * sign() * 0.3 * mag
    shy = shy + chosen["shear_y"] * sign() * 0.3 * mag
    tx = tx + chosen["translate_x"] * sign() * 0.45 * mag * 0.5
    ty = ty + chosen["translate_y"] * sign() * 0.45 * mag * 0.5
    flip = torch.where(torch.rand(n, generator=gen, device=device) < aug["hflip"], -1.0, 1.0)
    cos, sin = torch.cos(rot), torch.sin(rot)
    # scale @ shear @ rotation, then translation
    a11 = sx * flip * (cos + shx * sin)
    a12 = sx * (-sin + shx * cos)
    a21 = sy * flip * (shy * cos + sin)
    a22 = sy * (-shy * sin + cos)
    theta = torch.stack([torch.stack([a11, a12, tx], 1), torch.stack([a21, a22, ty], 1)], 1)
    return theta, chosen


def _choose_ops(n, n_ops, gen, device):
    """Per image, a 0/1 mask for each op: n_ops distinct ops drawn uniformly (RandAugment)."""
    if n_ops <= 0:
        return {op: torch.zeros(n, device=device) for op in ALL_OPS}
    scores = torch.rand(n, len(ALL_OPS), generator=gen, device=device)
    picked = scores.argsort(dim=1)[:, :n_ops]
    mask = torch.zeros(n, len(ALL_OPS), device=device).scatter_(1, picked, 1.0)
    return {op: mask[:, i] for i, op in enumerate(ALL_OPS)}


def _blur(x):
    """The 3x3 smoothing kernel of PIL's SHARPNESS op ([[1,1,1],[1,5,1],[1,1,1]] / 13) via a box filter."""
    box = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 9.0
    return (box + 4.0 * x) / 13.0


_BASE_GRIDS = {}


def _affine_grid(theta, h, w):
    """F.affine_grid(theta, (B, C, h, w), align_corners=False) as one small einsum over a cached base grid."""
    key = (h, w, theta.dtype, theta.device)
    if key not in _BASE_GRIDS:
        ys = (torch.arange(h, dtype=theta.dtype, device=theta.device) * 2 + 1) / h - 1
        xs = (torch.arange(w, dtype=theta.dtype, device=theta.device) * 2 + 1) / w - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        _BASE_GRIDS[key] = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)  # (h, w, 3)
    return torch.einsum("hwk,bjk->bhwj", _BASE_GRIDS[key], theta)


def warp(x, theta):
    """Resample each image of a float batch (B, 3, H, W) through its affine `theta` (B, 2, 3): output -> input
    coordinates, align_corners=False, bilinear, reflection padding. An image whose affine is the identity is
    returned as it is (grid_sample would add ~1e-7 of rounding): augmentation switched off is a no-op."""
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=theta.dtype, device=theta.device)
    moved = torch.nonzero(~(theta == identity).all(dim=2).all(dim=1)).view(-1)
    if moved.numel() == 0:
        return x.clone()  # callers change the result in place
    if moved.numel() < x.shape[0]:
        x = x.clone()
        x[moved] = warp(x[moved], theta[moved])
        return x
    grid = _affine_grid(theta.to(x.dtype), x.shape[2], x.shape[3])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_batch(x, aug, gen):
    """Augment a float batch (B, 3, S, S) in [0, 1]; deterministic given the generator state."""
    n, device = x.shape[0], x.device
    theta, chosen = random_affine(n, aug, gen, device)
    x = warp(x, theta)
    mag = aug["randaugment_magnitude"] / 10.0
    if aug["randaugment_ops"] > 0 and mag > 0:
        def factor(op):
            s = torch.where(torch.rand(n, generator=gen, device=device) < 0.5, -1.0, 1.0)
            return (1.0 + chosen[op] * s * 0.5 * mag).view(n, 1, 1, 1).to(x.dtype)

        x = x * factor("brightness")
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor("contrast") + mean
        sharp = factor("sharpness")
        idx = torch.nonzero(sharp.view(n) != 1.0).view(-1)  # blur only the images that drew the op
        if idx.numel():
            sub = x[idx]
            blurred = _blur(sub)
            x[idx] = blurred + (sub - blurred) * sharp[idx]
    return x.clamp_(0.0, 1.0)
