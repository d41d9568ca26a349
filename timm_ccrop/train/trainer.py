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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, set_seed
from timm.models import parse_model_name

from ..config import TrainConfig
from ..crop.boxes import blend_boxes, paired_iou
from ..data import sample_seed, seed_everything
from ..hub import export_backbone
from ..localize import Localizer, localize_dataset
from ..methods import SiameseMethod
from ..pictures.localization import render_box_picture
from ..runs import RunFolder, write_boxes_csv
from ..utils.distributed import ignored_precision
from .claim import claim_folder
from .epoch import EpochResult, device_augmenter, stop_signals, train_one_epoch
from .monitor import knn_datasets, knn_monitor
from .resume import check_resume_source, read_resumable
from .setup import RunData, build_data, build_method_for, build_optimizer, build_scheduler
from .summary import (
    epoch_line,
    format_summary,
    gt_boxes_of,
    measure_baseline,
    plot_run,
    summarize_run,
)

__all__ = ["TrainResult", "TrainingStopped", "train"]

_LOG = logging.getLogger(__name__)
#: The tracker project of every run (TensorBoard: the subfolder of the run folder).
TRACKER_PROJECT = "timm-ccrop"


@dataclass
class TrainResult:
    """Where a finished (or stopped) run put its outputs."""

    output: Path
    epochs_done: int
    checkpoint: Path | None
    export: Path | None
    metrics: Path
    stopped: str | None = None  # 'signal' or 'nan' when the run ended early
    signal: str | None = None  # the stop signal's name ('SIGTERM', 'SIGINT') if one came here


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
    localizer: Localizer | None  # None when the boxes do not come from the model
    last_checkpoint: Path | None = None  # the newest good checkpoint of this run
    baseline: dict[str, Any] | None = None  # random init etc., measured before epoch 1
    skipped_before: int = 0  # unreadable samples skipped before this epoch
    stop_signal: str | None = None  # the signal that stopped the run in this process

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


def train(config: TrainConfig, resume: str | Path | None = None,
          overwrite: bool = False) -> TrainResult:
    """Pretrain ``config.model`` with ``config.method``; see :class:`TrainConfig`.

    Args:
        config: the run's settings (validated first).
        resume: a checkpoint file or a run folder (its newest valid checkpoint), ``'auto'``
            (the output folder's newest checkpoint if it has one, else a fresh run), or None
            for a fresh run.
        overwrite: a fresh run may replace a previous run's files in ``config.output``
            (without it, a folder that holds a run is refused).

    Raises:
        ValueError / OSError: bad settings, a folder that holds another run or is in use,
            an unwritable output, a checkpoint that does not fit (one line each).
        TrainingStopped: the loss or the weights became non-finite.
    """
    config.validate()
    config = config.with_pinned_defaults()  # the run records the options it runs with
    check_resume_source(resume)  # before the folder is touched
    folder = RunFolder(config.output)
    if resume == "auto":
        # Nothing to resume: start fresh, replacing what a run that never reached its
        # first checkpoint left behind.
        resume, overwrite = (folder.path, overwrite) if folder.checkpoints() else (None, True)
    accelerator = _accelerator(config)
    with claim_folder(folder, accelerator, fresh=resume is None, overwrite=overwrite):
        checkpoint = read_resumable(config, Path(resume)) if resume is not None else None
        run = _build_run(config, accelerator, folder)
        start_epoch = _resume(run, *checkpoint) if checkpoint is not None else 1
        _start_logging(run)
        run.baseline = _baseline(run, fresh=checkpoint is None)
        epoch, last_checkpoint, stopped = _train_epochs(run, start_epoch)
        return _finish(run, epoch, last_checkpoint, stopped)


def _accelerator(config: TrainConfig) -> Accelerator:
    # AcceleratorState is a process-wide singleton: a second run in the same process (a
    # notebook, a sweep) with other settings needs a fresh one. The process group stays.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        log_with=config.log_with,
        project_dir=config.output,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=False),
    )
    if (problem := ignored_precision(accelerator)) and accelerator.is_main_process:
        _LOG.warning(problem)
    return accelerator


def _build_run(config: TrainConfig, accelerator: Accelerator, folder: RunFolder) -> _Run:
    set_seed(config.seed)
    data = build_data(config, accelerator)
    method = build_method_for(config, accelerator, data)
    source = parse_model_name(config.model)[0]
    if source is not None and accelerator.is_main_process:
        # said once the model is built: a user may expect pretraining to continue from
        # the named weights (docs/reliability.md: it does not)
        _LOG.warning("model %s: pretraining uses only its architecture (%s's config.json) "
                     "and starts from random weights; its weights are not loaded",
                     config.model, source)
    optimizer = build_optimizer(config, method)
    scheduler = build_scheduler(config, optimizer, data.steps_per_epoch)
    method, optimizer, data.loader = accelerator.prepare(method, optimizer, data.loader)
    # unwrapped before compiling: recent Accelerate keeps the compiled wrapper, whose
    # state_dict keys carry '_orig_mod.' (a checkpoint no uncompiled run could resume)
    inner = accelerator.unwrap_model(method)
    if config.compile:
        method = torch.compile(method)
    knn_data = knn_datasets(config) if config.knn_every else None
    return _Run(config, accelerator, folder, data, method, inner, optimizer, scheduler,
                knn_data, data.localizer)


