"""Semantic-aware localization: heatmaps and object boxes from a timm model's own features.

ContrastiveCrop's first half (Peng et al., CVPR 2022, section 3.2): the model being
trained looks at every training image; the channel reduction of its last feature map,
min-max normalised per image and bilinearly upsampled to the image size, is a heatmap;
the tight rectangle around every position above a threshold ``k`` is the object box.

Feature maps are captured by a forward hook on the module that timm's ``feature_info``
names for the chosen stage, so the same capture works inside any forward (also a
training step). Hooked outputs are brought to NCHW for every family: CNNs give NCHW,
ViT/DeiT give tokens (prefix tokens stripped, the grid restored, dynamic sizes too),
Swin/MambaOut give NHWC, Mixer/LeViT give tokens without prefix.

Degenerate heatmaps (constant, NaN/inf, nothing above the threshold) and maps smaller
than 3x3 give the whole-image box; they are counted, never a crash or a NaN box.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..backbones import eval_mode, unwrap_model
from ..boxes import box_area, paired_iou
from ..distributed import gather_rows

_LOG = logging.getLogger(__name__)

__all__ = [
    "REDUCTIONS",
    "FeatureHook",
    "LocalizationDefaults",
    "LocalizationResult",
    "eval_transform",
    "feature_heatmaps",
    "localize_dataset",
    "localize_loader",
    "heatmap_boxes",
    "localization_defaults",
    "reduce_channels",
    "resolve_stage",
    "unwrap_model",
    "warn_if_too_coarse",
]

#: Channel reductions: the paper's plain sum (right for post-ReLU CNN maps), ReLU then
#: sum, and the L2 norm over channels (for signed features: ConvNeXt, ViT, Swin...).
REDUCTIONS = ("sum", "relu-sum", "l2")

_MIN_MAP_SIZE = 3


@dataclass(frozen=True)
class LocalizationDefaults:
    """Per-family defaults of the localization (see docs/localization.md for the study)."""

    reduction: str
    threshold: float


# Chosen by measurement (scripts/localization_study.py, docs/localization.md): test-size
# models trained with the labels on SyntheticObjects at 64/128 px, mean IoU with the
# ground-truth boxes on a held-out split, stages giving >= 4x4 maps; k = the best threshold,
# or a lower one within 0.03 IoU of it (looser box, more of the object kept). The paper's
# k = 0.1 gave loose boxes on every family (ResNet: mean area 0.49-0.94 of the image for
# objects of 0.14; ViT: the whole image). Keys are lowercase substrings of the architecture
# name, first match wins ("resnetv2" before "resnet": pre-activation stage outputs are signed).
# Measured: resnet, regnetx (weakly trained), efficientnet, vit. Not measured, by analogy:
# resnext (timm's ResNet class), regnety (post-ReLU like regnetx), resnetv2, deit; "vit" also
# catches hybrids (levit, mobilevit, fastvit...). regnetv/regnetz (pre-activation /
# linear-out) and ConvNeXt (did not learn within the CPU budget) get the signed default,
# a compromise between the signed families measured (efficientnet 0.4, vit 0.6).
_SIGNED_DEFAULT = LocalizationDefaults("l2", 0.5)
_FAMILY_DEFAULTS: dict[str, LocalizationDefaults] = {
    "resnetv2": _SIGNED_DEFAULT,
    "resnet": LocalizationDefaults("sum", 0.4),
    "resnext": LocalizationDefaults("sum", 0.4),  # timm's ResNet class, post-ReLU
    "regnetx": LocalizationDefaults("sum", 0.4),
    "regnety": LocalizationDefaults("sum", 0.4),
    "efficientnet": LocalizationDefaults("relu-sum", 0.4),
    "vit": LocalizationDefaults("l2", 0.6),
    "deit": LocalizationDefaults("l2", 0.6),  # timm's VisionTransformer class
}


def _family(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = str(cfg.get("architecture", "")) or type(model).__name__
    return name.lower()


def localization_defaults(model: nn.Module) -> LocalizationDefaults:
    """Default reduction and threshold for ``model``'s family."""
    family = _family(unwrap_model(model))
    for prefix, defaults in _FAMILY_DEFAULTS.items():
        if prefix in family:
            return defaults
    return _SIGNED_DEFAULT


