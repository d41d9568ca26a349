"""Tests of :mod:`timm_ccrop.localize.heatmaps`: heatmaps from hooked feature maps, their
channel reductions and per-family defaults, and the paper's boxes, checked against an
independent re-implementation of the official ContrastiveCrop per-image algorithm (written
here from its description; hooked maps: tests/test_hooks.py, the box pass:
tests/test_boxpass.py).
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from timm_ccrop.crop.boxes import from_official, validate_boxes
from timm_ccrop.localize import (
    REDUCTIONS,
    feature_heatmaps,
    heatmap_boxes,
    localization_defaults,
    reduce_channels,
)

from .helpers import family_model, images, oracle, vit

WHOLE = torch.tensor([0.0, 0.0, 1.0, 1.0])


# --------------------------------------------------------------------------- 3. heatmaps


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    low = flat.min(1, keepdim=True).values
    return ((flat - low) / (flat.max(1, keepdim=True).values - low)).view_as(maps)


@pytest.mark.parametrize("family", ["resnet", "vit", "swin"])
def test_feature_heatmaps_shape_range_and_normalisation(family):
    model = vit() if family == "vit" else family_model(family)
    x = images((3, 3, 96, 96) if family != "vit" else (3, 3, 48, 80))
    maps, degenerate = feature_heatmaps(model, x, return_degenerate=True)
    expected_hw = oracle(model, x).shape[-2:]
    assert maps.shape == (3, *expected_hw)
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert not degenerate.any()
    flat = maps.flatten(1)
    assert (flat >= 0).all() and (flat <= 1).all()
    torch.testing.assert_close(flat.min(1).values, torch.zeros(3))
    torch.testing.assert_close(flat.max(1).values, torch.ones(3))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("family", ["resnet", "convnext"])
def test_feature_heatmaps_reductions_match_direct(family, reduction):
    model = family_model(family)
    x = images((2, 3, 96, 96))
    feature_map = oracle(model, x)
    direct = {
        "sum": feature_map.sum(dim=1),
        "relu-sum": torch.relu(feature_map).sum(dim=1),
        "l2": feature_map.square().sum(dim=1).sqrt(),
        # each position's distance from the image's per-channel median feature
        "contrast": (feature_map - feature_map.flatten(2).median(dim=2).values[..., None, None]
                     ).square().sum(dim=1).sqrt(),
    }[reduction]
    reduced = reduce_channels(feature_map, reduction)
    torch.testing.assert_close(reduced, direct, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(
        feature_heatmaps(model, x, reduction=reduction), _minmax(direct), atol=1e-5, rtol=0
    )


def test_reduce_channels_on_signed_maps_and_unknown_reduction():
    feature_map = torch.tensor([[[[1.0]], [[-2.0]], [[2.0]]]])  # (1, 3, 1, 1)
    assert reduce_channels(feature_map, "sum").item() == pytest.approx(1.0)
    assert reduce_channels(feature_map, "relu-sum").item() == pytest.approx(3.0)
    assert reduce_channels(feature_map, "l2").item() == pytest.approx(3.0)
    assert reduce_channels(feature_map.half(), "sum").dtype == torch.float32
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduce_channels(feature_map, "max")
    with pytest.raises(ValueError, match="reduction must be one of"):
        feature_heatmaps(family_model("resnet"), images((1, 3, 64, 64)), reduction="mean")


def test_feature_heatmaps_default_reduction_per_family():
    assert localization_defaults(family_model("resnet")).reduction == "sum"
    assert localization_defaults(family_model("regnet")).reduction == "sum"
    assert localization_defaults(vit()).reduction == "l2"
    assert localization_defaults(nn.DataParallel(family_model("resnet"))).reduction == "sum"
    x = images((2, 3, 96, 96))
    torch.testing.assert_close(
        feature_heatmaps(family_model("resnet"), x),
        feature_heatmaps(family_model("resnet"), x, reduction="sum"),
    )
    x = images((2, 3, 64, 64))
    maps = feature_heatmaps(vit(), x)
    torch.testing.assert_close(maps, feature_heatmaps(vit(), x, reduction="l2"))


@pytest.mark.parametrize("train", [True, False])
def test_feature_heatmaps_runs_in_eval_and_restores_mode(train):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet")
    x = images((2, 3, 96, 96))
    with torch.no_grad():
        expected = _minmax(oracle(model.eval(), x).sum(1))
    model.train(train)
    maps = feature_heatmaps(model, x, reduction="sum")
    assert model.training is train
    assert all(m.training is train for m in model.modules())
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=0)  # eval-mode BN was used
    assert not maps.requires_grad


def test_feature_heatmaps_degenerate_constant_features():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet").eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    maps, degenerate = feature_heatmaps(model, images((2, 3, 96, 96)), return_degenerate=True)
    assert degenerate.all()
    assert torch.equal(maps, torch.zeros_like(maps))


# --------------------------------------------------------------------------- 4. official boxes


def official_boxes(maps: torch.Tensor, threshold: float, size: tuple[int, int]) -> torch.Tensor:
    """The official per-image algorithm, as described (h_min, w_min, h_max, w_max)."""
    height, width = size
    rows = []
    for hmap in maps:
        map_h, map_w = hmap.shape
        flat = hmap.flatten()
        flat = flat - flat.min()
        flat = flat / flat.max()
        up = F.interpolate(flat.reshape(1, 1, map_h, map_w), size=(height, width), mode="bilinear")
        up = up.reshape(height, width)
        h_filter = up.max(1)[0] > threshold
        w_filter = up.max(0)[0] > threshold
        h_min, h_max = torch.nonzero(h_filter).view(-1)[[0, -1]] / height
        w_min, w_max = torch.nonzero(w_filter).view(-1)[[0, -1]] / width
        rows.append(torch.stack([h_min, w_min, h_max, w_max]))
    return torch.stack(rows)


def random_maps(count: int, map_h: int, map_w: int, seed: int) -> torch.Tensor:
    """Gaussian blobs + noise, at random scales and offsets (float32)."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=gen))

    ys = torch.arange(map_h, dtype=torch.float32)[:, None]
    xs = torch.arange(map_w, dtype=torch.float32)[None, :]
    maps = []
    for _ in range(count):
        hmap = torch.zeros(map_h, map_w)
        for _ in range(int(torch.randint(1, 4, (), generator=gen))):
            cy, cx = uniform(-0.5, map_h - 0.5), uniform(-0.5, map_w - 0.5)
            sy, sx = uniform(0.3, map_h / 2.5), uniform(0.3, map_w / 2.5)
            blob = torch.exp(-((ys - cy) ** 2) / (2 * sy**2) - ((xs - cx) ** 2) / (2 * sx**2))
            hmap += uniform(0.2, 1.0) * blob
        hmap += uniform(0.0, 0.3) * torch.rand(map_h, map_w, generator=gen)
        maps.append(hmap * uniform(0.01, 100.0) + uniform(-5.0, 5.0))
    return torch.stack(maps).float()


