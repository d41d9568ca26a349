"""The box pass: every training image's heatmap and box, correct under any sharding.

The online backbone runs in eval mode under no_grad over the whole training set, at the
eval resolution with no augmentation (as the official code). Each process handles its
shard; rows are gathered by sample index, so the result does not depend on how a loader
shards the data (Accelerate's batch sharding included).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from timm.data import create_transform
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torch.utils.data import DataLoader

from ..crop.boxes import FULL_BOX, box_area, paired_iou, whole_image_iou
from ..data import BoxedDataset
from ..models.backbones import eval_mode, unwrap_model
from ..utils.distributed import gather_rows
from ..utils.progress import progress_bar
from .localizers import Localizer, default_localizer
from .resolved import ResolvedLocalizer

__all__ = ["LocalizationResult", "eval_transform", "localize_dataset", "localize_loader"]

_LOG = logging.getLogger(__name__)


@dataclass
class LocalizationResult:
    """Boxes of a whole dataset by sample index, and how the pass went."""

    boxes: torch.Tensor  # (N, 4), the project's convention
    degenerate: torch.Tensor  # (N,) bool: whole-image fallback (use random crop there)
    seconds: float
    settings: ResolvedLocalizer  # the localizer's settings on the model (Localizer.resolve)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def localizer(self) -> str:
        """The localizer as given (:meth:`~timm_ccrop.localize.Localizer.describe`)."""
        return self.settings.description

    @property
    def degenerate_share(self) -> float:
        """Share of samples whose heatmap gave no box (whole-image fallback)."""
        return float(self.degenerate.float().mean()) if len(self.degenerate) else 0.0

    @property
    def mean_area(self) -> float:
        """Mean box area as a fraction of the image."""
        return float(box_area(self.boxes).mean()) if len(self.boxes) else 0.0

    def mean_iou(self, ground_truth: torch.Tensor) -> float:
        """Mean IoU of the boxes with ground-truth boxes ``(N, 4)``."""
        return float(paired_iou(self.boxes, ground_truth.to(self.boxes)).mean())

    def summary(self, ground_truth: torch.Tensor | None = None) -> dict[str, float]:
        """Numbers worth logging after a pass (mean IoU when ground truth is given)."""
        numbers = {
            "box_pass_seconds": self.seconds,
            "box_mean_area": self.mean_area,
            "box_degenerate_share": self.degenerate_share,
        }
        if ground_truth is not None:
            numbers["box_mean_iou"] = self.mean_iou(ground_truth)
            numbers["whole_image_mean_iou"] = float(whole_image_iou(ground_truth.float()).mean())
        return numbers


def eval_transform(
    image_size: int | tuple[int, int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str = "bilinear",
) -> Any:
    """The box pass's transform: resize to the training size (squash, no crop), normalise.

    As the official code: no augmentation, the whole image at the training resolution.
    """

    return create_transform(
        image_size,
        is_training=False,
        crop_pct=1.0,
        crop_mode="squash",
        interpolation=interpolation,
        mean=tuple(mean or IMAGENET_DEFAULT_MEAN),
        std=tuple(std or IMAGENET_DEFAULT_STD),
    )


def localize_dataset(
    model: nn.Module,
    dataset: Any,
    image_size: int | tuple[int, int],
    localizer: Localizer | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    accelerator: Any = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    progress: bool = True,
) -> LocalizationResult:
    """Run the localization pass over a whole dataset; boxes by sample index.

    Eval mode, ``no_grad``, the eval transform (:func:`eval_transform`), Accelerate's
    autocast when an ``accelerator`` is given. Under N processes the loader is sharded by
    Accelerate (see :func:`localize_loader` for any other sharding).

    Args:
        model: the backbone being trained (wrappers are removed).
        dataset: a map-style dataset of ``(image, target)`` (or anything
            :class:`~timm_ccrop.data.BoxedDataset` accepts), without a transform.
        image_size: training resolution ``H`` or ``(H, W)``.
        localizer: which maps and which boxes, with every setting (stage, reduction,
            threshold, ...: :func:`~timm_ccrop.localize.create_localizer`); default
            :func:`~timm_ccrop.localize.default_localizer`. One that holds its boxes
            (``harvest`` with a bank) gives them without a pass.
        accelerator: an ``accelerate.Accelerator`` for multi-process passes.
        mean, std: normalisation of the model's inputs.
    """

    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    indexed = BoxedDataset(dataset, eval_transform(size, mean, std), return_index=True)
    loader = DataLoader(indexed, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    return localize_loader(
        model, loader, len(indexed), size, localizer=localizer, accelerator=accelerator,
        progress=progress, ground_truth=getattr(dataset, "gt_boxes", None),
        substituted=indexed.substituted,
    )


def _batch_boxes(network: nn.Module, images: torch.Tensor, too_coarse: bool, autocast: Any,
                 localizer: Localizer, image_size: tuple[int, int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's ``(boxes, degenerate)``; whole-image boxes when the map is too coarse."""
    if too_coarse:
        batch_boxes = torch.tensor([FULL_BOX]).repeat(len(images), 1)
        return batch_boxes, torch.ones(len(images), dtype=torch.bool)
    with autocast():
        return localizer.boxes(network, images, image_size)