def resolve_stage(model: nn.Module, stage: int = -1) -> dict[str, Any]:
    """timm's ``feature_info`` entry of ``stage`` (negative counts from the last)."""
    model = unwrap_model(model)
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(
            f"{type(model).__name__} has no feature_info; build the backbone with "
            "timm.create_model so its stages are known"
        )
    entries = list(info) if isinstance(info, (list, tuple)) else info.get_dicts()
    if not -len(entries) <= stage < len(entries):
        raise ValueError(
            f"stage {stage} does not exist: {type(model).__name__} has {len(entries)} stages "
            f"(use -1 for the last, -2 for the one before, ...)"
        )
    return dict(entries[stage])


def _token_grid(tokens: int, image_size: tuple[int, int], reduction: int) -> tuple[int, int]:
    height, width = image_size
    guess = (max(1, round(height / reduction)), max(1, round(width / reduction)))
    if guess[0] * guess[1] == tokens:
        return guess
    # Non-square inputs with rounding: the factorisation closest to the image's aspect.
    best = None
    for rows in range(1, tokens + 1):
        if tokens % rows:
            continue
        cols = tokens // rows
        error = abs(math.log(rows / cols) - math.log(height / width))
        if best is None or error < best[0]:
            best = (error, rows, cols)
    assert best is not None
    return best[1], best[2]


def to_nchw(
    output: Any,
    num_channels: int,
    image_size: tuple[int, int],
    reduction: int,
    num_prefix_tokens: int = 0,
) -> torch.Tensor:
    """Bring a hooked stage output to NCHW, whatever the family's layout.

    Args:
        output: the module's output (tensor, or a tuple whose first item is the map).
        num_channels: the stage's channel count (``feature_info['num_chs']``).
        image_size: ``(H, W)`` of the input images (to restore token grids).
        reduction: the stage's stride (``feature_info['reduction']``).
        num_prefix_tokens: class/register/distillation tokens ahead of patch tokens.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"cannot read a feature map from a {type(output).__name__}")
    if output.ndim == 4:
        if output.shape[1] == num_channels and output.shape[-1] != num_channels:
            return output
        if output.shape[-1] == num_channels:
            if output.shape[1] == num_channels:  # C == H == ...: ambiguous, use the grid size
                expected = round(image_size[0] / reduction)
                return output if output.shape[2] == expected else output.permute(0, 3, 1, 2)
            return output.permute(0, 3, 1, 2)
    elif output.ndim == 3 and output.shape[-1] == num_channels:
        tokens = output[:, num_prefix_tokens:]
        rows, cols = _token_grid(tokens.shape[1], image_size, reduction)
        return tokens.transpose(1, 2).reshape(output.shape[0], num_channels, rows, cols)
    raise ValueError(
        f"unexpected stage output of shape {tuple(output.shape)} for {num_channels} channels; "
        "expected NCHW, NHWC or tokens (N, L, C)"
    )


class FeatureHook:
    """Forward hook that keeps the NCHW feature map of one stage of a timm model.

    Use as a context manager; the hook is removed on exit, also on exceptions::

        with FeatureHook(model) as hook:
            model(images)            # any forward: eval pass or training step
            maps = hook.feature_map  # (N, C, h, w)
    """

    def __init__(self, model: nn.Module, stage: int = -1, detach: bool = True) -> None:
        self.model = unwrap_model(model)
        self.info = resolve_stage(self.model, stage)
        modules = dict(self.model.named_modules())
        if self.info["module"] not in modules:
            raise ValueError(
                f"feature_info names module {self.info['module']!r}, which "
                f"{type(self.model).__name__} does not have"
            )
        self.module = modules[self.info["module"]]
        self.detach = detach
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
        self._output: Any = None
        self._image_size: tuple[int, int] | None = None
        self._handles: list[Any] = []

    def _keep_input_size(self, module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].ndim == 4:
            self._image_size = (int(args[0].shape[-2]), int(args[0].shape[-1]))

    def _keep_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._output = output.detach() if self.detach and torch.is_tensor(output) else output

    def __enter__(self) -> FeatureHook:
        self._handles = [
            self.model.register_forward_pre_hook(self._keep_input_size),
            self.module.register_forward_hook(self._keep_output),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def feature_map(self) -> torch.Tensor:
        """The last captured map as NCHW."""
        if self._output is None or self._image_size is None:
            raise RuntimeError(
                f"the hook on {self.info['module']!r} never fired: run a forward of the "
                "model inside the `with` block (this model may not call that module in forward)"
            )
        return to_nchw(
            self._output,
            int(self.info["num_chs"]),
            self._image_size,
            int(self.info["reduction"]),
            self.num_prefix_tokens,
        )


def reduce_channels(feature_map: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """``(N, C, h, w) -> (N, h, w)`` with one of :data:`REDUCTIONS`."""
    features = feature_map.float()
    if reduction == "sum":
        return features.sum(dim=1)
    if reduction == "relu-sum":
        return features.clamp_min(0).sum(dim=1)
    if reduction == "l2":
        return features.norm(dim=1)
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _normalise(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image min-max to [0, 1]; also the mask of maps that cannot be normalised."""
    flat = maps.flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    flat = torch.where(torch.isfinite(flat), flat, torch.zeros_like(flat))
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    constant = span.squeeze(1) <= 0
    normalised = (flat - low) / torch.where(span > 0, span, torch.ones_like(span))
    return normalised.view_as(maps), ~finite | constant


