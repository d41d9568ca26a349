"""Drawing primitives of the pictures: the colours, box outlines, the heatmap colormap,
legend swatches and word wrap, with numpy and PIL only (no plotting library)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["BACKGROUND", "BLUE", "GT_BOX_COLOR", "LOCALIZED_BOX_COLOR", "RED", "TEXT",
           "heatmap_colors", "outline", "swatch", "wrap_text"]

#: Colour of RandomResizedCrop's views and windows.
BLUE = (60, 140, 255)
#: Colour of ContrastiveCrop's views and windows, and of an arm's boxes.
RED = (235, 60, 50)
#: Canvas and text colours.
BACKGROUND = (250, 250, 250)
TEXT = (20, 20, 20)
#: Outline colour of the localized (heatmap) box in the box pictures.
LOCALIZED_BOX_COLOR = (255, 255, 255)
#: Outline colour of ground-truth boxes (also the crop demo's box colour).
GT_BOX_COLOR = (40, 220, 60)


def outline(draw: ImageDraw.ImageDraw, rect: Sequence[float], color: tuple, width: int) -> None:
    """The outline of ``rect`` ``(x0, y0, x1, y1)`` (pixel edges, x1/y1 exclusive)."""
    draw.rectangle([rect[0], rect[1], rect[2] - 1, rect[3] - 1], outline=color, width=width)


def heatmap_colors(values: Any) -> np.ndarray:
    """Jet colormap: values in ``[0, 1]`` (any shape) to uint8 RGB of shape ``(..., 3)``.

    0 is dark blue ``(0, 0, 128)``, 0.5 light green, 1 dark red ``(128, 0, 0)``. Values
    outside ``[0, 1]`` are clipped; NaN counts as 0.
    """
    array = np.asarray(values, dtype=np.float32)
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue peaks of 4v
    rgb = np.clip(1.5 - np.abs(4.0 * array[..., None] - centres), 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


def wrap_text(text: str, width: int) -> list[str]:
    """Greedy word wrap of ``text`` (which may hold newlines) to ``width`` pixels."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if current and measure.textlength(candidate) > width:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return lines


def swatch(draw: ImageDraw.ImageDraw, x: int, y: int, color: tuple, label: str) -> int:
    """A small filled legend square with a dark border, then its label; returns the next x."""
    draw.rectangle([x, y + 2, x + 9, y + 11], fill=color, outline=TEXT)
    draw.text((x + 13, y + 1), label, fill=TEXT)
    return x + 13 + int(draw.textlength(label)) + 12

