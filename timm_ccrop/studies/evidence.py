"""One table of several comparison grids: paired gains over rcrop and oracle shares.

Each grid is the results JSON that :func:`~timm_ccrop.studies.run_compare` writes next to
its cells (``RUNS/<report stem>.json``). For every arm other than rcrop the table gives the
paired difference from rcrop (same seed; mean and Student-t 95% interval) for the linear
probe and kNN, and for the arms with model boxes the share of the oracle's linear gain
(paired bootstrap interval), with the report's own statistics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .arms import BASELINE, MODEL_BOX_ARMS, ORACLE
from .result import group_cells
from .stats import bootstrap_share, deltas_by_seed, format_interval, mean_std, t_interval

__all__ = ["baseline_rows", "evidence_table", "grid_rows"]


def _gain(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    return f"{mean:+.2f} {format_interval(t_interval(values))}"


def _share(group: Sequence[dict[str, Any]], oracle: Sequence[dict[str, Any]] | None,
           baseline: Sequence[dict[str, Any]], mode: str) -> str:
    if mode == ORACLE or not oracle:
        return ""
    arm = deltas_by_seed(group, baseline, "linear")
    gold = deltas_by_seed(oracle, baseline, "linear")
    seeds = sorted(set(arm) & set(gold))
    result = bootstrap_share([arm[s] for s in seeds], [gold[s] for s in seeds])
    return "n/a" if result is None else f"{result[0]:.2f} [{result[1]:.2f}, {result[2]:.2f}]"


def grid_rows(label: str, cells: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The table rows of one grid: one per (method, arm other than rcrop)."""
    groups = group_cells(list(cells))
    rows = []
    for (method, mode), group in groups.items():
        baseline = groups.get((method, BASELINE), [])
        if mode == BASELINE or not baseline:
            continue
        linear = deltas_by_seed(group, baseline, "linear")
        knn = deltas_by_seed(group, baseline, "knn")
        localizer = group[0].get("localizer")
        arm = f"{mode} `{localizer}`" if mode in MODEL_BOX_ARMS and localizer else mode
        rows.append([label, method, arm, str(len(linear)), _gain(list(linear.values())),
                     _gain(list(knn.values())),
                     _share(group, groups.get((method, ORACLE)), baseline, mode)])
    return rows


def baseline_rows(label: str, cells: Sequence[dict[str, Any]]) -> list[str]:
    """``label | method | rcrop linear ± std | rcrop kNN ± std | n`` per method."""
    rows = []
    for method in dict.fromkeys(c["method"] for c in cells):
        rcrop = [c for c in cells if c["method"] == method and c["mode"] == BASELINE]
        if rcrop:
            rows.append(f"| {label} | {method} | {mean_std([c['linear'] for c in rcrop])} | "
                        f"{mean_std([c['knn'] for c in rcrop])} | {len(rcrop)} |")
    return rows


def evidence_table(grids: Sequence[tuple[str, Path]]) -> str:
    """The Markdown tables (gains, then the rcrop baselines) of ``grids``: ``(label,
    results JSON)`` pairs. An arm two grids share is listed once."""
    lines = ["| grid | method | arm | seeds | Δ linear [95% CI] | Δ kNN [95% CI] | "
             "share of oracle's linear gain [95% CI] |", "|---|---|---|---|---|---|---|"]
    baselines = ["| grid | method | rcrop linear | rcrop kNN | seeds |", "|---|---|---|---|---|"]
    seen: set[tuple[str, ...]] = set()
    for label, path in grids:
        cells = json.loads(Path(path).read_text())["cells"]
        for row in grid_rows(label, cells):
            if tuple(row[1:]) not in seen:
                seen.add(tuple(row[1:]))
                lines.append("| " + " | ".join(row) + " |")
        for row in baseline_rows(label, cells):
            if row.split(" | ", 1)[1] not in seen:
                seen.add(row.split(" | ", 1)[1])
                baselines.append(row)
    return "\n".join([*lines, "", *baselines]) + "\n"