def _model_boxes(config: TrainConfig) -> bool:
    return config.crop == "ccrop" and config.box_source == "model"


def _resume(run: _Run, state: dict[str, Any], source: Path) -> int:
    """Load a checkpoint into the run; returns the first epoch still to train.

    Metrics rows of later epochs (written before a crash) are dropped: the resumed run
    writes them again, once.
    """
    try:
        run.inner.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {source} does not fit this run's model: "
                         f"{_first_problem(err)}") from err
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    scaler = run.accelerator.scaler
    if state.get("scaler") is not None and scaler is not None:
        scaler.load_state_dict(state["scaler"])
    run.data.boxes.load_state_dict(state["boxes"])
    if run.data.harvest is not None:
        run.data.harvest.load_checkpoint_state(state.get("harvest"), source)
    done = int(state["epoch"])
    run.last_checkpoint = source
    if run.is_main:
        run.folder.truncate_metrics(done, last_row=state.get("metrics_row"))
        _LOG.info("resumed from %s (epoch %d done)", source, done)
    return done + 1


def _first_problem(err: RuntimeError) -> str:
    """The first lines of torch's state-dict error (it lists every key; keep a few)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = " ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else "")
    return text[:300] + (" ..." if len(text) > 300 else "")


def _start_logging(run: _Run) -> None:
    """Write the config; start the trackers with the run's name (its folder's name)."""
    if run.config.log_with:
        flat = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                for k, v in run.config.to_dict().items() if v is not None}
        name = run.folder.path.resolve().name
        # TensorBoard writes to RUN/timm-ccrop/ (the run is its folder); wandb and mlflow
        # get the folder's name as the run's name inside the project.
        run.accelerator.init_trackers(TRACKER_PROJECT, config=flat, init_kwargs={
            "wandb": {"name": name}, "mlflow": {"run_name": name}})
    if run.is_main:
        run.folder.write_config(run.config.to_dict())
        dropped = run.config.dropped_localizer_defaults()
        if dropped and run.config.uses_model_boxes():
            _LOG.warning("--localizer-kwargs replaces the default localizer's options: this "
                         "run leaves out %s; add them to the mapping to keep them",
                         ", ".join(f"{k}: {v}" for k, v in dropped.items()))


def _baseline(run: _Run, fresh: bool) -> dict[str, Any]:
    """What the run is compared with: measured before epoch 1 of a fresh run (the
    randomly initialised backbone's kNN, the whole-image box, random crops' pairs), read
    back from ``baseline.json`` on resume."""
    folder = run.folder
    if not fresh:
        return (folder.read_json(folder.baseline_path) or {}) if run.is_main else {}
    knn = None
    if run.knn_data:
        knn = knn_monitor(run.config, run.accelerator, run.inner.backbone, run.knn_data,
                          run.data.image_size)
    baseline = measure_baseline(run.config, run.data.dataset, knn)
    if run.config.box_update_due(0):  # box_warmup_epochs=0: the random-init network's boxes
        baseline["box_pass"] = {"epoch": 0, **_update_boxes(run, 0)}
        if _snapshot_due(run.config, 0) and run.is_main:
            folder.save_snapshot(run.inner.state_dict(), 0, run.config.to_dict())
    if run.is_main:
        folder.write_json(folder.baseline_path, baseline)
        if knn:
            _LOG.info("random init: kNN top-1 %.1f%%", knn["knn_top1"])
    return baseline


def _train_epochs(run: _Run, start_epoch: int) -> tuple[int, Path | None, str | None]:
    """The epoch loop; returns the last epoch entered, the last good checkpoint and why it
    stopped early (None when it ran to the end).

    An epoch's metrics row is written only once its checkpoint (when one is due) is on
    disk. A stop signal ends the run at a step boundary WITHOUT a checkpoint: the last
    finished epoch's checkpoint stays as it was, and a resume repeats the interrupted
    epoch exactly (as after SIGKILL).
    """
    epoch = start_epoch - 1
    with stop_signals() as stop:
        for epoch in range(start_epoch, run.config.epochs + 1):
            started = time.perf_counter()
            result = _train_epoch(run, epoch, stop)
            if result.stopped == "nan":
                _say(run, f"stopping: non-finite loss in epoch {epoch}; the last good "
                          f"checkpoint is {run.last_checkpoint or 'none (not saved yet)'}")
                return epoch, run.last_checkpoint, "nan"
            if result.stopped:
                last = run.last_checkpoint or "none (not saved yet)"
                _say(run, f"stopped by {stop['signal']} in epoch {epoch}; the last finished "
                          f"epoch's checkpoint is {last}; --resume auto repeats epoch {epoch} "
                          "from its start")
                run.stop_signal = stop["signal"]
                return epoch, run.last_checkpoint, result.stopped
            record = _epoch_record(run, epoch, result, time.perf_counter() - started)
            if epoch % run.config.save_every == 0 or epoch == run.config.epochs:
                if not _weights_finite(run):
                    _say(run, f"stopping: the weights became non-finite in epoch {epoch}; "
                              f"the last good checkpoint is {run.last_checkpoint or 'none'}")
                    return epoch, run.last_checkpoint, "nan"
                run.last_checkpoint = _save_checkpoint(run, epoch, record)
            if _snapshot_due(run.config, epoch) and run.is_main:
                run.folder.save_snapshot(run.inner.state_dict(), epoch, run.config.to_dict())
            _log_record(run, epoch, record)
    return epoch, run.last_checkpoint, None


def _snapshot_due(config: TrainConfig, epoch: int) -> bool:
    """``snapshots='epochs'``: every epoch; ``'passes'``: where the ccrop schedule has a box
    pass (also in rcrop runs, for comparison) and the last epoch."""
    if config.snapshots == "epochs":
        return True
    return config.snapshots == "passes" and (
        epoch == config.epochs or config.on_box_schedule(epoch))


def _say(run: _Run, message: str) -> None:
    if run.is_main:
        _LOG.warning(message)


def _weights_finite(run: _Run) -> bool:
    """Whether every weight and buffer is finite: only such a state is saved as good."""
    return all(bool(torch.isfinite(value).all()) for value in run.inner.state_dict().values()
               if value.is_floating_point())


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
    with data.harvest.capturing(run.inner.backbone) if data.harvest else nullcontext():
        return train_one_epoch(config, accelerator, run.method, run.optimizer, run.scheduler,
                               data.loader, epoch, data.steps_per_epoch, stop, augment,
                               data.harvest)


def _epoch_record(run: _Run, epoch: int, result: EpochResult,
                  epoch_seconds: float) -> dict[str, Any]:
    """Box pass and kNN monitor when due; returns the epoch's metrics row."""
    config, data = run.config, run.data
    record: dict[str, Any] = {"epoch": epoch, **result.record(),
                              "epoch_seconds": epoch_seconds,
                              "uses_boxes": data.boxes.is_active}
    if config.box_update_due(epoch) and not _boxes_final(run):
        record.update(_update_boxes(run, epoch))
    if run.knn_data and (epoch % config.knn_every == 0 or epoch == config.epochs):
        record.update(knn_monitor(config, run.accelerator, run.inner.backbone, run.knn_data,
                                  data.image_size))
    skipped = int(data.train_set.skipped[0])  # a running total over the whole run
    record["skipped_unreadable"] = skipped - run.skipped_before
    run.skipped_before = skipped
    record["processes"] = run.accelerator.num_processes
    record["images_per_second"] = (data.steps_per_epoch * config.batch_size
                                   / max(1e-9, result.train_seconds))
    return record


