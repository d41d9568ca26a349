"""Tests of :mod:`timm_ccrop.localize.hooks` and :mod:`timm_ccrop.localize.heatmaps`: hooked
feature maps, heatmaps and the paper's boxes (the box pass: tests/test_boxpass.py).

The hooked maps are checked against timm's own ``forward_intermediates`` (the oracle) for
every layout family; the boxes against an independent re-implementation of the official
ContrastiveCrop per-image algorithm (written here from its description).
"""

from __future__ import annotations

import functools

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.levit import Levit
from timm.models.mlp_mixer import MlpMixer
from torch import nn

from timm_ccrop.crop.boxes import from_official, validate_boxes
from timm_ccrop.localize import (
    REDUCTIONS,
    FeatureHook,
    feature_heatmaps,
    heatmap_boxes,
    localization_defaults,
    reduce_channels,
    resolve_stage,
    to_nchw,
)
from timm_ccrop.models.backbones import unwrap_model

WHOLE = torch.tensor([0.0, 0.0, 1.0, 1.0])


# --------------------------------------------------------------------------- models
# Small members of each layout family. Real architectures are shrunk through their own
# constructor arguments (same classes, same hooked modules, same output layouts).
_FAMILIES: dict[str, tuple] = {
    # name: (builder, input shape, raw layout of the hooked output)
    "resnet": (lambda: timm.create_model("test_resnet"), (2, 3, 96, 96), "nchw"),
    "convnext": (lambda: timm.create_model("test_convnext"), (2, 3, 96, 96), "nchw"),
    "efficientnet": (lambda: timm.create_model("test_efficientnet"), (2, 3, 96, 96), "nchw"),
    "regnet": (lambda: timm.create_model("regnetx_002"), (1, 3, 96, 96), "nchw"),
    "vit": (
        lambda: timm.create_model("test_vit", dynamic_img_size=True),
        (2, 3, 64, 64),
        "tokens",
    ),
    "deit_distilled": (
        lambda: timm.create_model(
            "deit_tiny_distilled_patch16_224", img_size=64, depth=2, embed_dim=64, num_heads=2
        ),
        (2, 3, 64, 64),
        "tokens",
    ),
    "swin": (
        lambda: timm.create_model(
            "swin_tiny_patch4_window7_224",
            img_size=96,
            window_size=3,
            embed_dim=16,
            depths=(1, 1, 1, 1),
            num_heads=(1, 1, 1, 1),
        ),
        (2, 3, 96, 96),
        "nhwc",
    ),
    "mixer": (
        lambda: MlpMixer(img_size=64, patch_size=16, num_blocks=2, embed_dim=32),
        (2, 3, 64, 64),
        "tokens",
    ),
    "levit": (
        lambda: Levit(
            img_size=192, embed_dim=(32, 48, 64), key_dim=16, num_heads=(1, 1, 1),
            depth=(1, 1, 1),
        ),
        (2, 3, 192, 192),
        "tokens",
    ),
    "mambaout": (lambda: timm.create_model("test_mambaout"), (2, 3, 96, 96), "nhwc"),
}


@functools.cache
def family_model(family: str) -> nn.Module:
    """A cached eval-mode model of ``family`` (tests that change its mode make their own)."""
    torch.manual_seed(0)
    return _FAMILIES[family][0]().eval()


@functools.cache
def vit(dynamic_img_pad: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "test_vit", dynamic_img_size=True, dynamic_img_pad=dynamic_img_pad
    ).eval()


def images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def oracle(model: nn.Module, x: torch.Tensor, index: int | None = None) -> torch.Tensor:
    """timm's own NCHW map: the last stage, or feature-info entry ``index``."""
    with torch.no_grad():
        if index is None:
            return model.forward_intermediates(x, indices=1, intermediates_only=True)[-1]
        return model.forward_intermediates(x, indices=[index], intermediates_only=True)[-1]


def hooked(model: nn.Module, x: torch.Tensor, stage: int = -1) -> tuple[torch.Tensor, object]:
    with torch.no_grad(), FeatureHook(model, stage) as hook:
        model(x)
        return hook.feature_map, hook.output


