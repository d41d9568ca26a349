"""``timm_ccrop.studies`` report, plot and evidence table, from made-up cells."""

from __future__ import annotations

import json

from PIL import Image

from timm_ccrop.studies import CompareConfig, evidence_table
from timm_ccrop.studies.plot import accuracy_groups, draw_accuracy_plot
from timm_ccrop.studies.report import report_text
from timm_ccrop.studies.result import GridResult
from timm_ccrop.studies.scoring import Scoring


def _cells(gains: dict[str, list[float]]) -> list[dict]:
    """rcrop at 60 + seed (linear; kNN 10 lower), each arm at rcrop + its per-seed gain."""
    cells = []
    for mode, per_seed in {"rcrop": [0.0, 0.0, 0.0], **gains}.items():
        cells += [{"method": "simclr", "mode": mode, "seed": s, "run": f"r/{mode}{s}",
                   "knn": 50.0 + s + g, "linear": 60.0 + s + g, "fp_rate": 0.1,
                   "localizer": "peak" if mode == "ccrop" else None, "box_passes": [],
                   "epoch_seconds": 10.0, "box_pass_seconds": 1.0}
                  for s, g in enumerate(per_seed)]
    return cells


def _grid(has_boxes: bool, modes: tuple[str, ...], cells: list[dict]) -> GridResult:
    init = [{"seed": s, "knn": 20.0, "linear": 30.0} for s in range(3)]
    return GridResult(CompareConfig(seeds=(0, 1, 2)), modes, cells, init, Scoring("test"),
                      has_boxes, "an image folder", "timm-ccrop compare", 60.0)


def test_report_with_and_without_ground_truth_boxes(tmp_path):
    boxed = _grid(True, ("rcrop", "ccrop", "ccrop-gt"),
                  _cells({"ccrop": [2.0, 2.5, 3.0], "ccrop-gt": [4.0, 5.0, 6.0]}))
    text = report_text(boxed, tmp_path / "r.png", None)
    for section in ("## Settings", "Does the baseline learn at all?", "Accuracy per cell",
                    "Accuracy per seed", "Difference from rcrop", "Share of the oracle's gain",
                    "False-positive", "Box quality", "Overhead of the box passes"):
        assert section in text
    assert "| simclr | ccrop | +2.50 ± 0.50 | [" in text
    assert "| simclr | ccrop | `peak(reduction=contrast, keep=0.5, background=auto)` | " in text
    assert "| simclr | ccrop | 10.00 ± 0.00 |" in text  # false-positive pairs, in %
    plain = _grid(False, ("rcrop", "ccrop"), _cells({"ccrop": [2.0, 2.5, 3.0]}))
    text = report_text(plain, tmp_path / "r.png", None)
    assert text.count("has no ground-truth boxes, so") == 3
    assert "| simclr | ccrop | +2.50 ± 0.50 | [" in text
    assert "false-positive rate (%)" not in text


def test_accuracy_plot_is_a_png(tmp_path):
    grid = _grid(True, ("rcrop", "ccrop"), _cells({"ccrop": [2.0, 2.5, 3.0]}))
    groups = accuracy_groups(grid)
    assert [name for name, _ in groups] == ["random init", "rcrop", "ccrop"]
    path = draw_accuracy_plot(tmp_path / "plot.png", groups, "title")
    assert Image.open(path).size[0] >= 400


def _results(tmp_path, name, gains):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"cells": _cells(gains), "random_init": [], "data": "d"}))
    return path


def test_evidence_table_gains_intervals_and_shares(tmp_path):
    path = _results(tmp_path, "a", {"ccrop": [2.0, 2.5, 3.0], "ccrop-gt": [4.0, 5.0, 6.0]})
    table = evidence_table([("SimCLR, small", path)])
    rows = {line.split(" | ")[2]: line for line in table.splitlines()
            if line.startswith("| SimCLR, small | simclr |")}
    assert set(rows) == {"ccrop `peak`", "ccrop-gt", "61.00 ± 1.00"}  # gains, the baseline
    assert "| 3 | +2.50 [" in rows["ccrop `peak`"] and "| 0.50 [" in rows["ccrop `peak`"]
    assert "| +5.00 [" in rows["ccrop-gt"] and rows["ccrop-gt"].endswith("|  |")


def test_an_arm_two_grids_share_is_listed_once(tmp_path):
    first = _results(tmp_path, "a", {"ccrop": [2.0, 2.5, 3.0], "ccrop-gt": [4.0, 5.0, 6.0]})
    second = _results(tmp_path, "b", {"ccrop-gt": [4.0, 5.0, 6.0]})
    table = evidence_table([("A", first), ("B", second)])
    assert table.count("| ccrop-gt |") == 1 and table.count("| simclr | 61.00") == 1
