"""Map sources: which heatmap a model gives (stage(s), channel reduction, a finer map by
removing the last downsampling stride at inference, or a fusion of stages)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .heatmaps import localization_defaults, normalise_maps, reduce_channels
from .hooks import FeatureHook

__all__ = ["MapSource", "stride_removed"]


@contextlib.contextmanager
def stride_removed(model: nn.Module, stage: int) -> Iterator[None]:
    """Remove, for the block, the stride of the last downsampling stage up to ``stage``
    (ContraCAM's ``expand_res``): the same weights give a map twice as fine.

    The stride-2 convolutions and pooling layers of that stage's module get stride 1;
    everything is restored afterwards.
    """
    entries = model.feature_info if isinstance(model.feature_info, list) \
        else model.feature_info.get_dicts()
    position = stage % len(entries)
    while position > 0 and entries[position]["reduction"] <= entries[position - 1]["reduction"]:
        position -= 1  # a dilated stage keeps its input's resolution: look further back
    changed: list[tuple[nn.Module, Any, Any]] = []
    for layer in _stage_span(model, entries, position):
        stride = getattr(layer, "stride", None)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and stride in (2, (2, 2)):
            kernel = getattr(layer, "kernel_size", None)
            changed.append((layer, stride, kernel))
            layer.stride = (1, 1) if isinstance(stride, tuple) else 1
            if not isinstance(layer, nn.Conv2d) and kernel in (2, (2, 2)):
                # a 2x2/2 pooling shortcut (ResNet-D) would lose a row at stride 1: the
                # main path keeps the size, so the shortcut becomes the identity
                layer.kernel_size = (1, 1) if isinstance(kernel, tuple) else 1
    isotropic = len({entry["reduction"] for entry in entries}) == 1
    if not changed and not isotropic:  # a ViT has no stride to remove: its plain map
        raise RuntimeError(f"no stride-2 layer between feature stages "
                           f"{entries[position - 1]['module'] if position else 'the input'} "
                           f"and {entries[position]['module']}")
    try:
        yield
    finally:
        for layer, stride, kernel in changed:
            layer.stride = stride
            if kernel is not None:
                layer.kernel_size = kernel


def _stage_span(model: nn.Module, entries: list[dict[str, Any]], position: int
                ) -> list[nn.Module]:
    """Every module after the previous feature stage's last one, up to this stage's last,
    in registration order: where the stage's downsampling lives. In ResNet that is the
    stage's own module (``layer4``); in EfficientNet and MobileNet the stride-2 block
    precedes the listed one (``blocks.5`` before ``blocks.6``), and DenseNet pools in a
    transition between its listed blocks."""
    named = list(model.named_modules())

    def last_index(prefix: str) -> int:
        return max(i for i, (name, _) in enumerate(named)
                   if name == prefix or name.startswith(prefix + "."))

    start = last_index(entries[position - 1]["module"]) + 1 if position > 0 else 0
    end = last_index(entries[position]["module"])
    return [module for _, module in named[start:end + 1]]


@dataclass
class MapSource:
    """Which heatmap a model gives: stage(s), reduction, and an optional finer map.

    ``fuse`` (stages) averages the normalised maps of several stages, upsampled to the
    finest; ``dilate`` removes the last downsampling stride at inference.
    """

    stage: int = -1
    reduction: str | None = None  # None: the family default
    dilate: bool | str = False  # 'auto': the family default
    fuse: tuple[int, ...] = ()

    def stages(self) -> tuple[int, ...]:
        return tuple(self.fuse) or (self.stage,)

    def removes_stride(self, network: nn.Module) -> bool:
        """Whether the maps of ``network`` are read with the last stride removed
        (``dilate='auto'``: its family's default, :func:`localization_defaults`)."""
        if self.dilate == "auto":
            return localization_defaults(network).dilate
        return bool(self.dilate)

    def _raw_maps(self, network: nn.Module, images: torch.Tensor,
                  reduction: str) -> list[torch.Tensor]:
        """Channel-reduced maps of every stage, from one forward."""
        with contextlib.ExitStack() as stack:
            if self.removes_stride(network):
                stack.enter_context(stride_removed(network, self.stage))
            hooks = [stack.enter_context(FeatureHook(network, s)) for s in self.stages()]
            network(images)
            return [reduce_channels(hook.feature_map, reduction) for hook in hooks]

    def maps(self, network: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor,
                                                                      torch.Tensor]:
        """Normalised heatmaps ``(B, h, w)`` and the degenerate mask (eval mode and
        no_grad are the caller's)."""
        reduction = self.reduction or localization_defaults(network).reduction
        try:
            raw = self._raw_maps(network, images, reduction)
        except (RuntimeError, AssertionError) as err:
            if not self.removes_stride(network):
                raise
            # Some families cannot run without their stride (Swin's attention windows):
            # say so once and use the plain map from then on.
            warnings.warn(f"cannot remove the last downsampling stride of "
                          f"{type(network).__name__} ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120]}); using the plain map",
                          stacklevel=2)
            self.dilate = False
            raw = self._raw_maps(network, images, reduction)
        normalised = [normalise_maps(m) for m in raw]
        if len(normalised) == 1:
            return normalised[0]
        size = max((m.shape[1:] for m, _ in normalised), key=lambda s: s[0] * s[1])
        fused = torch.stack([F.interpolate(m[:, None], size=tuple(size), mode="bilinear",
                                           align_corners=False)[:, 0] for m, _ in normalised])
        bad = torch.stack([b for _, b in normalised]).any(dim=0)
        return normalise_maps(fused.mean(dim=0))[0], bad
