"""One table of several ``compare_crops.py`` grids: paired gains over rcrop and oracle shares.

Each grid is the results JSON that ``scripts/compare_crops.py`` writes next to its cells
(``RUNS/<report stem>.json``). For every arm other than rcrop the table gives the paired
difference from rcrop (same seed; mean and Student-t 95% interval) for the linear probe and
kNN, and for the arms with model boxes the share of the oracle's linear gain (paired
bootstrap interval), with exactly ``compare_crops``'s statistics::

    python scripts/evidence_table.py "SimCLR, small=runs/cc2/results.json" \\
        "BYOL, small=runs/cc2/results-byol.json"

The README's "Does it help?" table and docs/evidence.md are this script's output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _load_compare_crops() -> Any:
    """``scripts/compare_crops.py`` as a module (its statistics are the report's)."""
    spec = importlib.util.spec_from_file_location(
        "compare_crops", Path(__file__).resolve().with_name("compare_crops.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("compare_crops", module)
    spec.loader.exec_module(module)
    return module


compare = _load_compare_crops()


def parse_grid(text: str) -> tuple[str, Path]:
    """``LABEL=PATH`` of one grid; the file must exist."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not LABEL=PATH (e.g. "
                                         "'SimCLR, small=runs/cc2/results.json')")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path!r} does not exist; run compare_crops.py "
                                         "first (it writes RUNS/<report stem>.json)")
    return label, Path(path)


def grid_rows(label: str, cells: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The table rows of one grid: one per (method, arm other than rcrop)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["method"], cell["mode"]), []).append(cell)
    rows = []
    for (method, mode), group in groups.items():
        baseline = groups.get((method, compare.BASELINE), [])
        if mode == compare.BASELINE or not baseline:
            continue
        deltas = compare.paired_differences(group, baseline)
        localizer = group[0].get("localizer")
        arm = f"{mode} `{localizer}`" if mode in compare.MODEL_BOX_MODES and localizer else mode
        rows.append([label, method, arm, str(len(deltas["linear"])),
                     _gain(deltas["linear"]), _gain(deltas["knn"]),
                     _share(group, groups.get((method, compare.ORACLE)), baseline, mode)])
    return rows


def _gain(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    return f"{mean:+.2f} {compare.format_interval(compare.t_interval(values))}"


def _share(group: Sequence[dict[str, Any]], oracle: Sequence[dict[str, Any]] | None,
           baseline: Sequence[dict[str, Any]], mode: str) -> str:
    if mode == compare.ORACLE or not oracle:
        return ""
    arm = compare.deltas_by_seed(group, baseline, "linear")
    gold = compare.deltas_by_seed(oracle, baseline, "linear")
    seeds = sorted(set(arm) & set(gold))
    result = compare.bootstrap_share([arm[s] for s in seeds], [gold[s] for s in seeds])
    return "n/a" if result is None else f"{result[0]:.2f} [{result[1]:.2f}, {result[2]:.2f}]"


def baseline_rows(label: str, cells: Sequence[dict[str, Any]]) -> list[str]:
    """``label | method | rcrop linear ± std | rcrop kNN ± std | n`` per method."""
    rows = []
    for method in dict.fromkeys(c["method"] for c in cells):
        rcrop = [c for c in cells if c["method"] == method and c["mode"] == compare.BASELINE]
        if rcrop:
            rows.append(f"| {label} | {method} | "
                        f"{compare.mean_std([c['linear'] for c in rcrop])} | "
                        f"{compare.mean_std([c['knn'] for c in rcrop])} | {len(rcrop)} |")
    return rows


def evidence_table(grids: Sequence[tuple[str, Path]]) -> str:
    """The Markdown tables (gains, then the rcrop baselines) of ``grids``."""
    lines = ["| grid | method | arm | seeds | Δ linear [95% CI] | Δ kNN [95% CI] | "
             "share of oracle's linear gain [95% CI] |", "|---|---|---|---|---|---|---|"]
    baselines = ["| grid | method | rcrop linear | rcrop kNN | seeds |", "|---|---|---|---|---|"]
    seen: set[tuple[str, ...]] = set()
    for label, path in grids:
        cells = json.loads(path.read_text())["cells"]
        for row in grid_rows(label, cells):
            if tuple(row[1:]) not in seen:  # an arm two grids share is listed once
                seen.add(tuple(row[1:]))
                lines.append("| " + " | ".join(row) + " |")
        for row in baseline_rows(label, cells):
            if row.split(" | ", 1)[1] not in seen:
                seen.add(row.split(" | ", 1)[1])
                baselines.append(row)
    return "\n".join([*lines, "", *baselines]) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", nargs="+", type=parse_grid, metavar="LABEL=PATH",
                        help="a grid's label and its compare_crops results JSON")
    table = evidence_table(parser.parse_args(argv).grids)
    print(table, end="")
    return table


if __name__ == "__main__":
    main()
