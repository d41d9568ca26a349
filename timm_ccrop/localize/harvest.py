"""Harvested boxes: heatmaps read from the training forward itself, no extra pass.

Every training step already runs the backbone on two crops of each image. A forward hook
on the localizer's stage (:class:`MapCapture`) keeps each view's feature map, reduced over
channels as the default localizer reduces it; :class:`HeatmapBank` pastes it back into
the image through the crop's known geometry (the crop box, with the flip undone) and
folds it into a per-sample running heatmap. Boxes are read from the bank with the default
localizer's rule whenever they are due, at no cost beyond reading a table.

The bank (see docs/harvest.md for the measurements behind the choices)
    ``resolution x resolution`` cells per image (default 16 x 16) over the image's
    normalised coordinates, two float16 planes: the running mean ``E`` and its weight
    ``W`` (1 KiB per image at 16 x 16). Small crops see the object at a larger scale, so
    the accumulated map can be finer than any single forward's map (4 x 4 for a 32 px
    CIFAR ResNet); 16 x 16 is about the finest the smallest crops resolve (a crop of 20%
    of the area is 45% of the side; a quarter of that is a ninth of the image).

The update (an exponential moving average over the views that cover each cell)
    Each view's map is normalised (``norm``, default ``batch``: divided by the mean of
    every map of the step, see :data:`NORMS`), sampled bilinearly at the centres of the
    bank cells inside the crop, and weighted per cell by ``a = rate x coverage``,
    ``coverage`` the share of the cell inside the crop (1 inside, a fraction at the
    crop's border, 0 outside). Then
    ``W <- (1 - a) W + a`` and ``E <- E + (a / W) (m - E)``: ``E`` is the weighted mean
    of the views seen at that cell, recent ones weighing most (a view's weight shrinks by
    ``1 - a`` for every later view covering the cell). Cells a view does not cover keep
    their value: without the weight they would decay toward zero while the crops look
    elsewhere (ContrastiveCrop's crops avoid the box centre). Dividing by ``W`` also
    removes the start-up bias of an average that starts from zero. A cell no view has
    covered has ``W = 0`` and reads as 0; an image no view has covered yet has no box.

Correct under any sharding: each step's ``(index, maps, geometry)`` rows are gathered
across processes (:func:`~timm_ccrop.utils.distributed.gather_rows`) and every process folds
the same rows in the same order, so every bank is identical; rows touch only their own
image, so the order of the processes does not matter either. The bank lives in shared
memory like the box table, is saved in checkpoints (:meth:`HeatmapBank.state_dict`), and
the update is deterministic, so a resumed run ends bit-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..crop.boxes import FULL_BOX
from ..utils.distributed import first_occurrences, gather_rows
from .background import median_map, subtract_background
from .heatmaps import REDUCTIONS, localization_defaults, normalise_maps, reduce_channels
from .hooks import FeatureHook, to_nchw
from .localizers import (
    DEFAULT_LOCALIZER,
    ComponentRule,
    Localizer,
    MapSource,
    component_rule,
    create_localizer,
    register_localizer,
    with_background,
)

__all__ = ["HARVEST_NORM", "HARVEST_RATE", "HARVEST_RESOLUTION", "NORMS", "HarvestLocalizer",
           "Harvester", "HeatmapBank", "MapCapture", "harvester_for",
           "paste_maps"]

#: Cells per side of the running heatmap (16: about what the smallest crops resolve).
HARVEST_RESOLUTION = 16
#: Weight of one fully covering view in the running mean (about 1 / rate views remembered).
HARVEST_RATE = 0.25
#: How each view's map is scaled before it is pasted. ``batch``: divided by the mean of all
#: maps of the step (all views, all processes): a crop of background stays low next to a
#: crop of the object, and the drift of the activations' scale over training cancels; it
#: beat the others on the harvest study's recorded maps (docs/harvest.md). ``mean``: by
#: the map's own mean. ``minmax``: to [0, 1] per map (the box pass's normalisation; every
#: crop then has a hot spot, also a crop of background).
NORMS = ("batch", "mean", "minmax")
HARVEST_NORM = "batch"
#: Maps read into boxes per chunk (the component labelling holds a few copies of a chunk).
_CHUNK = 4096


def _cell_edges(resolution: int) -> torch.Tensor:
    return torch.arange(resolution + 1, dtype=torch.float32) / resolution


def _axis(low: torch.Tensor, high: torch.Tensor, resolution: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per crop ``[M]`` and cell ``[R]``: the cell centre in the crop's ``[0, 1]`` span,
    and the share of the cell inside the crop."""
    edges = _cell_edges(resolution)
    centres = (edges[:-1] + edges[1:]) / 2
    span = (high - low).clamp_min(1e-6)[:, None]
    position = (centres[None] - low[:, None]) / span
    inside = (torch.minimum(edges[1:][None], high[:, None])
              - torch.maximum(edges[:-1][None], low[:, None])).clamp_min(0) * resolution
    return position, inside


