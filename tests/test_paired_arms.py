"""scripts/paired_arms.py: two arms of two grids, paired by seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_script


def grid(path: Path, mode: str, linear: list[float]) -> str:
    cells = [{"method": "simclr", "mode": mode, "seed": seed, "knn": 50.0, "linear": value}
             for seed, value in enumerate(linear)]
    path.write_text(json.dumps({"cells": cells}))
    return f"{path}:{mode}"


def test_differences_are_paired_by_seed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = load_script("paired_arms")
    new = grid(tmp_path / "new.json", "ccrop", [60.0, 62.0, 64.0])
    old = grid(tmp_path / "old.json", "ccrop", [59.0, 60.0, 61.0, 99.0])  # seed 3: unpaired
    assert script.main([new, old]) == 0
    out = capsys.readouterr().out
    assert "3 paired seeds [0, 1, 2]" in out
    assert "| linear | +2.00 ± 1.00 |" in out and "| knn | +0.00 ± 0.00 |" in out
    with pytest.raises(SystemExit, match="no cells of mode 'rcrop'"):
        script.main([new, f"{tmp_path / 'old.json'}:rcrop"])
