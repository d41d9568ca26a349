"""Tests of :mod:`timm_ccrop.localize.hooks`: hooked feature maps of every layout family,
checked against timm's own ``forward_intermediates`` (the oracle), the hook's life cycle
and the stages it resolves (heatmaps and boxes: tests/test_heatmaps.py).
"""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from timm_ccrop.localize import FeatureHook, feature_heatmaps, resolve_stage, to_nchw
from timm_ccrop.models.backbones import unwrap_model

from .helpers import FAMILIES, family_model, images, oracle, vit


def hooked(model: nn.Module, x: torch.Tensor, stage: int = -1) -> tuple[torch.Tensor, object]:
    with torch.no_grad(), FeatureHook(model, stage) as hook:
        model(x)
        return hook.feature_map, hook.output


# --------------------------------------------------------------------------- 1. oracle


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hooked_map_equals_timm_oracle(family):
    model = family_model(family)
    shape, layout = FAMILIES[family][1], FAMILIES[family][2]
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
    # by behaviour, not torch's private hook dicts: once the block is left, a forward
    # no longer reaches the hook (its last capture stays the one made inside)
    model = family_model("resnet")
    module = dict(model.named_modules())[model.feature_info[-1]["module"]]
    with FeatureHook(model) as hook:
        assert hook.module is module
        model(images((1, 3, 64, 64)))
        inside = hook.output
    assert inside is not None
    model(images((2, 3, 64, 64)))
    assert hook.output is inside
    with pytest.raises(RuntimeError, match="boom"), FeatureHook(model) as failed:
        raise RuntimeError("boom")
    model(images((1, 3, 64, 64)))
    assert failed.output is None


def test_hook_never_fired_raises():
    with FeatureHook(family_model("resnet")) as hook, pytest.raises(RuntimeError, match="never"):
        _ = hook.feature_map


@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_hook_inside_training_forward_keeps_grad(family):
    torch.manual_seed(0)
    model = FAMILIES[family][0]().train()
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