# --------------------------------------------------------------------------- 1. oracle


@pytest.mark.parametrize("family", list(_FAMILIES))
def test_hooked_map_equals_timm_oracle(family):
    model = family_model(family)
    shape, layout = _FAMILIES[family][1], _FAMILIES[family][2]
    x = images(shape)
    feature_map, raw = hooked(model, x)
    expected = oracle(model, x)
    assert feature_map.shape == expected.shape
    assert feature_map.shape[-1] >= 3 and feature_map.shape[-2] >= 3
    torch.testing.assert_close(feature_map, expected, atol=1e-5, rtol=0)
    # The family's raw layout really went through the matching branch of to_nchw.
    channels = expected.shape[1]
    if layout == "nchw":
        assert raw.ndim == 4 and raw.shape[1] == channels
    elif layout == "nhwc":
        assert raw.ndim == 4 and raw.shape[-1] == channels and raw.shape[1] != channels
    else:
        prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        assert raw.ndim == 3 and raw.shape[1] == prefix + expected.shape[2] * expected.shape[3]


@pytest.mark.parametrize(
    "name",
    [
        "deit_tiny_distilled_patch16_224",
        "swin_tiny_patch4_window7_224",
        "mixer_s16_224",
        "levit_128s",
        "mambaout_femto",
        "regnety_002",
    ],
)
def test_real_architecture_at_224_equals_oracle(name):
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    x = images((1, 3, 224, 224))
    feature_map, _ = hooked(model, x)
    expected = oracle(model, x)
    assert feature_map.shape == expected.shape
    torch.testing.assert_close(feature_map, expected, atol=1e-5, rtol=0)


def test_deit_distilled_has_two_prefix_tokens():
    assert family_model("deit_distilled").num_prefix_tokens == 2
    assert int(getattr(family_model("mixer"), "num_prefix_tokens", 0) or 0) == 0


@pytest.mark.parametrize(
    "size, pad", [((48, 80), False), ((80, 48), False), ((32, 112), False), ((50, 82), True)]
)
def test_vit_dynamic_non_square_equals_oracle(size, pad):
    model = vit(pad)
    x = images((2, 3, *size))
    feature_map, raw = hooked(model, x)
    expected = oracle(model, x)
    assert feature_map.shape == expected.shape
    assert raw.shape[1] == 1 + expected.shape[2] * expected.shape[3]  # the class token
    torch.testing.assert_close(feature_map, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["resnet", "vit", "convnext"])
def test_earlier_stage_equals_oracle(family):
    model = vit() if family == "vit" else family_model(family)
    x = images((2, 3, 64, 64))
    count = len(model.feature_info)
    feature_map, _ = hooked(model, x, stage=-2)
    expected = oracle(model, x, index=count - 2)
    assert resolve_stage(model, -2) == dict(model.feature_info[count - 2])
    assert feature_map.shape == expected.shape
    torch.testing.assert_close(feature_map, expected, atol=1e-5, rtol=0)
    if family != "vit":  # a CNN's earlier stage is finer than its last one
        assert feature_map.shape[-1] > oracle(model, x).shape[-1]


def test_to_nchw_layouts_and_errors():
    nchw = torch.randn(2, 8, 5, 7)
    assert to_nchw(nchw, 8, (80, 112), 16) is nchw
    assert torch.equal(to_nchw((nchw, "aux"), 8, (80, 112), 16), nchw)
    torch.testing.assert_close(to_nchw(nchw.permute(0, 2, 3, 1), 8, (80, 112), 16), nchw)
    # NHWC whose height equals the channel count: disambiguated by the grid size.
    nhwc = torch.randn(2, 8, 4, 8)  # (N, H=8, W=4, C=8)
    torch.testing.assert_close(to_nchw(nhwc, 8, (128, 64), 16), nhwc.permute(0, 3, 1, 2))
    tokens = torch.randn(2, 3 + 5 * 7, 8)
    grid = to_nchw(tokens, 8, (80, 112), 16, num_prefix_tokens=3)
    torch.testing.assert_close(grid, tokens[:, 3:].transpose(1, 2).reshape(2, 8, 5, 7))
    with pytest.raises(ValueError, match="unexpected stage output"):
        to_nchw(torch.randn(2, 5, 6, 7), 8, (80, 112), 16)
    with pytest.raises(TypeError):
        to_nchw({"x": nchw}, 8, (80, 112), 16)


