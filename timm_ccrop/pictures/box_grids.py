"""Boxes drawn over images: what the localization sees, and several box sources side by side.

:func:`heatmap_boxes_grid`: each row shows the image with the windows of the sampled
views, the image with its heatmap overlaid (jet colormap, alpha blended), the localized
box (white) and the ground-truth box (green) when there is one, then a few
ContrastiveCrop views sampled from the localized box.

:func:`arm_boxes_grid`: the same images under several box sources side by side (one column
per arm of a comparison, e.g. each localizer's final boxes), each box against the ground
truth with its IoU.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.nn import functional as nnf
from torchvision.transforms import functional as F

from ..crop.boxes import Box, paired_iou, validate_box
from ..crop.transforms import CCROP_ALPHA, contrastive_crop_params, to_rgb
from .drawing import (
    BACKGROUND,
    GT_BOX_COLOR,
    LOCALIZED_BOX_COLOR,
    RED,
    TEXT,
    heatmap_colors,
    outline,
    swatch,
    wrap_text,
)

__all__ = ["arm_boxes_grid", "heatmap_boxes_grid"]

_BAR_LABEL = "heatmap 0"  # left end of the heatmap colour bar in the legend


def _as_box_list(boxes: Any, count: int, what: str) -> list[Box | None]:
    """Boxes as a list of validated :class:`Box` (or None), one per image."""
    if isinstance(boxes, (torch.Tensor, np.ndarray)):
        array = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes)
        if array.ndim != 2 or array.shape[1] != 4:
            raise ValueError(f"{what} must be (N, 4), got shape {tuple(array.shape)}")
        items: list[Any] = list(array)
    else:
        items = list(boxes)
    if len(items) != count:
        raise ValueError(f"{count} images but {len(items)} {what}")
    return [None if box is None else validate_box(box) for box in items]


def _as_heatmap_list(heatmaps: Any, count: int) -> list[torch.Tensor]:
    """Heatmaps as a list of float ``(h, w)`` tensors, one per image."""
    if isinstance(heatmaps, (torch.Tensor, np.ndarray)):
        maps = torch.as_tensor(np.asarray(heatmaps) if isinstance(heatmaps, np.ndarray)
                               else heatmaps.detach().cpu())
        if maps.ndim == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        if maps.ndim != 3:
            raise ValueError(
                f"heatmaps must be (N, h, w) or (N, 1, h, w), got shape {tuple(maps.shape)}"
            )
        items = list(maps)
    else:
        items = [torch.as_tensor(np.asarray(m)) for m in heatmaps]
    if len(items) != count:
        raise ValueError(f"{count} images but {len(items)} heatmaps")
    for item in items:
        if item.ndim != 2 or min(item.shape) < 1:
            raise ValueError(f"every heatmap must be a non-empty (h, w) map, got "
                             f"{tuple(item.shape)}")
    return [item.float() for item in items]


def _upsample(heatmap: torch.Tensor, size: int) -> np.ndarray:
    """Bilinear upsampling to ``size x size`` as the box pass does it (align_corners=False)."""
    heatmap = torch.nan_to_num(heatmap, nan=0.0, posinf=1.0, neginf=0.0)
    resized = nnf.interpolate(heatmap[None, None], size=(size, size), mode="bilinear",
                              align_corners=False)
    return resized[0, 0].numpy()

def _check_grid_arguments(
    count: int, views: Any, opacity: Any, alpha: Any, tile: Any, captions: Sequence[str] | None
) -> None:
    """Reject bad :func:`heatmap_boxes_grid` parameters before anything is drawn."""
    if count == 0:
        raise ValueError("heatmap_boxes_grid needs at least one image")
    if int(views) != views or views < 0:
        raise ValueError(f"views must be an integer >= 0, got {views!r}")
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity!r}")
    if not float(alpha) > 0 or not np.isfinite(float(alpha)):
        raise ValueError(f"alpha must be > 0 (Beta concentration), got {alpha!r}")
    if int(tile) < 16:
        raise ValueError(f"tile must be >= 16 pixels, got {tile!r}")
    if captions is not None and len(captions) != count:
        raise ValueError(f"{count} images but {len(captions)} captions")


def _grid_layout(
    views: int, views_x: int, tile: int, title: str | None, has_gt: bool, has_captions: bool,
    gap: int, line: int,
) -> tuple[list[tuple[tuple, str]], int, list[str], int, int]:
    """``(legend, width, title_lines, top, row_h)``: wide enough for the views and legend."""
    legend = [(LOCALIZED_BOX_COLOR, "localized box")]
    legend += [(GT_BOX_COLOR, "ground truth")] if has_gt else []
    legend += [(RED, "ContrastiveCrop views")] if views else []
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    legend_width = (gap + int(measure.textlength(_BAR_LABEL)) + 4 + 64 + 3 + 16
                    + sum(25 + int(measure.textlength(label)) for _, label in legend))
    width = max(views_x + views * (tile + gap) + gap, legend_width)
    title_lines = wrap_text(title, width - 2 * gap) if title else []
    top = gap + (len(title_lines) + 2) * line  # title, legend, column headers
    caption_h = 14 if has_captions else 0
    row_h = tile + caption_h + gap
    return legend, width, title_lines, top, row_h


def _draw_header(
    canvas: Image.Image, draw: ImageDraw.ImageDraw, title_lines: list[str],
    legend: list[tuple[tuple, str]], views: int, views_x: int, tile: int, alpha: float,
    gap: int, line: int,
) -> None:
    """Title lines, the legend (heatmap colour bar, box colours) and the column headers."""
    y = gap
    for text in title_lines:
        draw.text((gap, y), text, fill=TEXT)
        y += line
    # Legend: the heatmap scale as a colour bar, then the box colours.
    draw.text((gap, y + 1), _BAR_LABEL, fill=TEXT)
    bar_x = gap + int(draw.textlength(_BAR_LABEL)) + 4
    bar = heatmap_colors(np.linspace(0.0, 1.0, 64, dtype=np.float32))[None].repeat(10, axis=0)
    canvas.paste(Image.fromarray(bar), (bar_x, y + 2))
    x = bar_x + 64 + 3
    draw.text((x, y + 1), "1", fill=TEXT)
    x += 16
    for color, label in legend:
        x = swatch(draw, x, y, color, label)
    y += line
    draw.text((gap, y + 1), "image", fill=TEXT)
    draw.text((gap + tile + gap, y + 1), "heatmap + boxes", fill=TEXT)
    if views:
        draw.text((views_x, y + 1), f"views from the box (alpha={alpha:g})", fill=TEXT)


def _overlay_tile(
    panel: Image.Image, heatmap: torch.Tensor, box: Box | None, gt: Box | None, tile: int,
    opacity: float,
) -> Image.Image:
    """The tile blended with its heatmap, with the localized and ground-truth boxes."""
    pixels = np.asarray(panel, dtype=np.float32)
    colors = heatmap_colors(_upsample(heatmap, tile)).astype(np.float32)
    blended = (1.0 - opacity) * pixels + opacity * colors
    overlay = Image.fromarray(np.round(blended).clip(0, 255).astype(np.uint8))
    overlay_draw = ImageDraw.Draw(overlay)
    if box is not None:
        rect = (box.x0 * tile, box.y0 * tile, box.x1 * tile, box.y1 * tile)
        outline(overlay_draw, rect, LOCALIZED_BOX_COLOR, 2)
        inner = (rect[0] + 2, rect[1] + 2, rect[2] - 2, rect[3] - 2)
        if inner[2] - inner[0] > 2 and inner[3] - inner[1] > 2:  # dark inner edge: the
            outline(overlay_draw, inner, TEXT, 1)  # white line shows on any background
    else:
        overlay_draw.text((3, tile - 13), "no box", fill=LOCALIZED_BOX_COLOR)
    if gt is not None:
        outline(overlay_draw, (gt.x0 * tile, gt.y0 * tile, gt.x1 * tile, gt.y1 * tile),
                GT_BOX_COLOR, 2)
    return overlay


def _draw_views(
    canvas: Image.Image, draw: ImageDraw.ImageDraw, panel: Image.Image, image: Image.Image,
    box: Box | None, views: int, views_x: int, y: int, tile: int, gap: int,
    crop_args: tuple, rng: random.Random,
) -> None:
    """Sample one row's views from ``rng`` in order: windows on ``panel``, crops on ``canvas``."""
    scale, ratio, alpha = crop_args
    height, width_px = image.height, image.width
    panel_draw = ImageDraw.Draw(panel)
    factor_x, factor_y = tile / width_px, tile / height
    for view in range(views):
        crop_top, crop_left, crop_h, crop_w = contrastive_crop_params(
            height, width_px, box, scale, ratio, alpha, rng
        )
        outline(panel_draw, (crop_left * factor_x, crop_top * factor_y,
                             (crop_left + crop_w) * factor_x,
                             (crop_top + crop_h) * factor_y), RED, 1)
        view_resample = (F.InterpolationMode.NEAREST if tile >= max(crop_h, crop_w)
                         else F.InterpolationMode.BILINEAR)
        crop = F.resized_crop(image, crop_top, crop_left, crop_h, crop_w, [tile, tile],
                              view_resample)
        x = views_x + view * (tile + gap)
        canvas.paste(crop, (x, y))
        outline(draw, (x, y, x + tile, y + tile), RED, 2)


