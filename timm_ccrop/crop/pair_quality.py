"""How good the positive pairs of a crop mode are, measured against ground-truth boxes.

A positive pair is a *false positive* when at least one of its two views covers less than
``threshold`` of the object (coverage = area(view ∩ object box) / area(object box)): the
two views then need not show the same thing, which is the failure ContrastiveCrop was made
to avoid. :func:`false_positive_pair_rate` samples view pairs exactly as the training
crops do (:func:`~timm_ccrop.crop.transforms.contrastive_crop_params`, with each image's crop
box, or RandomResizedCrop where it has none) and reports the share of such pairs. No
network is involved: it scores the boxes, not the model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from .boxes import Box, box_area
from .transforms import contrastive_crop_params

__all__ = ["DEFAULT_COVERAGE_THRESHOLD", "coverage", "false_positive_pair_rate",
           "sample_view_pairs", "view_pair_miss_rate"]

#: A view covering less than this share of the object counts as missing it.
DEFAULT_COVERAGE_THRESHOLD = 0.2


def coverage(views: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
    """Share of each object box ``objects[i]`` inside ``views[i]`` (both ``[N, 4]``,
    normalised ``x0 y0 x1 y1``); an empty object box counts as covered."""
    top_left = torch.maximum(views[:, :2], objects[:, :2])
    bottom_right = torch.minimum(views[:, 2:], objects[:, 2:])
    inside = (bottom_right - top_left).clamp_min(0).prod(dim=1)
    area = box_area(objects)
    return torch.where(area > 0, inside / area.clamp_min(1e-12), torch.ones_like(area))


def view_pair_miss_rate(view_a: torch.Tensor, view_b: torch.Tensor, objects: torch.Tensor,
                        threshold: float = DEFAULT_COVERAGE_THRESHOLD) -> float:
    """Share of the pairs ``(view_a[i], view_b[i])`` in which at least one view covers less
    than ``threshold`` of ``objects[i]`` (NaN for no pairs)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not len(objects):
        return float("nan")
    objects = objects.float()
    missed = (coverage(view_a, objects) < threshold) | (coverage(view_b, objects) < threshold)
    return float(missed.double().mean())


def sample_view_pairs(
    boxes: Sequence[Box | None], size: int, alpha: float, pairs: int = 4, seed: int = 0,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``pairs`` view pairs per image, as the training crops sample them.

    Args:
        boxes: the crop box of each image, or None (RandomResizedCrop) per image.
        size: side of the (square) images in pixels.
        alpha: Beta(alpha, alpha) of the crop centre inside the box.
        pairs: pairs per image (>= 1).
        seed: seed of the sampler (``random.Random``), for a reproducible number.
        scale, ratio: the views' RandomResizedCrop ranges (default: the cifar preset's).

    Returns:
        ``(view_a, view_b, index)``: normalised view boxes ``[P, 4]`` and the image of
        each pair ``[P]``.
    """
    if pairs < 1 or size < 1:
        raise ValueError(f"pairs and size must be >= 1, got pairs={pairs}, size={size}")
    rng = random.Random(seed)
    first, second, index = [], [], []
    for image, box in enumerate(boxes):
        for _ in range(pairs):
            for out in (first, second):
                top, left, h, w = contrastive_crop_params(size, size, box, scale, ratio,
                                                          alpha, rng)
                out.append((left / size, top / size, (left + w) / size, (top + h) / size))
            index.append(image)
    empty = torch.zeros(0, 4)
    return (torch.tensor(first) if first else empty, torch.tensor(second) if second else empty,
            torch.tensor(index, dtype=torch.long))


def false_positive_pair_rate(
    boxes: Sequence[Box | None], objects: torch.Tensor, size: int, alpha: float,
    pairs: int = 4, seed: int = 0, threshold: float = DEFAULT_COVERAGE_THRESHOLD,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> float:
    """Share of sampled positive pairs in which a view misses the object.

    Args:
        boxes: each image's crop box (None: RandomResizedCrop), as in training.
        objects: ``[N, 4]`` ground-truth object boxes, one per image.
        size, alpha, pairs, seed, scale, ratio: as :func:`sample_view_pairs`.
        threshold: a view covering less than this share of the object misses it.

    Returns the rate in ``[0, 1]`` (NaN for no images).
    """
    if len(boxes) != len(objects):
        raise ValueError(f"{len(boxes)} crop boxes but {len(objects)} object boxes; give one "
                         "of each per image")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    view_a, view_b, index = sample_view_pairs(boxes, size, alpha, pairs, seed, scale, ratio)
    return view_pair_miss_rate(view_a, view_b, objects[index], threshold)
