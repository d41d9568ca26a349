"""One cell of a comparison: a (method, arm, seed) pretraining run and its evaluation,
stored as ``cell.json`` in its run folder and reused by a rerun with the same settings."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..runs import RunFolder, read_metrics
from ..train import train
from ..utils.folders import atomic_write_text
from .arms import ARMS, BASELINE, RANDOM_INIT, arm_variant, describe_localizer, localizer_for
from .config import CompareConfig
from .scoring import Scoring, evaluate_backbone

__all__ = ["CELL_FILE", "IGNORED_BY_BASELINE", "CellStopped", "cell_folder",
           "cell_signature", "cell_train_config", "compute_cell", "finished_cell"]

CELL_FILE = "cell.json"
#: Settings a random-crop run never reads: its cells are reused across them.
IGNORED_BY_BASELINE = ("alpha", "box_warmup_epochs", "box_momentum")


class CellStopped(RuntimeError):
    """A stop signal ended a cell's training before its last epoch: the cell is neither
    evaluated nor recorded, and the grid ends (a rerun trains the cell again)."""

    def __init__(self, folder: Path, signal: str | None) -> None:
        super().__init__(f"cell {folder.name} stopped by {signal or 'a stop request'} before "
                         "its last epoch; it is not recorded (rerun the grid to train it)")
        self.signal = signal


def cell_signature(config: CompareConfig, mode: str, scoring: Scoring) -> dict[str, Any]:
    """What a finished cell of ``mode`` must match to be reused by a rerun (resume).

    The localizer (name and options) belongs to the signature of the model-box arms only;
    the folder of a variant (:func:`arm_variant`) keeps its cells apart.
    """
    warmup, momentum = config.arm_box_schedule(mode)
    signature: dict[str, Any] = {
        "data": config.data, "model": config.model, "epochs": config.epochs,
        "batch_size": config.batch_size, "lr": config.lr, "alpha": config.alpha,
        **({"lr_warmup_epochs": config.lr_warmup_epochs} if config.lr_warmup_epochs else {}),
        **({"box_warmup_epochs": warmup} if warmup is not None else {}),
        "augment_on": config.augment_on, "image_size": config.image_size,
        **scoring.signature()}
    localizer = localizer_for(mode, config.resolved_localizer())
    if momentum:
        signature["box_momentum"] = momentum
    if localizer is not None:
        # through JSON, so it compares equal to what cell.json gives back
        signature["localizer"] = json.loads(json.dumps(
            {"name": localizer[0], "kwargs": localizer[1]}))
    return signature


def cell_folder(config: CompareConfig, method: str, mode: str, seed: int) -> Path:
    """The run folder of a cell under ``config.runs``."""
    root = Path(config.runs)
    if mode == RANDOM_INIT:
        return root / f"{RANDOM_INIT}-seed{seed}"
    variant = arm_variant(mode, config.resolved_localizer(), config.alpha,
                          *config.arm_box_schedule(mode))
    return root / f"{method}-{mode}{variant}-seed{seed}"


def finished_cell(folder: Path, signature: dict[str, Any], mode: str) -> dict[str, Any] | None:
    """The stored result of a cell run with the same settings, else None."""
    try:
        cell = json.loads((folder / CELL_FILE).read_text())
    except (OSError, ValueError):
        return None
    ignored = IGNORED_BY_BASELINE if mode == BASELINE else ()

    def relevant(settings: Any) -> Any:
        if not isinstance(settings, dict):
            return settings
        return {key: value for key, value in settings.items() if key not in ignored}

    return cell if relevant(cell.get("signature")) == relevant(signature) else None


def cell_train_config(config: CompareConfig, method: str, mode: str, seed: int) -> TrainConfig:
    """The training config of one cell: the grid's settings with the arm's crop, boxes,
    localizer and box schedule (:meth:`CompareConfig.arm_box_schedule`)."""
    arm = ARMS[mode]
    localizer = localizer_for(mode, config.resolved_localizer())
    extra = {} if localizer is None else {"localizer": localizer[0],
                                          "localizer_kwargs": dict(localizer[1])}
    warmup, momentum = config.arm_box_schedule(mode)
    return TrainConfig(
        data=config.data, model=config.model, method=method, crop=arm.crop,
        box_source=arm.box_source, alpha=config.alpha, epochs=config.epochs,
        batch_size=config.batch_size, lr=config.lr, lr_warmup_epochs=config.lr_warmup_epochs,
        box_warmup_epochs=warmup, box_momentum=momentum, augment_on=config.augment_on,
        knn_every=0,
        pictures=0, progress=False, output=str(cell_folder(config, method, mode, seed)),
        seed=seed, num_workers=config.workers, image_size=config.image_size,
        snapshots="passes",  # the weights at every box pass, for localization studies
        **extra,
    )


def _trained_cell(config: CompareConfig, method: str, mode: str, seed: int,
                  scoring: Scoring) -> dict[str, Any]:
    """Pretrain one cell, then evaluate its exported backbone."""
    train_config = cell_train_config(config, method, mode, seed)
    folder = Path(train_config.output)
    started = time.perf_counter()
    result = train(train_config, overwrite=True)  # a cell reruns only when its result is stale
    if result.stopped:  # a stop signal: never evaluate or record a half-trained cell
        raise CellStopped(folder, result.signal or result.stopped)
    train_wall = time.perf_counter() - started
    metrics = read_metrics(result.metrics)
    accuracy = evaluate_backbone(str(folder), config.data, folder / "eval.json", seed,
                                 config.workers, scoring)
    return {
        "method": method, "mode": mode, "seed": seed, "run": str(folder), **accuracy,
        "train_wall_s": train_wall,
        "epoch_seconds": sum(m.get("epoch_seconds", 0.0) for m in metrics),
        "box_pass_seconds": sum(m.get("box_pass_seconds", 0.0) for m in metrics),
        "box_passes": [
            {"epoch": m["epoch"], "box_mean_iou": m["box_mean_iou"],
             "whole_image_mean_iou": m.get("whole_image_mean_iou")}
            for m in [*_first_pass(folder), *metrics] if "box_mean_iou" in m
        ],
    }


def compute_cell(config: CompareConfig, method: str, mode: str, seed: int,
                 scoring: Scoring) -> dict[str, Any]:
    """Train and evaluate one cell (or evaluate the random init), and store cell.json.

    Raises :class:`CellStopped` (nothing stored) when a signal stops the training.
    """
    folder = cell_folder(config, method, mode, seed)
    if mode == RANDOM_INIT:
        cell = {"method": method, "mode": mode, "seed": seed, "run": str(folder),
                **evaluate_backbone(config.model, config.data, folder / "eval.json", seed,
                                    config.workers, scoring)}
    else:
        cell = _trained_cell(config, method, mode, seed, scoring)
    cell["localizer"] = (None if mode == RANDOM_INIT
                         else describe_localizer(mode, config.resolved_localizer()))
    cell["signature"] = cell_signature(config, mode, scoring)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / CELL_FILE, json.dumps(cell, indent=1))
    return cell


def _first_pass(folder: Path) -> list[dict[str, Any]]:
    """The box pass before epoch 1 (``box_warmup_epochs=0``), which the run records in its
    baseline (there is no metrics row for epoch 0); [] where there was none."""
    run = RunFolder(folder)
    baseline = run.read_json(run.baseline_path) or {}
    first = baseline.get("box_pass")
    return [first] if isinstance(first, dict) else []
