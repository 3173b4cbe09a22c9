"""models/augment.py: the crop / flip geometry against torchvision's functional reference, determinism,
and augmentation switched off being a no-op.

Compared with torchvision (bilinear, no antialias, float images in [0, 1], 24 px):
- integer crop boxes, flipped or not, against `resized_crop` (+ `horizontal_flip`);
- the random isotropic crops `random_affine` draws, flipped or not, against `affine` (scale and a
  sub-pixel translation about the centre; + `horizontal_flip`).
Tolerance 1e-5, at the output pixels whose sample point lies inside the crop (inside the image for
`affine`). At the others the two differ by design: the warp is one `grid_sample` with reflection
padding, which reads the pixels just outside a crop where `resized_crop` clamps to the crop's edge,
and `affine` pads with zeros.
"""
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from models.augment import augment_batch, random_affine, warp
from models.config import load_config
from tests.model_fixtures import REPO

S = 24
BILINEAR = TF.InterpolationMode.BILINEAR
# augmentation off, with the config's own keys
OFF = {"rrc_scale": [1.0, 1.0], "rrc_ratio": [1.0, 1.0], "hflip": 0.0, "randaugment_ops": 0, "randaugment_magnitude": 5}


def images(n=6, seed=0):
    return torch.rand(n, 3, S, S, generator=torch.Generator().manual_seed(seed))


def production_augment():
    return load_config(REPO / "configs/eva02_l.yaml")["augment"]


def test_augmentation_off_is_a_no_op():
    x = images()
    for seed in range(3):
        assert torch.equal(augment_batch(x, OFF, torch.Generator().manual_seed(seed)), x)
    assert torch.equal(x, images())  # the input is left as it was
    # each of those settings alone moves pixels
    for key, value in (("rrc_scale", [0.5, 0.5]), ("rrc_ratio", [0.5, 0.5]), ("hflip", 1.0), ("randaugment_ops", 2)):
        assert not torch.equal(augment_batch(x, dict(OFF, **{key: value}), torch.Generator().manual_seed(0)), x), key


def test_same_generator_same_output():
    aug, x = production_augment(), images()
    a = augment_batch(x.clone(), aug, torch.Generator().manual_seed(7))
    b = augment_batch(x.clone(), aug, torch.Generator().manual_seed(7))
    c = augment_batch(x.clone(), aug, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def sample_inside(scale, shift, flip, lo, hi):
    """Per output pixel (S,): whether its sample point, input pixel `shift + scale * (j + 0.5) - 0.5`
    for pixel j (mirrored when flipped), lies in [lo, hi]."""
    j = torch.arange(S, dtype=torch.float64)
    pos = shift + scale * (j + 0.5) - 0.5
    inside = (pos >= lo - 1e-9) & (pos <= hi + 1e-9)
    return inside.flip(0) if flip else inside


def crop_theta(left, top, w, h, flip):
    sx, sy = w / S, h / S
    tx, ty = (2 * left + w) / S - 1, (2 * top + h) / S - 1
    return torch.tensor([[[-sx if flip else sx, 0.0, tx], [0.0, sy, ty]]])


CROPS = [(0, 0, S, S), (0, 0, 12, 12), (6, 3, 12, 18), (12, 12, 12, 12), (5, 0, 16, 24), (2, 7, 20, 10)]


@pytest.mark.parametrize("flip", [False, True])
def test_crops_match_torchvision_resized_crop(flip):
    x = images(1)
    compared = 0
    for left, top, w, h in CROPS:
        out = warp(x, crop_theta(left, top, w, h, flip))
        ref = TF.resized_crop(x, top, left, h, w, [S, S], interpolation=BILINEAR, antialias=False)
        if flip:
            ref = TF.horizontal_flip(ref)
        mask = (sample_inside(h / S, top, False, top, top + h - 1)[:, None]
                & sample_inside(w / S, left, flip, left, left + w - 1)[None, :])
        torch.testing.assert_close(out[0][:, mask], ref[0][:, mask], atol=1e-5, rtol=0)
        compared += int(mask.sum())
    assert compared > 0.8 * len(CROPS) * S * S  # the edge pixels left out are few


@pytest.mark.parametrize("seed", [0, 1])
def test_random_crops_match_torchvision_affine(seed):
    # isotropic crops (ratio 1): torchvision's affine takes a single scale
    aug = dict(OFF, rrc_scale=[0.3, 0.9], hflip=0.5)
    n, x = 8, images(8, seed)
    theta, _ = random_affine(n, aug, torch.Generator().manual_seed(seed), "cpu")
    out = augment_batch(x, aug, torch.Generator().manual_seed(seed))
    flips = 0
    for i in range(n):
        (a11, a12, tx), (a21, a22, ty) = theta[i].tolist()
        assert a12 == 0 and a21 == 0 and abs(a11) == pytest.approx(a22)
        s, flip = a22, a11 < 0
        # output pixel p samples the input at c + s (p - c) + t S / 2 (c: the centre): torchvision's
        # affine about the centre with scale 1 / s and translation -t S / (2 s)
        ref = TF.affine(x[i:i + 1], angle=0.0, translate=[-tx * S / (2 * s), -ty * S / (2 * s)], scale=1 / s,
                        shear=[0.0, 0.0], interpolation=BILINEAR)
        if flip:
            ref = TF.horizontal_flip(ref)
            flips += 1
        y0, x0 = (1 - s + ty) * S / 2, (1 - s + tx) * S / 2  # input pixel where the crop starts
        mask = (sample_inside(s, y0, False, 0, S - 1)[:, None]
                & sample_inside(s, x0, flip, 0, S - 1)[None, :])
        assert mask.sum() > 0.8 * S * S
        torch.testing.assert_close(out[i][:, mask], ref[0][:, mask], atol=1e-5, rtol=0)
    assert 0 < flips < n


def test_random_crop_boxes_follow_the_config():
    aug = dict(production_augment(), randaugment_ops=0)
    lo, hi = aug["rrc_scale"]
    r_lo, r_hi = aug["rrc_ratio"]
    theta, _ = random_affine(4000, aug, torch.Generator().manual_seed(0), "cpu")
    sx, sy, tx, ty = theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    assert (theta[:, 0, 1] == 0).all() and (theta[:, 1, 0] == 0).all()  # no rotation or shear without RandAugment
    assert (sx > 0).all(), "flipped with hflip 0"
    assert ((sx + tx.abs()) <= 1 + 1e-6).all() and ((sy + ty.abs()) <= 1 + 1e-6).all()  # the crop lies in the image
    area, ratio = sx * sy, sx / sy
    full = (sx >= 1) | (sy >= 1)  # a side clamped to the image: area and ratio give way
    assert (area <= hi + 1e-6).all() and (area[~full] >= lo - 1e-6).all()
    assert (ratio[~full] >= r_lo - 1e-5).all() and (ratio[~full] <= r_hi + 1e-5).all()
    # the draws fill the ranges
    assert area[~full].min() < lo + 0.02 and area.max() > hi - 0.02
    assert ratio[~full].min() < r_lo + 0.02 and ratio[~full].max() > r_hi - 0.02
