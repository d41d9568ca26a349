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
  its mean (the default, with :data:`DEFAULT_LOCALIZER_OPTIONS`).
* ``background = median`` (``union``, ``component``, ``peak``): subtract the dataset's
  per-pixel median map first (what every image shares, e.g. one background); it costs a
  second forward over the dataset per box pass (:mod:`timm_ccrop.localize.background`).
* ``ddt`` and ``ccam``: dataset-level principal direction and contrastive CAM (see
  :mod:`timm_ccrop.localize.ddt`, :mod:`timm_ccrop.localize.ccam`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..crop.boxes import FULL_BOX
from ..models.backbones import eval_mode, unwrap_model
from .background import median_map, pop_background, subtract_background
from .components import THRESHOLD_RULES, component_mask, mask_boxes, threshold_maps
from .heatmaps import (
    REDUCTIONS,
    heatmap_boxes,
    localization_defaults,
)
from .hooks import resolve_stage
from .resolved import ResolvedLocalizer, warn_too_coarse
from .sources import MapSource, stride_removed

__all__ = ["DEFAULT_LOCALIZER", "DEFAULT_LOCALIZER_OPTIONS", "LOCALIZERS", "ComponentRule",
           "Localizer", "MapSource", "UnionRule", "component_rule", "create_localizer",
           "default_localizer", "describe_localizer", "register_localizer", "stride_removed",
           "with_background"]


# --------------------------------------------------------------------------------------
# Box rules
# --------------------------------------------------------------------------------------


@dataclass
class UnionRule:
    """The paper's rule: every row and column whose maximum (of the bilinearly upsampled
    map) exceeds ``threshold``; None: the family default."""

    threshold: float | None = None

    def resolved_threshold(self, network: nn.Module) -> float:
        """``threshold``, or the model family's default k."""
        return localization_defaults(network).threshold if self.threshold is None \
            else self.threshold

    def boxes(self, maps: torch.Tensor, image_size: tuple[int, int], network: nn.Module
              ) -> tuple[torch.Tensor, torch.Tensor]:
        return heatmap_boxes(maps, self.resolved_threshold(network), image_size,
                             return_degenerate=True)


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
    """A map source and a box rule; :meth:`boxes` localizes a batch of images.

    The localizer owns which map makes the box: :meth:`maps` (and, per dataset sample,
    :meth:`sample_maps`) is the map its rule reads, :meth:`resolve` its settings on a
    model and :meth:`map_size` the map's size there; pictures, cards and the box pass ask
    it, never a stage or reduction of their own.
    """

    name: str
    source: MapSource = field(default_factory=MapSource)
    rule: Any = field(default_factory=UnionRule)
    options: dict[str, Any] = field(default_factory=dict)  # as given, for logs and cards
    head: nn.Module | None = None  # the method's projector (see attach)
    #: 'median': subtract the dataset's per-pixel median map before the rule
    #: (:mod:`timm_ccrop.localize.background`); None: the maps as they are.
    background: str | None = None
    background_map: torch.Tensor | None = None  # set by fit
    #: The ``background`` option as given: 'auto' is resolved per model family by
    #: :meth:`check` (median until then, the choice of most families).
    background_option: str | None = None

    #: Whether the map is a channel reduction (``ddt`` and ``ccam`` read raw features).
    uses_reduction = True

    @property
    def needs_fit(self) -> bool:
        """Whether :meth:`fit` must see the dataset before :meth:`boxes` (a background to
        subtract; DDT and the contrastive CAM always)."""
        return self.background is not None

    @property
    def stage(self) -> int:
        return self.source.stage

    def check(self, network: nn.Module) -> None:
        """Fail early on a stage the model does not have; settle ``background='auto'`` for
        ``network``'s family (the box pass and the pictures call this first)."""
        for stage in self.source.stages():
            resolve_stage(network, stage)
        if self.background_option == "auto":
            self.background = localization_defaults(unwrap_model(network)).background

    def resolve(self, network: nn.Module) -> ResolvedLocalizer:
        """Every setting of this localizer on ``network``, family defaults filled in."""
        network = unwrap_model(network)
        self.check(network)
        source, defaults = self.source, localization_defaults(network)
        finest = min(source.stages(),
                     key=lambda s: resolve_stage(network, s)["reduction"])
        threshold = self.rule.resolved_threshold(network) \
            if isinstance(self.rule, UnionRule) else None
        family = (("reduction",) if self.uses_reduction and source.reduction is None else ()) \
            + (("threshold",) if threshold is not None and self.rule.threshold is None else ()) \
            + (("dilate",) if source.dilate == "auto" else ())
        return ResolvedLocalizer(
            description=self.describe(), stage=source.stage,
            module=str(resolve_stage(network, finest)["module"]),
            reduction=(source.reduction or defaults.reduction) if self.uses_reduction
            else None,
            threshold=threshold, finer=source.removes_stride(network),
            fuse=tuple(source.fuse),
            background=self.background, family_defaults=family)

    def map_size(self, network: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
        """The ``(h, w)`` of the maps the rule reads at ``image_size``: measured with one
        blank image (stride removed, stages fused, as the pass runs); the stride estimate
        where the model cannot run at that size."""
        network = unwrap_model(network)
        parameter = next(network.parameters(), None)
        blank = torch.zeros(1, int(getattr(network, "in_chans", 3)), *image_size,
                            device=None if parameter is None else parameter.device,
                            dtype=None if parameter is None else parameter.dtype)
        try:
            with eval_mode(network), torch.no_grad():
                maps, _ = self.source.maps(network, blank)
            return int(maps.shape[-2]), int(maps.shape[-1])
        except Exception:  # a fixed-size model at another size: the stride estimate
            stride = min(resolve_stage(network, s)["reduction"] for s in self.source.stages())
            stride = max(1, stride // 2) if self.source.removes_stride(network) else stride
            return math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride)

    def too_coarse(self, network: nn.Module, image_size: tuple[int, int],
                   map_size: tuple[int, int] | None = None) -> bool:
        """Warn and return True when the map at ``image_size`` (:meth:`map_size`, or the
        ``map_size`` already measured) is below 3x3: every box would be the whole image."""
        size = map_size or self.map_size(network, image_size)
        return warn_too_coarse(self.describe(), type(unwrap_model(network)).__name__, size,
                               image_size)

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

    def held_boxes(self, network: nn.Module | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(boxes, degenerate)`` of every dataset sample when the localizer already
        holds them (``harvest``: read from its bank, no pass over the data); None: they
        come from a box pass (:func:`~timm_ccrop.localize.localize_loader` asks this
        first)."""
        return None

    def sample_maps(self, network: nn.Module, images: torch.Tensor, indices: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The maps the rule reads (or read) for the dataset samples ``indices``, whose
        eval-transformed ``images`` are given: what made their boxes. A box-pass localizer
        computes them (:meth:`maps`); ``harvest`` reads its bank."""
        return self.maps(network, images)

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
        boxes[degenerate] = torch.tensor(FULL_BOX, dtype=boxes.dtype, device=boxes.device)
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
    dilate = options.pop("dilate", False)
    if dilate not in (True, False, "auto"):
        raise ValueError(f"dilate must be true, false or auto, got {dilate!r}")
    source = MapSource(stage=int(options.pop("stage", -1)),
                       reduction=options.pop("reduction", None), dilate=dilate, fuse=fuse)
    if source.reduction is not None and source.reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got "
                         f"{source.reduction!r}")
    return source


def with_background(localizer: Localizer, options: dict[str, Any]) -> Localizer:
    """The localizer with the ``background`` option of ``options`` (popped, checked):
    'auto' means the median map until :meth:`Localizer.check` settles it for the
    network's family."""
    localizer.background_option = pop_background(options)
    localizer.background = "median" if localizer.background_option == "auto" \
        else localizer.background_option
    return localizer


def _paper(options: dict[str, Any]) -> Localizer:
    return Localizer("paper", MapSource(stage=-1, reduction="sum"), UnionRule(0.1))


def _union(options: dict[str, Any]) -> Localizer:
    threshold = options.pop("threshold", None)
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    source = _source(options)
    return with_background(
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
    return with_background(Localizer("component", _source(options), rule), options)


def _peak(options: dict[str, Any]) -> Localizer:
    merged = {"dilate": "auto", "level": 2.0, **options}
    localizer = _component(merged)  # pops what it takes; unknown keys stay in merged
    for key in [k for k in options if k not in merged]:
        del options[key]
    localizer.name = "peak"
    return localizer


#: The default localizer. ``peak`` is the ``component`` rule with the connected component
#: holding the peak, above twice the map's mean, on the last map made twice as fine by
#: removing the last downsampling stride at inference where the family's defaults say so
#: (``dilate='auto'``: all but EfficientNet) (every option of ``component`` may
#: override these). Its default options, since 2026-12-07 (issue 21, docs/realistic.md):
#: ``reduction='contrast'`` (each position's distance from its image's median feature)
#: and ``keep=0.5`` (the box spans every component peaking at >= half the peak), chosen by
#: box IoU on the training split of development runs with a different photograph behind
#: every image (0.175 vs 0.078 for the previous default); then confirmed on the built-in
#: benchmark's 10 paired seeds: Δ linear +9.20 [+6.25, +12.16], 1.09 of the oracle's gain
#: (docs/results-builtin-chosen.md, the rule of docs/plan-realistic.md amendment 3);
#: ``background='auto'``: the dataset's median map subtracted first (what every image
#: shares; docs/localization.md "Background subtraction"), except for the families whose
#: maps it empties (the family-defaults table of :mod:`timm_ccrop.localize.heatmaps`).
DEFAULT_LOCALIZER = "peak"
DEFAULT_LOCALIZER_OPTIONS: dict[str, Any] = {"reduction": "contrast", "keep": 0.5,
                                             "background": "auto"}

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


