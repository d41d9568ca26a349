"""Stub networks whose stage map the test sets: the images average-pooled by ``STRIDE``
(for the dataset-level localizers' tests: test_ddt.py, test_ccam.py)."""

from __future__ import annotations

import torch
from torch import nn

STRIDE = 4
SIZE = 32  # 8x8 maps
WHOLE = torch.tensor([0.0, 0.0, 1.0, 1.0])


class StubNet(nn.Module):
    """Its stage's map is the input average-pooled by ``STRIDE``: the test sets the map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stage = nn.AvgPool2d(STRIDE)
        self.scale = nn.Parameter(torch.ones(channels))
        self.feature_info = [{"module": "stage", "num_chs": channels, "reduction": STRIDE}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.stage(x) * self.scale[:, None, None]).mean(dim=(2, 3))


def cell_mask(cells: tuple[int, int, int, int]) -> torch.Tensor:
    """Pixel mask ``(SIZE, SIZE)`` of the cells ``(x0, y0, x1, y1)`` (end exclusive)."""
    x0, y0, x1, y1 = cells
    mask = torch.zeros(SIZE, SIZE)
    mask[y0 * STRIDE:y1 * STRIDE, x0 * STRIDE:x1 * STRIDE] = 1.0
    return mask


def expected_box(cells: tuple[int, int, int, int]) -> torch.Tensor:
    return torch.tensor(cells, dtype=torch.float32) / (SIZE // STRIDE)


CELLS = [(1, 1, 3, 4), (4, 2, 7, 4), (0, 5, 2, 8), (5, 5, 8, 7), (2, 0, 5, 2), (3, 3, 5, 5)]


def square_images(object_colour: tuple[float, ...], background: tuple[float, ...]
                  ) -> torch.Tensor:
    """One square per image (``CELLS``) of one colour on a constant background."""
    images = []
    for cells in CELLS:
        mask = cell_mask(cells)
        colour = torch.tensor(object_colour)[:, None, None]
        ground = torch.tensor(background)[:, None, None]
        images.append(mask * colour + (1 - mask) * ground)
    return torch.stack(images)



class FakeAccelerator:
    """Two processes that saw the same shard: sums double, gathers repeat."""

    num_processes = 2

    def reduce(self, tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        assert reduction == "sum"
        return tensor * 2

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat([tensor, tensor])

    def pad_across_processes(self, tensor: torch.Tensor, dim: int = 0,
                             pad_index: float = 0) -> torch.Tensor:
        return tensor  # both processes hold as many rows


