"""Crop parameters of a whole batch at once: timm's RandomResizedCrop size draw and
ContrastiveCrop's box-guided offsets, vectorised (no per-image Python loop).

:func:`sample_crop_params` draws every random parameter for the whole batch at once
(``torch.rand`` with an optional ``torch.Generator`` on the images' device):

The crop size is timm's ``RandomResizedCropAndInterpolation`` draw, vectorised: 10
candidates per image (area fraction uniform in ``scale``, log-uniform aspect ratio,
Python-style round-half-even), the first one that fits is kept, images where none fits
get timm's central fallback. Sampling is done in float64 like Python's.

The offset is uniform on ``{0, ..., H - h}`` ('rcrop', and rows without a valid box),
or ContrastiveCrop's box-guided offset with exactly the formulas of
:func:`timm_ccrop.crop.transforms._box_offset` ('ccrop': per-image boxes; 'simccrop': the
fixed box (0.25, 0.25, 0.75, 0.75) for every row). Beta(alpha, alpha) is drawn by the
same inverse-CDF table as the per-image sampler (:func:`beta_quantiles`, linearly
interpolated, one uniform per draw), not ``torch.distributions.Beta`` (two gamma draws
per sample, and no ``generator`` argument).

:func:`crop_geometry` writes the drawn crops as boxes in the project's convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .transforms import (
    CCROP_ALPHA,
    CROP_MODES,
    EDGE_EPS,
    QUANTILE_POINTS,
    SIMCCROP_BOX,
    beta_quantiles,
)

__all__ = ["crop_geometry", "sample_crop_params", "uniforms"]

_TRIES = 10


def uniforms(shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str,
             dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``torch.rand(*shape)`` from ``generator`` (None: torch's global RNG) on ``device``."""
    return torch.rand(*shape, generator=generator, device=device, dtype=dtype)


def _as_long(value, batch: int, device) -> torch.Tensor:
    tensor = torch.as_tensor(value, device=device)
    return tensor.to(torch.long).expand(batch).contiguous() if tensor.ndim == 0 else tensor.long()


def _beta_table(alpha: float, device) -> torch.Tensor:
    return torch.tensor(beta_quantiles(float(alpha)), dtype=torch.float64, device=device)


def _beta_draws(u: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Beta(alpha, alpha) from uniforms ``u`` by the interpolated inverse-CDF ``table``."""
    position = u * QUANTILE_POINTS
    index = position.floor().long().clamp_(0, QUANTILE_POINTS - 1)
    low, high = table[index], table[index + 1]
    return low + (position - index) * (high - low)


def _box_offsets(
    size: torch.Tensor, crop: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
    beta: torch.Tensor,
) -> torch.Tensor:
    """Vectorised :func:`timm_ccrop.crop.transforms._box_offset` (``beta``: the Beta draws)."""
    sizef = size.double()
    first = torch.floor(sizef * start.double() + EDGE_EPS).long()
    last = torch.maximum(first, torch.ceil(sizef * end.double() - EDGE_EPS).long() - 1)
    limit = size - crop
    half = torch.div(crop, 2, rounding_mode="floor")
    low = torch.minimum((first - half).clamp_min(0), limit)
    high = torch.minimum((last - half).clamp_min(0), limit)
    span = high - low + 1
    step = torch.minimum(torch.floor(span.double() * beta).long(), span - 1)
    return low + step


def _crop_sizes(
    height: torch.Tensor, width: torch.Tensor, scale: tuple[float, float],
    ratio: tuple[float, float], generator: torch.Generator | None, batch: int, device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(crop_h, crop_w, found)``: timm's size draw (first of 10 tries, else the fallback)."""
    hf, wf = height.double(), width.double()
    area = (hf * wf)[:, None]

    # timm's 10 tries, all drawn at once; the first candidate that fits wins.
    draws = uniforms((batch, _TRIES, 2), generator, device)
    target_area = (scale[0] + (scale[1] - scale[0]) * draws[..., 0]) * area
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * draws[..., 1])
    cand_w = torch.round(torch.sqrt(target_area * aspect)).long()
    cand_h = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (cand_w <= width[:, None]) & (cand_h <= height[:, None])
    found = fits.any(dim=1)
    pick = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    crop_h = cand_h.gather(1, pick).squeeze(1)
    crop_w = cand_w.gather(1, pick).squeeze(1)

    # Central fallback (timm): clip the aspect ratio into `ratio`, centre the crop.
    in_ratio = wf / hf
    fb_w = torch.where(in_ratio < ratio[0], width, torch.where(
        in_ratio > ratio[1], torch.round(hf * ratio[1]).long(), width))
    fb_h = torch.where(in_ratio < ratio[0], torch.round(wf / ratio[0]).long(), height)
    crop_h = torch.where(found, crop_h, fb_h)
    crop_w = torch.where(found, crop_w, fb_w)
    return crop_h, crop_w, found


