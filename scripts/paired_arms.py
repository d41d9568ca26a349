#!/usr/bin/env python
"""Two arms of two ``timm-ccrop compare`` grids, paired by seed: is one better?

The comparison report pairs every arm with rcrop; this pairs any two arms, also from two
grids that share their runs folder's cells (same data, seeds and data order), e.g. a new
box schedule against the default one::

    python scripts/paired_arms.py runs/cc3/results-new.json:ccrop \\
        runs/cc3/results-builtin-chosen.json:ccrop

Prints, for kNN and the linear probe, the mean of ``first - second`` over the seeds both
have, its std and its Student-t 95% interval, one Markdown row each.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from timm_ccrop.studies.stats import format_interval, paired_differences, t_interval


def arm_cells(text: str) -> list[dict[str, Any]]:
    """The cells of ``RESULTS.json:MODE`` (one method per grid is assumed; say which with
    ``RESULTS.json:MODE:METHOD`` otherwise)."""
    path, _, rest = text.partition(":")
    mode, _, method = rest.partition(":")
    if not mode or not Path(path).is_file():
        raise SystemExit(f"{text!r}: give RESULTS.json:MODE of a finished compare grid")
    cells = [c for c in json.loads(Path(path).read_text())["cells"]
             if c["mode"] == mode and (not method or c["method"] == method)]
    if not cells:
        raise SystemExit(f"{text!r}: no cells of mode {mode!r} in {path}")
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="RESULTS.json:MODE[:METHOD]")
    parser.add_argument("second", help="RESULTS.json:MODE[:METHOD], the reference")
    args = parser.parse_args(argv)
    first, second = arm_cells(args.first), arm_cells(args.second)
    differences = paired_differences(first, second)
    seeds = sorted({c["seed"] for c in first} & {c["seed"] for c in second})
    print(f"{args.first} minus {args.second}, {len(seeds)} paired seeds {seeds}")
    print("| metric | mean Δ ± std | 95% t interval |\n|---|---|---|")
    for key, values in differences.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {key} | {statistics.fmean(values):+.2f} ± {spread:.2f} | "
              f"{format_interval(t_interval(values))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
