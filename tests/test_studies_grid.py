"""``timm_ccrop.studies`` grid: cells in processes of their own on the generated benchmark
(the oracle arm, box IoU, false-positive pairs), reuse on a rerun, and a stopped cell that
ends the grid without being recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from timm_ccrop.studies import CellStopped, CompareConfig, run_compare
from timm_ccrop.studies import cells as cells_module
from timm_ccrop.studies.arms import RANDOM_INIT
from timm_ccrop.studies.grid import TASK_FILE, cell_devices, grid_tasks, run_grid
from timm_ccrop.studies.scoring import Scoring
from timm_ccrop.studies.worker import main as worker_main
from timm_ccrop.train import TrainResult

DATA = "synthetic:num_samples=128,object_scale=0.2:0.35"


def test_tasks_pair_every_arm_with_every_seed():
    config = CompareConfig(seeds=(3, 4), methods=("simclr", "byol"))
    tasks = grid_tasks(config, ("rcrop", "ccrop"))
    assert tasks[:2] == [("none", RANDOM_INIT, 3), ("none", RANDOM_INIT, 4)]
    assert len(tasks) == 2 + 2 * 2 * 2 and ("byol", "ccrop", 4) in tasks


def test_cell_slots_without_a_gpu_keep_the_environment():
    assert cell_devices(3) == [None, None, None]  # this machine has no GPU


def _stopped_train(config, overwrite=False):
    return TrainResult(Path(config.output), 1, None, None,
                       Path(config.output) / "metrics.jsonl", "signal", "SIGTERM")


def test_a_stopped_cell_ends_the_grid_and_is_never_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(cells_module, "train", _stopped_train)
    config = CompareConfig(epochs=2, seeds=(0,), modes=("rcrop",), jobs=1,
                           runs=str(tmp_path / "runs"), data=DATA)
    with pytest.raises(CellStopped, match="stopped by SIGTERM"):
        run_grid(config, [("simclr", "rcrop", 0), ("simclr", "ccrop", 0)], Scoring("test"))
    assert not list((tmp_path / "runs").glob("*/cell.json"))
    # a cell's own process reports the stop by its exit code, and records nothing either
    folder = tmp_path / "runs" / "simclr-rcrop-seed0"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TASK_FILE).write_text(json.dumps({
        "config": config.to_dict(), "scoring": {"split": "test"},
        "task": ["simclr", "rcrop", 0]}))
    assert worker_main([str(folder / TASK_FILE)]) == 3
    assert not (folder / "cell.json").exists()


@pytest.mark.slow
def test_cells_in_processes_with_the_oracle(tmp_path):
    arms = ("rcrop", "ccrop-paper", "ccrop", "ccrop-gt")
    config = CompareConfig(epochs=1, data=DATA, batch_size=64, seeds=(0,), modes=arms,
                           localizer="component", jobs=2, runs=str(tmp_path / "runs"),
                           out=str(tmp_path / "results.md"), smoke_label=True)
    result = run_compare(config)
    cells = result.grid.cells
    assert {c["mode"] for c in cells} == set(arms) and result.grid.has_boxes
    assert all(0 <= c["fp_rate"] <= 1 for c in cells)
    assert {c["mode"]: c["localizer"] for c in cells} == {
        "rcrop": None, "ccrop-paper": "paper", "ccrop": "component", "ccrop-gt": None}
    assert (tmp_path / "runs" / "simclr-rcrop-seed0" / "log.txt").exists()
    text = result.report.read_text()
    assert "| simclr | ccrop | `component` |" in text and "Each arm's boxes" in text
    assert "held-out `test` split" in text and "has no ground-truth boxes" not in text
    assert json.loads(result.json.read_text())["has_boxes"] is True
    # another localizer option trains its ccrop cells anew and reuses all the others
    again = run_compare(CompareConfig(**{**config.to_dict(), "localizer_kwargs": {"rule": "max"},
                                         "jobs": 1}))
    assert "4 of 5 cells, random init included, reused" in again.report.read_text()
    assert (tmp_path / "runs" / "simclr-ccrop-component-rule-max-w0-m1-seed0" / "cell.json"
            ).exists()
