"""Object boxes: the one box convention of timm-ccrop and the shared box table.

Box convention (used everywhere in this project)
------------------------------------------------
A box is ``(x0, y0, x1, y1)``, normalised to ``[0, 1]`` by the image width (x) and
height (y), with **pixel-edge** coordinates: a box that covers pixel columns ``a..b``
(inclusive) of a ``W``-wide image has ``x0 = a / W`` and ``x1 = (b + 1) / W``. The whole
image is ``(0, 0, 1, 1)``. This is torchvision's ``xyxy`` order, normalised.

The official ContrastiveCrop code stores ``(h_min, w_min, h_max, w_max)`` where the max
values are the *index* of the last covered row/column divided by the size, so its whole
image is ``(0, 0, (H-1)/H, (W-1)/W)``. :func:`from_official` and :func:`to_official`
convert; the crop sampler reads the last covered pixel as ``ceil(H * y1) - 1``, which is
exactly the official ``int(H * h_max)``, so converted boxes sample identically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = [
    "Box",
    "BoxTable",
    "FULL_BOX",
    "blend_boxes",
    "box_area",
    "from_official",
    "paired_iou",
    "to_official",
    "validate_box",
    "validate_boxes",
    "whole_image_iou",
]


class Box(NamedTuple):
    """A validated box ``(x0, y0, x1, y1)`` in the project's convention (see module doc).

    Instances are only made by :func:`validate_box` and :class:`BoxTable`, so the crop
    transforms trust them without checking again; plain tuples are validated on use.
    """

    x0: float
    y0: float
    x1: float
    y1: float


FULL_BOX = Box(0.0, 0.0, 1.0, 1.0)


def validate_box(box: Any) -> Box:
    """Check one box and return it as a :class:`Box`.

    Args:
        box: four numbers ``(x0, y0, x1, y1)`` (tuple, list, array or tensor).

    Raises:
        ValueError: wrong length, NaN/inf, outside ``[0, 1]`` or ``x1 < x0`` / ``y1 < y0``.
    """
    if isinstance(box, Box):
        return box
    if isinstance(box, torch.Tensor):
        box = box.detach().cpu().tolist()
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"box must be four numbers (x0, y0, x1, y1) normalised to [0, 1], got {box!r}"
        ) from err
    if len(values) != 4:
        raise ValueError(
            f"box must have 4 values (x0, y0, x1, y1), got {len(values)}: {box!r}"
        )
    x0, y0, x1, y1 = values
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"box {values} contains NaN or inf; boxes must be finite")
    if min(values) < 0.0 or max(values) > 1.0:
        raise ValueError(
            f"box {values} leaves [0, 1]; boxes are normalised by the image size "
            "(divide pixel coordinates by width/height)"
        )
    if x1 < x0 or y1 < y0:
        raise ValueError(
            f"box {values} has x1 < x0 or y1 < y0; the order is (x0, y0, x1, y1). "
            "Boxes from the official code are (y0, x0, y1, x1): use from_official()"
        )
    return Box(x0, y0, x1, y1)


def validate_boxes(boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]]) -> torch.Tensor:
    """Check a batch of boxes ``[N, 4]`` and return them as a float32 CPU tensor.

    Raises:
        ValueError: naming the first bad row and what is wrong with it.
    """
    tensor = torch.as_tensor(boxes, dtype=torch.float32).detach().cpu()
    if tensor.ndim != 2 or tensor.shape[1] != 4:
        raise ValueError(
            f"boxes must have shape [N, 4] (x0, y0, x1, y1), got {tuple(tensor.shape)}"
        )
    finite = torch.isfinite(tensor).all(dim=1)
    inside = ((tensor >= 0) & (tensor <= 1)).all(dim=1)
    ordered = (tensor[:, 2] >= tensor[:, 0]) & (tensor[:, 3] >= tensor[:, 1])
    bad = ~(finite & inside & ordered)
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        validate_box(tensor[row])  # raises with the specific reason
        raise ValueError(f"box row {row} is invalid: {tensor[row].tolist()}")  # pragma: no cover
    return tensor


def from_official(
    boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    image_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Convert official ContrastiveCrop boxes ``(h_min, w_min, h_max, w_max)`` to ours.

    Args:
        boxes: ``[N, 4]`` boxes in the official layout.
        image_size: ``(H, W)`` of the map the official boxes were made at. With it, the
            official last-index maxima become pixel edges (``+ 1/H``), so sampling is
            identical; without it only the axes are reordered.
    """
    official = torch.as_tensor(boxes, dtype=torch.float32)
    if official.ndim != 2 or official.shape[1] != 4:
        raise ValueError(
            f"official boxes must have shape [N, 4] (h_min, w_min, h_max, w_max), "
            f"got {tuple(official.shape)}"
        )
    ours = official[:, [1, 0, 3, 2]].clone()
    if image_size is not None:
        height, width = image_size
        ours[:, 2] += 1.0 / width
        ours[:, 3] += 1.0 / height
        ours.clamp_(0.0, 1.0)
    return validate_boxes(ours)


