"""Pictures of what the localization sees: heatmaps, boxes, IoU and ContrastiveCrop views.

:func:`localization_picture` runs a backbone over a few images, localizes a box in each
heatmap (as the trainer's box pass does), measures the IoU with ground-truth boxes and
draws :func:`~timm_ccrop.pictures.box_grids.heatmap_boxes_grid`; ``timm-ccrop show-boxes`` is
a thin command around it. :func:`render_box_picture` is the trainer's picture after a box pass.

Both draw the map the localizer's rule read (:meth:`~timm_ccrop.localize.Localizer.maps`,
:meth:`~timm_ccrop.localize.Localizer.sample_maps`: stride removed, background
subtracted, harvested, ... as the localizer does it), never a map of their own, and name
the localizer's resolved settings (:meth:`~timm_ccrop.localize.Localizer.resolve`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from timm.data import resolve_data_config
from torch import nn

from ..crop.boxes import FULL_BOX, Box, paired_iou, whole_image_iou
from ..crop.transforms import CCROP_ALPHA, to_rgb
from ..localize.boxpass import eval_transform
from ..localize.heatmaps import normalise_maps
from ..localize.localizers import Localizer, default_localizer
from ..localize.resolved import ResolvedLocalizer
from ..models.backbones import eval_mode
from .box_grids import heatmap_boxes_grid

__all__ = ["LocalizationPicture", "class_labels", "display_maps", "localization_picture",
           "render_box_picture"]


@dataclass
class LocalizationPicture:
    """What :func:`localization_picture` drew and measured."""

    grid: Image.Image
    boxes: torch.Tensor  #: (N, 4) localized boxes, the project's convention
    degenerate: torch.Tensor  #: (N,) True where there is no box (a random crop instead)
    maps: torch.Tensor  #: (N, h, w) the maps the localizer's rule read, as drawn
    settings: ResolvedLocalizer  #: the localizer's settings on the model
    image_size: int
    mean_iou: float | None = None  #: with the ground truth, where given
    whole_image_iou: float | None = None  #: of the whole-image box, for comparison
    warnings: list[str] = field(default_factory=list)  #: e.g. a map too coarse to localize

    @property
    def map_size(self) -> tuple[int, int]:
        """The drawn maps' ``(h, w)``."""
        return int(self.maps.shape[-2]), int(self.maps.shape[-1])

    def summary(self, name: str) -> str:
        """One line: the model, the localizer's settings, map size and boxless count."""
        return (f"{name}: {self.settings.text()}; {self.map_size[0]}x{self.map_size[1]} "
                f"maps at {self.image_size}px; {int(self.degenerate.sum())}/"
                f"{len(self.degenerate)} without a box")


def display_maps(maps: torch.Tensor) -> torch.Tensor:
    """The rule's maps scaled to [0, 1] per image for the overlay (a signed DDT
    projection too); degenerate maps are drawn as zeros."""
    shown, bad = normalise_maps(maps.detach().float().cpu())
    shown[bad] = 0.0
    return shown


def class_labels(dataset: Any, count: int) -> list[str] | None:
    """The class names of the first ``count`` samples (None for unlabelled data)."""
    if not getattr(dataset, "has_labels", True):
        return None
    names = getattr(dataset, "classes", None)
    labels = []
    for index in range(count):
        target = dataset[index][1]
        if not isinstance(target, int) or target < 0:
            return None
        labels.append(str(names[target]) if names is not None and target < len(names)
                      else f"class {target}")
    return labels


def _iou_captions(boxes: torch.Tensor, degenerate: torch.Tensor, gt_boxes: torch.Tensor | None,
                  labels: Sequence[str] | None = None
                  ) -> tuple[list[str], float | None, float | None]:
    """Per-row captions (class, IoU, "no box") and the mean IoU of the boxes and of whole
    images."""
    parts = [[label] for label in labels] if labels else [[] for _ in degenerate]
    ious = whole = None
    if gt_boxes is not None:
        ious = paired_iou(boxes, gt_boxes)
        whole = whole_image_iou(gt_boxes)
        for row, iou in zip(parts, ious.tolist(), strict=True):
            row.append(f"IoU {iou:.2f}")
    for row, bad in zip(parts, degenerate.tolist(), strict=True):
        if bad:
            row.append("no box: random crop")
    captions = [", ".join(row) for row in parts]
    return (captions, None if ious is None else float(ious.mean()),
            None if whole is None else float(whole.mean()))


def _localize(model: nn.Module, batch: torch.Tensor, localizer: Localizer,
              size: tuple[int, int], name: str) -> tuple[torch.Tensor, torch.Tensor,
                                                        torch.Tensor]:
    """``(maps, boxes, degenerate)`` of a batch: the boxes are the localizer's rule on
    exactly these maps. A one-line error for a model that cannot take the size."""
    try:
        with eval_mode(model), torch.no_grad():
            if localizer.needs_fit:
                localizer.fit(model, lambda: iter([batch]))
            maps, bad = localizer.maps(model, batch)
            boxes, degenerate = localizer.boxes_from_maps(maps, bad, size, model)
    except (RuntimeError, AssertionError) as err:  # e.g. a fixed-size model at another size
        native = resolve_data_config({}, model=model).get("input_size", (3, "?", "?"))[1:]
        raise ValueError(
            f"{name} cannot run at {size[0]}x{size[1]} ({type(err).__name__}: {err}); try "
            f"--image-size {native[0]} (its native size) or a model that takes any size"
        ) from err
    return maps, boxes, degenerate


