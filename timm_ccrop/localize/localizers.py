"""Pluggable localizers: how a backbone's feature maps become one box per image.

A localizer is a map source (which stage, which channel reduction, a finer map by
removing the last downsampling stride at inference, or a fusion of stages) and a box
rule (the paper's union of every row and column above ``k``, or one connected
component). Every localizer works on a batch at once, on any timm family (the hooks
bring every map to NCHW), and marks degenerate maps invalid. ``create_localizer(name,
**options)`` builds one; :func:`localize_loader` runs it over a dataset.

Names (options in brackets):

* ``paper``: the official rule exactly: last stage, channel sum, union above k = 0.1.
* ``union`` [threshold, stage, reduction]: the same rule with the per-family defaults
  (the project's previous default).
* ``component`` [rule = mean|max|mass, level, pick = peak|largest, keep, stage,
  reduction, dilate, fuse, upsample]: threshold the map, keep one 4-connected component
  (with ``keep`` < 1, also every component peaking at >= keep x the map's peak), box it.
* ``peak``: ``component`` on the map made finer by removing the last stride, above twice
  its mean (the default).
* ``background = median`` (``union``, ``component``, ``peak``): subtract the dataset's
  per-pixel median map first (what every image shares, e.g. one background); it costs a
  second forward over the dataset per box pass (:mod:`timm_ccrop.localize.background`).
* ``ddt`` and ``ccam``: dataset-level principal direction and contrastive CAM (see
  :mod:`timm_ccrop.localize.ddt`, :mod:`timm_ccrop.localize.ccam`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .background import median_map, pop_background, subtract_background
from .components import THRESHOLD_RULES, component_mask, mask_boxes, threshold_maps
from .heatmaps import (
    REDUCTIONS,
    heatmap_boxes,
    localization_defaults,
    normalise_maps,
    reduce_channels,
)
from .hooks import FeatureHook, resolve_stage

__all__ = ["DEFAULT_LOCALIZER", "DEFAULT_LOCALIZER_OPTIONS", "LOCALIZERS", "ComponentRule",
           "Localizer", "MapSource", "UnionRule", "component_rule", "create_localizer",
           "default_localizer",
           "describe_localizer", "register_localizer", "stride_removed"]


# --------------------------------------------------------------------------------------
# Map sources
# --------------------------------------------------------------------------------------


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
    module = model.get_submodule(entries[position]["module"])
    changed: list[tuple[nn.Module, Any, Any]] = []
    for layer in module.modules():
        stride = getattr(layer, "stride", None)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and stride in (2, (2, 2)):
            kernel = getattr(layer, "kernel_size", None)
            changed.append((layer, stride, kernel))
            layer.stride = (1, 1) if isinstance(stride, tuple) else 1
            if not isinstance(layer, nn.Conv2d) and kernel in (2, (2, 2)):
                # a 2x2/2 pooling shortcut (ResNet-D) would lose a row at stride 1: the
                # main path keeps the size, so the shortcut becomes the identity
                layer.kernel_size = (1, 1) if isinstance(kernel, tuple) else 1
    try:
        yield
    finally:
        for layer, stride, kernel in changed:
            layer.stride = stride
            if kernel is not None:
                layer.kernel_size = kernel


@dataclass
class MapSource:
    """Which heatmap a model gives: stage(s), reduction, and an optional finer map.

    ``fuse`` (stages) averages the normalised maps of several stages, upsampled to the
    finest; ``dilate`` removes the last downsampling stride at inference.
    """

    stage: int = -1
    reduction: str | None = None  # None: the family default
    dilate: bool = False
    fuse: tuple[int, ...] = ()

    def stages(self) -> tuple[int, ...]:
        return tuple(self.fuse) or (self.stage,)

    def _raw_maps(self, network: nn.Module, images: torch.Tensor,
                  reduction: str) -> list[torch.Tensor]:
        """Channel-reduced maps of every stage, from one forward."""
        with contextlib.ExitStack() as stack:
            if self.dilate:
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
            if not self.dilate:
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


# --------------------------------------------------------------------------------------
# Box rules
# --------------------------------------------------------------------------------------


@dataclass
class UnionRule:
    """The paper's rule: every row and column whose maximum (of the bilinearly upsampled
    map) exceeds ``threshold``; None: the family default."""

    threshold: float | None = None

    def boxes(self, maps: torch.Tensor, image_size: tuple[int, int], network: nn.Module
              ) -> tuple[torch.Tensor, torch.Tensor]:
        threshold = localization_defaults(network).threshold if self.threshold is None \
            else self.threshold
        return heatmap_boxes(maps, threshold, image_size, return_degenerate=True)


@dataclass
class ComponentRule:
    """Threshold the map (``rule`` at ``level``), keep one 4-connected component
    (``pick``), box it. ``upsample``: threshold a bilinearly upsampled map (factor), for
    box edges finer than one cell."""

    rule: str = "mean"
    level: float = 1.0
    pick: str = "peak"
    upsample: int = 1
    keep: float = 1.0  # also keep components peaking at >= keep x the peak (pick='peak')

    def boxes(self, maps: torch.Tensor, image_size: tuple[int, int], network: nn.Module
              ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.upsample > 1:
            size = (maps.shape[1] * self.upsample, maps.shape[2] * self.upsample)
            maps = F.interpolate(maps[:, None].float(), size=size, mode="bilinear",
                                 align_corners=False)[:, 0]
        mask = threshold_maps(maps.float(), self.rule, self.level)
        return mask_boxes(component_mask(maps.float(), mask, self.pick, self.keep))


# --------------------------------------------------------------------------------------
# Localizers and their registry
# --------------------------------------------------------------------------------------


@dataclass
class Localizer:
    """A map source and a box rule; :meth:`boxes` localizes a batch of images."""

    name: str
    source: MapSource = field(default_factory=MapSource)
    rule: Any = field(default_factory=UnionRule)
    options: dict[str, Any] = field(default_factory=dict)  # as given, for logs and cards
    head: nn.Module | None = None  # the method's projector (see attach)
    #: 'median': subtract the dataset's per-pixel median map before the rule
    #: (:mod:`timm_ccrop.localize.background`); None: the maps as they are.
    background: str | None = None
    background_map: torch.Tensor | None = None  # set by fit

    @property
    def needs_fit(self) -> bool:
        """Whether :meth:`fit` must see the dataset before :meth:`boxes` (a background to
        subtract; DDT and the contrastive CAM always)."""
        return self.background is not None

    @property
    def stage(self) -> int:
        return self.source.stage

    def check(self, network: nn.Module) -> None:
        """Fail early on a stage the model does not have."""
        for stage in self.source.stages():
            resolve_stage(network, stage)

    @property
    def fits_by_index(self) -> bool:
        """Whether :meth:`fit` takes ``(images, sample_indices)`` batches (so that samples
        a sharded loader repeats count once) rather than images."""
        return self.background is not None

    def fit(self, network: nn.Module, batches: Callable[[], Iterator[Any]],
            accelerator: Any = None) -> None:
        """Dataset-level preparation from a pass over ``batches()``: the background map
        when one is subtracted, nothing otherwise.

        Under several processes each sees its shard: reduce statistics with
        ``accelerator`` (e.g. ``accelerator.reduce``) so that every rank fits the same.
        """
        if self.background is None:
            return

        def source_maps() -> Iterator[tuple[torch.Tensor, torch.Tensor] | torch.Tensor]:
            with torch.no_grad():
                for batch in batches():  # images, or (images, sample indices)
                    images, indices = batch if isinstance(batch, tuple) else (batch, None)
                    maps = self.source.maps(network, images)[0]
                    yield maps if indices is None else (maps, indices)

        self.fit_maps(source_maps(), accelerator)

    def attach(self, head: nn.Module | None) -> None:
        """Give the localizer the method's projection head (the contrastive CAM takes
        gradients through it); the trainer calls this before every pass."""
        self.head = head

    def boxes(self, network: nn.Module, images: torch.Tensor, image_size: tuple[int, int]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(boxes (B, 4), degenerate (B,))`` of a normalised image batch."""
        maps, bad = self.maps(network, images)
        return self.boxes_from_maps(maps, bad, image_size, network)

    def maps(self, network: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor,
                                                                      torch.Tensor]:
        """The maps ``(B, h, w)`` the rule reads and the degenerate mask: the source's,
        less the background when one is subtracted (a map with nothing left above it is
        degenerate)."""
        return self.residual(*self.source.maps(network, images))

    def residual(self, maps: torch.Tensor, bad: torch.Tensor) -> tuple[torch.Tensor,
                                                                       torch.Tensor]:
        """Source maps less the fitted background (unchanged without one)."""
        if self.background is None:
            return maps, bad
        if self.background_map is None:
            raise RuntimeError(f"the {self.name} localizer subtracts a background: call "
                               "fit(network, batches) over the dataset before boxes (the box "
                               "pass does this)")
        residual, empty = subtract_background(maps, self.background_map)
        return residual, bad | empty.to(bad.device)

    @property
    def fits_from_maps(self) -> bool:
        """Whether the fit needs nothing but the source maps of the pass (a background), so
        that one forward can give both the fit and the boxes (:meth:`fit_maps`)."""
        return self.background is not None and type(self).fit is Localizer.fit

    def fit_maps(self, maps: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 accelerator: Any = None) -> None:
        """The fit of :meth:`fit` from source maps already computed: ``(maps, sample
        indices)`` batches of ``self.source.maps`` (each sample index counts once)."""
        self.background_map = median_map(maps, accelerator)

    def boxes_from_maps(self, maps: torch.Tensor, bad: torch.Tensor,
                        image_size: tuple[int, int], network: nn.Module
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rule's boxes of ``maps``; rows that are ``bad`` (a degenerate map) or
        empty get the whole image and are marked degenerate."""
        boxes, empty = self.rule.boxes(maps, image_size, network)
        degenerate = bad.to(empty.device) | empty
        boxes = boxes.clone()
        boxes[degenerate] = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes.dtype,
                                         device=boxes.device)
        return boxes, degenerate

    def describe(self) -> str:
        return describe_localizer(self.name, self.options)


def describe_localizer(name: str, options: dict[str, Any]) -> str:
    """``name(key=value, ...)``, or ``name`` without options: how logs, reports and model
    cards name a localizer."""
    text = ", ".join(f"{key}={value}" for key, value in options.items())
    return f"{name}({text})" if text else name


def _source(options: dict[str, Any]) -> MapSource:
    fuse = options.pop("fuse", ())
    fuse = (fuse,) if isinstance(fuse, int) else tuple(int(s) for s in fuse or ())
    source = MapSource(stage=int(options.pop("stage", -1)),
                       reduction=options.pop("reduction", None),
                       dilate=bool(options.pop("dilate", False)), fuse=fuse)
    if source.reduction is not None and source.reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got "
                         f"{source.reduction!r}")
    return source


def _with_background(localizer: Localizer, options: dict[str, Any]) -> Localizer:
    """The localizer with the ``background`` option of ``options`` (popped, checked)."""
    localizer.background = pop_background(options)
    return localizer


def _paper(options: dict[str, Any]) -> Localizer:
    return Localizer("paper", MapSource(stage=-1, reduction="sum"), UnionRule(0.1))


def _union(options: dict[str, Any]) -> Localizer:
    threshold = options.pop("threshold", None)
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    source = _source(options)
    return _with_background(
        Localizer("union", source, UnionRule(None if threshold is None else float(threshold))),
        options)


def component_rule(options: dict[str, Any]) -> ComponentRule:
    """A :class:`ComponentRule` from ``options`` (pops rule, level, pick, upsample),
    checked; shared by every localizer that keeps one component."""
    rule = ComponentRule(rule=options.pop("rule", "mean"),
                         level=float(options.pop("level", 1.0)),
                         pick=options.pop("pick", "peak"),
                         upsample=int(options.pop("upsample", 1)),
                         keep=float(options.pop("keep", 1.0)))
    if rule.rule not in THRESHOLD_RULES:
        raise ValueError(f"rule must be one of {', '.join(THRESHOLD_RULES)}, got {rule.rule!r}")
    if rule.pick not in ("peak", "largest"):
        raise ValueError(f"pick must be 'peak' or 'largest', got {rule.pick!r}")
    if not 0.0 < rule.keep <= 1.0 or (rule.keep < 1.0 and rule.pick != "peak"):
        raise ValueError(f"keep must be in (0, 1] and goes with pick='peak', got keep="
                         f"{rule.keep} with pick={rule.pick!r}")
    if not rule.level > 0 or rule.upsample < 1:
        raise ValueError(f"level must be > 0 and upsample >= 1, got {rule.level}, "
                         f"{rule.upsample}")
    return rule


def _component(options: dict[str, Any]) -> Localizer:
    rule = component_rule(options)
    return _with_background(Localizer("component", _source(options), rule), options)


def _peak(options: dict[str, Any]) -> Localizer:
    merged = {"dilate": True, "level": 2.0, **options}
    localizer = _component(merged)  # pops what it takes; unknown keys stay in merged
    for key in [k for k in options if k not in merged]:
        del options[key]
    localizer.name = "peak"
    return localizer


#: The default localizer, chosen by box quality on the training split of SSL checkpoints
#: in two settings (docs/localization.md): ``peak`` is the ``component`` rule with the
#: connected component holding the peak, above twice the map's mean, on the last map made
#: twice as fine by removing the last downsampling stride at inference (every option of
#: ``component`` may override these); by default on the map less the dataset's per-pixel
#: median map (``background='median'``: better or equal at every snapshot of the study,
#: docs/localization.md "Background subtraction"; ``peak`` alone does not subtract it).
DEFAULT_LOCALIZER = "peak"
DEFAULT_LOCALIZER_OPTIONS: dict[str, Any] = {"background": "median"}

#: name -> builder(options) (the builder pops what it understands).
LOCALIZERS: dict[str, Callable[[dict[str, Any]], Localizer]] = {
    "paper": _paper, "union": _union, "component": _component, "peak": _peak,
}


def register_localizer(name: str, builder: Callable[[dict[str, Any]], Localizer]) -> None:
    """Add a localizer: ``builder(options)`` pops the options it takes and returns it."""
    LOCALIZERS[name] = builder


def default_localizer() -> Localizer:
    """The project's default localizer (:data:`DEFAULT_LOCALIZER`)."""
    return create_localizer(DEFAULT_LOCALIZER, **DEFAULT_LOCALIZER_OPTIONS)


def create_localizer(name: str = DEFAULT_LOCALIZER, **options: Any) -> Localizer:
    """Build the localizer ``name`` with ``options`` (see the module docstring).

    Raises ValueError for an unknown name or option, naming the known ones.
    """
    if name not in LOCALIZERS:
        raise ValueError(f"unknown localizer {name!r}; choose from {', '.join(LOCALIZERS)}")
    given = {k: v for k, v in options.items() if v is not None}
    remaining = dict(given)
    localizer = LOCALIZERS[name](remaining)
    if remaining:
        hint = " (k is the union rule's: use --localizer union)" if "threshold" in remaining \
            else ""
        raise ValueError(f"localizer {name!r} does not take "
                         f"{', '.join(sorted(remaining))}{hint}")
    localizer.options = given
    return localizer


