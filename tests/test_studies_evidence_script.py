"""``scripts/evidence_table.py`` and ``scripts/compare_crops.py``: thin wrappers over
``timm_ccrop.studies`` (the table itself: test_studies_report.py)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from .helpers import load_script

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_evidence_script_prints_the_table(tmp_path, capsys):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"cells": [
        {"method": "simclr", "mode": mode, "seed": s, "knn": 50.0 + s + g, "linear": 60.0 + g}
        for mode, g in (("rcrop", 0.0), ("ccrop", 1.0)) for s in range(2)]}))
    table = load_script("evidence_table").main([f"A={path}"])
    assert capsys.readouterr().out == table and "| A | simclr | ccrop | 2 | +1.00 " in table
    for argv, named in ((["no-equals-sign"], "LABEL=PATH"),
                        ([f"x={tmp_path / 'missing.json'}"], "missing.json")):
        with pytest.raises(SystemExit):
            load_script("evidence_table").main(argv)
        assert named in capsys.readouterr().err


def test_compare_script_is_the_command(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["compare_crops.py", "--jobs", "0"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(SCRIPTS / "compare_crops.py"), run_name="__main__")
    assert stopped.value.code == 2
    assert "timm-ccrop compare: error: jobs must be >= 1" in capsys.readouterr().err
