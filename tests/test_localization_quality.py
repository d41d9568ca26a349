"""Box quality: a briefly trained backbone's boxes beat the whole image; random init's don't.

A test-size ResNet is trained WITH the labels (a stand-in for the SSL training ContrastiveCrop
runs inside) for a few dozen steps on ``SyntheticObjects``; ``localize_dataset`` with the
family defaults then gives boxes whose mean IoU with the ground truth beats the whole-image
box by a clear margin. The same pass on the random-init model does not, so the test measures
what training brings, not a property of the synthetic images. Numbers behind the margin:
docs/localization.md.
"""

from __future__ import annotations

import random

import pytest
import timm
import torch
import torch.nn.functional as F

from timm_ccrop.crop.boxes import paired_iou
from timm_ccrop.data.synthetic import SyntheticObjects
from timm_ccrop.localize import create_localizer, localization_defaults, localize_dataset

SIZE = 64
STAGE = -2  # layer3 of test_resnet: 4x4 at 64 px (the last stage is 2x2: too coarse)
STEPS = 80
BATCH = 32
MARGIN = 0.18  # measured: trained +0.31, random init +0.06 over the whole image
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _seed(seed: int = 0) -> None:
    torch.manual_seed(seed)
    random.seed(seed)


def _train(model: torch.nn.Module, dataset: SyntheticObjects) -> None:
    """Cross-entropy with AdamW, random horizontal flips; the eval transform's normalisation."""
    images = (dataset.images_uint8().float() / 255.0 - _MEAN) / _STD
    targets = torch.tensor(dataset.targets)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    model.train()
    for _ in range(STEPS):
        index = torch.randint(0, len(images), (BATCH,), generator=generator)
        batch = images[index]
        flip = torch.rand(BATCH, generator=generator) < 0.5
        batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
        loss = F.cross_entropy(model(batch), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _measure():
    """(whole-image IoU, random-init IoU, trained IoU, trained LocalizationResult)."""
    _seed()
    train_set = SyntheticObjects(512, SIZE, num_classes=10, seed=0, split="train")
    test_set = SyntheticObjects(256, SIZE, num_classes=10, seed=0, split="test")
    gt = test_set.gt_boxes
    whole_iou = float(paired_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand_as(gt), gt).mean())
    model = timm.create_model("test_resnet", num_classes=10)
    # threshold and reduction left to the family defaults
    union = create_localizer("union", stage=STAGE)
    untrained = localize_dataset(model, test_set, SIZE, localizer=union, progress=False)
    _train(model, train_set)
    trained = localize_dataset(model, test_set, SIZE, localizer=union, progress=False)
    return whole_iou, untrained.mean_iou(gt), trained.mean_iou(gt), trained


@pytest.mark.slow
def test_trained_boxes_beat_whole_image_and_random_init_does_not():
    whole_iou, untrained_iou, trained_iou, result = _measure()  # 1 thread: conftest.py
    defaults = localization_defaults(timm.create_model("test_resnet"))
    assert (result.settings.reduction, result.settings.threshold) == (
        defaults.reduction, defaults.threshold)
    report = (
        f"whole image {whole_iou:.3f}, random init {untrained_iou:.3f}, "
        f"trained {trained_iou:.3f} ({defaults.reduction}, k={defaults.threshold})"
    )
    print(report)
    assert trained_iou > whole_iou + MARGIN, report
    assert untrained_iou < whole_iou + MARGIN, report
    assert result.degenerate_share < 0.5, report
