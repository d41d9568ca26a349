"""ContrastiveCrop / SimCCrop: sampler distributions, timm equivalence, inputs and errors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import special, stats
from timm.data.transforms import RandomResizedCropAndInterpolation

from timm_ccrop import (
    FULL_BOX,
    SIMCCROP_BOX,
    Box,
    ContrastiveCrop,
    SimCCrop,
    contrastive_crop_params,
    multi_view_transform,
    to_rgb,
)

# A fixed crop size (scale=(s, s), ratio=(1, 1)) isolates the offset distribution.
HEIGHT = WIDTH = 40
FIXED_SCALE = (0.25, 0.25)  # 20 x 20 crops
SQUARE = (1.0, 1.0)
DRAWS = 20_000


def offsets(box: Box, alpha: float, seed: int = 0, draws: int = DRAWS) -> tuple[np.ndarray, ...]:
    rng = random.Random(seed)
    params = [
        contrastive_crop_params(HEIGHT, WIDTH, box, FIXED_SCALE, SQUARE, alpha, rng)
        for _ in range(draws)
    ]
    tops, lefts, heights, widths = (np.array(column) for column in zip(*params, strict=True))
    assert set(heights) == {20} and set(widths) == {20}
    return tops, lefts


def exact_offset_pmf(size: int, crop: int, start: float, end: float, alpha: float) -> dict:
    """The specification, written out: P(offset = lo + k) = I((k+1)/n) - I(k/n)."""
    first = math.floor(size * start + 1e-4)
    last = max(first, math.ceil(size * end - 1e-4) - 1)
    low = min(max(first - crop // 2, 0), size - crop)
    high = min(max(last - crop // 2, 0), size - crop)
    span = high - low + 1
    cdf = special.betainc(alpha, alpha, np.arange(span + 1) / span)
    return {low + k: cdf[k + 1] - cdf[k] for k in range(span)}


def chi_square_pvalue(samples: np.ndarray, pmf: dict) -> float:
    support = sorted(pmf)
    observed = np.array([(samples == value).sum() for value in support], dtype=np.float64)
    assert observed.sum() == samples.size, "samples outside the specified support"
    expected = np.array([pmf[value] for value in support]) * samples.size
    # Pool sparse cells so the chi-square approximation holds.
    keep = expected >= 5
    if not keep.all():
        observed = np.append(observed[keep], observed[~keep].sum())
        expected = np.append(expected[keep], expected[~keep].sum())
    return float(stats.chisquare(observed, expected).pvalue)


@pytest.mark.parametrize("alpha", [0.1, 0.6, 1.0, 2.5])
def test_offsets_follow_the_exact_discrete_distribution(alpha: float) -> None:
    box = Box(0.05, 0.3, 0.95, 0.6)  # rows 12..23 -> tops 2..13; columns clamp at 0 and 20
    tops, lefts = offsets(box, alpha)
    assert chi_square_pvalue(tops, exact_offset_pmf(HEIGHT, 20, 0.3, 0.6, alpha)) > 1e-3
    assert chi_square_pvalue(lefts, exact_offset_pmf(WIDTH, 20, 0.05, 0.95, alpha)) > 1e-3


def test_chi_square_rejects_the_official_off_by_one() -> None:
    """The test above has power: the official lo + int((hi - lo) * u) is rejected."""
    rng = random.Random(1)
    low, high = 2, 13
    official = np.array(
        [low + int((high - low) * rng.betavariate(0.6, 0.6)) for _ in range(DRAWS)]
    )
    pmf = exact_offset_pmf(HEIGHT, 20, 0.3, 0.6, 0.6)
    assert chi_square_pvalue(official, pmf) < 1e-6


def test_alpha_one_whole_box_is_uniform_like_random_resized_crop() -> None:
    tops, lefts = offsets(FULL_BOX, 1.0)
    uniform = {value: 1.0 / (HEIGHT - 20 + 1) for value in range(HEIGHT - 20 + 1)}
    assert chi_square_pvalue(tops, uniform) > 1e-3
    assert chi_square_pvalue(lefts, uniform) > 1e-3


def test_small_alpha_moves_crops_toward_the_box_edges() -> None:
    box = Box(0.3, 0.3, 0.6, 0.6)
    edge_share = {}
    for alpha in (0.1, 1.0):
        tops, _ = offsets(box, alpha)
        low, high = tops.min(), tops.max()
        margin = 0.2 * (high - low)
        edge_share[alpha] = np.mean((tops <= low + margin) | (tops >= high - margin))
    assert edge_share[0.1] > edge_share[1.0] + 0.2


def test_crop_centres_lie_between_the_box_edges_when_unclamped() -> None:
    box = Box(0.4, 0.45, 0.7, 0.6)  # columns 16..27, rows 18..23
    tops, lefts = offsets(box, 0.6, draws=2000)
    assert (tops + 10 >= 18).all() and (tops + 10 <= 23).all()
    assert (lefts + 10 >= 16).all() and (lefts + 10 <= 27).all()
    assert tops.min() + 10 == 18 and tops.max() + 10 == 23  # both edges are reachable


@pytest.mark.slow
def test_crops_never_leave_the_image() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        height, width = rng.randint(1, 80), rng.randint(1, 80)
        x0, x1 = sorted(rng.random() for _ in range(2))
        y0, y1 = sorted(rng.random() for _ in range(2))
        top, left, crop_h, crop_w = contrastive_crop_params(
            height, width, Box(x0, y0, x1, y1), (0.05, 1.0), (0.3, 3.0), rng.uniform(0.05, 3), rng
        )
        assert top >= 0 and top + crop_h <= height and crop_h >= 0
        assert left >= 0 and left + crop_w <= width and crop_w >= 0


@pytest.mark.parametrize("size", [(32, 32), (100, 12), (12, 100), (7, 5)])
def test_without_a_box_it_is_timms_random_resized_crop(size: tuple[int, int]) -> None:
    """Same seed, same parameters as timm's RRC (the 100x12 images hit the fallback)."""
    height, width = size
    image = Image.new("RGB", (width, height))
    ours = ContrastiveCrop(16, scale=(0.08, 1.0), alpha=0.3)
    random.seed(5)
    expected = [
        RandomResizedCropAndInterpolation.get_params(image, ours.scale, ours.ratio)
        for _ in range(200)
    ]
    random.seed(5)
    got = [ours.get_box_params(image, None) for _ in range(200)]
    assert got == expected


