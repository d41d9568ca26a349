"""CIFAR-stem ResNets registered as timm architectures."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import timm_ccrop.models.cifar as cifar_models

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
    for inherited in ("origin_url", "tag", "test_input_size", "hf_hub_id", "file"):
        assert cfg.get(inherited) is None, inherited
    # an architecture with a zoo tag keeps the untagged cfg as its default
    assert timm.list_pretrained("resnet_mini_cifar.*")
    assert timm.create_model("resnet_mini_cifar").pretrained_cfg.get("tag") is None
    data = timm.data.resolve_model_data_config(timm.create_model("resnet18_cifar"))
    assert data["input_size"] == (3, 32, 32) and data["interpolation"] == "bilinear"


def test_registration_is_idempotent() -> None:
    assert timm.list_models("*_cifar") == sorted(NAMES)
    tags = timm.list_pretrained("*_cifar.*")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cifar_models.register_cifar_models() == []
        # the same tags again: nothing registered, and None keeps the tags declared before
        assert cifar_models.register_cifar_models(cifar_models.cifar_pretrained_cfgs()) == []
    assert timm.list_models("*_cifar") == sorted(NAMES)
    assert timm.list_pretrained("*_cifar.*") == tags


def test_tags_are_declared_in_default_cfgs_and_load(tmp_path: Path) -> None:
    torch.manual_seed(5)
    trained = timm.create_model("resnet_mini_cifar")
    weights = tmp_path / "model.safetensors"
    save_file(trained.state_dict(), str(weights))
    before = cifar_models.cifar_pretrained_cfgs()
    name = "resnet_mini_cifar.test_only"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # timm's "Overwriting" warning is ours to silence
            changed = cifar_models.register_cifar_models(
                {**before, name: {"file": str(weights), "description": "a test"}})
            assert changed == ["resnet_mini_cifar"]  # only the architecture whose tags changed
        assert name in timm.list_pretrained("*_cifar.*")
        assert "test_only" in cifar_models.default_cfgs["resnet_mini_cifar"].tags
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.file == str(weights) and cfg.tag == "test_only"
        assert cfg.description == "a test" and cfg.input_size == (3, 32, 32)  # our defaults
        assert cfg.mean == cifar_models.CIFAR_MEAN and cfg.pool_size == (4, 4)
        # the untagged cfg stays the architecture's default
        assert timm.models.get_pretrained_cfg("resnet_mini_cifar").file is None
        assert "resnet_mini_cifar" not in timm.list_pretrained()
        loaded = timm.create_model(name, pretrained=True)
        for key, value in trained.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        # the tags of the other architectures were kept
        assert set(before) <= set(timm.list_pretrained("*_cifar.*"))
    finally:
        cifar_models.register_cifar_models(before)
    assert name not in timm.list_pretrained()
    assert cifar_models.cifar_pretrained_cfgs() == before


@pytest.mark.parametrize(("cfgs", "message"), [
    ({"resnet18.x": {"file": "w"}}, r"key 'resnet18.x' must be 'ARCH.TAG' with ARCH one of"),
    ({"resnet18_cifar": {"file": "w"}}, r"key 'resnet18_cifar' must be 'ARCH.TAG'"),
    ({"resnet18_cifar.x": {"file": "w", "colour": 1}}, r"unknown fields \['colour'\]"),
    ({"resnet18_cifar.x": {"mean": (0.5,)}}, "names no weights; set one of file, url"),
    ({"resnet18_cifar.x": "w"}, "must be a mapping of pretrained_cfg fields"),
    (["resnet18_cifar.x"], "must be a mapping 'ARCH.TAG' -> pretrained_cfg"),
])
def test_bad_tagged_cfgs_fail_in_one_line(cfgs: object, message: str) -> None:
    before = timm.list_pretrained()
    with pytest.raises(ValueError, match=message) as caught:
        cifar_models.register_cifar_models(cfgs)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert timm.list_pretrained() == before


def test_a_name_registered_by_someone_else_is_never_touched() -> None:
    # A fresh interpreter: another package owns resnet18_cifar before timm_ccrop is imported.
    script = """
import sys, types, warnings
import timm
from timm.models import generate_default_cfgs, model_entrypoint, register_model

other = types.ModuleType("other_pkg")
sys.modules["other_pkg"] = other
other.default_cfgs = generate_default_cfgs({"resnet18_cifar.theirs": {"hf_hub_id": "them/x"}})
def resnet18_cifar(pretrained=False, **kwargs):
    return timm.create_model("resnet18", pretrained=pretrained, **kwargs)
resnet18_cifar.__module__ = "other_pkg"
register_model(resnet18_cifar)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import timm_ccrop
    from timm_ccrop import models
    from timm_ccrop.hub import ZooEntry, load_zoo, register_zoo
    models.register_cifar_models({"resnet18_cifar.mine": {"file": "w.safetensors"}})
    entry = ZooEntry.from_dict({**load_zoo()[0].raw, "architecture": "resnet18_cifar",
                                "weights": {"hf_hub_id": "me/mine"}})
    assert register_zoo([entry]) == []
messages = [str(w.message) for w in caught]
assert any("already has an architecture named 'resnet18_cifar' (from other_pkg)" in m
           for m in messages), messages
assert any("registered by other_pkg, not timm-ccrop" in m for m in messages), messages
assert model_entrypoint("resnet18_cifar") is resnet18_cifar
assert timm.models.get_pretrained_cfg("resnet18_cifar.theirs").hf_hub_id == "them/x"
assert timm.list_pretrained("resnet18_cifar.*") == ["resnet18_cifar.theirs"]
assert timm.list_models("resnet34_cifar") == ["resnet34_cifar"]  # the others are ours
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_import_and_reload_keep_every_tag() -> None:
    # A fresh interpreter: in this one the module may have been imported long ago, and a
    # reload here would swap the class under other tests' feet.
    script = """
import importlib, warnings
import timm
timm_before = timm.list_pretrained()
before_cfg = timm.models.get_pretrained_cfg("resnet18").to_dict()
import timm_ccrop.models.cifar as cifar_models
imported = timm.list_pretrained()
assert set(timm_before) <= set(imported)
assert set(imported) - set(timm_before) == set(timm.list_pretrained("*_cifar.*"))
assert timm.list_pretrained("*_cifar.*"), "the zoo declared no tag"
old_class = cifar_models.CifarResNet
with warnings.catch_warnings():
    warnings.simplefilter("error")
    importlib.reload(cifar_models)
assert cifar_models.CifarResNet is not old_class  # the module really ran again
assert timm.list_pretrained() == imported  # re-pointed, every tag kept
assert timm.models.get_pretrained_cfg("resnet18").to_dict() == before_cfg
assert {"resnet18.a1_in1k", "resnet18.tv_in1k"} <= set(timm.list_pretrained("resnet18.*"))
assert timm.list_models("*_cifar") == sorted(cifar_models.CIFAR_MODEL_NAMES)
assert isinstance(timm.create_model("resnet18_cifar"), cifar_models.CifarResNet)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
