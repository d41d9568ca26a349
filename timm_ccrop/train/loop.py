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
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import DataLoader
from torchvision import transforms as tv_transforms
from tqdm.auto import tqdm

from ..augment import BatchedViews
from ..backbones import create_backbone
from ..boxes import BoxTable
from ..config import TrainConfig
from ..data import (
    BoxedDataset,
    EpochPermutationSampler,
    build_dataset,
    default_eval_split,
    default_train_split,
    parse_data_spec,
    sample_seed,
    seed_everything,
)
from ..distributed import any_process
from ..evaluation import extract_features, knn_accuracy
from ..hub import export_backbone
from ..localize import eval_transform, localize_dataset, warn_if_too_coarse
from ..methods import build_method
from ..runs import RunFolder, read_checkpoint, write_boxes_csv
from ..views import multi_view_transform
from ..viz import render_box_picture

__all__ = ["TrainResult", "train"]

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


def _lr_lambda(config: TrainConfig, steps_per_epoch: int):
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.lr_warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine

    return factor


def _build_optimizer(config: TrainConfig, method: Any, lr: float) -> torch.optim.Optimizer:
    groups = method.parameter_groups(config.weight_decay, config.exclude_norm_bias)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=lr)


@contextmanager
def _stop_signals() -> Iterator[dict[str, str | None]]:
    """Turn SIGTERM/SIGINT into a flag the loop checks at step boundaries."""
    flag: dict[str, str | None] = {"signal": None}

    def handler(signum: int, frame: Any) -> None:
        flag["signal"] = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Outside the main thread signals stay with the caller.
        with suppress(ValueError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _box_picture(path: Path, model: Any, dataset: Any, config: TrainConfig, size: int,
                 boxes: BoxTable) -> None:
    """The localization picture after a box pass (heatmaps, boxes, views)."""
    try:
        render_box_picture(model, dataset, boxes, path, image_size=size,
                           count=config.pictures, stage=config.stage,
                           reduction=config.reduction, alpha=config.resolved_alpha(),
                           mean_std=config.normalisation())
    except Exception as err:  # a picture must never kill a training run
        _LOG.warning("could not draw the box picture %s: %s", path, err)


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def train(config: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Pretrain ``config.model`` with ``config.method``; see :class:`TrainConfig`.

    Args:
        config: the run's settings (validated first).
        resume: a checkpoint file or a run folder (newest valid checkpoint), or None.
    """
    config.validate()
    # AcceleratorState is a process-wide singleton: a second run in the same process (a
    # notebook, a sweep) with other settings needs a fresh one. The process group stays.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        log_with=config.log_with,
        project_dir=config.output,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=False),
    )
    output = Path(config.output)
    run = RunFolder(output)
    is_main = accelerator.is_main_process
    if is_main:
        output.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)

    # data
    spec = parse_data_spec(config.data)
    dataset = build_dataset(spec, split=default_train_split(spec))
    size = config.resolved_image_size()
    if config.batch_size % accelerator.num_processes:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by {accelerator.num_processes} "
            "processes; choose a multiple"
        )
    if config.batch_size > len(dataset):
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {len(dataset)} training samples "
            "(batches drop the last partial one): lower batch_size"
        )
    alpha = config.resolved_alpha()
    device_views = None
    if config.augment_on == "device":
        # Workers only decode and squash to a fixed size; crops and colour run batched on
        # the training device (timm_ccrop.augment). Boxes are normalised, so squashing
        # keeps them valid.
        views = tv_transforms.Compose([tv_transforms.Resize((size, size)),
                                       tv_transforms.PILToTensor()])
        device_views = BatchedViews.from_preset(config.views, config.crop, alpha, size=size)
        device_views = device_views.to(accelerator.device)
    else:
        views = multi_view_transform(config.views, crop_mode=config.crop, alpha=alpha, size=size)
    boxes = BoxTable(len(dataset))
    if config.crop == "ccrop" and config.box_source == "ground-truth":
        gt = getattr(dataset, "gt_boxes", None)
        if gt is None:
            raise ValueError(f"box_source='ground-truth' needs a dataset with boxes; "
                             f"{config.data} has none")
        boxes.update(gt)
    train_set = BoxedDataset(dataset, views, boxes, seed=config.seed)
    sampler = EpochPermutationSampler(len(train_set), seed=config.seed)
    loader = DataLoader(
        train_set, batch_size=config.batch_size // accelerator.num_processes, sampler=sampler,
        num_workers=config.num_workers, drop_last=True,
        persistent_workers=config.num_workers > 0, pin_memory=accelerator.device.type == "cuda",
    )

    # model
    backbone = create_backbone(config.model, **config.model_kwargs)
    if config.crop == "ccrop" and config.box_source == "model":
        warn_if_too_coarse(backbone, (size, size), config.stage)
    method = build_method(config.method, backbone, **config.method_kwargs)
    if hasattr(method, "warn_if_queue_exceeds"):
        method.warn_if_queue_exceeds(len(dataset))
    use_sync_bn = config.sync_bn if config.sync_bn is not None else getattr(
        method, "sync_batchnorm", False)
    if use_sync_bn and accelerator.device.type == "cuda" and accelerator.num_processes > 1:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    if config.channels_last:
        method = method.to(memory_format=torch.channels_last)
    lr = config.lr * (config.batch_size / config.lr_base_batch if config.lr_base_batch else 1.0)
    optimizer = _build_optimizer(config, method, lr)
    steps_per_epoch = len(train_set) // config.batch_size
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        [(lambda step: 1.0) if group.get("fixed_lr") else _lr_lambda(config, steps_per_epoch)
         for group in optimizer.param_groups],
    )
    method, optimizer, loader = accelerator.prepare(method, optimizer, loader)
    if config.compile:
        method = torch.compile(method)
    inner = accelerator.unwrap_model(method)

    start_epoch = 1
    if resume is not None:
        state, source = read_checkpoint(Path(resume))
        inner.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        boxes.load_state_dict(state["boxes"])
        start_epoch = int(state["epoch"]) + 1
        if is_main:
            print(f"resumed from {source} (epoch {state['epoch']} done)")

    knn_data = _knn_datasets(config, spec) if config.knn_every else None
    if config.log_with and is_main:
        accelerator.init_trackers("timm-ccrop", config=_flat_config(config))
    if is_main:
        run.write_config(config.to_dict())
    metrics_path = run.metrics_path
    last_checkpoint: Path | None = None
    stopped: str | None = None
    epoch = start_epoch - 1

    with _stop_signals() as stop:
        for epoch in range(start_epoch, config.epochs + 1):
            # Accelerate's loader keeps its own epoch counter and hands it to the sampler at
            # every iteration; set it, or a resumed run would restart the order at 0.
            loader.set_epoch(epoch)
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            seed_everything(sample_seed(config.seed, epoch, 2**40 + accelerator.process_index))
            boxes.set_active(config.uses_boxes_from(epoch))
            started = time.perf_counter()
            augment = None
            if device_views is not None:
                augment = _device_augmenter(device_views, boxes, accelerator, config, epoch)
            epoch_stats, stopped = _train_one_epoch(
                config, accelerator, method, inner, optimizer, scheduler, loader, epoch,
                steps_per_epoch, stop, augment,
            )
            if stopped == "nan":
                if is_main:
                    print(f"stopping: non-finite loss in epoch {epoch}; the last good state is "
                          f"{last_checkpoint or 'not saved (no checkpoint yet)'}")
                break
            record: dict[str, Any] = {"epoch": epoch, **epoch_stats,
                                      "epoch_seconds": time.perf_counter() - started,
                                      "uses_boxes": boxes.is_active}
            if stopped is None and config.box_update_due(epoch):
                result = localize_dataset(
                    inner.backbone, dataset, size, threshold=config.threshold,
                    stage=config.stage, reduction=config.reduction,
                    batch_size=max(1, config.batch_size // accelerator.num_processes),
                    num_workers=config.num_workers, accelerator=accelerator,
                    mean=config.normalisation()[0], std=config.normalisation()[1],
                    progress=config.progress,
                )
                boxes.update(result.boxes, valid=~result.degenerate)
                record.update(result.stats)
                if is_main:
                    sample_id = getattr(dataset, "sample_id", str)
                    write_boxes_csv(run.boxes_path, boxes.boxes, boxes.valid,
                                    [sample_id(i) for i in range(len(dataset))])
                    if config.pictures:
                        _box_picture(run.box_picture_path(epoch), inner.backbone,
                                     dataset, config, size, boxes)
            if stopped is None and knn_data and (
                epoch % config.knn_every == 0 or epoch == config.epochs
            ):
                record.update(_knn_monitor(config, accelerator, inner.backbone, knn_data, size))
            record["skipped_unreadable"] = int(train_set.skipped[0])
            record["processes"] = accelerator.num_processes
            record["images_per_second"] = (
                steps_per_epoch * config.batch_size / max(1e-9, epoch_stats["train_seconds"])
            )
            if is_main:
                run.append_metrics(record)
                if config.log_with:
                    accelerator.log(record, step=epoch)
            if stopped or epoch % config.save_every == 0 or epoch == config.epochs:
                last_checkpoint = _checkpoint(config, accelerator, inner, optimizer, scheduler,
                                              boxes, epoch, output, partial=stopped is not None)
            if stopped:
                if is_main:
                    print(f"stopped by {stop['signal']} after saving {last_checkpoint}")
                break

    export = None
    if stopped is None and epoch == config.epochs and is_main:
        export = export_backbone(inner.backbone, run.backbone_dir, config)
    accelerator.wait_for_everyone()
    if config.log_with:
        accelerator.end_training()
    if is_main:
        print(f"run folder: {output.resolve()}\n  metrics: {metrics_path.resolve()}\n"
              f"  checkpoint: {last_checkpoint and last_checkpoint.resolve()}\n"
              f"  backbone (timm format): {export and export.resolve()}")
    if stopped == "nan":
        raise TrainingStopped(
            f"non-finite loss in epoch {epoch}; last good checkpoint: {last_checkpoint}. "
            "Lower the lr, enable grad_clip or use mixed_precision='no'."
        )
    return TrainResult(output, epoch if stopped is None else epoch - 1, last_checkpoint,
                       export, metrics_path, stopped)


def _device_augmenter(views: Any, boxes: BoxTable, accelerator: Accelerator,
                      config: TrainConfig, epoch: int) -> Any:
    """Views of a uint8 batch made on the device, with the boxes of this epoch."""
    device = accelerator.device
    generator = torch.Generator(device).manual_seed(
        sample_seed(config.seed, epoch, 2**41 + accelerator.process_index))
    table_boxes = boxes.boxes.to(device)
    table_valid = (boxes.valid & boxes.is_active).to(device)

    def augment(images: torch.Tensor, indices: torch.Tensor) -> list[torch.Tensor]:
        indices = indices.to(device)
        return views(images.to(device, non_blocking=True), table_boxes[indices],
                     table_valid[indices], generator)

    return augment


def _train_one_epoch(
    config: TrainConfig, accelerator: Accelerator, method: Any, inner: Any,
    optimizer: torch.optim.Optimizer, scheduler: Any, loader: Any, epoch: int,
    steps_per_epoch: int, stop: dict[str, str | None], augment: Any = None,
) -> tuple[dict[str, float], str | None]:
    method.train()
    total_steps = config.epochs * steps_per_epoch
    loss_sum, steps = 0.0, 0
    started = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", leave=False,
               disable=not (config.progress and accelerator.is_main_process))
    for views, _, indices in bar:
        if augment is not None:
            views = augment(views, indices)
        if config.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with accelerator.autocast():
            outputs = method(views)
        loss = outputs["loss"]
        if any_process(accelerator, not bool(torch.isfinite(loss.detach()))):
            return {"loss": loss_sum / max(1, steps), "train_seconds": 0.0}, "nan"
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if config.grad_clip:
            accelerator.clip_grad_norm_(method.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        progress = ((epoch - 1) * steps_per_epoch + steps + 1) / max(1, total_steps)
        inner.on_after_optimizer_step(progress)
        loss_sum += float(loss.detach())
        steps += 1
        rate = steps * config.batch_size / max(1e-9, time.perf_counter() - started)
        bar.set_postfix(loss=f"{loss_sum / steps:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.4g}",
                        img_s=f"{rate:.1f}")
        if any_process(accelerator, stop["signal"] is not None):
            return ({"loss": loss_sum / steps, "lr": optimizer.param_groups[0]["lr"],
                     "train_seconds": time.perf_counter() - started}, "signal")
    return ({"loss": loss_sum / max(1, steps), "lr": optimizer.param_groups[0]["lr"],
             "train_seconds": time.perf_counter() - started}, None)


def _checkpoint(config: TrainConfig, accelerator: Accelerator, inner: Any, optimizer: Any,
                scheduler: Any, boxes: BoxTable, epoch: int, output: Path,
                partial: bool) -> Path | None:
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    # A mid-epoch (signal) checkpoint records the last *finished* epoch: resuming repeats
    # the interrupted epoch from its start order, with the weights trained so far.
    done = epoch - 1 if partial else epoch
    state = {
        "model": inner.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
        "boxes": boxes.state_dict(),
        "epoch": done,
        "partial": partial,
        "config": config.to_dict(),
    }
    return RunFolder(output).save_checkpoint(state, done, config.keep_checkpoints)


def _knn_datasets(config: TrainConfig, spec: Any) -> tuple | None:
    """Labelled train and eval splits for the kNN monitor, or None without labels."""
    eval_spec = parse_data_spec(config.eval_data) if config.eval_data else spec
    train_dataset = build_dataset(eval_spec, split="train")
    if not getattr(train_dataset, "has_labels", False):
        return None
    test_dataset = build_dataset(eval_spec, split=default_eval_split(eval_spec))
    if config.knn_max_train and len(train_dataset) > config.knn_max_train:
        # A fixed, seeded subset keeps the monitor cheap and comparable across epochs.
        generator = torch.Generator().manual_seed(config.seed)
        keep = torch.randperm(len(train_dataset), generator=generator)[: config.knn_max_train]
        train_dataset = torch.utils.data.Subset(train_dataset, keep.tolist())
    return train_dataset, test_dataset


def _knn_monitor(config: TrainConfig, accelerator: Accelerator, backbone: Any,
                 knn_data: tuple, size: int) -> dict[str, float]:
    train_dataset, test_dataset = knn_data
    mean, std = config.normalisation()
    transform = eval_transform(size, mean, std)
    kwargs = {"batch_size": max(1, config.batch_size // accelerator.num_processes),
              "num_workers": config.num_workers, "accelerator": accelerator,
              "progress": config.progress}
    train_features, train_labels = extract_features(backbone, train_dataset, transform,
                                                    desc="knn train", **kwargs)
    test_features, test_labels = extract_features(backbone, test_dataset, transform,
                                                  desc="knn test", **kwargs)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    accuracy = knn_accuracy(train_features, train_labels, test_features, test_labels,
                            num_classes, k=config.knn_k, temperature=config.knn_temperature)
    return {f"knn_{key}": value for key, value in accuracy.items()}


def _flat_config(config: TrainConfig) -> dict[str, Any]:
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
            for k, v in config.to_dict().items() if v is not None}