def _log_record(run: _Run, epoch: int, record: dict[str, Any]) -> None:
    """The metrics row, the persistent line of the epoch and the trackers' epoch values
    (at the global step of the epoch's end, the axis of the per-step values)."""
    if run.is_main:
        run.folder.append_metrics(record)
        _LOG.info(epoch_line(record, run.config.epochs))
    if run.config.log_with:
        numbers = {f"epoch/{key}": value for key, value in record.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        run.accelerator.log(numbers, step=epoch * run.data.steps_per_epoch)


def _update_boxes(run: _Run, epoch: int) -> dict[str, Any]:
    """Recompute every training image's box with the model; write boxes.csv and the
    picture. Returns the pass's statistics for the metrics row."""
    config, data, accelerator = run.config, run.data, run.accelerator
    mean, std = config.normalisation()
    run.localizer.attach(getattr(run.inner, "projector", None))
    # harvest reads its bank (the same on every process) and runs no pass
    result = localize_dataset(
        run.inner.backbone, data.dataset, data.image_size, localizer=run.localizer,
        batch_size=max(1, config.batch_size // accelerator.num_processes),
        num_workers=config.num_workers, accelerator=accelerator, mean=mean, std=std,
        progress=config.progress,
    )
    stats = dict(result.stats)
    momentum = config.resolved_box_momentum()
    if momentum > 0:
        boxes, valid = blend_boxes(data.boxes.boxes, data.boxes.valid, result.boxes,
                                   ~result.degenerate, momentum)
        data.boxes.update(boxes, valid=valid)
        stats.update(_momentum_stats(data.dataset, boxes, stats))
    else:  # the paper's update: a map without a box falls back to random crops
        data.boxes.update(result.boxes, valid=~result.degenerate)
    if run.is_main:
        sample_id = getattr(data.dataset, "sample_id", str)
        write_boxes_csv(run.folder.boxes_path, data.boxes.boxes, data.boxes.valid,
                        [sample_id(i) for i in range(len(data.dataset))])
        if config.pictures:
            _box_picture(run, run.folder.box_picture_path(epoch))
    return stats


def _boxes_final(run: _Run) -> bool:
    """Whether no pass can change the boxes any more: a momentum of 1 keeps every valid
    box, so once every image has one the passes are skipped (their cost saved)."""
    return run.config.resolved_box_momentum() == 1.0 and bool(run.data.boxes.valid.all())


def _momentum_stats(dataset: Any, boxes: torch.Tensor, stats: dict[str, float]
                    ) -> dict[str, float]:
    """With a box momentum the crops use the blended boxes: ``box_mean_iou`` is theirs, and
    ``box_pass_mean_iou`` that of the pass's own boxes (where the data has ground truth)."""
    gt = gt_boxes_of(dataset)
    if gt is None or "box_mean_iou" not in stats:
        return {}
    return {"box_pass_mean_iou": stats["box_mean_iou"],
            "box_mean_iou": float(paired_iou(boxes, gt.to(boxes)).mean())}


def _box_picture(run: _Run, path: Path) -> None:
    """The localization picture after a box pass (heatmaps, boxes, views)."""
    config = run.config
    try:
        render_box_picture(run.inner.backbone, run.data.dataset, run.data.boxes, path,
                           image_size=run.data.image_size, localizer=run.localizer,
                           count=config.pictures, alpha=config.resolved_alpha(),
                           mean_std=config.normalisation())
    except Exception as err:  # a picture must never kill a training run
        _LOG.warning("could not draw the box picture %s: %s", path, err)


def _summarize(run: _Run, export: Path | None) -> None:
    """Plot the run; after its last epoch also write and show its summary."""
    folder, config = run.folder, run.config
    rows = folder.read_metrics()
    title = f"{folder.path.name}: {config.method} + {config.crop}, {config.model}"
    try:
        plot_run(rows, run.baseline or {}, folder.plot_path, title)
    except Exception as err:  # a picture must never fail a finished run
        _LOG.warning("could not draw the metrics plot %s: %s", folder.plot_path, err)
    if export is None:
        _LOG.info("run folder: %s (metrics: %s)", folder.path, folder.metrics_path)
        return
    summary = summarize_run(config, folder, rows, run.baseline or {}, run.data.dataset,
                            run.data.boxes if _model_boxes(config) else None, export)
    folder.write_json(folder.summary_path, summary)
    _LOG.info(format_summary(summary))


def _save_checkpoint(run: _Run, epoch: int, record: dict[str, Any]) -> Path | None:
    """Save the state after finished epoch ``epoch`` (the main process writes it), with
    the epoch's metrics row: a crash between the checkpoint and the row loses no row."""
    run.accelerator.wait_for_everyone()
    if not run.is_main:
        return None
    scaler = run.accelerator.scaler
    state = {
        "model": run.inner.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "boxes": run.data.boxes.state_dict(),
        "harvest": run.data.harvest.bank.state_dict() if run.data.harvest else None,
        "epoch": epoch,
        "config": run.config.to_dict(),
        "metrics_row": record,
    }
    return run.folder.save_checkpoint(state, epoch, run.config.keep_checkpoints)


def _finish(run: _Run, epoch: int, last_checkpoint: Path | None,
            stopped: str | None) -> TrainResult:
    """Export the backbone of a finished run, close the trackers, report the outputs."""
    export = None
    if stopped is None and epoch == run.config.epochs and run.is_main:
        # safetensors refuses the non-contiguous weights of a channels_last model; the
        # run is over, so the model's memory format no longer matters
        backbone = run.inner.backbone.to(memory_format=torch.contiguous_format)
        export = export_backbone(backbone, run.folder.backbone_dir, run.config)
    run.accelerator.wait_for_everyone()
    if run.config.log_with:
        run.accelerator.end_training()
    metrics = run.folder.metrics_path
    if run.is_main:
        _summarize(run, export)
    if stopped == "nan":
        raise TrainingStopped(
            f"non-finite loss or weights in epoch {epoch}; last good checkpoint: "
            f"{last_checkpoint}. "
            "Lower the lr, enable grad_clip or use mixed_precision='no'."
        )
    return TrainResult(run.folder.path, epoch if stopped is None else epoch - 1,
                       last_checkpoint, export, metrics, stopped, run.stop_signal)
