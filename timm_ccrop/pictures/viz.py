"""Pictures: what ContrastiveCrop does to an image, as a PNG grid.

:func:`crop_views_grid`: each row shows one image upscaled with its box (green) and the
crop windows of a few sampled views outlined, then the views themselves: first
RandomResizedCrop's, then ContrastiveCrop's, so the difference is visible at a glance.

The box pictures (:func:`heatmap_boxes_grid`, :func:`arm_boxes_grid`, in
:mod:`~timm_ccrop.pictures.box_grids`) and the colours and colormap (in
:mod:`~timm_ccrop.pictures.drawing`) are importable from here too. Everything is drawn with
numpy and PIL; no plotting library is needed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from PIL import Image, ImageDraw
from torchvision.transforms import functional as F

from ..crop.boxes import FULL_BOX, Box
from ..crop.transforms import CCROP_ALPHA, contrastive_crop_params, to_rgb
from .box_grids import arm_boxes_grid, heatmap_boxes_grid
from .drawing import (
    BACKGROUND,
    BLUE,
    GT_BOX_COLOR,
    LOCALIZED_BOX_COLOR,
    RED,
    TEXT,
    heatmap_colors,
    outline,
)

__all__ = ["LOCALIZED_BOX_COLOR", "GT_BOX_COLOR", "arm_boxes_grid", "crop_views_grid",
           "heatmap_boxes_grid", "heatmap_colors"]


def crop_views_grid(
    images: Sequence[Image.Image],
    boxes: Sequence[Box | None],
    num_views: int = 4,
    alpha: float = CCROP_ALPHA,
    scale: tuple[float, float] = (0.2, 1.0),
    tile: int = 96,
    seed: int = 0,
    title: str | None = None,
) -> Image.Image:
    """Grid of images with their boxes and sampled random-crop vs ContrastiveCrop views.

    Args:
        images: PIL images (any mode).
        boxes: one box per image in the project's convention, or None (whole image).
        num_views: views per crop mode and image.
        alpha, scale: ContrastiveCrop parameters.
        tile: side of each tile in pixels (images are upscaled with nearest neighbour).
        seed: seed of the crop sampler, for a reproducible picture.
        title: optional caption above the grid.
    """
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} boxes")
    if not images:
        raise ValueError("crop_views_grid needs at least one image")
    rng = random.Random(seed)
    gap, header = 4, 16
    top = header * (2 if title else 1)
    columns = 1 + 2 * num_views
    canvas = Image.new(
        "RGB", (columns * (tile + gap) + gap * 3, top + len(images) * (tile + gap) + gap),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 2), title, fill=TEXT)
    draw.text((gap, top - header + 2), "image + box", fill=TEXT)
    draw.text((tile + 2 * gap, top - header + 2), "RandomResizedCrop views (blue)", fill=TEXT)
    draw.text((tile * (1 + num_views) + gap * (3 + num_views), top - header + 2),
              f"ContrastiveCrop views (red), alpha={alpha}", fill=TEXT)
    for row, (image, box) in enumerate(zip(images, boxes, strict=True)):
        image = to_rgb(image)
        height, width = image.height, image.width
        factor_x, factor_y = tile / width, tile / height
        y = top + row * (tile + gap)
        panel = image.resize((tile, tile), Image.NEAREST)
        panel_draw = ImageDraw.Draw(panel)
        x_offset = tile + 2 * gap
        for mode_index, (mode_box, color) in enumerate(((None, BLUE), (box, RED))):
            for view in range(num_views):
                if mode_index == 1 and mode_box is None:
                    mode_box = FULL_BOX
                crop_top, crop_left, crop_h, crop_w = contrastive_crop_params(
                    height, width, mode_box, scale, (3 / 4, 4 / 3), alpha, rng
                )
                if mode_index == 1:
                    outline(panel_draw, (crop_left * factor_x, crop_top * factor_y,
                                         (crop_left + crop_w) * factor_x,
                                         (crop_top + crop_h) * factor_y), color, 1)
                crop = F.resized_crop(image, crop_top, crop_left, crop_h, crop_w, [tile, tile],
                                      F.InterpolationMode.NEAREST)
                x = x_offset + (mode_index * num_views + view) * (tile + gap) + mode_index * gap
                canvas.paste(crop, (x, y))
                outline(draw, (x, y, x + tile, y + tile), color, 2)
        if box is not None:
            outline(panel_draw, (box.x0 * tile, box.y0 * tile, box.x1 * tile, box.y1 * tile),
                    GT_BOX_COLOR, 2)
        canvas.paste(panel, (gap, y))
    return canvas
