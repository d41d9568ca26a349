"""DDT: the dataset's principal direction as a map (localize/ddt.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from timm_ccrop.localize import create_localizer
from timm_ccrop.localize.ddt import DDTLocalizer

from .stub_maps import (
    CELLS,
    SIZE,
    WHOLE,
    FakeAccelerator,
    StubNet,
    cell_mask,
    expected_box,
    square_images,
)


def fitted_ddt(network: nn.Module, images: torch.Tensor, **options) -> DDTLocalizer:
    localizer = create_localizer("ddt", **options)
    assert isinstance(localizer, DDTLocalizer)
    with torch.no_grad():
        localizer.fit(network, lambda: iter(images.split(4)))
    return localizer


@pytest.mark.parametrize("colours", [((1.0, 0.9, 0.2), (0.1, 0.2, 0.3)),
                                     ((0.0, 0.1, 0.0), (0.8, 0.7, 0.9))])
def test_ddt_finds_the_squares_exactly(colours):
    images = square_images(*colours)
    network = StubNet(3)
    localizer = fitted_ddt(network, images)
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(network, images, (SIZE, SIZE))
    assert not degenerate.any()
    torch.testing.assert_close(boxes, torch.stack([expected_box(c) for c in CELLS]))
    # Upsampled, the box edges move by less than one cell.
    with torch.no_grad():
        finer, _ = fitted_ddt(network, images, upsample=2).boxes(network, images, (SIZE, SIZE))
    assert (finer - boxes).abs().max() <= 1 / 8 + 1e-6


def test_ddt_largest_component_and_sign_from_the_data():
    # Two squares in one image: the largest is kept, the other dropped.
    images = square_images((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    images[0] = images[0] + cell_mask((6, 0, 7, 1))
    network = StubNet(3)
    localizer = fitted_ddt(network, images)
    with torch.no_grad():
        boxes, _ = localizer.boxes(network, images[:1], (SIZE, SIZE))
    torch.testing.assert_close(boxes[0], expected_box(CELLS[0]))
    assert localizer.direction is not None and localizer.direction.sum() > 0


def test_ddt_degenerate_rows_and_unfitted():
    images = square_images((1.0, 0.5, 0.0), (0.2, 0.2, 0.2))
    network = StubNet(3)
    with pytest.raises(RuntimeError, match="not fitted"):
        create_localizer("ddt").boxes(network, images, (SIZE, SIZE))
    with pytest.raises(RuntimeError, match="no batch"):
        create_localizer("ddt").fit(network, lambda: iter([]))
    localizer = fitted_ddt(network, images)
    batch = images[:3].clone()
    batch[1] = torch.tensor([0.2, 0.2, 0.2])[:, None, None]  # background only: no positive
    batch[2, 0, 0, 0] = float("nan")
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(network, batch, (SIZE, SIZE))
    assert degenerate.tolist() == [False, True, True]
    torch.testing.assert_close(boxes[1:], WHOLE.expand(2, 4))
    torch.testing.assert_close(boxes[0], expected_box(CELLS[0]))


def test_ddt_fit_reduces_over_processes_and_subsamples():
    images = square_images((1.0, 0.9, 0.2), (0.1, 0.2, 0.3))
    images = images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    network = StubNet(3)
    single = fitted_ddt(network, images)
    shared = create_localizer("ddt")
    with torch.no_grad():
        shared.fit(network, lambda: iter(images.split(4)), FakeAccelerator())
    torch.testing.assert_close(shared.mean, single.mean)
    torch.testing.assert_close(shared.direction, single.direction)
    sampled = fitted_ddt(network, images, max_locations=100)  # of 256 per batch
    assert torch.dot(sampled.direction, single.direction) > 0.99


