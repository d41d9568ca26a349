"""The contrastive CAM (localize/ccam.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from timm_ccrop.crop.boxes import validate_boxes
from timm_ccrop.localize import create_localizer
from timm_ccrop.localize.ccam import ContrastiveCAMLocalizer, contrastive_cam
from timm_ccrop.models.backbones import create_backbone

from .stub_maps import (
    CELLS,
    SIZE,
    WHOLE,
    FakeAccelerator,
    StubNet,
    cell_mask,
    expected_box,
)


def ccam_images() -> torch.Tensor:
    """Channel ``i`` holds image ``i``'s square, the last channel its background: the
    score of image ``i`` grows only along its own object channel."""
    count = len(CELLS)
    images = torch.zeros(count, count + 1, SIZE, SIZE)
    for index, cells in enumerate(CELLS):
        mask = cell_mask(cells)
        images[index, index] = mask
        images[index, -1] = 1 - mask
    return images


def fitted_ccam(network: nn.Module, images: torch.Tensor, head: nn.Module | None = None,
                split: int = 4, accelerator: FakeAccelerator | None = None,
                **options) -> ContrastiveCAMLocalizer:
    localizer = create_localizer("ccam", **options)
    assert isinstance(localizer, ContrastiveCAMLocalizer)
    localizer.attach(head)
    with torch.no_grad():
        localizer.fit(network, lambda: iter(images.split(split)), accelerator)
    return localizer


@pytest.mark.parametrize("with_head", [False, True])
def test_ccam_finds_the_squares_exactly_and_leaves_grads(with_head):
    images = ccam_images()
    network = StubNet(images.shape[1])
    head = None
    if with_head:  # an identity projector with BatchNorm: eval mode during the pass
        head = nn.Sequential(nn.Linear(images.shape[1], images.shape[1]),
                             nn.BatchNorm1d(images.shape[1]))
        nn.init.eye_(head[0].weight)
        nn.init.zeros_(head[0].bias)
        head.train()
    localizer = fitted_ccam(network, images, head)
    assert localizer.bank is not None and localizer.bank.shape == (len(CELLS), len(CELLS) + 1)
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(network, images, (SIZE, SIZE))
    assert not degenerate.any()
    torch.testing.assert_close(boxes, torch.stack([expected_box(c) for c in CELLS]))
    modules = [network] + ([head] if head is not None else [])
    assert all(p.grad is None for m in modules for p in m.parameters())
    if head is not None:
        assert head.training and int(head[1].num_batches_tracked) == 0


def test_ccam_degenerate_cases():
    images = ccam_images()
    network = StubNet(images.shape[1])
    with pytest.raises(RuntimeError, match="not fitted"):
        create_localizer("ccam").boxes(network, images, (SIZE, SIZE))
    with pytest.raises(RuntimeError, match="no batch"):
        create_localizer("ccam").fit(network, lambda: iter([]))
    localizer = fitted_ccam(network, images)
    with torch.no_grad():
        batch = images[:3].clone()
        batch[1] = 0.0
        batch[1, -1] = 1.0  # background only: a constant CAM
        batch[2, 0, 0, 0] = float("nan")
        boxes, degenerate = localizer.boxes(network, batch, (SIZE, SIZE))
    assert degenerate.tolist() == [False, True, True]
    torch.testing.assert_close(boxes[0], expected_box(CELLS[0]))
    # A bank of non-finite features only is empty: no negatives, every row degenerate.
    broken = images.clone()
    broken[:, 0, 0, 0] = float("nan")
    empty = fitted_ccam(network, broken)
    assert empty.bank is not None and len(empty.bank) == 0
    with torch.no_grad():
        boxes, degenerate = empty.boxes(network, images[:2], (SIZE, SIZE))
    assert degenerate.all()
    torch.testing.assert_close(boxes, WHOLE.expand(2, 4))
    # A bank of the image itself only: no negative left, degenerate.
    alone = fitted_ccam(network, images[:1])
    with torch.no_grad():
        _, degenerate = alone.boxes(network, images[:2], (SIZE, SIZE))
    assert degenerate.tolist() == [True, False]
    # The map function on its own: non-negative, one map per image.
    bank = F.normalize(torch.randn(6, 5), dim=1)
    cams = contrastive_cam(torch.randn(4, 5, 3, 3), None, bank)
    assert cams.shape == (4, 3, 3) and (cams >= 0).all()


def test_ccam_boxes_do_not_depend_on_the_batch():
    images = ccam_images()
    network = StubNet(images.shape[1])
    localizer = fitted_ccam(network, images)
    with torch.no_grad():
        together, _ = localizer.boxes(network, images, (SIZE, SIZE))
        single, degenerate = localizer.boxes(network, images[:1], (SIZE, SIZE))
        order = torch.tensor([4, 0, 5, 2])
        shuffled, _ = localizer.boxes(network, images[order], (SIZE, SIZE))
    assert not degenerate.any()  # one image works: the bank holds its negatives
    torch.testing.assert_close(single[0], expected_box(CELLS[0]))
    assert torch.equal(single[0], together[0])
    assert torch.equal(shuffled, together[order])


@pytest.mark.parametrize("bank_size", [512, 4])
def test_ccam_bank_is_the_same_for_any_order_batching_and_processes(bank_size):
    images = ccam_images()
    images = images + 0.05 * torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    network = StubNet(images.shape[1])
    reference = fitted_ccam(network, images, bank_size=bank_size).bank
    assert reference is not None and len(reference) == min(bank_size, len(images))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(2))
    for other in (fitted_ccam(network, images[order], bank_size=bank_size, split=2),
                  fitted_ccam(network, images.flip(0), bank_size=bank_size, split=5),
                  # two processes that saw the same shard: duplicates count once
                  fitted_ccam(network, images, bank_size=bank_size,
                              accelerator=FakeAccelerator())):
        assert other.bank is not None and torch.equal(other.bank, reference)
def test_ccam_on_a_cnn_leaves_parameter_grads_none():
    model = create_backbone("resnet_mini_cifar", seed=0)
    head = nn.Linear(model.num_features, 16)
    images = torch.randn(4, 3, SIZE, SIZE)
    model.eval()
    localizer = fitted_ccam(model, images, head, split=2, upsample=2)
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(model, images, (SIZE, SIZE))
    validate_boxes(boxes)
    assert degenerate.shape == (4,)
    assert all(p.grad is None for m in (model, head) for p in m.parameters())


