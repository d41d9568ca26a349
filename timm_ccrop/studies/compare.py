"""``run_compare``: does ContrastiveCrop help on this data? The whole comparison as a few
steps: check the settings and the data, run the grid, measure the pairs, write the
report, the plot and the results JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crop.pair_quality import false_positive_pair_rate
from ..data import build_dataset, dataset_kind, parse_data_spec
from .arms import ORACLE, RANDOM_INIT, arm_boxes
from .config import CompareConfig
from .grid import grid_tasks, run_grid
from .plot import accuracy_groups, draw_accuracy_plot, draw_box_picture
from .report import report_text
from .result import GridResult
from .scoring import choose_scoring

__all__ = ["CompareResult", "default_modes", "run_compare"]


@dataclass
class CompareResult:
    """Where a comparison put its outputs, and its cells."""

    grid: GridResult
    report: Path
    plot: Path
    json: Path


def default_modes(has_boxes: bool) -> tuple[str, ...]:
    """rcrop against ccrop, and the oracle where the data has ground-truth boxes."""
    return ("rcrop", "ccrop", ORACLE) if has_boxes else ("rcrop", "ccrop")


def _checked_modes(config: CompareConfig, has_boxes: bool) -> tuple[str, ...]:
    modes = config.modes if config.modes is not None else default_modes(has_boxes)
    if ORACLE in modes and not has_boxes:
        raise ValueError(f"--modes {ORACLE} needs ground-truth boxes and {config.data} has "
                         "none; leave ccrop-gt out (rcrop vs ccrop still answers the question)")
    return tuple(modes)


def _pair_quality(config: CompareConfig, cells: list[dict[str, Any]], train_split: Any,
                  has_boxes: bool) -> None:
    """Each cell's false-positive pair rate (None without ground-truth boxes)."""
    gt = train_split.gt_boxes.float() if has_boxes else None
    for cell in cells:
        if gt is None:
            cell["fp_rate"] = None
            continue
        boxes = arm_boxes(cell["mode"], Path(cell["run"]), len(gt), gt)
        cell["fp_rate"] = false_positive_pair_rate(
            boxes, gt, train_split.image_size, config.alpha, config.fp_pairs, cell["seed"],
            config.fp_threshold)


def run_compare(config: CompareConfig) -> CompareResult:
    """Run (or resume) the grid of ``config`` and write its report.

    Every arm of a seed starts from the same initialisation and sees the same data order;
    each cell is stored in its run folder, so a rerun computes only what is missing. Raises
    ValueError for bad settings or data (before anything is trained), and
    :class:`~timm_ccrop.studies.cells.CellStopped` when a signal stops a cell.
    """
    config.validate()
    spec = parse_data_spec(config.data)
    train_split = build_dataset(spec, split="train")
    has_boxes = getattr(train_split, "gt_boxes", None) is not None
    modes = _checked_modes(config, has_boxes)
    scoring = choose_scoring(spec, config.val_fraction)
    started = time.perf_counter()
    done = run_grid(config, grid_tasks(config, modes), scoring)
    cells = [cell for cell in done if cell["mode"] != RANDOM_INIT]
    _pair_quality(config, cells, train_split, has_boxes)
    grid = GridResult(config, modes, cells, [c for c in done if c["mode"] == RANDOM_INIT],
                      scoring, has_boxes, dataset_kind(spec.kind).display_name,
                      config.command_line(modes), time.perf_counter() - started)
    return _write_outputs(grid, train_split)


def _write_outputs(grid: GridResult, train_split: Any) -> CompareResult:
    """The report, its plot and box picture, and the results JSON."""
    out = grid.report_path
    out.parent.mkdir(parents=True, exist_ok=True)
    config = grid.config
    plot = draw_accuracy_plot(out.with_suffix(".png"), accuracy_groups(grid),
                              f"top-1 (%) on {parse_data_spec(config.data).kind}, "
                              f"{config.epochs} ep, seeds {list(config.seeds)}")
    picture = draw_box_picture(out.with_name(f"{out.stem}-boxes.png"), grid, train_split)
    out.write_text(report_text(grid, plot, picture))
    return CompareResult(grid, out, plot, grid.write_json())
