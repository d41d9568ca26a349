"""Connected components of thresholded heatmaps, vectorised over a batch.

The box rules that keep one connected region (SCDA's largest component, CAM practice's
segment around the peak) need labelled components. Heatmaps are small (4x4 to 32x32), so
labels are found by propagation: every foreground cell starts with its own label, and
each step takes the largest label among itself and its 4-neighbours inside the mask,
until nothing changes. One step is four shifted maxima for the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..crop.boxes import FULL_BOX

__all__ = ["THRESHOLD_RULES", "component_mask", "label_components", "mask_boxes",
           "threshold_maps"]

#: How a map's threshold is set: relative to its mean, its maximum, or by the top share
#: of its mass (the cells holding ``level`` of the total heat).
THRESHOLD_RULES = ("mean", "max", "mass")


def threshold_maps(maps: torch.Tensor, rule: str, level: float) -> torch.Tensor:
    """Foreground masks ``(B, h, w)`` of normalised maps in [0, 1].

    ``mean``: above ``level`` times the map's mean (SCDA: level 1); ``max``: above
    ``level`` times its maximum (CAM practice: 0.15-0.2); ``mass``: the largest cells
    that together hold ``level`` of the map's total (DINO-seg: 0.6).
    """
    flat = maps.flatten(1)
    if rule == "mean":
        cut = flat.mean(dim=1, keepdim=True) * level
        return (flat > cut).view_as(maps)
    if rule == "max":
        cut = flat.amax(dim=1, keepdim=True) * level
        return (flat > cut).view_as(maps)
    if rule == "mass":
        values, order = flat.sort(dim=1, descending=True)
        total = values.sum(dim=1, keepdim=True).clamp_min(1e-12)
        before = (values.cumsum(dim=1) - values) / total  # share held by larger cells
        keep_sorted = before < level
        keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
        return keep.view_as(maps)
    raise ValueError(f"threshold rule must be one of {', '.join(THRESHOLD_RULES)}, "
                     f"got {rule!r}")


def label_components(mask: torch.Tensor) -> torch.Tensor:
    """4-connected component labels ``(B, h, w)``: 0 for background, equal positive labels
    within a component (the largest cell index + 1 of the component)."""
    batch, height, width = mask.shape
    start = torch.arange(1, height * width + 1, device=mask.device).view(1, height, width)
    labels = torch.where(mask, start.expand(batch, -1, -1), torch.zeros_like(start))
    while True:
        padded = F.pad(labels, (1, 1, 1, 1))
        neighbours = torch.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1],
                                  padded[:, 1:-1, :-2], padded[:, 1:-1, 2:], labels])
        updated = torch.where(mask, neighbours.amax(dim=0), labels)
        if torch.equal(updated, labels):
            return labels
        labels = updated


def component_mask(maps: torch.Tensor, mask: torch.Tensor, pick: str, keep: float = 1.0
                   ) -> torch.Tensor:
    """The component(s) to keep per map: the one holding the map's peak (``peak``), or the
    one with the most cells (``largest``; ties go to the higher label).

    ``keep`` < 1 (``peak`` only) also keeps every other component whose own maximum is at
    least ``keep`` times the map's peak: where a map has several comparable peaks, none of
    them is trusted alone and the box spans them all (a wide box costs a little sharpness;
    a tight box on the wrong peak costs the whole object).
    """
    labels = label_components(mask)
    flat = labels.flatten(1)
    if pick == "peak":
        masked = torch.where(mask, maps, torch.full_like(maps, -1.0)).flatten(1)
        if keep < 1.0:
            return _comparable_peaks(masked, flat, keep).view_as(mask)
        chosen = flat.gather(1, masked.argmax(dim=1, keepdim=True))
    elif pick == "largest":
        counts = torch.zeros(flat.shape[0], flat.shape[1] + 1, device=flat.device)
        counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=counts.dtype))
        counts[:, 0] = 0  # background
        chosen = counts.argmax(dim=1, keepdim=True)
    else:
        raise ValueError(f"pick must be 'peak' or 'largest', got {pick!r}")
    return ((flat == chosen) & (chosen > 0)).view_as(mask)


def _comparable_peaks(masked: torch.Tensor, labels: torch.Tensor, keep: float
                      ) -> torch.Tensor:
    """Cells ``(B, h*w)`` of every component whose maximum is >= ``keep`` x the peak."""
    component_max = torch.full((labels.shape[0], labels.shape[1] + 1), -1.0,
                               device=masked.device, dtype=masked.dtype)
    component_max.scatter_reduce_(1, labels, masked, reduce="amax")
    component_max[:, 0] = -1.0  # background
    peak = component_max.amax(dim=1, keepdim=True)
    kept = (component_max >= keep * peak) & (component_max > 0)
    return kept.gather(1, labels) & (labels > 0)


def mask_boxes(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight boxes ``(B, 4)`` (normalised, pixel-edge convention) around each mask, and
    the masks that are empty (their box is the whole image)."""
    batch, height, width = mask.shape
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    empty = ~rows.any(dim=1)
    row_index = torch.arange(height, device=mask.device)
    col_index = torch.arange(width, device=mask.device)
    big = height + width
    y0 = torch.where(rows, row_index, big).amin(dim=1)
    y1 = torch.where(rows, row_index, -1).amax(dim=1) + 1
    x0 = torch.where(cols, col_index, big).amin(dim=1)
    x1 = torch.where(cols, col_index, -1).amax(dim=1) + 1
    boxes = torch.stack([x0 / width, y0 / height, x1 / width, y1 / height], dim=1).float()
    boxes[empty] = torch.tensor(FULL_BOX, device=mask.device)
    return boxes, empty
