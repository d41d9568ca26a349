"""``scripts/evidence_table.py``: several compare_crops grids in one table."""

from __future__ import annotations

import json

import pytest

from .helpers import load_script


@pytest.fixture(scope="module")
def evidence():
    return load_script("evidence_table")


def _grid(tmp_path, name, gains):
    """A results JSON: rcrop at 50 + seed, each arm at rcrop + its per-seed gains."""
    cells = [{"method": "simclr", "mode": "rcrop", "seed": s, "knn": 50.0 + s,
              "linear": 60.0 + s} for s in range(3)]
    for mode, per_seed in gains.items():
        cells += [{"method": "simclr", "mode": mode, "seed": s, "knn": 50.0 + s + g,
                   "linear": 60.0 + s + g} for s, g in enumerate(per_seed)]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"cells": cells, "random_init": [], "data": "d"}))
    return path


def test_gains_intervals_and_shares(evidence, tmp_path, capsys):
    path = _grid(tmp_path, "a", {"ccrop": [2.0, 2.5, 3.0], "ccrop-gt": [4.0, 5.0, 6.0]})
    table = evidence.main([f"SimCLR, small={path}"])
    assert capsys.readouterr().out == table
    rows = {line.split(" | ")[2]: line for line in table.splitlines()
            if line.startswith("| SimCLR, small | simclr |")}
    assert set(rows) == {"ccrop", "ccrop-gt", "61.00 ± 1.00"}  # gains, then the baseline
    assert "| 3 | +2.50 [" in rows["ccrop"] and "| 0.50 [" in rows["ccrop"]
    assert "| +5.00 [" in rows["ccrop-gt"] and rows["ccrop-gt"].endswith("|  |")


def test_bad_grid_arguments_fail_early(evidence, tmp_path, capsys):
    for argv, named in ((["no-equals-sign"], "LABEL=PATH"),
                        ([f"x={tmp_path / 'missing.json'}"], "missing.json")):
        with pytest.raises(SystemExit):
            evidence.main(argv)
        assert named in capsys.readouterr().err


def test_an_arm_two_grids_share_is_listed_once(evidence, tmp_path):
    first = _grid(tmp_path, "a", {"ccrop": [2.0, 2.5, 3.0], "ccrop-gt": [4.0, 5.0, 6.0]})
    second = _grid(tmp_path, "b", {"ccrop-gt": [4.0, 5.0, 6.0]})
    table = evidence.main([f"A={first}", f"B={second}"])
    assert table.count("| ccrop-gt |") == 1 and table.count("| simclr | 61.00") == 1
