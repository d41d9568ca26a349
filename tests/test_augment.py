"""Batched device augmentation: same distributions and same ops as the per-image pipeline."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision.transforms import functional as TF

from tests.test_transforms import FIXED_SCALE, SQUARE, chi_square_pvalue, exact_offset_pmf
from timm_ccrop.crop.augment import BatchedViews, DeviceImageBank
from timm_ccrop.crop.color_ops import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    gaussian_blur,
    normalize,
    rgb_to_grayscale,
    solarize,
)
from timm_ccrop.crop.crop_params import sample_crop_params
from timm_ccrop.crop.resize import resized_crop
from timm_ccrop.crop.views import CIFAR_MEAN, CIFAR_STD, ViewRecipe

N = 20_000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def two_sample_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square homogeneity test of two integer samples (sparse cells pooled)."""
    values = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    expected = table.sum(0) * min(table.sum(1)) / table.sum()
    keep = expected >= 5
    pooled = np.column_stack([table[:, keep], table[:, ~keep].sum(1, keepdims=True)])
    pooled = pooled[:, pooled.sum(0) > 0]
    return float(stats.chi2_contingency(pooled).pvalue)


@pytest.mark.parametrize("size", [(32, 32), (100, 12)])
def test_crop_sizes_match_timms_random_resized_crop(size: tuple[int, int]) -> None:
    """Heights and widths (hence areas and aspect ratios) have timm's distribution;
    100 x 12 images hit the central fallback often."""
    height, width = size
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    image = Image.new("RGB", (width, height))
    random.seed(0)
    ref = np.array([RandomResizedCropAndInterpolation.get_params(image, scale, ratio)
                    for _ in range(N)])
    top, left, h, w = (t.numpy() for t in sample_crop_params(
        height, width, scale=scale, ratio=ratio, crop_mode="rcrop", generator=gen(), batch=N))
    assert two_sample_pvalue(h, ref[:, 2]) > 1e-3
    assert two_sample_pvalue(w, ref[:, 3]) > 1e-3
    assert two_sample_pvalue(h * w, ref[:, 2] * ref[:, 3]) > 1e-3
    assert two_sample_pvalue(top, ref[:, 0]) > 1e-3
    assert two_sample_pvalue(left, ref[:, 1]) > 1e-3


@pytest.mark.parametrize("alpha", [0.1, 0.6, 2.5])
def test_box_offsets_follow_the_exact_discrete_distribution(alpha: float) -> None:
    box = torch.tensor([[0.05, 0.3, 0.95, 0.6]]).expand(N, 4)
    top, left, h, w = (t.numpy() for t in sample_crop_params(
        40, 40, box, None, FIXED_SCALE, SQUARE, alpha, "ccrop", gen(1)))
    assert set(h) == {20} and set(w) == {20}
    assert chi_square_pvalue(top, exact_offset_pmf(40, 20, 0.3, 0.6, alpha)) > 1e-3
    assert chi_square_pvalue(left, exact_offset_pmf(40, 20, 0.05, 0.95, alpha)) > 1e-3


