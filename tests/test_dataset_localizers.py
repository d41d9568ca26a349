"""What DDT and the contrastive CAM share: the registry, any timm family, the box pass."""

from __future__ import annotations

import pytest
import timm
import torch

from timm_ccrop.crop.boxes import validate_boxes
from timm_ccrop.data import SyntheticObjects
from timm_ccrop.localize import LOCALIZERS, create_localizer, localize_dataset
from timm_ccrop.models.backbones import create_backbone


def test_registered_with_options_checked():
    assert {"ddt", "ccam"} <= set(LOCALIZERS)
    assert create_localizer("ddt").needs_fit and create_localizer("ccam").needs_fit
    assert create_localizer("ccam", level=0.5, temperature=0.1).describe() == \
        "ccam(level=0.5, temperature=0.1)"
    for name, bad in [("ddt", {"pick": "middle"}), ("ddt", {"upsample": 0}),
                      ("ccam", {"rule": "median"}), ("ccam", {"temperature": 0}),
                      ("ccam", {"bank_size": 0}),
                      ("ddt", {"threshold": 0.3}), ("ccam", {"fuse": (1, 2)})]:
        with pytest.raises(ValueError):
            create_localizer(name, **bad)


@pytest.mark.parametrize("name", ["ddt", "ccam"])
def test_vit_works(name):
    model = timm.create_model("test_vit", dynamic_img_size=True, num_classes=0).eval()
    images = torch.randn(4, 3, 64, 64)  # 4x4 tokens
    localizer = create_localizer(name)
    with torch.no_grad():
        if localizer.needs_fit:
            localizer.fit(model, lambda: iter(images.split(2)))
        boxes, degenerate = localizer.boxes(model, images, (64, 64))
    validate_boxes(boxes)
    assert boxes.shape == (4, 4) and degenerate.shape == (4,)


@pytest.mark.parametrize("options", [{"name": "ddt"}, {"name": "ddt", "dilate": True},
                                     {"name": "ccam"}])
def test_localize_dataset_end_to_end(options):
    model = create_backbone("resnet_mini_cifar", seed=0)
    dataset = SyntheticObjects(num_samples=12, image_size=32, backgrounds=1)
    localizer = create_localizer(**options)
    result = localize_dataset(model, dataset, 32, batch_size=8, progress=False,
                              localizer=localizer)
    validate_boxes(result.boxes)
    assert result.boxes.shape == (12, 4) and result.degenerate.shape == (12,)
    assert result.localizer == localizer.describe()
    assert 0.0 < result.mean_area <= 1.0