@pytest.mark.parametrize(
    "map_size, out_size, count",
    [
        ((4, 4), (32, 32), 64),
        ((7, 7), (224, 224), 24),
        ((12, 12), (96, 96), 48),
        ((8, 8), (64, 64), 32),
        ((5, 9), (40, 72), 32),
        ((7, 4), (100, 57), 32),
        ((3, 3), (32, 32), 32),
    ],
)
@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.3, 0.5])
def test_heatmap_boxes_equal_official(map_size, out_size, count, threshold):
    maps = random_maps(count, *map_size, seed=hash((map_size, out_size)) % 10_000)
    expected = from_official(official_boxes(maps, threshold, out_size), image_size=out_size)
    boxes, degenerate = heatmap_boxes(maps, threshold, out_size, return_degenerate=True)
    assert boxes.shape == (count, 4) and boxes.dtype == torch.float32
    assert not degenerate.any()
    torch.testing.assert_close(boxes, expected, atol=1e-6, rtol=0)
    validate_boxes(boxes)
    # (N, 1, h, w) input, and any batch split, give the same boxes.
    torch.testing.assert_close(heatmap_boxes(maps.unsqueeze(1), threshold, out_size), boxes)
    torch.testing.assert_close(heatmap_boxes(maps[1:2], threshold, out_size), boxes[1:2])


def test_heatmap_boxes_equal_official_on_model_heatmaps():
    model = family_model("resnet")
    maps = feature_heatmaps(model, images((8, 3, 224, 224)), reduction="sum")
    assert maps.shape == (8, 7, 7)
    expected = from_official(official_boxes(maps, 0.1, (224, 224)), image_size=(224, 224))
    torch.testing.assert_close(heatmap_boxes(maps, 0.1, (224, 224)), expected, atol=1e-6, rtol=0)