def test_bare_image_tuple_with_none_and_invalid_rows_crop_alike() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), np.uint8))
    crop = ContrastiveCrop(16, interpolation="bilinear")
    outputs = []
    for call in (lambda: crop(image), lambda: crop((image, None)), lambda: crop(image, None)):
        random.seed(11)
        outputs.append(np.asarray(call()))
    assert all(np.array_equal(outputs[0], other) for other in outputs[1:])


def test_seeded_crops_are_reproducible_and_two_views_differ() -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 48, 3), np.uint8))
    views = multi_view_transform("cifar", crop_mode="ccrop")
    random.seed(0)
    torch.manual_seed(0)
    first = views((image, Box(0.2, 0.2, 0.8, 0.8)))
    random.seed(0)
    torch.manual_seed(0)
    second = views((image, Box(0.2, 0.2, 0.8, 0.8)))
    assert len(first) == 2
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])


def test_simccrop_always_uses_the_centre_box() -> None:
    crop = SimCCrop(8, scale=FIXED_SCALE, ratio=SQUARE)
    image = Image.new("RGB", (WIDTH, HEIGHT))
    random.seed(2)
    tops = np.array([crop.get_box_params(image, crop._resolve_box(None))[0] for _ in range(500)])
    pmf = exact_offset_pmf(HEIGHT, 20, SIMCCROP_BOX.y0, SIMCCROP_BOX.y1, crop.alpha)
    assert crop.alpha == 0.1
    assert set(np.unique(tops)) <= set(pmf)
    assert crop._resolve_box(Box(0, 0, 0.1, 0.1)) == SIMCCROP_BOX


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 0}, "alpha"),
        ({"alpha": -1}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"scale": (0.0, 1.0)}, "scale"),
        ({"scale": (0.8, 0.2)}, "scale"),
        ({"scale": (0.2, 1.5)}, "scale"),
        ({"scale": (0.2,)}, "scale"),
        ({"ratio": (0.0, 1.0)}, "ratio"),
        ({"ratio": (2.0, 1.0)}, "ratio"),
        ({"size": 0}, "size"),
    ],
)
def test_invalid_parameters_name_themselves(kwargs: dict, message: str) -> None:
    arguments = {"size": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        ContrastiveCrop(**arguments)


@pytest.mark.parametrize(
    "box, message",
    [
        ((0.5, 0.1, 0.2, 0.9), "x1 < x0"),
        ((0.1, 0.1, 1.2, 0.9), r"leaves \[0, 1\]"),
        ((-0.1, 0.1, 0.5, 0.9), r"leaves \[0, 1\]"),
        ((0.1, float("nan"), 0.5, 0.9), "NaN"),
        ((0.1, 0.2, 0.5), "4 values"),
        ("box", "four numbers"),
    ],
)
def test_invalid_caller_boxes_are_rejected(box: object, message: str) -> None:
    crop = ContrastiveCrop(16)
    with pytest.raises(ValueError, match=message):
        crop((Image.new("RGB", (20, 20)), box))


def make_image(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    if mode in ("I;16", "I"):
        return Image.fromarray(rng.integers(0, 65535, (20, 24)).astype(np.uint16))
    if mode == "F":
        return Image.fromarray(rng.random((20, 24)).astype(np.float32))
    base = Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8))
    if mode == "P-transparent":
        palette = base.convert("P")
        palette.info["transparency"] = 0
        return palette
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["L", "1", "P", "P-transparent", "RGBA", "LA", "CMYK", "I;16",
                                  "I", "F", "YCbCr"])
