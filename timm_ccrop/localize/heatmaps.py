"""Heatmaps and boxes: channel reductions, per-family defaults and the paper's box rule.

ContrastiveCrop's first half (Peng et al., CVPR 2022, section 3.2): the channel reduction
of a feature map, min-max normalised per image and bilinearly upsampled to the image
size, is a heatmap; the tight rectangle around every position above a threshold ``k`` is
the object box. Degenerate heatmaps (constant, NaN/inf, nothing above the threshold) and
maps smaller than 3x3 give the whole-image box; they are counted, never a crash or a NaN
box.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from ..crop.boxes import FULL_BOX
from ..models.backbones import eval_mode, unwrap_model
from .hooks import MIN_MAP_SIZE, FeatureHook

__all__ = ["REDUCTIONS", "LocalizationDefaults", "feature_heatmaps", "heatmap_boxes",
           "localization_defaults", "normalise_maps", "reduce_channels"]

#: Channel reductions: the paper's plain sum (right for post-ReLU CNN maps), ReLU then
#: sum, the L2 norm over channels (for signed features: ConvNeXt, ViT, Swin...), and
#: ``contrast``: the L2 distance of each position's feature vector from the image's own
#: per-channel median feature, i.e. how much a place differs from the rest of its image
#: (the image's own background, whatever it is, is its median where the object covers
#: less than half of the map).
REDUCTIONS = ("sum", "relu-sum", "l2", "contrast")

@dataclass(frozen=True)
class LocalizationDefaults:
    """Per-family defaults of the localization (see docs/family-defaults.md for the study)."""

    reduction: str
    threshold: float
    #: What ``background='auto'`` subtracts: the dataset's median map, or nothing.
    background: str | None = "median"
    #: Whether ``dilate='auto'`` (the default of ``peak``) removes the last stride.
    dilate: bool = True


# Chosen by measurement (scripts/family_defaults_study.py, docs/family-defaults.md): test-size
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
    # No median map (background='auto'): at 96 px on per-image photo backgrounds it took
    # EfficientNet-B0's boxes from 0.19-0.26 mean IoU (plain peak) to 0.06-0.07, below the
    # whole image's 0.157; ResNet, ConvNeXt and DeiT lost nothing by it (docs/realistic.md,
    # "Standard backbones at 96 px", box IoU on the training split's ground truth).
    # Nor the last stride (dilate='auto'): with it removed (a 6x6 map at 96 px) the same
    # run's boxes were 0.135-0.219 (peak) and 0.137-0.264 (contrast, keep 0.5) per snapshot,
    # against 0.191-0.272 and 0.184-0.250 on the plain 3x3 map, and its random-init boxes
    # fell below the whole image (docs/realistic.md, "EfficientNet's stride").
    "efficientnet": LocalizationDefaults("relu-sum", 0.4, background=None, dilate=False),
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


def reduce_channels(feature_map: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """``(N, C, h, w) -> (N, h, w)`` with one of :data:`REDUCTIONS`."""
    features = feature_map.float()
    if reduction == "sum":
        return features.sum(dim=1)
    if reduction == "relu-sum":
        return features.clamp_min(0).sum(dim=1)
    if reduction == "l2":
        return features.norm(dim=1)
    if reduction == "contrast":
        typical = features.flatten(2).median(dim=2).values[:, :, None, None]
        return (features - typical).norm(dim=1)
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def normalise_maps(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    normalised, degenerate = normalise_maps(maps)
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
    box, in the project's convention (:mod:`timm_ccrop.crop.boxes`). No per-image loop, and
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
    normalised, degenerate = normalise_maps(maps.float())
    if min(map_h, map_w) < MIN_MAP_SIZE:
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
    whole = torch.tensor(FULL_BOX, device=boxes.device)
    boxes = torch.where(degenerate.unsqueeze(1), whole, boxes)
    return (boxes, degenerate) if return_degenerate else boxes