def _fit(localizer: Localizer, network: nn.Module, loader: Any, device: torch.device,
         autocast: Any, accelerator: Any) -> None:
    """Dataset-level preparation (DDT's principal direction, a background map) from one
    pass."""

    def batches() -> Any:
        for images, _, indices in loader:
            with autocast():
                images = images.to(device, non_blocking=True)
                yield (images, indices) if localizer.fits_by_index else images

    localizer.fit(network, batches, accelerator)


#: Source maps one process may keep for a one-forward pass (above it: two forwards).
MAP_CACHE_BYTES = 2 << 30


def _map_cache_fits(map_size: tuple[int, int], num_samples: int, accelerator: Any) -> bool:
    """Whether this process's share of the source maps fits :data:`MAP_CACHE_BYTES`."""
    processes = accelerator.num_processes if accelerator is not None else 1
    needed = -(-num_samples // processes) * map_size[0] * map_size[1] * 4
    if needed > MAP_CACHE_BYTES:
        _LOG.info("box pass: the maps need %.1f GiB per process (> %.1f): two forwards",
                  needed / 2**30, MAP_CACHE_BYTES / 2**30)
    return needed <= MAP_CACHE_BYTES


def _boxes_one_forward(network: nn.Module, batches: Any, localizer: Localizer,
                       image_size: tuple[int, int], autocast: Any, device: torch.device,
                       accelerator: Any) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A background-subtracting pass with one forward: keep every batch's source maps (on
    the CPU, float32), fit the background on them, then apply the rule. The same maps,
    median and boxes as fitting in a forward of its own (tested), at half the cost."""
    cached = []
    for images, _, batch_indices in batches:
        with autocast():
            maps, bad = localizer.source.maps(network, images.to(device, non_blocking=True))
        cached.append((batch_indices.cpu(), maps.float().cpu(), bad.cpu()))
    localizer.fit_maps(((maps, indices) for indices, maps, _ in cached), accelerator)
    rows = []
    for indices, maps, bad in cached:
        residual, residual_bad = localizer.residual(maps, bad)
        rows.append((indices, *localizer.boxes_from_maps(residual, residual_bad, image_size,
                                                          network)))
    return rows


def _scatter_by_index(
    num_samples: int, all_indices: torch.Tensor, all_boxes: torch.Tensor, all_bad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the gathered rows at their sample indices; every index must be covered."""
    result_boxes = torch.zeros(num_samples, 4)
    result_bad = torch.zeros(num_samples, dtype=torch.bool)
    written = torch.zeros(num_samples, dtype=torch.bool)
    order = all_indices.cpu()
    result_boxes[order] = all_boxes.cpu()
    result_bad[order] = all_bad.cpu().bool()
    written[order] = True
    if not written.all():
        missing = (~written).nonzero().flatten()[:5].tolist()
        raise RuntimeError(
            f"the box pass produced no box for samples {missing} (of {int((~written).sum())} "
            "missing): the loader must cover every sample index"
        )
    return result_boxes, result_bad


