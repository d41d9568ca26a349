"""What a finished grid hands to the report, the plot and the results JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CompareConfig
from .scoring import Scoring

__all__ = ["GridResult", "group_cells"]


def group_cells(cells: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The cells by ``(method, arm)``, in the grid's order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["method"], cell["mode"]), []).append(cell)
    return groups


@dataclass
class GridResult:
    """A finished grid: its settings, the arms it ran, its cells and how they were scored.

    ``has_boxes``: the training split has ground-truth boxes (the oracle arm, box IoU and
    the false-positive pairs can be measured). ``wall``: seconds of the whole grid.
    """

    config: CompareConfig
    modes: tuple[str, ...]
    cells: list[dict[str, Any]]
    random_init: list[dict[str, Any]]
    scoring: Scoring
    has_boxes: bool
    data_name: str
    command: str
    wall: float

    @property
    def groups(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """The cells by ``(method, arm)``."""
        return group_cells(self.cells)

    @property
    def report_path(self) -> Path:
        """The Markdown report (``out``, default ``RUNS/report.md``)."""
        return Path(self.config.out or Path(self.config.runs) / "report.md")

    @property
    def json_path(self) -> Path:
        """The results JSON, next to the cells: ``RUNS/<report stem>.json``."""
        return Path(self.config.runs) / f"{self.report_path.stem}.json"

    def write_json(self) -> Path:
        """Write the results JSON (what ``evidence_table`` reads); returns its path."""
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps(
            {"cells": self.cells, "random_init": self.random_init, "data": self.config.data,
             "scored": self.scoring.describe(), "has_boxes": self.has_boxes}, indent=1))
        return self.json_path