def test_heatmap_boxes_known_box_and_convention():
    hmap = torch.zeros(1, 8, 10)
    hmap[0, 2:5, 1:6] = 1.0  # rows 2..4, columns 1..5
    box = heatmap_boxes(hmap, 0.5)  # out_size defaults to the map's own size
    torch.testing.assert_close(box, torch.tensor([[1 / 10, 2 / 8, 6 / 10, 5 / 8]]))
    # Twice the size: nearest-pixel edges scale with it (align_corners=False).
    big = heatmap_boxes(hmap, 0.5, (16, 20))
    torch.testing.assert_close(big, box, atol=1e-6, rtol=0)
    # Lower threshold: the bilinear ramp widens the box by one output pixel per side.
    wide = heatmap_boxes(hmap, 0.1, (16, 20))
    torch.testing.assert_close(wide, torch.tensor([[1 / 20, 3 / 16, 13 / 20, 11 / 16]]))


# --------------------------------------------------------------------------- 5. degenerate


def _assert_whole(boxes: torch.Tensor, degenerate: torch.Tensor, rows) -> None:
    assert torch.isfinite(boxes).all()
    assert degenerate[rows].all()
    assert torch.equal(boxes[rows], WHOLE.expand(len(boxes[rows]), 4))


def _bad_maps() -> dict[str, torch.Tensor]:
    good = random_maps(1, 6, 6, seed=1)[0]
    nan_one, inf_one, ninf_one = good.clone(), good.clone(), good.clone()
    nan_one[2, 3] = float("nan")
    inf_one[0, 0] = float("inf")
    ninf_one[5, 1] = float("-inf")
    return {
        "constant": torch.full((6, 6), 3.5),
        "zero": torch.zeros(6, 6),
        "all_nan": torch.full((6, 6), float("nan")),
        "one_nan": nan_one,
        "one_inf": inf_one,
        "one_neg_inf": ninf_one,
        "all_inf": torch.full((6, 6), float("inf")),
    }


@pytest.mark.parametrize("kind", list(_bad_maps()))
def test_degenerate_maps_give_whole_box(kind):
    hmap = _bad_maps()[kind].unsqueeze(0)
    boxes, degenerate = heatmap_boxes(hmap, 0.1, (48, 48), return_degenerate=True)
    _assert_whole(boxes, degenerate, [0])


def test_nothing_above_threshold_gives_whole_box():
    maps = random_maps(8, 4, 4, seed=3)
    boxes, degenerate = heatmap_boxes(maps, 1.0, (32, 32), return_degenerate=True)
    _assert_whole(boxes, degenerate, list(range(8)))
    boxes, degenerate = heatmap_boxes(maps, 0.0, (32, 32), return_degenerate=True)
    assert not degenerate.any()  # threshold 0: everything but the minimum is above


@pytest.mark.parametrize("map_size", [(1, 1), (2, 2), (2, 7), (7, 2), (1, 5)])
def test_maps_smaller_than_3x3_give_whole_box(map_size):
    maps = random_maps(3, *map_size, seed=4)
    boxes, degenerate = heatmap_boxes(maps, 0.1, (32, 32), return_degenerate=True)
    _assert_whole(boxes, degenerate, [0, 1, 2])


def test_mixed_batch_keeps_good_rows():
    good = random_maps(5, 6, 6, seed=5)
    bad = list(_bad_maps().values())
    batch = torch.stack([good[0], bad[0], good[1], bad[2], good[2], bad[4], good[3],
                         bad[6], good[4], bad[1], bad[3], bad[5]])  # fmt: skip
    good_rows = [0, 2, 4, 6, 8]
    bad_rows = [1, 3, 5, 7, 9, 10, 11]
    boxes, degenerate = heatmap_boxes(batch, 0.3, (48, 48), return_degenerate=True)
    _assert_whole(boxes, degenerate, bad_rows)
    assert not degenerate[good_rows].any()
    expected = from_official(official_boxes(good, 0.3, (48, 48)), image_size=(48, 48))
    torch.testing.assert_close(boxes[good_rows], expected, atol=1e-6, rtol=0)


def test_heatmap_boxes_argument_errors_and_empty_batch():
    maps = random_maps(2, 4, 4, seed=6)
    for threshold in (-0.1, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            heatmap_boxes(maps, threshold)
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        heatmap_boxes(maps[0], 0.1)
    boxes, degenerate = heatmap_boxes(torch.zeros(0, 4, 4), 0.1, (32, 32), return_degenerate=True)
    assert boxes.shape == (0, 4) and degenerate.shape == (0,)