def _mark_substituted(
    batch_boxes: torch.Tensor, batch_bad: torch.Tensor, flags: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-image, degenerate rows where the loader substituted another image: the box
    found is the stand-in's, not the unreadable image's (which then gets random crops)."""
    flags = flags.to(batch_bad.device, torch.bool)
    if not flags.any():
        return batch_boxes, batch_bad
    batch_boxes = batch_boxes.clone()
    batch_boxes[flags] = torch.tensor(FULL_BOX, dtype=batch_boxes.dtype,
                                      device=batch_boxes.device)
    return batch_boxes, batch_bad.bool() | flags


def _result(localizer: Localizer, network: nn.Module, boxes: torch.Tensor,
            degenerate: torch.Tensor, start: float, ground_truth: torch.Tensor | None
            ) -> LocalizationResult:
    """The pass's result with the localizer's resolved settings and its statistics."""
    result = LocalizationResult(boxes, degenerate, time.perf_counter() - start,
                                localizer.resolve(network))
    result.stats = result.summary(ground_truth)
    return result


def localize_loader(
    model: nn.Module,
    loader: Any,
    num_samples: int,
    image_size: tuple[int, int],
    localizer: Localizer | None = None,
    accelerator: Any = None,
    progress: bool = True,
    ground_truth: torch.Tensor | None = None,
    substituted: torch.Tensor | None = None,
) -> LocalizationResult:
    """The localization pass over a loader of ``(images, target, index)`` batches.

    The loader may be sharded in any way (Accelerate's batch sharding, a
    DistributedSampler that pads with duplicates, uneven last batches): every process
    gathers ``(index, box)`` pairs and writes each box at its own index, so the result
    equals the single-process one. Duplicates only rewrite the same box; a sample that
    no process saw is an error, not a silent whole-image box.

    ``substituted`` (``(N,)`` bool by sample index, e.g.
    :attr:`~timm_ccrop.data.BoxedDataset.substituted`, written by the loader's workers)
    marks samples whose unreadable image was replaced by another: their rows are
    degenerate whole-image boxes.

    ``localizer`` (default :func:`~timm_ccrop.localize.default_localizer`) decides every
    setting; one that holds its boxes (:meth:`~timm_ccrop.localize.Localizer.held_boxes`,
    ``harvest`` with a bank) gives them without reading the loader.
    """
    network = unwrap_model(accelerator.unwrap_model(model) if accelerator else model)
    localizer = localizer if localizer is not None else default_localizer()
    localizer.check(network)
    start = time.perf_counter()
    held = localizer.held_boxes(network)
    if held is not None:
        return _result(localizer, network, *held, start, ground_truth)
    map_size = localizer.map_size(network, image_size)
    too_coarse = localizer.too_coarse(network, image_size, map_size)
    device = accelerator.device if accelerator else next(network.parameters()).device
    autocast = accelerator.autocast if accelerator else contextlib.nullcontext
    is_main = accelerator is None or accelerator.is_main_process
    batches = progress_bar(loader, "box pass", progress and is_main)
    one_forward = (localizer.fits_from_maps and not too_coarse
                   and _map_cache_fits(map_size, num_samples, accelerator))
    with eval_mode(network), torch.no_grad():
        if one_forward:
            rows = _boxes_one_forward(network, batches, localizer, image_size, autocast, device,
                                      accelerator)
        else:
            if localizer.needs_fit and not too_coarse:
                _fit(localizer, network, loader, device, autocast, accelerator)
            rows = ((batch_indices, *_batch_boxes(network, images.to(device, non_blocking=True),
                                                   too_coarse, autocast, localizer, image_size))
                    for images, _, batch_indices in batches)
        indices, boxes, degenerate = [], [], []
        for batch_indices, batch_boxes, batch_bad in rows:
            if substituted is not None:  # read after the batch: its workers set the flags
                batch_boxes, batch_bad = _mark_substituted(
                    batch_boxes, batch_bad, substituted[batch_indices.cpu()])
            indices.append(batch_indices.to(device))
            boxes.append(batch_boxes.to(device))
            degenerate.append(batch_bad.to(device))
    local = [torch.cat(rows) if rows else torch.zeros(0, device=device)
             for rows in (indices, boxes, degenerate)]
    all_indices, all_boxes, all_bad = gather_rows(
        accelerator, local[0].long(), local[1].float().reshape(-1, 4), local[2].long()
    )
    result_boxes, result_bad = _scatter_by_index(num_samples, all_indices, all_boxes, all_bad)
    result = _result(localizer, network, result_boxes, result_bad, start, ground_truth)
    if is_main:
        _LOG.info(
            "box pass: %d images in %.1f s, degenerate %.1f%%, mean area %.3f%s",
            num_samples, result.seconds, 100 * result.degenerate_share, result.mean_area,
            f", mean IoU {result.stats['box_mean_iou']:.3f}" if "box_mean_iou" in result.stats
            else "",
        )
    return result
