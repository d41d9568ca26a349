"""CIFAR-stem ResNets registered as timm architectures."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch

import timm_ccrop.models as cifar_models

NAMES = cifar_models.CIFAR_MODEL_NAMES


@pytest.mark.parametrize(("name", "width"), [("resnet18_cifar", 512), ("resnet34_cifar", 512),
                                             ("resnet50_cifar", 2048)])
def test_create_gives_4x4_last_map_at_32px(name: str, width: int) -> None:
    model = timm.create_model(name).eval()
    assert type(model).__name__ == "CifarResNet"
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    with torch.no_grad():
        last = model.forward_intermediates(torch.randn(1, 3, 32, 32), intermediates_only=True)[-1]
        pooled = model(torch.randn(2, 3, 32, 32))
    assert last.shape == (1, width, 4, 4)
    assert pooled.shape == (2, width)  # num_classes defaults to 0: a feature extractor


def test_feature_info_reductions_match_the_maps() -> None:
    model = timm.create_model("resnet18_cifar")
    assert model.feature_info[-1]["reduction"] == 8
    assert [info["reduction"] for info in model.feature_info] == [1, 1, 2, 4, 8]
    assert [info["module"] for info in model.feature_info] == [
        "act1", "layer1", "layer2", "layer3", "layer4"]
    features = timm.create_model("resnet18_cifar", features_only=True).eval()
    with torch.no_grad():
        maps = features(torch.randn(1, 3, 32, 32))
    assert [m.shape[-1] for m in maps] == [32 // r for r in features.feature_info.reduction()]


def test_output_stride_keeps_timm_meaning() -> None:
    model = timm.create_model("resnet18_cifar", output_stride=16).eval()
    assert model.feature_info[-1]["reduction"] == 4
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 8


def test_mini_has_a_strided_stem_and_the_same_last_map() -> None:
    mini = timm.create_model("resnet_mini_cifar").eval()
    tiny = timm.create_model("resnet_tiny_cifar").eval()
    assert mini.conv1.stride == (2, 2) and mini.num_features == tiny.num_features == 96
    assert [info["reduction"] for info in mini.feature_info] == [2, 2, 4, 8, 8]
    features = timm.create_model("resnet_mini_cifar", features_only=True).eval()
    with torch.no_grad():
        maps = features(torch.randn(1, 3, 32, 32))
        last = mini.forward_features(torch.randn(1, 3, 32, 32))
    assert [m.shape[-1] for m in maps] == [32 // r for r in features.feature_info.reduction()]
    assert last.shape == (1, 96, 4, 4)
    with pytest.raises(ValueError, match="stem_stride.*3"):
        timm.create_model("resnet18_cifar", stem_stride=3)


def test_stem_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="stem_type"):
        timm.create_model("resnet18_cifar", stem_type="deep")


def test_state_dict_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18_cifar", num_classes=10)
    with torch.no_grad():  # non-trivial BN statistics, so eval outputs depend on buffers
        model.train()(torch.randn(8, 3, 32, 32))
    model.eval()
    images = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    fresh = timm.create_model("resnet18_cifar", num_classes=10).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(images), model(images))

    # The export path: config.json names the architecture; it must rebuild the same network.
    timm.models.save_for_hf(model, tmp_path, safe_serialization=True)
    reloaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    assert type(reloaded) is type(model)
    with torch.no_grad():
        assert torch.equal(reloaded(images), model(images))


def test_pretrained_cfg_is_our_own() -> None:
    cfg = timm.create_model("resnet18_cifar").pretrained_cfg
    assert cfg["architecture"] == "resnet18_cifar"
    assert cfg["input_size"] == (3, 32, 32) and cfg["pool_size"] == (4, 4)
    assert cfg["mean"] == (0.4914, 0.4822, 0.4465) and cfg["std"] == (0.2470, 0.2435, 0.2616)
    assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 1.0
    assert cfg["num_classes"] == 0 and cfg["license"] == "apache-2.0"
    assert cfg["paper_ids"] == "arXiv:2202.03278"
    for inherited in ("origin_url", "tag", "test_input_size", "hf_hub_id"):
        assert cfg.get(inherited) is None, inherited
    data = timm.data.resolve_model_data_config(timm.create_model("resnet18_cifar"))
    assert data["input_size"] == (3, 32, 32) and data["interpolation"] == "bilinear"


def test_registration_is_idempotent() -> None:
    assert timm.list_models("*_cifar") == sorted(NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cifar_models.register_cifar_models() == []
    assert timm.list_models("*_cifar") == sorted(NAMES)


def test_import_and_reimport_leave_timm_pretrained_tags_alone() -> None:
    # A fresh interpreter: in this one the module may have been imported long ago, and a
    # reload here would swap the class under other tests' feet.
    script = """
import importlib, warnings
import timm
before = timm.list_pretrained()
before_cfg = timm.models.get_pretrained_cfg("resnet18").to_dict()
import timm_ccrop.models as cifar_models
with warnings.catch_warnings():
    warnings.simplefilter("error")
    importlib.reload(cifar_models)
assert timm.list_pretrained() == before
assert timm.models.get_pretrained_cfg("resnet18").to_dict() == before_cfg
assert {"resnet18.a1_in1k", "resnet18.tv_in1k"} <= set(timm.list_pretrained("resnet18.*"))
assert timm.list_models("*_cifar") == sorted(cifar_models.CIFAR_MODEL_NAMES)
assert isinstance(timm.create_model("resnet18_cifar"), cifar_models.CifarResNet)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