def localization_picture(
    model: nn.Module,
    images: Sequence[Image.Image],
    gt_boxes: torch.Tensor | None = None,
    *,
    name: str = "model",
    localizer: Localizer | None = None,
    image_size: int | None = None,
    views: int = 4,
    opacity: float = 0.5,
    alpha: float = CCROP_ALPHA,
    tile: int = 96,
    seed: int = 0,
    source: str = "",
    labels: Sequence[str] | None = None,
) -> LocalizationPicture:
    """Heatmaps, boxes and ContrastiveCrop views of ``images`` under ``model``, as a grid.

    Args:
        model: a timm backbone in eval mode (its ``pretrained_cfg`` gives mean and std).
        images: PIL images.
        gt_boxes: ``(N, 4)`` ground-truth boxes, or None (then no IoU is measured).
        name: the model's name, for the title and errors.
        localizer: which map and which box, with every setting (stage, reduction,
            threshold, ...: :func:`~timm_ccrop.localize.create_localizer`); default
            :func:`~timm_ccrop.localize.default_localizer`. The picture draws the map its
            rule reads; a localizer that fits on a dataset (a background, DDT) fits on
            these images.
        image_size: input resolution (default: the first image's size, at most 224).
        views, opacity, alpha, tile, seed: as
            :func:`~timm_ccrop.pictures.box_grids.heatmap_boxes_grid`.
        source: what the images are (e.g. ``'synthetic [train]'``), for the title.
        labels: each image's class name, written under its row (with its IoU).

    Raises ValueError for a stage the model does not have or a size it cannot take.
    """
    localizer = localizer if localizer is not None else default_localizer()
    localizer.check(model)  # ValueError for a stage the model does not have
    size = image_size or min(max(images[0].size), 224)
    data_config = resolve_data_config({}, model=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        too_coarse = localizer.too_coarse(model, (size, size))
    transform = eval_transform(size, data_config["mean"], data_config["std"])
    batch = torch.stack([transform(image) for image in images])
    maps, boxes, degenerate = _localize(model, batch, localizer, (size, size), name)
    if too_coarse:
        boxes, degenerate = torch.tensor([FULL_BOX]).repeat(len(images), 1), \
            torch.ones_like(degenerate)
    captions, mean_iou, whole_iou = _iou_captions(boxes, degenerate, gt_boxes, labels)
    settings = localizer.resolve(model)
    title = (f"{name}: {settings.text()} ({maps.shape[-2]}x{maps.shape[-1]} map at "
             f"{size}px)" + (f" | {source}" if source else ""))
    rows = [None if bad else box for box, bad in zip(boxes, degenerate.tolist(), strict=True)]
    grid = heatmap_boxes_grid(images, display_maps(maps), rows, gt_boxes, views=views,
                              opacity=opacity, alpha=alpha, tile=tile, seed=seed,
                              title=title, captions=captions)
    return LocalizationPicture(
        grid=grid, boxes=boxes, degenerate=degenerate, maps=maps.detach().cpu(),
        settings=settings, image_size=size, mean_iou=mean_iou, whole_image_iou=whole_iou,
        warnings=[str(item.message) for item in caught],
    )


def render_box_picture(
    backbone: nn.Module,
    dataset: Any,
    boxes: Any,
    path: str | Path,
    image_size: int,
    localizer: Localizer,
    count: int = 8,
    alpha: float = CCROP_ALPHA,
    mean_std: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Image.Image:
    """The trainer's picture after a box pass: the maps that made the boxes, the table's
    boxes, views.

    Args:
        backbone: the model being trained (its current weights make the heatmaps).
        dataset: the training dataset (first ``count`` samples are drawn).
        boxes: the :class:`~timm_ccrop.crop.boxes.BoxTable` just written by the pass; invalid
            rows are drawn as "no box" (they are cropped at random).
        path: PNG file to write.
        image_size: the box pass's resolution.
        localizer: the pass's localizer (fitted by the pass: its background, DDT's
            direction...); the picture draws the maps its rule read
            (:meth:`~timm_ccrop.localize.Localizer.sample_maps`: ``harvest`` its bank's).
    """
    count = min(count, len(dataset))
    images = [to_rgb(dataset[i][0]) for i in range(count)]
    mean, std = mean_std if mean_std is not None else (None, None)
    transform = eval_transform(image_size, mean, std)
    batch = torch.stack([transform(image) for image in images])
    device = next(backbone.parameters()).device
    with eval_mode(backbone), torch.no_grad():
        maps, _ = localizer.sample_maps(backbone, batch.to(device), torch.arange(count))
    table = boxes.boxes[:count].float()
    invalid = ~boxes.valid[:count].bool()
    rows = [None if bad else Box(*row) for row, bad in zip(table.tolist(), invalid.tolist(),
                                                           strict=True)]
    gt = getattr(dataset, "gt_boxes", None)
    gt = gt[:count].float() if gt is not None else None
    captions, mean_iou, _ = _iou_captions(table, invalid, gt, class_labels(dataset, count))
    title = f"boxes of the first {count} training images" + (
        f" (their mean IoU {mean_iou:.2f})" if mean_iou is not None else "") + (
        f"; maps of {localizer.resolve(backbone).text()}")
    grid = heatmap_boxes_grid(images, display_maps(maps), rows, gt, views=4, alpha=alpha,
                              tile=80, title=title, captions=captions)
    grid.save(path, format="PNG")
    return grid