def _crop_offsets(
    height: torch.Tensor, width: torch.Tensor, crop_h: torch.Tensor, crop_w: torch.Tensor,
    boxes: torch.Tensor | None, valid: torch.Tensor | None, alpha: float, crop_mode: str,
    generator: torch.Generator | None, batch: int, device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(top, left)`` before the fallback centring: one uniform pair, box-guided or not."""
    # Offsets: uniform (RandomResizedCrop) or box-guided (ContrastiveCrop).
    u = uniforms((batch, 2), generator, device)
    top = torch.floor(u[:, 0] * (height - crop_h + 1).double()).long()
    left = torch.floor(u[:, 1] * (width - crop_w + 1).double()).long()
    if crop_mode == "simccrop":
        boxes = torch.tensor(SIMCCROP_BOX, dtype=torch.float64, device=device).expand(batch, 4)
        guided = torch.ones(batch, dtype=torch.bool, device=device)
    elif crop_mode == "ccrop" and boxes is not None:
        guided = (torch.ones(batch, dtype=torch.bool, device=device) if valid is None
                  else valid.to(device=device, dtype=torch.bool))
    else:
        guided = None
    if guided is not None:
        boxes = boxes.to(device)
        table = _beta_table(alpha, device)
        beta = _beta_draws(u, table)
        box_top = _box_offsets(height, crop_h, boxes[:, 1], boxes[:, 3], beta[:, 0])
        box_left = _box_offsets(width, crop_w, boxes[:, 0], boxes[:, 2], beta[:, 1])
        top = torch.where(guided, box_top, top)
        left = torch.where(guided, box_left, left)
    return top, left


def sample_crop_params(
    heights: torch.Tensor | int,
    widths: torch.Tensor | int,
    boxes: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    alpha: float = CCROP_ALPHA,
    crop_mode: str = "ccrop",
    generator: torch.Generator | None = None,
    batch: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image ``(top, left, crop_h, crop_w)`` (long tensors ``[B]``) for a whole batch.

    Args:
        heights, widths: image sizes, ``[B]`` tensors or ints (then ``batch`` or ``boxes``
            gives ``B``).
        boxes: ``[B, 4]`` boxes ``(x0, y0, x1, y1)`` in the project's convention (used by
            'ccrop' only; validated boxes are assumed, as in the per-image hot path).
        valid: ``[B]`` bool; rows that are False (or all rows when ``boxes`` is None) are
            cropped like RandomResizedCrop. Pass ``table.valid[idx] & table.is_active``.
        scale, ratio, alpha: as :class:`~timm_ccrop.ContrastiveCrop`.
        crop_mode: 'rcrop', 'ccrop' or 'simccrop'.
        generator: a ``torch.Generator`` on ``device`` (default: torch's global RNG).
    """
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
    if device is None:
        device = next(
            (t.device for t in (heights, widths, boxes) if isinstance(t, torch.Tensor)), "cpu"
        )
    if batch is None:
        batch = next(
            (t.shape[0] for t in (heights, widths, boxes, valid)
             if isinstance(t, torch.Tensor) and t.ndim > 0),
            None,
        )
        if batch is None:
            raise ValueError("pass batch= when heights, widths and boxes are all scalars")
    height = _as_long(heights, batch, device)
    width = _as_long(widths, batch, device)
    crop_h, crop_w, found = _crop_sizes(height, width, scale, ratio, generator, batch, device)
    top, left = _crop_offsets(
        height, width, crop_h, crop_w, boxes, valid, alpha, crop_mode, generator, batch, device
    )
    top = torch.where(found, top, torch.div(height - crop_h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(width - crop_w, 2, rounding_mode="floor"))
    return top, left, crop_h, crop_w


def crop_geometry(
    top: torch.Tensor, left: torch.Tensor, crop_h: torch.Tensor, crop_w: torch.Tensor,
    height: int, width: int, flipped: torch.Tensor,
) -> torch.Tensor:
    """``[B, 5]`` float rows ``(x0, y0, x1, y1, flipped)``: each crop as a box in the
    project's convention (normalised by the image size, pixel edges) and its flip (0/1),
    the same layout as :class:`~timm_ccrop.crop.transforms.ViewGeometry` rows."""
    boxes = torch.stack([left / width, top / height, (left + crop_w) / width,
                         (top + crop_h) / height], dim=1)
    return torch.cat([boxes.float(), flipped.float()[:, None]], dim=1)
