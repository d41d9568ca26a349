"""One table of several ``timm-ccrop compare`` grids: paired gains over rcrop and oracle
shares (``timm_ccrop.studies.evidence_table``)::

    python scripts/evidence_table.py "SimCLR, small=runs/cc2/results.json" \\
        "BYOL, small=runs/cc2/results-byol.json"

Each grid is the results JSON the command writes next to its cells (``RUNS/<report
stem>.json``). The README's "Does it help?" table and docs/evidence.md are this output.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from timm_ccrop.studies import evidence_table


def parse_grid(text: str) -> tuple[str, Path]:
    """``LABEL=PATH`` of one grid; the file must exist."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not LABEL=PATH (e.g. "
                                         "'SimCLR, small=runs/cc2/results.json')")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path!r} does not exist; run timm-ccrop compare "
                                         "first (it writes RUNS/<report stem>.json)")
    return label, Path(path)


def main(argv: Sequence[str] | None = None) -> str:
    """Print (and return) the table of the grids named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", nargs="+", type=parse_grid, metavar="LABEL=PATH",
                        help="a grid's label and its results JSON")
    table = evidence_table(parser.parse_args(argv).grids)
    print(table, end="")
    return table


if __name__ == "__main__":
    main()