def _draw_row(
    canvas: Image.Image, draw: ImageDraw.ImageDraw, image: Image.Image, heatmap: torch.Tensor,
    box: Box | None, gt: Box | None, y: int, views: int, views_x: int, tile: int, gap: int,
    opacity: float, crop_args: tuple, rng: random.Random,
) -> None:
    """One image's row at height ``y``: image with view windows, heatmap overlay, views."""
    resample = Image.NEAREST if tile >= max(image.height, image.width) else Image.BILINEAR
    panel = image.resize((tile, tile), resample)
    overlay = _overlay_tile(panel, heatmap, box, gt, tile, opacity)  # before the windows
    _draw_views(canvas, draw, panel, image, box, views, views_x, y, tile, gap, crop_args, rng)
    canvas.paste(panel, (gap, y))
    canvas.paste(overlay, (gap + tile + gap, y))


def heatmap_boxes_grid(
    images: Sequence[Image.Image],
    heatmaps: torch.Tensor | np.ndarray | Sequence[Any],
    boxes: torch.Tensor | np.ndarray | Sequence[Any],
    gt_boxes: torch.Tensor | np.ndarray | Sequence[Any] | None = None,
    views: int = 4,
    *,
    opacity: float = 0.5,
    alpha: float = CCROP_ALPHA,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    tile: int = 96,
    seed: int = 0,
    title: str | None = None,
    captions: Sequence[str] | None = None,
) -> Image.Image:
    """Grid of images with their heatmap, localized box, ground truth and ContrastiveCrop views.

    One row per image: (1) the image with the windows of the sampled views outlined in
    red; (2) the image with the heatmap overlaid (jet colormap, see :func:`heatmap_colors`,
    blended with ``opacity``), the localized box (white, :data:`LOCALIZED_BOX_COLOR`) and
    the ground-truth box (green, :data:`GT_BOX_COLOR`) when given; (3) ``views``
    ContrastiveCrop views sampled from the localized box. A legend with a colour bar of the
    heatmap scale sits above the grid. Tiles show the whole image squashed to a square,
    as the box pass's eval transform does, so normalised boxes and heatmaps line up.

    Args:
        images: PIL images (any mode; converted to RGB).
        heatmaps: one map per image in ``[0, 1]``: ``(N, h, w)`` or ``(N, 1, h, w)``
            tensor/array, or a sequence of ``(h, w)`` maps. Maps are upsampled bilinearly
            (``align_corners=False``, as the box pass) to the tile size.
        boxes: localized boxes in the project's convention (:mod:`timm_ccrop.crop.boxes`), a
            ``(N, 4)`` tensor/array or a sequence of boxes; ``None`` for an image without
            a box (degenerate heatmap): its views come from RandomResizedCrop, as the
            trainer's fallback.
        gt_boxes: ground-truth boxes (same forms as ``boxes``) or None.
        views: number of ContrastiveCrop views per image (0 for none).
        opacity: heatmap weight in the blend, in ``[0, 1]`` (1 shows the colormap only).
        alpha: Beta(alpha, alpha) concentration of the crop centre (paper 0.6).
        scale, ratio: crop area fraction and aspect ratio range, as RandomResizedCrop.
        tile: side of each tile in pixels.
        seed: seed of the crop sampler, for a reproducible picture.
        title: optional caption above the grid.
        captions: optional one line of text per row (e.g. the IoU), under its tiles.

    Returns:
        The grid as an RGB PIL image.

    Raises:
        ValueError: mismatched lengths, malformed heatmaps or boxes, or bad parameters.
    """
    count = len(images)
    _check_grid_arguments(count, views, opacity, alpha, tile, captions)
    views, tile, opacity = int(views), int(tile), float(opacity)
    maps = _as_heatmap_list(heatmaps, count)
    box_list = _as_box_list(boxes, count, "boxes")
    gt_list = _as_box_list(gt_boxes, count, "gt_boxes") if gt_boxes is not None else None

    rng = random.Random(seed)
    gap, line = 4, 16
    views_x = gap + 2 * (tile + gap) + gap
    legend, width, title_lines, top, row_h = _grid_layout(
        views, views_x, tile, title, gt_list is not None, captions is not None, gap, line
    )
    canvas = Image.new("RGB", (width, top + count * row_h + gap), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _draw_header(canvas, draw, title_lines, legend, views, views_x, tile, alpha, gap, line)

    for row, image in enumerate(images):
        gt = gt_list[row] if gt_list is not None else None
        _draw_row(canvas, draw, to_rgb(image), maps[row], box_list[row], gt, top + row * row_h,
                  views, views_x, tile, gap, opacity, (scale, ratio, alpha), rng)
        if captions is not None:
            draw.text((gap, top + row * row_h + tile + 1), str(captions[row]), fill=TEXT)
    return canvas


def arm_boxes_grid(
    images: Sequence[Image.Image],
    arm_boxes: Mapping[str, torch.Tensor | np.ndarray | Sequence[Any]],
    gt_boxes: torch.Tensor | np.ndarray | Sequence[Any] | None = None,
    *,
    tile: int = 96,
    title: str | None = None,
) -> Image.Image:
    """The same images with each arm's boxes: one row per image, one column per arm.

    Each tile shows the image squashed to a square with the arm's box (red) and, when
    given, the ground-truth box (green, :data:`GT_BOX_COLOR`) and the IoU of the two
    under the tile. A ``None`` box (no box for that image) draws no red outline.

    Args:
        images: PIL images (any mode; converted to RGB).
        arm_boxes: arm name -> one box per image, in the project's convention
            (:mod:`timm_ccrop.crop.boxes`); a ``(N, 4)`` tensor/array or a sequence of boxes.
        gt_boxes: ground-truth boxes (same forms) or None.
        tile: side of each tile in pixels.
        title: optional caption above the grid.

    Returns:
        The grid as an RGB PIL image.

    Raises:
        ValueError: no arms, mismatched lengths, malformed boxes or a tile under 16 px.
    """
    count, tile = len(images), int(tile)
    if not arm_boxes:
        raise ValueError("arm_boxes is empty; pass at least one arm's boxes")
    if tile < 16:
        raise ValueError(f"tile must be >= 16 pixels, got {tile}")
    columns = {name: _as_box_list(boxes, count, f"boxes of {name!r}")
               for name, boxes in arm_boxes.items()}
    gt_list = _as_box_list(gt_boxes, count, "gt_boxes") if gt_boxes is not None else None
    gap, line = 4, 14
    title_lines = [title] if title else []
    top = gap + line * (len(title_lines) + 1)
    row_h = tile + (line if gt_list is not None else 0) + gap
    canvas = Image.new("RGB", (gap + len(columns) * (tile + gap), top + count * row_h),
                       BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, text in enumerate(title_lines):
        draw.text((gap, gap + index * line), text, fill=TEXT)
    for column, (name, boxes) in enumerate(columns.items()):
        x = gap + column * (tile + gap)
        draw.text((x, top - line), name, fill=TEXT)
        for row, image in enumerate(images):
            y = top + row * row_h
            gt = gt_list[row] if gt_list is not None else None
            canvas.paste(_boxed_tile(to_rgb(image), boxes[row], gt, tile), (x, y))
            if gt is not None and boxes[row] is not None:
                iou = paired_iou(torch.tensor([boxes[row]]), torch.tensor([gt]))[0]
                draw.text((x, y + tile + 1), f"IoU {float(iou):.2f}", fill=TEXT)
    return canvas


def _boxed_tile(image: Image.Image, box: Box | None, gt: Box | None, tile: int) -> Image.Image:
    """The image squashed to ``tile`` pixels with the box (red) and ground truth (green)."""
    resample = Image.NEAREST if tile >= max(image.height, image.width) else Image.BILINEAR
    panel = image.resize((tile, tile), resample)
    panel_draw = ImageDraw.Draw(panel)
    for shown, color in ((gt, GT_BOX_COLOR), (box, RED)):
        if shown is not None:
            outline(panel_draw, (shown.x0 * tile, shown.y0 * tile, shown.x1 * tile,
                                 shown.y1 * tile), color, 2)
    return panel