def paste_maps(maps: torch.Tensor, geometry: torch.Tensor, resolution: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Put each view's map back into its image: ``(values, coverage)``, both ``[M, R, R]``.

    Args:
        maps: ``[M, h, w]`` maps of the views (as the network saw them: flipped views give
            flipped maps).
        geometry: ``[M, 5]`` rows ``(x0, y0, x1, y1, flipped)``: the crop box in the
            image (normalised) and whether the view was mirrored after the crop.
        resolution: cells per side of the image grid.

    ``values`` samples the map bilinearly at each cell centre (the flip undone);
    ``coverage`` is the share of each cell inside the crop (0 outside, where ``values``
    is meaningless).
    """
    maps, geometry = maps.float().cpu(), geometry.float().cpu()
    x, cover_x = _axis(geometry[:, 0], geometry[:, 2], resolution)
    y, cover_y = _axis(geometry[:, 1], geometry[:, 3], resolution)
    # a mirrored view's column s shows the crop's column 1 - s
    x = torch.where(geometry[:, 4:5] > 0.5, 1.0 - x, x)
    grid = torch.stack(torch.broadcast_tensors((2 * x - 1)[:, None, :],
                                               (2 * y - 1)[:, :, None]), dim=-1)
    values = F.grid_sample(maps[:, None], grid, mode="bilinear", padding_mode="border",
                           align_corners=False)[:, 0]
    return values, cover_y[:, :, None] * cover_x[:, None, :]


class HeatmapBank:
    """A running heatmap per image, in shared memory (see the module docstring).

    Args:
        num_samples: images in the training set (one row each, by sample index).
        resolution: cells per side (default :data:`HARVEST_RESOLUTION`).
        rate: weight of one fully covering view (default :data:`HARVEST_RATE`), in (0, 1].
        norm: how each view's map is scaled first, one of :data:`NORMS`.
    """

    def __init__(self, num_samples: int, resolution: int = HARVEST_RESOLUTION,
                 rate: float = HARVEST_RATE, norm: str = HARVEST_NORM) -> None:
        _check_options(resolution, rate, norm)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.resolution, self.rate, self.norm = int(resolution), float(rate), norm
        shape = (int(num_samples), self.resolution, self.resolution)
        # float16: values and weights lie in [0, 1]; 1 KiB per image at 16 x 16
        self.mean = torch.zeros(shape, dtype=torch.float16).share_memory_()
        self.weight = torch.zeros(shape, dtype=torch.float16).share_memory_()

    def __len__(self) -> int:
        return self.mean.shape[0]

    @property
    def bytes_per_sample(self) -> int:
        """Memory of one image's row (both planes)."""
        return 2 * self.resolution ** 2 * self.mean.element_size()

    def accumulate(self, maps: torch.Tensor, indices: torch.Tensor, geometry: torch.Tensor,
                   accelerator: Any = None) -> None:
        """Fold one step's views into the bank.

        Args:
            maps: ``[B, V, h, w]`` channel-reduced maps of the views (not yet normalised).
            indices: ``[B]`` sample indices.
            geometry: ``[B, V, 5]`` crop boxes and flips (``ViewGeometry`` rows).
            accelerator: under several processes, rows are gathered from all of them
                first, so every process's bank ends identical.
        """
        self._check_step(maps, indices, geometry)
        batch, views = maps.shape[:2]
        rows = gather_rows(accelerator, indices.to(maps.device).long(),
                           maps.flatten(1).float(), geometry.to(maps.device).flatten(1).float())
        indices, flat_maps, flat_geometry = (t.cpu() for t in rows)
        keep = first_occurrences(indices)
        maps, bad = self._normalise(flat_maps[keep].view(-1, views, *maps.shape[2:]))
        geometry = flat_geometry[keep].view(-1, views, 5)
        for view in range(views):  # in view order: the same on every process
            self._fold(indices[keep], maps[:, view], bad[:, view], geometry[:, view])

    def _normalise(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[M, V, h, w]`` maps scaled by :attr:`norm`, and ``[M, V]`` maps that cannot
        be (non-finite, constant under minmax, no positive mean)."""
        if self.norm == "minmax":
            normalised, bad = normalise_maps(maps.flatten(0, 1))
            return normalised.view_as(maps), bad.view(maps.shape[:2])
        finite = torch.isfinite(maps).flatten(2).all(dim=2)
        maps = torch.where(finite[..., None, None], maps, torch.zeros_like(maps))
        if self.norm == "mean":
            scale = maps.mean(dim=(2, 3), keepdim=True)
        else:  # batch: one scale for the step, from its finite maps
            scale = (maps.sum() / (finite.sum() * maps.shape[2] * maps.shape[3]).clamp_min(1)
                     ).expand(*maps.shape[:2], 1, 1)
        bad = ~finite | (scale[..., 0, 0] <= 0)
        return maps / torch.where(scale > 0, scale, torch.ones_like(scale)), bad

    def _check_step(self, maps: torch.Tensor, indices: torch.Tensor,
                    geometry: torch.Tensor) -> None:
        if maps.ndim != 4 or geometry.ndim != 3 or tuple(geometry.shape) != (
                *maps.shape[:2], 5) or indices.shape != maps.shape[:1]:
            raise ValueError(f"accumulate takes maps [B, V, h, w], indices [B] and geometry "
                             f"[B, V, 5]; got {tuple(maps.shape)}, {tuple(indices.shape)} and "
                             f"{tuple(geometry.shape)}")
        if indices.numel() and not 0 <= int(indices.min()) <= int(indices.max()) < len(self):
            raise ValueError(f"sample indices must lie in [0, {len(self) - 1}], got "
                             f"[{int(indices.min())}, {int(indices.max())}]; the bank was "
                             "made for another dataset")

    def _fold(self, indices: torch.Tensor, maps: torch.Tensor, bad: torch.Tensor,
              geometry: torch.Tensor) -> None:
        """One view per image: the coverage-weighted moving average of the module doc."""
        values, coverage = paste_maps(maps, geometry, self.resolution)
        step = self.rate * coverage * (~bad).float()[:, None, None]  # a degenerate map: none
        mean, weight = self.mean[indices].float(), self.weight[indices].float()
        weight = weight + step * (1.0 - weight)
        mean = torch.where(weight > 0, mean + step / weight.clamp_min(1e-12) * (values - mean),
                           mean)
        self.mean[indices] = mean.to(self.mean.dtype)
        self.weight[indices] = weight.to(self.weight.dtype)

    def heatmaps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(maps [N, R, R] float32, unseen [N] bool)``: the running maps, and the images
        no view has covered yet."""
        return self.mean.float(), self.weight.flatten(1).amax(dim=1) <= 0

    def rule_maps(self, rows: Any, background: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The maps a rule reads for the images ``rows`` (indices or a slice): min-max
        normalised, less ``background`` when given; and their degenerate mask (unseen,
        constant, nothing left above the background)."""
        normalised, bad = normalise_maps(self.mean[rows].float())
        unseen = self.weight[rows].flatten(1).amax(dim=1) <= 0
        if background is not None:
            normalised, empty = subtract_background(normalised, background)
            bad = bad | empty
        return normalised, bad | unseen

    def boxes(self, localizer: Localizer, network: nn.Module | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(boxes [N, 4], degenerate [N])`` from the running maps with ``localizer``'s
        rule (:meth:`Localizer.boxes_from_maps`) on :meth:`rule_maps`; unseen or constant
        maps are degenerate (whole image). A subtracted background is kept as
        ``localizer.background_map`` (what later pictures of these boxes subtract)."""
        maps, unseen = self.heatmaps()
        background = self._background(maps, unseen) if localizer.background else None
        localizer.background_map = background
        boxes, degenerate = [], []
        for start in range(0, len(self), _CHUNK):
            normalised, bad = self.rule_maps(slice(start, start + _CHUNK), background)
            found = localizer.boxes_from_maps(normalised, bad,
                                              (self.resolution, self.resolution), network)
            boxes.append(found[0])
            degenerate.append(found[1])
        return torch.cat(boxes), torch.cat(degenerate)

    def _background(self, maps: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor | None:
        """The per-pixel median of the seen images' normalised maps (no forward: the bank
        is the whole dataset on every process); None before any image was seen."""
        if bool(unseen.all()):
            return None
        chunks = (normalise_maps(maps[start:start + _CHUNK])[0][~unseen[start:start + _CHUNK]]
                  for start in range(0, len(self), _CHUNK))
        return median_map(chunk for chunk in chunks if len(chunk))

    def state_dict(self) -> dict[str, Any]:
        """Copies of the bank's planes and settings, for checkpoints."""
        return {"mean": self.mean.clone(), "weight": self.weight.clone(),
                "resolution": self.resolution, "rate": self.rate, "norm": self.norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` in place (the shared memory stays the same)."""
        if tuple(state["mean"].shape) != tuple(self.mean.shape):
            raise ValueError(f"heatmap bank state has shape {tuple(state['mean'].shape)}, this "
                             f"bank {tuple(self.mean.shape)}: resume with the same dataset "
                             "and the same harvest resolution")
        self.mean.copy_(state["mean"])
        self.weight.copy_(state["weight"])
        self.rate = float(state.get("rate", self.rate))
        self.norm = state.get("norm", self.norm)


def _check_options(resolution: Any, rate: Any, norm: Any) -> None:
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 2:
        raise ValueError(f"harvest resolution must be an integer >= 2 (cells per side, "
                         f"default {HARVEST_RESOLUTION}), got {resolution!r}")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate <= 1:
        raise ValueError(f"harvest rate must be in (0, 1] (weight of one view, default "
                         f"{HARVEST_RATE}), got {rate!r}")
    if norm not in NORMS:
        raise ValueError(f"harvest norm must be one of {', '.join(NORMS)}, got {norm!r}")


class MapCapture(FeatureHook):
    """A forward hook that keeps the channel-reduced map of EVERY forward of one stage
    (the two views of a step may go through the backbone in one call or in two).

    Maps are detached and reduced at once (float32 ``[n, h, w]``), so nothing of the
    training graph is held. :meth:`take` returns what was captured since the last take.
    """

    def __init__(self, model: nn.Module, stage: int = -1, reduction: str | None = None) -> None:
        super().__init__(model, stage, detach=True)
        self.reduction = reduction or localization_defaults(self.model).reduction
        self.captured: list[torch.Tensor] = []

    def _keep_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        nchw = to_nchw(output, int(self.info["num_chs"]), self._image_size,
                       int(self.info["reduction"]), self.num_prefix_tokens)
        self.captured.append(reduce_channels(nchw.detach(), self.reduction))

    def take(self) -> torch.Tensor | None:
        """The maps of every forward since the last take, in call order (None if none)."""
        captured, self.captured = self.captured, []
        return torch.cat(captured) if captured else None


class Harvester:
    """The training forward's maps, folded into a :class:`HeatmapBank` step by step.

    Wrap the training steps in :meth:`capturing` (the hook is on while inside) and call
    :meth:`step` after each step's forward with its sample indices and crop geometry.

    Args:
        bank: the running heatmaps.
        localizer: the run's ``harvest`` localizer (its stage, reduction and box rule).
        accelerator: under several processes, each step's rows are gathered from all.
    """

    def __init__(self, bank: HeatmapBank, localizer: Localizer, accelerator: Any = None) -> None:
        self.bank = bank
        self.localizer = localizer
        self.accelerator = accelerator
        self.capture: MapCapture | None = None

    @contextlib.contextmanager
    def capturing(self, model: nn.Module) -> Iterator[Harvester]:
        """Capture every forward of ``model``'s stage in the block (the training steps)."""
        source = self.localizer.source
        with MapCapture(model, source.stage, source.reduction) as capture:
            self.capture = capture
            try:
                yield self
            finally:
                self.capture = None

    def step(self, indices: torch.Tensor, geometry: torch.Tensor | None) -> None:
        """Fold the maps captured in this step's forward; their rows are the views in
        order (view 0 of every image, then view 1, ...), as the methods call the backbone.
        A method that encodes only its first views online (MoCo, not symmetric) gives
        those only."""
        maps = self.capture.take() if self.capture is not None else None
        if maps is None:
            return
        if geometry is None:
            raise ValueError("harvesting needs each view's crop geometry: build the views with "
                             "multi_view_transform(..., geometry=True) or "
                             "BatchedViews(..., return_geometry=True)")
        batch = len(indices)
        views = maps.shape[0] // max(1, batch)
        if views * batch != maps.shape[0] or views > geometry.shape[1]:
            raise RuntimeError(f"the backbone saw {maps.shape[0]} images for {batch} samples "
                               f"of {geometry.shape[1]} views; cannot tell the views apart")
        per_view = maps.view(views, batch, *maps.shape[1:]).transpose(0, 1)
        self.bank.accumulate(per_view, indices, geometry[:, :views], self.accelerator)

    def load_checkpoint_state(self, state: dict[str, Any] | None, source: Any) -> None:
        """Restore the bank from a checkpoint's ``harvest`` entry (one-line error when the
        checkpoint was not trained with harvesting)."""
        if state is None:
            raise ValueError(f"checkpoint {source} holds no harvested heatmaps (it was not "
                             "trained with --localizer harvest); resume with its localizer, "
                             "or start a new --output")
        self.bank.load_state_dict(state)


def harvester_for(localizer: Localizer | None, num_samples: int, accelerator: Any = None,
                  substituted: torch.Tensor | None = None) -> Harvester | None:
    """A harvester with an empty bank when ``localizer`` is a :class:`HarvestLocalizer`,
    else None (the boxes then come from a separate box pass). The bank becomes the
    localizer's (:meth:`HarvestLocalizer.held_boxes`); ``substituted`` (``[N]`` bool, the
    training loader's flags of unreadable images replaced by another) marks images whose
    maps are a stand-in's: they get no box."""
    if not isinstance(localizer, HarvestLocalizer):
        return None
    localizer.substituted = substituted
    return Harvester(localizer.make_bank(num_samples), localizer, accelerator)


@dataclasses.dataclass
class HarvestLocalizer(Localizer):
    """``harvest``: boxes from the bank of maps harvested in the training forward.

    Its rule is the default localizer's (a component rule; ``rule``, ``level``, ``pick``
    and ``upsample`` override it), its map the training forward's at ``stage`` with
    ``reduction``. :meth:`make_bank` makes the run's bank. Without a bank (show-boxes, a
    separate box pass) :meth:`boxes` reads the plain map of the whole image at the
    training resolution: what one uncropped view would add to the bank.
    """

    resolution: int = HARVEST_RESOLUTION
    rate: float = HARVEST_RATE
    norm: str = HARVEST_NORM
    bank: HeatmapBank | None = dataclasses.field(default=None, repr=False, compare=False)
    #: [N] bool: images the training loader replaced by another (their maps are not theirs)
    substituted: torch.Tensor | None = dataclasses.field(default=None, repr=False,
                                                         compare=False)

    def make_bank(self, num_samples: int) -> HeatmapBank:
        """An empty bank for a training set of ``num_samples`` images; it becomes this
        localizer's (its boxes and maps are read from it from then on)."""
        self.bank = HeatmapBank(num_samples, self.resolution, self.rate, self.norm)
        return self.bank

    def map_size(self, network: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
        """With a bank, its ``resolution x resolution``: the rule reads the running maps,
        finer than any single crop's map; without one, the plain map's."""
        if self.bank is None:
            return super().map_size(network, image_size)
        return self.resolution, self.resolution

    def held_boxes(self, network: nn.Module | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The bank's boxes (no pass over the data); images the training loader replaced
        are degenerate. None without a bank."""
        if self.bank is None:
            return None
        boxes, degenerate = self.bank.boxes(self, network)
        if self.substituted is not None and bool(self.substituted.any()):
            degenerate = degenerate | self.substituted.cpu().bool()
            boxes[degenerate] = torch.tensor(FULL_BOX)
        return boxes, degenerate

    def sample_maps(self, network: nn.Module, images: torch.Tensor, indices: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The bank's running maps of ``indices``, as the rule read them at the last
        :meth:`held_boxes` (the same background subtracted); without a bank, the plain
        map of ``images``."""
        if self.bank is None:
            return super().sample_maps(network, images, indices)
        background = self.background_map if self.background else None
        return self.bank.rule_maps(indices.cpu(), background)


def _default_rule_options() -> dict[str, Any]:
    # the default localizer's rule without its options: harvest's own studies chose it so
    # (docs/harvest.md); keep and contrast were chosen for a separate box pass
    rule = create_localizer(DEFAULT_LOCALIZER).rule
    return dataclasses.asdict(rule) if isinstance(rule, ComponentRule) else {}


def _harvest(options: dict[str, Any]) -> HarvestLocalizer:
    resolution = options.pop("resolution", HARVEST_RESOLUTION)
    rate = options.pop("rate", HARVEST_RATE)
    norm = options.pop("norm", HARVEST_NORM)
    _check_options(resolution, rate, norm)
    rule_options = {**_default_rule_options(),
                    **{k: options.pop(k) for k in ("rule", "level", "pick", "upsample")
                       if k in options}}
    source = MapSource(stage=int(options.pop("stage", -1)),
                       reduction=options.pop("reduction", None))
    if source.reduction is not None and source.reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got "
                         f"{source.reduction!r}")
    harvest = HarvestLocalizer("harvest", source, component_rule(rule_options),
                               resolution=int(resolution), rate=float(rate), norm=norm)
    return with_background(harvest, options)  # 'auto' settles per family, as for peak


register_localizer("harvest", _harvest)
