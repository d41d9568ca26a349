"""The grid of a comparison: every (method, arm, seed) cell, reused when already stored,
else computed ``jobs`` at a time, each in its own process, spread over the GPUs."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import torch

from .arms import RANDOM_INIT
from .cells import CellStopped, cell_folder, cell_signature, compute_cell, finished_cell
from .config import CompareConfig
from .scoring import Scoring

__all__ = ["TASK_FILE", "Task", "cell_devices", "grid_tasks", "run_grid"]

#: What a cell's process is given: the config, the scoring and its (method, arm, seed).
TASK_FILE = "cell-task.json"
#: The exit code of a cell process whose training a signal stopped.
STOPPED_EXIT = 3

Task = tuple[str, str, int]


def grid_tasks(config: CompareConfig, modes: Sequence[str]) -> list[Task]:
    """The random init of every seed, then method x arm x seed, in report order."""
    tasks: list[Task] = [("none", RANDOM_INIT, seed) for seed in config.seeds]
    return tasks + [(method, mode, seed) for method in config.methods for mode in modes
                    for seed in config.seeds]


def cell_devices(jobs: int) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` of each of ``jobs`` cell slots: the GPUs in turn, so
    several small cells share a GPU when ``jobs`` exceeds their number (None: no GPU, the
    cells keep the environment's devices)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = visible.split(",")[:count] if visible else [str(i) for i in range(count)]
    return [names[slot % len(names)] if names else None for slot in range(jobs)]


def _log_cell(task: Task, cell: dict[str, Any]) -> None:
    extra = f" train {cell['train_wall_s']:.0f}s" if "train_wall_s" in cell else ""
    print(f"[{' '.join(map(str, task))}] kNN {cell['knn']:.2f} linear {cell['linear']:.2f}"
          f"{extra}", flush=True)


def _child_runner(config: CompareConfig, scoring: Scoring
                  ) -> Callable[[Task, str | None], dict[str, Any]]:
    """A function that runs one cell in a process of its own on a device slot."""

    def child(task: Task, device: str | None) -> dict[str, Any]:
        method, mode, seed = task
        folder = cell_folder(config, method, mode, seed)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TASK_FILE).write_text(json.dumps(
            {"config": config.to_dict(), "scoring": asdict(scoring), "task": list(task)}))
        env = {**os.environ, "OMP_NUM_THREADS": str(config.threads)}
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        command = [sys.executable, "-m", "timm_ccrop.studies.worker", str(folder / TASK_FILE)]
        with open(folder / "log.txt", "w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  env=env).returncode
        if code == STOPPED_EXIT:
            raise CellStopped(folder, "a signal (see log.txt)")
        cell = finished_cell(folder, cell_signature(config, mode, scoring), mode)
        if code != 0 or cell is None:
            raise RuntimeError(f"cell {task} failed (exit code {code}); see {folder / 'log.txt'}")
        return cell

    return child


def _run_in_processes(config: CompareConfig, scoring: Scoring, todo: list[Task]
                      ) -> dict[Task, dict[str, Any]]:
    """``todo`` cells, ``config.jobs`` at a time; the first failure (a stopped cell
    included) cancels the cells not yet started and ends the grid."""
    slots: queue.Queue[str | None] = queue.Queue()
    for device in cell_devices(config.jobs):
        slots.put(device)
    child = _child_runner(config, scoring)

    def on_a_slot(task: Task) -> dict[str, Any]:
        device = slots.get()
        try:
            return child(task, device)
        finally:
            slots.put(device)

    results = {}
    pool = ThreadPoolExecutor(config.jobs)
    try:
        futures = {task: pool.submit(on_a_slot, task) for task in todo}
        for task, future in futures.items():
            results[task] = future.result()
            _log_cell(task, results[task])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def run_grid(config: CompareConfig, tasks: list[Task], scoring: Scoring
             ) -> list[dict[str, Any]]:
    """Every task's cell, in ``tasks`` order: reused when stored with the same settings
    (a rerun of an interrupted grid computes only what is missing), else computed in this
    process (``jobs`` 1) or ``jobs`` at a time in processes of their own (one torch thread
    each by default: on a small CPU two one-thread trainings get through more images per
    second than one two-thread training)."""
    results: dict[Task, dict[str, Any]] = {}
    todo = []
    for task in tasks:
        cell = finished_cell(cell_folder(config, *task), cell_signature(config, task[1], scoring),
                             task[1])
        if cell is None:
            todo.append(task)
        else:
            results[task] = dict(cell, reused=True)
            print(f"[{' '.join(map(str, task))}] reused {cell['run']}", flush=True)
    if config.jobs == 1:
        for task in todo:
            results[task] = compute_cell(config, *task, scoring)
            _log_cell(task, results[task])
    else:
        results.update(_run_in_processes(config, scoring, todo))
    return [results[task] for task in tasks]