def to_official(
    boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    image_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Inverse of :func:`from_official`: ours ``(x0, y0, x1, y1)`` to ``(y0, x0, y1, x1)``."""
    ours = validate_boxes(boxes).clone()
    if image_size is not None:
        height, width = image_size
        ours[:, 2] = (ours[:, 2] - 1.0 / width).clamp_min(ours[:, 0])
        ours[:, 3] = (ours[:, 3] - 1.0 / height).clamp_min(ours[:, 1])
    return ours[:, [1, 0, 3, 2]]


class BoxTable:
    """Per-sample boxes in shared memory, read by DataLoader workers.

    The table holds three shared tensors: ``boxes`` ``[N, 4]``, ``valid`` ``[N]`` (a row
    written by a localization pass) and ``active`` (the switch from the warm-up's random
    crop to ContrastiveCrop). They are moved to shared memory at construction, before
    any worker starts, so in-place updates made by the main process reach workers,
    persistent ones included; plain tensors or numpy arrays would stay stale copies there.

    :meth:`get` returns ``None`` (meaning: crop like RandomResizedCrop) while the table is
    inactive or the row is invalid, else the row as a trusted :class:`Box`.
    """

    def __init__(self, num_samples: int) -> None:
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.boxes = torch.zeros(num_samples, 4, dtype=torch.float32)
        self.boxes[:, 2:] = 1.0
        self.valid = torch.zeros(num_samples, dtype=torch.bool)
        self.active = torch.zeros(1, dtype=torch.bool)
        for tensor in (self.boxes, self.valid, self.active):
            tensor.share_memory_()
        self._views: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def __repr__(self) -> str:
        return (
            f"BoxTable(num_samples={len(self)}, valid={int(self.valid.sum())}, "
            f"active={bool(self.active[0])})"
        )

    # Workers receive the shared tensors; numpy views are rebuilt there (cheap reads,
    # about 0.1 us instead of several us for tensor indexing on every crop).
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_views"] = None
        return state

    def _numpy_views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._views is None:
            self._views = (self.boxes.numpy(), self.valid.numpy(), self.active.numpy())
        return self._views

    def get(self, index: int) -> Box | None:
        """The box of sample ``index``, or ``None`` if it should be cropped at random."""
        boxes, valid, active = self._numpy_views()
        if not active[0] or not valid[index]:
            return None
        x0, y0, x1, y1 = boxes[index].tolist()
        return Box(x0, y0, x1, y1)

    @property
    def is_active(self) -> bool:
        """Whether ContrastiveCrop is switched on (after the warm-up)."""
        return bool(self.active[0])

    def set_active(self, active: bool = True) -> None:
        """Switch ContrastiveCrop on (or back to random crop) for every worker."""
        self.active.fill_(bool(active))

    def update(
        self,
        boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
        indices: torch.Tensor | Sequence[int] | None = None,
        valid: torch.Tensor | Sequence[bool] | None = None,
    ) -> None:
        """Write boxes in place (validated here, once, not on every crop).

        Args:
            boxes: ``[M, 4]`` boxes in the project's convention.
            indices: sample indices of the rows; ``None`` means all ``N`` rows in order.
            valid: per-row validity (default: all written rows valid). Invalid rows are
                cropped like RandomResizedCrop.
        """
        new_boxes = validate_boxes(boxes)
        if indices is None:
            if new_boxes.shape[0] != len(self):
                raise ValueError(
                    f"got {new_boxes.shape[0]} boxes for a table of {len(self)} samples; "
                    "pass indices= to update a subset"
                )
            index = torch.arange(len(self))
        else:
            index = torch.as_tensor(indices, dtype=torch.long).flatten()
            if index.numel() != new_boxes.shape[0]:
                raise ValueError(
                    f"{index.numel()} indices for {new_boxes.shape[0]} boxes; they must match"
                )
            if index.numel() and (index.min() < 0 or index.max() >= len(self)):
                raise ValueError(
                    f"indices must lie in [0, {len(self) - 1}], got range "
                    f"[{int(index.min())}, {int(index.max())}]"
                )
        flags = (
            torch.ones(index.numel(), dtype=torch.bool)
            if valid is None
            else torch.as_tensor(valid, dtype=torch.bool).flatten()
        )
        if flags.numel() != index.numel():
            raise ValueError(f"{flags.numel()} validity flags for {index.numel()} boxes")
        self.boxes[index] = new_boxes
        self.valid[index] = flags

    def invalidate(self) -> None:
        """Mark every row invalid (all samples fall back to random crop)."""
        self.valid.fill_(False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the table's tensors, for checkpoints."""
        return {
            "boxes": self.boxes.clone(),
            "valid": self.valid.clone(),
            "active": self.active.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a :meth:`state_dict` in place (workers keep seeing the same memory)."""
        boxes = state["boxes"]
        if tuple(boxes.shape) != tuple(self.boxes.shape):
            raise ValueError(
                f"box table state has shape {tuple(boxes.shape)}, this table "
                f"{tuple(self.boxes.shape)}: was it saved for another dataset?"
            )
        self.boxes.copy_(validate_boxes(boxes))
        self.valid.copy_(state["valid"].to(torch.bool))
        self.active.copy_(state["active"].to(torch.bool).reshape(1))


def blend_boxes(old: torch.Tensor, old_valid: torch.Tensor, new: torch.Tensor,
                new_valid: torch.Tensor, momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes ``[N, 4]`` moved ``1 - momentum`` of the way from ``old`` to ``new`` (a box
    momentum: each pass changes the boxes only gradually), and their validity.

    A row with no valid new box keeps its old one; a row with no valid old box takes the
    new one as it is. ``momentum=0`` takes every valid new box, ``momentum=1`` keeps
    every valid box for good. Averaging corners keeps a box valid (x0 < x1, y0 < y1).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"box momentum must be in [0, 1], got {momentum}")
    if old.shape != new.shape:
        raise ValueError(f"box shapes differ: {tuple(old.shape)} vs {tuple(new.shape)}")
    old_valid, new_valid, new = old_valid.to(torch.bool), new_valid.to(torch.bool), new.to(old)
    boxes = momentum * old + (1.0 - momentum) * new
    boxes = torch.where((old_valid & ~new_valid)[:, None], old, boxes)
    boxes = torch.where(~old_valid[:, None], new, boxes)
    return boxes, old_valid | new_valid


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of each box ``[N, 4]`` as a fraction of the image."""
    return (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)


def whole_image_iou(boxes: torch.Tensor) -> torch.Tensor:
    """IoU of the whole-image box with each box ``[N, 4]``: what a localized box must beat."""
    return paired_iou(torch.tensor([FULL_BOX], dtype=boxes.dtype).expand_as(boxes), boxes)


def paired_iou(boxes: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """IoU of ``boxes[i]`` with ``other[i]`` (both ``[N, 4]``, the project's convention)."""
    if boxes.shape != other.shape:
        raise ValueError(f"box shapes differ: {tuple(boxes.shape)} vs {tuple(other.shape)}")
    top_left = torch.maximum(boxes[:, :2], other[:, :2])
    bottom_right = torch.minimum(boxes[:, 2:], other[:, 2:])
    overlap = (bottom_right - top_left).clamp_min(0).prod(dim=1)
    union = box_area(boxes) + box_area(other) - overlap
    return torch.where(union > 0, overlap / union.clamp_min(1e-12), torch.zeros_like(union))