def test_simccrop_uses_the_fixed_box_and_invalid_rows_are_uniform() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.1, 0.1]]).expand(N, 4)
    top, _, _, _ = sample_crop_params(40, 40, boxes, None, FIXED_SCALE, SQUARE, 0.1,
                                      "simccrop", gen(2))
    assert chi_square_pvalue(top.numpy(), exact_offset_pmf(40, 20, 0.25, 0.75, 0.1)) > 1e-3
    valid = torch.zeros(N, dtype=torch.bool)
    valid[: N // 2] = True
    top, left, _, _ = sample_crop_params(40, 40, boxes, valid, FIXED_SCALE, SQUARE, 0.6,
                                         "ccrop", gen(3))
    uniform = {v: 1 / 21 for v in range(21)}
    assert chi_square_pvalue(top[N // 2:].numpy(), uniform) > 1e-3
    assert chi_square_pvalue(left[N // 2:].numpy(), uniform) > 1e-3
    assert (top[: N // 2] == 0).all() and (left[: N // 2] == 0).all()  # box in the corner


def test_crops_never_leave_the_image() -> None:
    g = gen(4)
    n = 5000
    heights = torch.randint(1, 81, (n,), generator=g)
    widths = torch.randint(1, 81, (n,), generator=g)
    corners = torch.rand(n, 2, 2, generator=g).sort(dim=1).values
    boxes = torch.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], 1)
    for mode in ("rcrop", "ccrop", "simccrop"):
        top, left, h, w = sample_crop_params(heights, widths, boxes, None, (0.05, 1.0),
                                             (0.3, 3.0), 0.3, mode, g)
        assert (top >= 0).all() and (top + h <= heights).all() and (h >= 0).all()
        assert (left >= 0).all() and (left + w <= widths).all() and (w >= 0).all()


def random_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, height, width), generator=gen(seed),
                         dtype=torch.uint8).float() / 255


@pytest.mark.parametrize("antialias", [False, True])
def test_resized_crop_matches_torchvision(antialias: bool) -> None:
    """Same (top, left, h, w) -> same pixels as torchvision's bilinear resized_crop,
    up- and downscaling, within 1e-5."""
    images = random_images(16, 37, 45)
    params = sample_crop_params(37, 45, scale=(0.05, 1.0), ratio=(0.5, 2.0),
                                crop_mode="rcrop", generator=gen(5), batch=16)
    for size in (24, 50):
        out = resized_crop(images, *params, size, antialias=antialias)
        for i in range(16):
            top, left, h, w = (int(p[i]) for p in params)
            ref = TF.resized_crop(images[i], top, left, h, w, [size, size],
                                  TF.InterpolationMode.BILINEAR, antialias=antialias)
            torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_colour_ops_match_torchvision_for_fixed_parameters() -> None:
    images = random_images(6, 12, 10, seed=6)
    factors = torch.tensor([0.0, 0.5, 0.9, 1.0, 1.3, 1.8])
    hues = torch.tensor([-0.5, -0.2, -0.05, 0.0, 0.1, 0.45])
    ops = [(adjust_brightness, TF.adjust_brightness, factors),
           (adjust_contrast, TF.adjust_contrast, factors),
           (adjust_saturation, TF.adjust_saturation, factors),
           (adjust_hue, TF.adjust_hue, hues)]
    for ours, theirs, values in ops:
        out = ours(images, values)
        for i in range(6):
            torch.testing.assert_close(out[i], theirs(images[i], float(values[i])),
                                       atol=2e-5, rtol=0)
    torch.testing.assert_close(rgb_to_grayscale(images), TF.rgb_to_grayscale(images),
                               atol=1e-6, rtol=0)
    threshold = 128 / 255
    torch.testing.assert_close(solarize(images), TF.solarize(images, threshold))
    torch.testing.assert_close(normalize(images, CIFAR_MEAN, CIFAR_STD),
                               TF.normalize(images, CIFAR_MEAN, CIFAR_STD), atol=1e-6, rtol=0)
    sigmas = torch.tensor([0.1, 0.7, 1.3, 2.0, 0.4, 1.0])
    blurred = gaussian_blur(random_images(6, 30, 28, seed=7), sigmas)
    source = random_images(6, 30, 28, seed=7)
    for i in range(6):
        ref = TF.gaussian_blur(source[i], [23, 23], [float(sigmas[i])] * 2)
        torch.testing.assert_close(blurred[i], ref, atol=1e-5, rtol=0)


NOTHING = ViewRecipe(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0,
                     color_jitter_prob=0.0, grayscale_prob=0.0, mean=(0, 0, 0), std=(1, 1, 1))


def test_probability_zero_does_nothing_and_one_always_applies() -> None:
    images = (random_images(8, 16, 16, seed=8) * 255).round().to(torch.uint8)
    floats = images.float() / 255
    (out,) = BatchedViews([NOTHING], "rcrop")(images, generator=gen())
    torch.testing.assert_close(out, floats, atol=1e-6, rtol=0)

    from dataclasses import replace

    always = {
        "hflip": (replace(NOTHING, hflip=1.0), floats.flip(-1)),
        "gray": (replace(NOTHING, grayscale_prob=1.0), TF.rgb_to_grayscale(floats, 3)),
        "solarize": (replace(NOTHING, solarize_prob=1.0), TF.solarize(floats, 128 / 255)),
    }
    for name, (recipe, expected) in always.items():
        (out,) = BatchedViews([recipe], "rcrop")(images, generator=gen())
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0, msg=name)
    blur = replace(NOTHING, gaussian_blur_prob=1.0)
    (out,) = BatchedViews([blur], "rcrop")(images, generator=gen())
    assert ((out - floats).abs().flatten(1).amax(1) > 1e-3).all()  # every image blurred
    jitter = replace(NOTHING, color_jitter_prob=1.0, color_jitter=(0.4, 0.0, 0.0, 0.0))
    (out,) = BatchedViews([jitter], "rcrop")(images, generator=gen())
    ratio = out.flatten(1).sum(1) / floats.flatten(1).sum(1)
    assert ((ratio - 1).abs() > 1e-4).all() and (ratio > 0.55).all() and (ratio < 1.45).all()


def test_probabilities_are_applied_per_image() -> None:
    images = (random_images(400, 8, 8, seed=9) * 255).round().to(torch.uint8)
    recipe = replace_recipe(hflip=0.5)
    (out,) = BatchedViews([recipe], "rcrop")(images, generator=gen(1))
    flipped = (out - images.float().flip(-1) / 255).abs().flatten(1).amax(1) < 1e-5
    assert 150 < int(flipped.sum()) < 250


def replace_recipe(**kwargs) -> ViewRecipe:
    from dataclasses import replace

    return replace(NOTHING, size=8, **kwargs)


def test_full_pipeline_shapes_seeds_and_device_bank() -> None:
    bank = DeviceImageBank((random_images(10, 32, 32) * 255).to(torch.uint8), "cpu")
    images = bank.batch(torch.tensor([3, 1, 4, 1, 5]))
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
    views = BatchedViews.from_preset("byol-imagenet", "ccrop", size=24)
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.9]]).expand(5, 4)
    valid = torch.tensor([True, False, True, True, False])
    first = views(images, boxes, valid, gen(3))
    again = views(images, boxes, valid, gen(3))
    assert len(first) == 2 and all(v.shape == (5, 3, 24, 24) for v in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(torch.isfinite(v).all() for v in first)
    with pytest.raises(ValueError, match="crop_mode"):
        BatchedViews.from_preset("cifar", "nope")


def test_colour_jitter_applies_each_images_own_order() -> None:
    """Fixed factors and per-image orders give torchvision's ops applied in that order."""
    images = random_images(4, 10, 12, seed=10)
    factors = torch.tensor([[1.3, 0.6, 1.5, 0.2]]).expand(4, 4)
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]])
    apply = torch.tensor([True, True, True, False])
    out = color_jitter(images, factors, order, apply)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(4):
        ref = images[i]
        for op_id in order[i].tolist() if apply[i] else []:
            ref = ops[op_id](ref, float(factors[i, op_id]))
        torch.testing.assert_close(out[i], ref, atol=5e-5, rtol=0)
