"""Small line charts drawn with PIL (no plotting dependency): the per-run metrics plot.

:func:`line_chart_grid` draws panels side by side, each with its own y axis, one or more
series of ``(x, y)`` points and optional horizontal reference lines (e.g. "random init").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

__all__ = ["Panel", "Reference", "Series", "line_chart_grid"]

_BACKGROUND = (255, 255, 255)
_AXIS = (90, 90, 90)
_GRID = (225, 225, 225)
_TEXT = (20, 20, 20)
PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))


@dataclass
class Series:
    """One line: its label and points (NaN/None y values are left out)."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: tuple[int, int, int] | None = None


@dataclass
class Reference:
    """A dashed horizontal line across a panel, e.g. the random-init accuracy."""

    label: str
    y: float
    color: tuple[int, int, int] = (120, 120, 120)


@dataclass
class Panel:
    """One chart: a title, its series and reference lines."""

    title: str
    series: list[Series]
    references: list[Reference] = field(default_factory=list)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _points(series: Series) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in zip(series.x, series.y, strict=True)
            if _finite(y)]


def _limits(panel: Panel) -> tuple[float, float, float, float] | None:
    points = [p for s in panel.series for p in _points(s)]
    if not points:
        return None
    ys = [y for _, y in points] + [r.y for r in panel.references if _finite(r.y)]
    xs = [x for x, _ in points]
    low, high = min(ys), max(ys)
    pad = (high - low) * 0.08 or abs(high) * 0.05 or 1.0
    x_low, x_high = min(xs), max(xs)
    return x_low, (x_high if x_high > x_low else x_low + 1), low - pad, high + pad


def _dashed(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, color: tuple) -> None:
    x = x0
    while x < x1:
        draw.line([(x, y), (min(x + 6, x1), y)], fill=color, width=1)
        x += 10


def _draw_panel(draw: ImageDraw.ImageDraw, panel: Panel, left: int, top: int, width: int,
                height: int) -> None:
    margin_l, margin_b, margin_t = 44, 22, 20
    plot = (left + margin_l, top + margin_t, left + width - 8, top + height - margin_b)
    draw.text((left + margin_l, top + 3), panel.title, fill=_TEXT)
    draw.rectangle(plot, outline=_AXIS)
    limits = _limits(panel)
    if limits is None:
        draw.text((plot[0] + 8, plot[1] + 8), "not measured", fill=_AXIS)
        return
    x_low, x_high, y_low, y_high = limits

    def at(x: float, y: float) -> tuple[float, float]:
        fx = (x - x_low) / (x_high - x_low)
        fy = (y - y_low) / (y_high - y_low)
        return plot[0] + fx * (plot[2] - plot[0]), plot[3] - fy * (plot[3] - plot[1])

    step = (y_high - y_low) / 4
    decimals = max(0, 1 - math.floor(math.log10(step))) if step > 0 else 2
    for i in range(5):  # y grid and tick labels, with as many decimals as the step needs
        value = y_low + step * i
        _, y = at(x_low, value)
        draw.line([(plot[0] + 1, y), (plot[2] - 1, y)], fill=_GRID)
        draw.text((left + 2, y - 6), f"{value:.{min(decimals, 6)}f}", fill=_AXIS)
    draw.text((plot[0], plot[3] + 4), f"{x_low:g}", fill=_AXIS)
    draw.text((plot[2] - 24, plot[3] + 4), f"{x_high:g}", fill=_AXIS)
    for reference in panel.references:
        if _finite(reference.y):
            _, y = at(x_low, reference.y)
            _dashed(draw, plot[0], plot[2], y, reference.color)
            draw.text((plot[0] + 4, y - 12), reference.label, fill=reference.color)
    for index, series in enumerate(panel.series):
        color = series.color or PALETTE[index % len(PALETTE)]
        points = [at(x, y) for x, y in _points(series)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
        if len(panel.series) > 1:
            draw.text((plot[2] - 90, plot[1] + 4 + 12 * index), series.label, fill=color)


def line_chart_grid(panels: Sequence[Panel], title: str = "", columns: int = 2,
                    panel_size: tuple[int, int] = (330, 210)) -> Image.Image:
    """Draw ``panels`` in a grid of ``columns``; returns an RGB image.

    Raises ValueError for no panels or a non-positive column count.
    """
    if not panels:
        raise ValueError("line_chart_grid needs at least one panel")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    width, height = panel_size
    header = 18 if title else 0
    canvas = Image.new("RGB", (columns * width, rows * height + header), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((6, 3), title, fill=_TEXT)
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        _draw_panel(draw, panel, column * width, header + row * height, width, height)
    return canvas
