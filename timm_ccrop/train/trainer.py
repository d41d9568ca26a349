"""The single Accelerate training loop for every Siamese method and crop mode.

One CPU, one GPU, or many GPUs and nodes: the same code under ``accelerate launch``.
Per epoch: set the crop mode (random crop during the warm-up, then ContrastiveCrop with
the current boxes), train, recompute the boxes when the schedule says so (the model's
own feature maps, :mod:`timm_ccrop.localize`), run the kNN monitor, log, checkpoint.

Reproducibility: the data order depends only on ``(seed, epoch)`` and every sample's
augmentation on ``(seed, epoch, index)``, so a run resumed from an epoch checkpoint ends
with the same weights and boxes as an uninterrupted one (on a CPU; GPUs add their own
non-determinism).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, set_seed

from ..config import TrainConfig
from ..data import sample_seed, seed_everything
from ..hub import export_backbone
from ..localize import localize_dataset
from ..localize.pictures import render_box_picture
from ..methods import SiameseMethod
from ..runs import RunFolder, read_checkpoint, write_boxes_csv
from .epoch import EpochResult, device_augmenter, stop_signals, train_one_epoch
from .monitor import knn_datasets, knn_monitor
from .setup import RunData, build_data, build_method_for, build_optimizer, build_scheduler

__all__ = ["TrainResult", "TrainingStopped", "train"]

_LOG = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where a finished (or stopped) run put its outputs."""

    output: Path
    epochs_done: int
    checkpoint: Path | None
    export: Path | None
    metrics: Path
    stopped: str | None = None  # 'signal' or 'nan' when the run ended early


class TrainingStopped(RuntimeError):
    """Raised when a NaN/inf loss stops a run (after the last good checkpoint is kept)."""


@dataclass
class _Run:
    """Everything one training run holds while it trains."""

    config: TrainConfig
    accelerator: Accelerator
    folder: RunFolder
    data: RunData
    method: Any  # the method as prepared by Accelerate (maybe DDP-wrapped, compiled)
    inner: SiameseMethod  # the same method unwrapped
    optimizer: torch.optim.Optimizer
    scheduler: Any
    knn_data: tuple | None

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


