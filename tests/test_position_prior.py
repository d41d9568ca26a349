"""scripts/position_prior.py: a localization map's preferred place on content-free images."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import load_script
from timm_ccrop.config import TrainConfig
from timm_ccrop.methods import build_method
from timm_ccrop.models.backbones import create_backbone
from timm_ccrop.runs import save_checkpoint


def test_it_prints_a_map_per_network_and_image_kind(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    config = TrainConfig(model="resnet_mini_cifar", data="synthetic:num_samples=8",
                         image_size=32)
    method = build_method(config.method, create_backbone(config.model, seed=0))
    snapshot = tmp_path / "epoch0001.pt"
    save_checkpoint({"model": method.state_dict(), "epoch": 1, "config": config.to_dict()},
                    snapshot)
    script = load_script("position_prior")
    assert script.main([str(snapshot), "--localizer-kwargs", "{reduction: l2}"]) == 0
    out = capsys.readouterr().out
    for title in ("trained, grey (8, 8):", "trained, noise", "random init, grey",
                  "random init, noise"):
        assert title in out
    grey = script.mean_maps(snapshot, False, "peak", {"reduction": "l2"})["grey"]
    assert grey.shape == (8, 8) and float(grey.max()) == 1.0 and float(grey.min()) == 0.0
