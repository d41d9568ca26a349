"""One cell in a process of its own: ``python -m timm_ccrop.studies.worker TASK.json``
(what :func:`timm_ccrop.studies.grid.run_grid` starts for ``jobs`` > 1)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .cells import CellStopped, compute_cell
from .config import CompareConfig
from .grid import STOPPED_EXIT
from .scoring import Scoring

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Compute the cell that ``TASK.json`` names; the exit code (``STOPPED_EXIT`` when a
    signal stopped its training: nothing is recorded)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    task = json.loads(Path(argv[0]).read_text())
    config = CompareConfig.from_dict(task["config"])
    torch.set_num_threads(config.threads)
    method, mode, seed = task["task"]
    try:
        compute_cell(config, method, mode, int(seed), Scoring(**task["scoring"]))
    except CellStopped as stopped:
        print(stopped, file=sys.stderr)
        return STOPPED_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