def train(config: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Pretrain ``config.model`` with ``config.method``; see :class:`TrainConfig`.

    Args:
        config: the run's settings (validated first).
        resume: a checkpoint file or a run folder (newest valid checkpoint), or None.
    """
    config.validate()
    accelerator = _accelerator(config)
    run = _build_run(config, accelerator)
    start_epoch = _resume(run, resume) if resume is not None else 1
    _start_logging(run)
    epoch, last_checkpoint, stopped = _train_epochs(run, start_epoch)
    return _finish(run, epoch, last_checkpoint, stopped)


def _accelerator(config: TrainConfig) -> Accelerator:
    # AcceleratorState is a process-wide singleton: a second run in the same process (a
    # notebook, a sweep) with other settings needs a fresh one. The process group stays.
    AcceleratorState._reset_state()
    return Accelerator(
        mixed_precision=config.mixed_precision,
        log_with=config.log_with,
        project_dir=config.output,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=False),
    )


def _build_run(config: TrainConfig, accelerator: Accelerator) -> _Run:
    folder = RunFolder(config.output)
    if accelerator.is_main_process:
        folder.create()
    set_seed(config.seed)
    data = build_data(config, accelerator)
    method = build_method_for(config, accelerator, data)
    optimizer = build_optimizer(config, method)
    scheduler = build_scheduler(config, optimizer, data.steps_per_epoch)
    method, optimizer, data.loader = accelerator.prepare(method, optimizer, data.loader)
    if config.compile:
        method = torch.compile(method)
    inner = accelerator.unwrap_model(method)
    knn_data = knn_datasets(config) if config.knn_every else None
    return _Run(config, accelerator, folder, data, method, inner, optimizer, scheduler,
                knn_data)


def _resume(run: _Run, resume: str | Path) -> int:
    """Load a checkpoint into the run; returns the first epoch still to train."""
    state, source = read_checkpoint(Path(resume))
    run.inner.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    scaler = run.accelerator.scaler
    if state.get("scaler") is not None and scaler is not None:
        scaler.load_state_dict(state["scaler"])
    run.data.boxes.load_state_dict(state["boxes"])
    if run.is_main:
        print(f"resumed from {source} (epoch {state['epoch']} done)")
    return int(state["epoch"]) + 1


def _start_logging(run: _Run) -> None:
    if not run.is_main:
        return
    if run.config.log_with:
        flat = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                for k, v in run.config.to_dict().items() if v is not None}
        run.accelerator.init_trackers("timm-ccrop", config=flat)
    run.folder.write_config(run.config.to_dict())


def _train_epochs(run: _Run, start_epoch: int) -> tuple[int, Path | None, str | None]:
    """The epoch loop; returns the last epoch entered, the last checkpoint and why it
    stopped early (None when it ran to the end)."""
    last_checkpoint: Path | None = None
    epoch = start_epoch - 1
    with stop_signals() as stop:
        for epoch in range(start_epoch, run.config.epochs + 1):
            started = time.perf_counter()
            result = _train_epoch(run, epoch, stop)
            epoch_seconds = time.perf_counter() - started
            if result.stopped == "nan":
                if run.is_main:
                    print(f"stopping: non-finite loss in epoch {epoch}; the last good state "
                          f"is {last_checkpoint or 'not saved (no checkpoint yet)'}")
                return epoch, last_checkpoint, "nan"
            _finish_epoch(run, epoch, result, epoch_seconds)
            if result.stopped or epoch % run.config.save_every == 0 \
                    or epoch == run.config.epochs:
                last_checkpoint = _save_checkpoint(run, epoch,
                                                   partial=result.stopped is not None)
            if result.stopped:
                if run.is_main:
                    print(f"stopped by {stop['signal']} after saving {last_checkpoint}")
                return epoch, last_checkpoint, result.stopped
    return epoch, last_checkpoint, None


def _train_epoch(run: _Run, epoch: int, stop: dict[str, str | None]) -> EpochResult:
    """Set this epoch's order, seeds and crop mode, then train it."""
    config, data, accelerator = run.config, run.data, run.accelerator
    # Accelerate's loader keeps its own epoch counter and hands it to the sampler at every
    # iteration; set it, or a resumed run would restart the order at 0.
    data.loader.set_epoch(epoch)
    data.sampler.set_epoch(epoch)
    data.train_set.set_epoch(epoch)
    seed_everything(sample_seed(config.seed, epoch, 2**40 + accelerator.process_index))
    data.boxes.set_active(config.uses_boxes_from(epoch))
    augment = None
    if data.device_views is not None:
        augment = device_augmenter(data.device_views, data.boxes, accelerator, config, epoch)
    return train_one_epoch(config, accelerator, run.method, run.optimizer, run.scheduler,
                           data.loader, epoch, data.steps_per_epoch, stop, augment)


def _finish_epoch(run: _Run, epoch: int, result: EpochResult, epoch_seconds: float) -> None:
    """Box pass and kNN monitor when due, then the epoch's metrics row."""
    config, data = run.config, run.data
    record: dict[str, Any] = {"epoch": epoch, **result.record(),
                              "epoch_seconds": epoch_seconds,
                              "uses_boxes": data.boxes.is_active}
    if result.stopped is None and config.box_update_due(epoch):
        record.update(_update_boxes(run, epoch))
    if result.stopped is None and run.knn_data and (
            epoch % config.knn_every == 0 or epoch == config.epochs):
        record.update(knn_monitor(config, run.accelerator, run.inner.backbone, run.knn_data,
                                  data.image_size))
    record["skipped_unreadable"] = int(data.train_set.skipped[0])
    record["processes"] = run.accelerator.num_processes
    record["images_per_second"] = (data.steps_per_epoch * config.batch_size
                                   / max(1e-9, result.train_seconds))
    if run.is_main:
        run.folder.append_metrics(record)
        if config.log_with:
            run.accelerator.log(record, step=epoch)


def _update_boxes(run: _Run, epoch: int) -> dict[str, Any]:
    """Recompute every training image's box with the model; write boxes.csv and the
    picture. Returns the pass's statistics for the metrics row."""
    config, data, accelerator = run.config, run.data, run.accelerator
    mean, std = config.normalisation()
    result = localize_dataset(
        run.inner.backbone, data.dataset, data.image_size, threshold=config.threshold,
        stage=config.stage, reduction=config.reduction,
        batch_size=max(1, config.batch_size // accelerator.num_processes),
        num_workers=config.num_workers, accelerator=accelerator, mean=mean, std=std,
        progress=config.progress,
    )
    data.boxes.update(result.boxes, valid=~result.degenerate)
    if run.is_main:
        sample_id = getattr(data.dataset, "sample_id", str)
        write_boxes_csv(run.folder.boxes_path, data.boxes.boxes, data.boxes.valid,
                        [sample_id(i) for i in range(len(data.dataset))])
        if config.pictures:
            _box_picture(run, run.folder.box_picture_path(epoch))
    return result.stats


def _box_picture(run: _Run, path: Path) -> None:
    """The localization picture after a box pass (heatmaps, boxes, views)."""
    config = run.config
    try:
        render_box_picture(run.inner.backbone, run.data.dataset, run.data.boxes, path,
                           image_size=run.data.image_size, count=config.pictures,
                           stage=config.stage, reduction=config.reduction,
                           alpha=config.resolved_alpha(), mean_std=config.normalisation())
    except Exception as err:  # a picture must never kill a training run
        _LOG.warning("could not draw the box picture %s: %s", path, err)


def _save_checkpoint(run: _Run, epoch: int, partial: bool) -> Path | None:
    run.accelerator.wait_for_everyone()
    if not run.is_main:
        return None
    # A mid-epoch (signal) checkpoint records the last *finished* epoch: resuming repeats
    # the interrupted epoch from its start order, with the weights trained so far.
    done = epoch - 1 if partial else epoch
    scaler = run.accelerator.scaler
    state = {
        "model": run.inner.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "boxes": run.data.boxes.state_dict(),
        "epoch": done,
        "partial": partial,
        "config": run.config.to_dict(),
    }
    return run.folder.save_checkpoint(state, done, run.config.keep_checkpoints)


def _finish(run: _Run, epoch: int, last_checkpoint: Path | None,
            stopped: str | None) -> TrainResult:
    """Export the backbone of a finished run, close the trackers, report the outputs."""
    export = None
    if stopped is None and epoch == run.config.epochs and run.is_main:
        export = export_backbone(run.inner.backbone, run.folder.backbone_dir, run.config)
    run.accelerator.wait_for_everyone()
    if run.config.log_with:
        run.accelerator.end_training()
    metrics = run.folder.metrics_path
    if run.is_main:
        print(f"run folder: {run.folder.path.resolve()}\n  metrics: {metrics.resolve()}\n"
              f"  checkpoint: {last_checkpoint and last_checkpoint.resolve()}\n"
              f"  backbone (timm format): {export and export.resolve()}")
    if stopped == "nan":
        raise TrainingStopped(
            f"non-finite loss in epoch {epoch}; last good checkpoint: {last_checkpoint}. "
            "Lower the lr, enable grad_clip or use mixed_precision='no'."
        )
    return TrainResult(run.folder.path, epoch if stopped is None else epoch - 1,
                       last_checkpoint, export, metrics, stopped)