# --------------------------------------------------------------------------- 2. the hook


def test_hook_removed_on_exit_and_on_exception():
    model = family_model("resnet")
    module = dict(model.named_modules())[model.feature_info[-1]["module"]]
    with FeatureHook(model) as hook:
        assert hook.module is module
        assert len(module._forward_hooks) == 1 and len(model._forward_pre_hooks) == 1
        model(images((1, 3, 64, 64)))
    assert not module._forward_hooks and not model._forward_pre_hooks
    with pytest.raises(RuntimeError, match="boom"), FeatureHook(model):
        assert module._forward_hooks
        raise RuntimeError("boom")
    assert not module._forward_hooks and not model._forward_pre_hooks


def test_hook_never_fired_raises():
    with FeatureHook(family_model("resnet")) as hook, pytest.raises(RuntimeError, match="never"):
        _ = hook.feature_map


@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_hook_inside_training_forward_keeps_grad(family):
    torch.manual_seed(0)
    model = _FAMILIES[family][0]().train()
    x = images((2, 3, 64, 64))
    with FeatureHook(model, detach=False) as hook:
        logits = model(x)
        feature_map = hook.feature_map
    assert model.training
    assert feature_map.requires_grad and logits.requires_grad
    (feature_map.square().mean() + logits.mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    with torch.no_grad():  # the same map as the model's own intermediates in train mode
        expected = model.forward_intermediates(x, indices=1, intermediates_only=True)[-1]
    torch.testing.assert_close(feature_map.detach(), expected, atol=1e-5, rtol=0)
    with FeatureHook(model) as hook:  # detach=True (default): no graph kept
        model(x)
        assert not hook.feature_map.requires_grad


def test_unwrap_model_strips_compile_and_data_parallel():
    model = family_model("resnet")
    compiled = torch.compile(model)  # not run: only the wrapper is inspected
    assert compiled is not model
    assert unwrap_model(compiled) is model
    assert unwrap_model(nn.DataParallel(model)) is model
    assert unwrap_model(nn.DataParallel(torch.compile(model))) is model
    assert unwrap_model(model) is model
    assert resolve_stage(compiled) == dict(model.feature_info[-1])


def test_feature_hook_on_wrapped_model():
    model = family_model("resnet")
    wrapped = nn.DataParallel(model)  # on CPU it forwards straight to the module
    x = images((2, 3, 96, 96))
    with torch.no_grad(), FeatureHook(wrapped) as hook:
        assert hook.model is model
        wrapped(x)
        feature_map = hook.feature_map
    torch.testing.assert_close(feature_map, oracle(model, x), atol=1e-5, rtol=0)
    compiled = torch.compile(model)
    with FeatureHook(compiled) as hook:
        assert hook.model is model
    torch.testing.assert_close(feature_heatmaps(wrapped, x), feature_heatmaps(model, x))


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


# --------------------------------------------------------------------------- 6. stages


def test_resolve_stage_errors():
    model = family_model("resnet")
    count = len(model.feature_info)
    assert resolve_stage(model, 0)["module"] == model.feature_info[0]["module"]
    assert resolve_stage(model, -count)["module"] == model.feature_info[0]["module"]
    for stage in (count, -count - 1, 99):
        with pytest.raises(ValueError, match="does not exist"):
            resolve_stage(model, stage)
        with pytest.raises(ValueError, match="does not exist"):
            FeatureHook(model, stage)
    with pytest.raises(ValueError, match="feature_info"):
        resolve_stage(nn.Sequential(nn.Conv2d(3, 4, 3)))
