"""Building a run: the data with its box table, the method, the optimiser and schedule.

Each function is one step of :func:`timm_ccrop.train.train`; none of them trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from timm.optim import create_optimizer_v2
from torch.utils.data import DataLoader
from torchvision import transforms as tv_transforms

from ..config import TrainConfig
from ..crop.augment import BatchedViews
from ..crop.boxes import BoxTable
from ..crop.views import multi_view_transform
from ..data import (
    BoxedDataset,
    EpochPermutationSampler,
    build_dataset,
    default_train_split,
    parse_data_spec,
    stored_image_size,
)
from ..localize import Harvester, Localizer, harvester_for
from ..methods import SiameseMethod, build_method
from ..models.backbones import create_backbone

__all__ = ["RunData", "build_data", "build_method_for", "build_optimizer", "build_scheduler",
           "lr_factor", "resolve_augment_on"]


#: Our names that differ from timm's: 'sgd' is classical momentum as in the official code
#: (timm's 'sgd' is Nesterov). Every other name goes to timm as it is (lars, lamb, adamw...).
TIMM_OPTIMIZER = {"sgd": "momentum"}


@dataclass
class RunData:
    """The training data of a run and what it needs per epoch."""

    dataset: Any  # the raw training split (images, targets, maybe ground-truth boxes)
    train_set: BoxedDataset  # views of each image, cropped with its box
    sampler: EpochPermutationSampler
    loader: DataLoader
    boxes: BoxTable  # one box per training image, in shared memory
    image_size: int
    device_views: BatchedViews | None  # views made on the device (--augment-on device)
    steps_per_epoch: int  # optimiser steps per epoch (global batches, the last one dropped)
    harvest: Harvester | None = None  # --localizer harvest: the bank of training-time maps
    #: the run's one localizer (None when the boxes do not come from the model): the box
    #: pass, the harvest bank, the too-coarse check and the box picture all ask it
    localizer: Localizer | None = None


def _check_batch(config: TrainConfig, accelerator: Accelerator, num_samples: int) -> None:
    if config.batch_size % accelerator.num_processes:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by {accelerator.num_processes} "
            "processes; choose a multiple"
        )
    if config.batch_size > num_samples:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {num_samples} training samples "
            "(batches drop the last partial one): lower batch_size"
        )


def resolve_augment_on(config: TrainConfig) -> str:
    """``config.augment_on``, with 'auto' resolved: 'device' when every image is stored at
    one size no larger than the views (squashing to the view size then loses nothing),
    else 'loader'."""
    if config.augment_on != "auto":
        return config.augment_on
    stored = stored_image_size(config.data)
    return "device" if stored is not None and stored <= config.resolved_image_size() else "loader"


def _views(config: TrainConfig, accelerator: Accelerator, size: int
           ) -> tuple[Any, BatchedViews | None]:
    """The loader's per-image transform, and the batched device views if any."""
    alpha = config.resolved_alpha()
    if resolve_augment_on(config) != "device":
        # harvesting needs each view's crop and flip; the views stay the same
        return multi_view_transform(config.views, crop_mode=config.crop, alpha=alpha,
                                    size=size, geometry=config.harvests_boxes()), None
    # Workers only decode and squash to a fixed size; crops and colour run batched on the
    # training device (timm_ccrop.crop.augment). Boxes are normalised, so squashing keeps them.
    squash = tv_transforms.Compose([tv_transforms.Resize((size, size)),
                                    tv_transforms.PILToTensor()])
    device_views = BatchedViews.from_preset(config.views, config.crop, alpha, size=size)
    return squash, device_views.to(accelerator.device)


def _box_table(config: TrainConfig, dataset: Any) -> BoxTable:
    boxes = BoxTable(len(dataset))
    if config.crop == "ccrop" and config.box_source == "ground-truth":
        ground_truth = getattr(dataset, "gt_boxes", None)
        if ground_truth is None:
            raise ValueError(f"box_source='ground-truth' needs a dataset with boxes; "
                             f"{config.data} has none")
        boxes.update(ground_truth)
    return boxes


def build_data(config: TrainConfig, accelerator: Accelerator) -> RunData:
    """The training split, its views, its box table and a loader over it, the run's
    localizer (and the bank of harvested heatmaps with ``--localizer harvest``)."""
    spec = parse_data_spec(config.data)
    dataset = build_dataset(spec, split=default_train_split(spec))
    _check_batch(config, accelerator, len(dataset))
    size = config.resolved_image_size()
    views, device_views = _views(config, accelerator, size)
    boxes = _box_table(config, dataset)
    train_set = BoxedDataset(dataset, views, boxes, seed=config.seed)
    sampler = EpochPermutationSampler(len(train_set), seed=config.seed)
    loader = DataLoader(
        train_set, batch_size=config.batch_size // accelerator.num_processes, sampler=sampler,
        num_workers=config.num_workers, drop_last=True,
        persistent_workers=config.num_workers > 0, pin_memory=accelerator.device.type == "cuda",
    )
    model_boxes = config.crop == "ccrop" and config.box_source == "model"
    localizer = config.build_localizer() if model_boxes else None
    harvest = harvester_for(localizer, len(dataset), accelerator, train_set.substituted)
    return RunData(dataset, train_set, sampler, loader, boxes, size, device_views,
                   steps_per_epoch=len(train_set) // config.batch_size, harvest=harvest,
                   localizer=localizer)


def build_method_for(config: TrainConfig, accelerator: Accelerator, data: RunData
                     ) -> SiameseMethod:
    """The backbone wrapped in the Siamese method, on the run's memory format."""
    backbone = create_backbone(config.model, **config.model_kwargs)
    if data.localizer is not None:  # the localizer's own map (stride removed, a bank...)
        data.localizer.check(backbone)  # settles 'auto' options for the family (harvest too)
        data.localizer.too_coarse(backbone, (data.image_size, data.image_size))
    method = build_method(config.method, backbone, **config.method_kwargs)
    method.check_dataset(len(data.dataset))
    use_sync_bn = config.sync_bn if config.sync_bn is not None else method.sync_batchnorm
    if use_sync_bn and accelerator.device.type == "cuda" and accelerator.num_processes > 1:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    if config.channels_last:
        method = method.to(memory_format=torch.channels_last)
    return method


def build_optimizer(config: TrainConfig, method: SiameseMethod) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2`` over the method's own parameter groups.

    The groups carry each one's weight decay (norms and biases excluded when
    ``exclude_norm_bias``), so LARS/LAMB adapt only the decayed weights, as in SimCLR/BYOL.
    The lr is scaled by ``batch_size / lr_base_batch`` when that is set.
    """
    scale = config.batch_size / config.lr_base_batch if config.lr_base_batch else 1.0
    groups = method.parameter_groups(config.weight_decay, config.exclude_norm_bias)
    return create_optimizer_v2(groups, opt=TIMM_OPTIMIZER.get(config.optimizer, config.optimizer),
                               lr=config.lr * scale, weight_decay=config.weight_decay,
                               momentum=config.momentum)


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-step lr factor: linear warm-up over ``lr_warmup_epochs``, then cosine to
    ``min_lr_ratio``."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.lr_warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine

    return factor


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule; groups marked ``fixed_lr`` (SimSiam's predictor) keep their lr."""
    schedule = lr_factor(config, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        [(lambda step: 1.0) if group.get("fixed_lr") else schedule
         for group in optimizer.param_groups],
    )