def feature_heatmaps(
    model: nn.Module,
    images: torch.Tensor,
    stage: int = -1,
    reduction: str | None = None,
    return_degenerate: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps ``(N, h, w)`` in [0, 1] from the feature map of one stage.

    Runs ``model`` on ``images`` in eval mode under ``no_grad`` (restoring its mode),
    captures the stage's output with a :class:`FeatureHook`, reduces channels and
    min-max normalises per image. Degenerate maps (constant or non-finite) come back as
    zeros; with ``return_degenerate=True`` their mask is returned too.

    Args:
        model: a timm model (wrappers are removed).
        images: ``(N, 3, H, W)`` normalised input batch.
        stage: feature stage (``-1`` last; use ``-2`` for backbones whose last map is
            too coarse).
        reduction: one of :data:`REDUCTIONS`; default per family
            (:func:`localization_defaults`).
    """
    network = unwrap_model(model)
    reduction = reduction or localization_defaults(network).reduction
    with eval_mode(network), torch.no_grad(), FeatureHook(network, stage) as hook:
        network(images)
        maps = reduce_channels(hook.feature_map, reduction)
    normalised, degenerate = _normalise(maps)
    normalised[degenerate] = 0.0
    return (normalised, degenerate) if return_degenerate else normalised


@functools.lru_cache(maxsize=64)
def _bilinear_weights(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """F.interpolate's bilinear weights (``align_corners=False``) as an ``(out, in)`` float64
    matrix, and the output positions that can hold a maximum along this axis.

    Between two source taps the interpolation is linear in the output position, so over
    the outputs that share a low tap the maximum is at the first or the last of them.
    """
    source = (torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size) - 0.5
    source = source.clamp_min(0)
    low = source.floor().long().clamp_max(in_size - 1)
    high = (low + 1).clamp_max(in_size - 1)
    weight = source - low.double()
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    positions = torch.arange(out_size)
    matrix.index_put_((positions, low), 1 - weight, accumulate=True)
    matrix.index_put_((positions, high), weight, accumulate=True)
    extreme = torch.ones(out_size, dtype=torch.bool)
    extreme[1:-1] = (low[1:-1] != low[:-2]) | (low[1:-1] != low[2:])
    return matrix, extreme


def _line_maxima(maps: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column maxima ``(N, H)``, ``(N, W)`` of the bilinear upsampling of ``maps``
    ``(N, h, w)`` to ``size``, without materialising it.

    Full resolution along one axis, only the positions that can hold a maximum along the
    other: about ``2 h W + 2 w H`` values per map instead of ``H W``. float64 matmuls (never
    TF32), equal to F.interpolate's float32 values up to rounding.
    """
    along_y, extreme_y = _bilinear_weights(maps.shape[1], size[0])
    along_x, extreme_x = _bilinear_weights(maps.shape[2], size[1])
    device = maps.device
    along_y, along_x = along_y.to(device), along_x.to(device)
    maps = maps.double()
    row_max = (along_y @ maps @ along_x[extreme_x.to(device)].T).amax(dim=2)
    col_max = (along_y[extreme_y.to(device)] @ maps @ along_x.T).amax(dim=1)
    return row_max, col_max


def heatmap_boxes(
    heatmaps: torch.Tensor,
    threshold: float = 0.1,
    out_size: tuple[int, int] | None = None,
    return_degenerate: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Boxes ``(N, 4)`` around every position above ``threshold``, vectorised.

    The heatmaps are min-max normalised per image, bilinearly upsampled to ``out_size``
    (``align_corners=False``, as the official code), thresholded (strictly greater), and
    the first/last rows and columns that hold a position above the threshold give the
    box, in the project's convention (:mod:`timm_ccrop.boxes`). No per-image loop, and
    the upsampled maps are never built: only their row and column maxima are computed
    (exact bilinear weights in float64), which is all the box needs. This equals the
    official ``F.interpolate`` result up to float rounding (a value within ~1e-7 of the
    threshold may flip).

    Degenerate maps (constant, all zero, NaN/inf, nothing above the threshold, or smaller
    than 3x3) give the whole-image box; ``return_degenerate=True`` also returns their mask.

    Args:
        heatmaps: ``(N, h, w)`` (or ``(N, 1, h, w)``) maps, any scale.
        threshold: ``k`` in [0, 1]; the paper uses 0.1.
        out_size: ``(H, W)`` image size; default the heatmap's own size.
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    maps = heatmaps.squeeze(1) if heatmaps.ndim == 4 else heatmaps
    if maps.ndim != 3:
        raise ValueError(f"heatmaps must be (N, h, w), got shape {tuple(heatmaps.shape)}")
    count, map_h, map_w = maps.shape
    height, width = out_size or (map_h, map_w)
    normalised, degenerate = _normalise(maps.float())
    if min(map_h, map_w) < _MIN_MAP_SIZE:
        degenerate = torch.ones_like(degenerate)
    if count == 0:
        empty = maps.new_zeros((0, 4), dtype=torch.float32)
        return (empty, degenerate) if return_degenerate else empty
    rows, cols = _line_maxima(normalised, (height, width))
    rows, cols = rows > threshold, cols > threshold  # (N, H), (N, W)
    empty = ~rows.any(dim=1)
    degenerate = degenerate | empty
    first_row = rows.float().argmax(dim=1)
    last_row = height - 1 - rows.flip(1).float().argmax(dim=1)
    first_col = cols.float().argmax(dim=1)
    last_col = width - 1 - cols.flip(1).float().argmax(dim=1)
    boxes = torch.stack(
        [first_col / width, first_row / height, (last_col + 1) / width, (last_row + 1) / height],
        dim=1,
    ).float()
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device)
    boxes = torch.where(degenerate.unsqueeze(1), whole, boxes)
    return (boxes, degenerate) if return_degenerate else boxes


def _stage_map_size(model: nn.Module, image_size: tuple[int, int], stage: int) -> tuple[int, int]:
    """The stage's real map size at ``image_size`` (one eval forward of a blank image)."""
    network = unwrap_model(model)
    parameter = next(network.parameters(), None)
    blank = torch.zeros(
        1, int(getattr(network, "in_chans", 3)), *image_size,
        device=None if parameter is None else parameter.device,
        dtype=None if parameter is None else parameter.dtype,
    )
    with eval_mode(network), torch.no_grad(), FeatureHook(network, stage) as hook:
        network(blank)
        height, width = hook.feature_map.shape[-2:]
    return int(height), int(width)


def warn_if_too_coarse(model: nn.Module, image_size: tuple[int, int], stage: int = -1) -> bool:
    """Warn (once per call site) when the stage's map at ``image_size`` is below 3x3.

    Returns True if the map is too coarse to localize anything.
    """
    info = resolve_stage(model, stage)
    try:  # measured: stride arithmetic misses patchify stems (ConvNeXt: 2x2 at 72-95 px)
        map_h, map_w = _stage_map_size(model, image_size, stage)
    except Exception:  # a model that cannot run at this size: the stride estimate
        map_h = math.ceil(image_size[0] / info["reduction"])
        map_w = math.ceil(image_size[1] / info["reduction"])
    if min(map_h, map_w) >= _MIN_MAP_SIZE:
        return False
    warnings.warn(
        f"{type(unwrap_model(model)).__name__} stage {stage} ({info['module']}, stride "
        f"{info['reduction']}) gives a {map_h}x{map_w} map at {image_size[0]}x{image_size[1]}: "
        "too coarse to localize, so every box is the whole image. Use an earlier stage "
        "(stage=-2), larger images, or a small-image stem (e.g. resnet18_cifar: 3x3 "
        "stride-1 stem, no max-pool).",
        stacklevel=2,
    )
    return True


@dataclass
class LocalizationResult:
    """Boxes of a whole dataset by sample index, and how the pass went."""

    boxes: torch.Tensor  # (N, 4), the project's convention
    degenerate: torch.Tensor  # (N,) bool: whole-image fallback (use random crop there)
    seconds: float
    threshold: float
    reduction: str
    stage: int
    stats: dict[str, float] = field(default_factory=dict)

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
            numbers["whole_image_mean_iou"] = float(
                paired_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand_as(ground_truth),
                           ground_truth.float()).mean()
            )
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
    from timm.data import create_transform
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

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
    threshold: float | None = None,
    stage: int = -1,
    reduction: str | None = None,
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
        threshold, reduction: ``k`` and the channel reduction; default per family.
        stage: feature stage (``-1`` last).
        accelerator: an ``accelerate.Accelerator`` for multi-process passes.
        mean, std: normalisation of the model's inputs.
    """
    from ..data import BoxedDataset

    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    indexed = BoxedDataset(dataset, eval_transform(size, mean, std), return_index=True)
    loader = DataLoader(indexed, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    return localize_loader(
        model, loader, len(indexed), size, threshold=threshold, stage=stage,
        reduction=reduction, accelerator=accelerator, progress=progress,
        ground_truth=getattr(dataset, "gt_boxes", None),
    )


def localize_loader(
    model: nn.Module,
    loader: Any,
    num_samples: int,
    image_size: tuple[int, int],
    threshold: float | None = None,
    stage: int = -1,
    reduction: str | None = None,
    accelerator: Any = None,
    progress: bool = True,
    ground_truth: torch.Tensor | None = None,
) -> LocalizationResult:
    """The localization pass over a loader of ``(images, target, index)`` batches.

    The loader may be sharded in any way (Accelerate's batch sharding, a
    DistributedSampler that pads with duplicates, uneven last batches): every process
    gathers ``(index, box)`` pairs and writes each box at its own index, so the result
    equals the single-process one. Duplicates only rewrite the same box; a sample that
    no process saw is an error, not a silent whole-image box.
    """
    network = unwrap_model(accelerator.unwrap_model(model) if accelerator else model)
    defaults = localization_defaults(network)
    threshold = defaults.threshold if threshold is None else float(threshold)
    reduction = reduction or defaults.reduction
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    too_coarse = warn_if_too_coarse(network, image_size, stage)
    device = accelerator.device if accelerator else next(network.parameters()).device
    autocast = accelerator.autocast if accelerator else contextlib.nullcontext
    is_main = accelerator is None or accelerator.is_main_process
    start = time.perf_counter()
    indices, boxes, degenerate = [], [], []
    with eval_mode(network), torch.no_grad():
        for images, _, batch_indices in tqdm(
            loader, desc="box pass", disable=not (progress and is_main), leave=False
        ):
            images = images.to(device, non_blocking=True)
            if too_coarse:
                batch_boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(len(images), 1)
                batch_bad = torch.ones(len(images), dtype=torch.bool)
            else:
                with autocast(), FeatureHook(network, stage) as hook:
                    network(images)
                    maps = reduce_channels(hook.feature_map, reduction)
                batch_boxes, batch_bad = heatmap_boxes(
                    maps, threshold, image_size, return_degenerate=True
                )
            indices.append(batch_indices.to(device))
            boxes.append(batch_boxes.to(device))
            degenerate.append(batch_bad.to(device))
    local = [torch.cat(rows) if rows else torch.zeros(0, device=device)
             for rows in (indices, boxes, degenerate)]
    all_indices, all_boxes, all_bad = gather_rows(
        accelerator, local[0].long(), local[1].float().reshape(-1, 4), local[2].long()
    )
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
    result = LocalizationResult(
        result_boxes, result_bad, time.perf_counter() - start, threshold, reduction, stage
    )
    result.stats = result.summary(ground_truth)
    if is_main:
        _LOG.info(
            "box pass: %d images in %.1f s, degenerate %.1f%%, mean area %.3f%s",
            num_samples, result.seconds, 100 * result.degenerate_share, result.mean_area,
            f", mean IoU {result.stats['box_mean_iou']:.3f}" if "box_mean_iou" in result.stats
            else "",
        )
    return result