def test_odd_image_modes_become_rgb(mode: str) -> None:
    image = make_image(mode)
    if mode == "I":
        image = image.convert("I")
    out = ContrastiveCrop(16)((image, Box(0.1, 0.1, 0.9, 0.9)))
    assert out.mode == "RGB" and out.size == (16, 16)


def test_sixteen_bit_images_keep_their_range() -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(ramp)))
    assert rgb.max() == 255 and rgb.min() == 0 and len(np.unique(rgb)) > 200


def test_images_smaller_than_the_output_work() -> None:
    out = ContrastiveCrop(32)((Image.new("RGB", (5, 3), "red"), Box(0.0, 0.0, 1.0, 1.0)))
    assert out.size == (32, 32) and out.getpixel((16, 16)) == (255, 0, 0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_tensor_images(dtype: torch.dtype) -> None:
    image = (torch.rand(3, 40, 30) * 255).to(dtype)
    out = ContrastiveCrop((16, 20))(image, (0.2, 0.2, 0.6, 0.6))
    assert out.shape == (3, 16, 20) and out.dtype == dtype
    with pytest.raises(TypeError, match="PIL image or a"):
        ContrastiveCrop(16)(np.zeros((3, 8, 8)))


@pytest.mark.parametrize("alpha", [0.02, 0.1, 0.6, 1.0, 1.7, 20.0])
def test_beta_quantile_table_matches_the_beta_distribution(alpha: float) -> None:
    from timm_ccrop.crop.transforms import beta_quantiles

    table = np.array(beta_quantiles(alpha))
    exact = stats.beta.ppf(np.linspace(0.0, 1.0, len(table)), alpha, alpha)
    assert np.abs(table - exact).max() < 1e-6
    assert np.all(np.diff(table) >= 0) and table[0] == 0.0 and table[-1] == 1.0
