"""The pictures of a comparison: accuracy per arm (matplotlib, Agg backend) and each arm's
final boxes on the same training images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..pictures.viz import arm_boxes_grid
from .arms import BASELINE, arm_boxes
from .result import GridResult
from .stats import mean_or_nan, std_or_zero

__all__ = ["accuracy_groups", "draw_accuracy_plot", "draw_box_picture"]

_COLOURS = {"knn": "#4678c8", "linear": "#e68c28"}
_LABELS = {"knn": "kNN top-1", "linear": "linear top-1"}


def accuracy_groups(grid: GridResult) -> list[tuple[str, dict[str, list[float]]]]:
    """``(label, {'knn': [...], 'linear': [...]})``: the random init, then every arm."""
    groups = [("random init", {"knn": [r["knn"] for r in grid.random_init],
                               "linear": [r["linear"] for r in grid.random_init]})]
    for (method, mode), cells in grid.groups.items():
        label = mode if len(grid.config.methods) == 1 else f"{method}/{mode}"
        groups.append((label, {"knn": [c["knn"] for c in cells],
                               "linear": [c["linear"] for c in cells]}))
    return groups


def draw_accuracy_plot(path: Path, groups: Sequence[tuple[str, dict[str, list[float]]]],
                       title: str) -> Path:
    """Bars of kNN and linear top-1 per group: the mean, a ±std whisker and one dot per
    seed (the spread is the story). Written as a PNG with matplotlib's Agg backend."""
    figure = Figure(figsize=(max(4.0, 1.1 * len(groups) + 1.5), 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.38
    for offset, key in ((-width / 2, "knn"), (width / 2, "linear")):
        for index, (_, values) in enumerate(groups):
            x, mean = index + offset, mean_or_nan(values[key])
            if mean != mean:  # NaN: no value for this group
                continue
            axes.bar(x, mean, width, color=_COLOURS[key], yerr=std_or_zero(values[key]) or None,
                     capsize=3, label=_LABELS[key] if index == 0 else None)
            axes.scatter([x] * len(values[key]), values[key], s=12, color="white",
                         edgecolors="black", linewidths=0.7, zorder=3)
            axes.text(x, 2, f"{mean:.0f}", ha="center", va="bottom", fontsize=8,
                      color="white")
    axes.set_xticks(range(len(groups)), [name for name, _ in groups], rotation=20,
                    ha="right", fontsize=8)
    axes.set_ylim(0, 100)
    axes.set_ylabel("top-1 (%)")
    axes.set_title(title, fontsize=9)
    axes.grid(axis="y", color="#e1e1e1")
    axes.set_axisbelow(True)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    return path


def draw_box_picture(path: Path, grid: GridResult, train_split: Any, images: int = 8
                     ) -> tuple[Path, int, str] | None:
    """The same training images under each boxed arm's final boxes, for the first method
    and seed (``viz.arm_boxes_grid``); ``(path, seed, method)``, or None without such arms."""
    first = grid.cells[0] if grid.cells else None
    chosen = [c for c in grid.cells if first and (c["method"], c["seed"]) == (
        first["method"], first["seed"]) and c["mode"] != BASELINE]
    if first is None or not chosen:
        return None
    gt = train_split.gt_boxes.float() if grid.has_boxes else None
    count = len(train_split)
    picks = list(range(0, count, max(1, count // images)))[:images]
    arms = {c["mode"]: [arm_boxes(c["mode"], Path(c["run"]), count, gt)[i] for i in picks]
            for c in chosen}
    picture = arm_boxes_grid([train_split[i][0] for i in picks], arms,
                             None if gt is None else gt[picks], tile=64,
                             title=f"{first['method']}, seed {first['seed']}: final boxes")
    picture.save(path)
    return path, first["seed"], first["method"]
