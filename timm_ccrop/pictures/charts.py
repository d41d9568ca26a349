"""Line charts of a run's metrics, drawn with matplotlib (Agg: no display needed).

:func:`line_chart_grid` draws panels side by side, each with its own y axis, one or more
series of ``(x, y)`` points and optional horizontal reference lines (e.g. "random init").
It returns a PIL image, so callers save it like the project's other pictures.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # before pyplot: pictures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

__all__ = ["Panel", "Reference", "Series", "chart_figure", "line_chart_grid"]

_DPI = 100


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


def _points(series: Series) -> tuple[list[float], list[float]]:
    pairs = [(float(x), float(y)) for x, y in zip(series.x, series.y, strict=True)
             if y is not None and math.isfinite(float(y))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _rgb(color: tuple[int, int, int] | None) -> tuple[float, float, float] | None:
    return None if color is None else (color[0] / 255, color[1] / 255, color[2] / 255)


def _draw_panel(axes: plt.Axes, panel: Panel) -> None:
    """One panel: its lines (with markers: a one-point series still shows), its dashed
    references, a legend when there is more than one line, and 'no data' when empty."""
    axes.set_title(panel.title, fontsize=9)
    drawn, lowest = 0, math.inf
    for series in panel.series:
        xs, ys = _points(series)
        if xs:
            axes.plot(xs, ys, marker="o", markersize=3, label=series.label,
                      color=_rgb(series.color))
            drawn, lowest = drawn + 1, min([lowest, *ys])
    for reference in panel.references:
        axes.axhline(reference.y, linestyle="--", linewidth=1, color=_rgb(reference.color),
                     label=reference.label)
    if not drawn and not panel.references:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    if drawn + len(panel.references) > 1:
        axes.legend(fontsize=7)
    if lowest >= 0 and axes.get_ylim()[0] < 0:  # a rate or a loss never goes below 0:
        axes.set_ylim(bottom=0)                   # no margin that suggests it does
    axes.grid(alpha=0.3)
    axes.tick_params(labelsize=7)


def chart_figure(panels: Sequence[Panel], title: str = "", columns: int = 2,
                 panel_size: tuple[int, int] = (330, 210)) -> plt.Figure:
    """The matplotlib figure of ``panels`` in a grid of ``columns`` (close it when done).

    Raises ValueError for no panels or a non-positive column count.
    """
    if not panels:
        raise ValueError("line_chart_grid needs at least one panel")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    width, height = panel_size
    figure, grid = plt.subplots(rows, columns, squeeze=False,
                                figsize=(columns * width / _DPI, rows * height / _DPI), dpi=_DPI)
    for index, axes in enumerate(grid.flat):
        if index < len(panels):
            _draw_panel(axes, panels[index])
        else:
            axes.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def line_chart_grid(panels: Sequence[Panel], title: str = "", columns: int = 2,
                    panel_size: tuple[int, int] = (330, 210)) -> Image.Image:
    """:func:`chart_figure` rendered as an RGB image of ``columns x panel_size``."""
    figure = chart_figure(panels, title, columns, panel_size)
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=_DPI)
    finally:
        plt.close(figure)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
