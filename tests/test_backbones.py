"""Backbones (timm_ccrop.models.backbones): create, read any weight file, load strictly, hash."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from timm_ccrop.models.backbones import (
    backbone_state_from_checkpoint,
    create_backbone,
    load_backbone_weights,
    probe_model,
    read_state_dict,
    state_dict_sha256,
    strip_wrapper_prefixes,
)


def test_create_backbone_is_headless_seeded_and_names_unknown_models() -> None:
    first = create_backbone("resnet_mini_cifar", seed=3)
    second = create_backbone("resnet_mini_cifar", seed=3)
    assert first.num_classes == 0
    assert state_dict_sha256(first.state_dict()) == state_dict_sha256(second.state_dict())
    with pytest.raises(ValueError, match="'resnet_mini_cifra'; did you mean resnet_mini_cifar"):
        create_backbone("resnet_mini_cifra")


def test_pretrained_failure_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to the Hub\nmore lines")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1") as caught:
        create_backbone("resnet18", pretrained=True)
    assert "more lines" not in str(caught.value)


def test_probe_model_builds_on_meta_and_makes_vits_size_agnostic() -> None:
    probe, kwargs = probe_model("vit_tiny_patch16_224")
    assert kwargs == {"dynamic_img_size": True}
    assert next(probe.parameters()).device.type == "meta"
    assert probe_model("resnet18")[1] == {}
    with pytest.raises(ValueError, match="unknown timm model"):
        probe_model("resnet_does_not_exist")


@pytest.mark.parametrize(("nest", "suffix"), [
    (None, ".pt"), ("model", ".pt"), ("state_dict", ".pt"), (None, ".safetensors"),
])  # safetensors files hold flat state dicts only
def test_read_state_dict_unwraps_nesting_and_prefixes(tmp_path: Path, nest: str | None,
                                                      suffix: str) -> None:
    state = {"module._orig_mod.conv.weight": torch.ones(2, 2), "fc.bias": torch.zeros(3)}
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({nest: state} if nest else state, path)
    assert sorted(read_state_dict(path)) == ["conv.weight", "fc.bias"]


def test_read_state_dict_rejects_what_is_no_state_dict(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "note": "hi"}, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="not a state dict: 2 entries"):
        read_state_dict(tmp_path / "a.pt")
    (tmp_path / "b.pt").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(tmp_path / "b.pt")
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pt")


def test_backbone_weights_of_a_training_checkpoint() -> None:
    state = {"model": {"backbone.conv.weight": torch.ones(1), "projector.0.weight": torch.ones(1),
                       "module.backbone.bn.bias": torch.zeros(1)}}
    assert sorted(backbone_state_from_checkpoint(state)) == ["bn.bias", "conv.weight"]
    with pytest.raises(ValueError, match="no backbone"):
        backbone_state_from_checkpoint({"model": {"projector.0.weight": torch.ones(1)}}, "x.pt")


def test_load_backbone_weights_names_every_kind_of_mismatch() -> None:
    model = create_backbone("resnet_mini_cifar")
    state = dict(model.state_dict())
    state["fc.weight"] = torch.zeros(10, model.num_features)  # a classifier: dropped
    assert load_backbone_weights(model, state) == ["fc.weight"]
    broken = dict(model.state_dict())
    first = next(iter(broken))
    broken[first] = torch.zeros(1)
    del broken[list(broken)[1]]
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as caught:
        load_backbone_weights(model, broken, "ckpt.pt")
    message = str(caught.value)
    assert "1 missing" in message and "1 unexpected (extra.weight)" in message
    assert f"{first}: checkpoint (1,)" in message


def test_strip_wrapper_prefixes_in_any_order() -> None:
    assert strip_wrapper_prefixes("_orig_mod.module._orig_mod.a.b") == "a.b"
    assert strip_wrapper_prefixes("modules.a") == "modules.a"
