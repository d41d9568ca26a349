"""Batched SSL views on the training device: no per-image Python loop.

:class:`BatchedViews` turns a batch of uint8 images ``[B, 3, H, W]`` (and their object
boxes) into one normalised float view ``[B, 3, S, S]`` per
:class:`~timm_ccrop.crop.views.ViewRecipe`, with the same augmentations, in the same order
and with the same parameter distributions as the per-image PIL pipeline of
:func:`timm_ccrop.multi_view_transform`:

    crop + resize -> hflip -> colour jitter (p) -> grayscale (p) -> blur (p) -> solarize (p)
    -> normalise

Every random parameter is drawn for the whole batch at once (``torch.rand`` with an
optional ``torch.Generator`` on the images' device), so a batch costs a fixed number of
tensor ops whatever its size.

Crop parameters (:func:`sample_crop_params`)
    The crop size is timm's ``RandomResizedCropAndInterpolation`` draw, vectorised: 10
    candidates per image (area fraction uniform in ``scale``, log-uniform aspect ratio,
    Python-style round-half-even), the first one that fits is kept, images where none
    fits get timm's central fallback. Sampling is done in float64 like Python's.
    The offset is uniform on ``{0, ..., H - h}`` ('rcrop', and rows without a valid box),
    or ContrastiveCrop's box-guided offset with exactly the formulas of
    :func:`timm_ccrop.crop.transforms._box_offset` ('ccrop': per-image boxes; 'simccrop': the
    fixed box (0.25, 0.25, 0.75, 0.75) for every row). Beta(alpha, alpha) is drawn by the
    same inverse-CDF table as the per-image sampler (:func:`beta_quantiles`, linearly
    interpolated, one uniform per draw), not ``torch.distributions.Beta`` (two gamma draws
    per sample, and no ``generator`` argument).

Crop + resize (:func:`resized_crop`)
    Bilinear resampling is separable, so each image's crop-and-resize is two small matrix
    products ``Wy[b] @ img[b] @ Wx[b]^T`` (one batched ``matmul`` each), with per-image
    interpolation matrices built from the crop boxes. Unlike ``roi_align`` or
    ``grid_sample`` (which read outside the crop at its borders when upsampling), the
    weights only ever touch pixels inside the crop, so ``antialias=False`` reproduces
    ``torchvision.transforms.functional.resized_crop(..., antialias=False)`` to float
    rounding (tested to 1e-5). ``antialias=True`` (the default) widens the triangle filter
    by the downscale factor, which is torchvision's / PIL's antialiased bilinear resize,
    i.e. what the PIL pipeline does (tested against ``antialias=True`` to 1e-5).

Colour jitter
    torchvision's ``ColorJitter``: factors uniform in ``[max(0, 1 - b), 1 + b]`` (same for
    contrast and saturation), hue uniform in ``[-h, h]``, the four ops in a random order
    drawn independently per image (a random permutation per image, applied as 4 steps x 4
    ops on the index subsets that have op ``k`` at step ``s``: the cost of 4 whole-batch
    ops plus indexing). Applied with ``color_jitter_prob`` per image (timm's RandomApply).

Grayscale, blur, solarize
    Grayscale is ``rgb_to_grayscale`` (ITU-R 601-2 weights) to 3 channels. Blur is
    torchvision's ``GaussianBlur`` as timm configures it (kernel 23, sigma uniform in
    [0.1, 2] per image, reflect padding), run as a separable grouped convolution with one
    kernel per image. Solarize inverts values ``>= 128 / 255`` (``RandomSolarize(128)``
    on uint8, as in :func:`timm_ccrop.crop.views.view_transform`).

Precision note: the PIL pipeline rounds to uint8 after every step; this pipeline stays in
float32 from the resize on, so its outputs differ from PIL's by up to about one grey
level per step. The tests compare each op with torchvision's tensor functional ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .color_ops import (
    BLUR_KERNEL,
    apply_where,
    color_jitter,
    gaussian_blur,
    rgb_to_grayscale,
    solarize,
)
from .transforms import (
    CROP_MODES,
    DEFAULT_ALPHA,
    EDGE_EPS,
    QUANTILE_POINTS,
    SIMCCROP_BOX,
    beta_quantiles,
    check_alpha,
)
from .views import ViewRecipe, preset_recipes

__all__ = ["BatchedViews", "DeviceImageBank", "crop_geometry", "resized_crop",
           "sample_crop_params"]

BLUR_SIGMA = (0.1, 2.0)  # torchvision GaussianBlur default
_TRIES = 10


def _rand(shape: Sequence[int], generator: torch.Generator | None, device, dtype=torch.float64):
    return torch.rand(*shape, generator=generator, device=device, dtype=dtype)


def _as_long(value, batch: int, device) -> torch.Tensor:
    tensor = torch.as_tensor(value, device=device)
    return tensor.to(torch.long).expand(batch).contiguous() if tensor.ndim == 0 else tensor.long()


def _beta_table(alpha: float, device) -> torch.Tensor:
    return torch.tensor(beta_quantiles(float(alpha)), dtype=torch.float64, device=device)


def _beta_draws(u: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Beta(alpha, alpha) from uniforms ``u`` by the interpolated inverse-CDF ``table``."""
    position = u * QUANTILE_POINTS
    index = position.floor().long().clamp_(0, QUANTILE_POINTS - 1)
    low, high = table[index], table[index + 1]
    return low + (position - index) * (high - low)


def _box_offsets(
    size: torch.Tensor, crop: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
    beta: torch.Tensor,
) -> torch.Tensor:
    """Vectorised :func:`timm_ccrop.crop.transforms._box_offset` (``beta``: the Beta draws)."""
    sizef = size.double()
    first = torch.floor(sizef * start.double() + EDGE_EPS).long()
    last = torch.maximum(first, torch.ceil(sizef * end.double() - EDGE_EPS).long() - 1)
    limit = size - crop
    half = torch.div(crop, 2, rounding_mode="floor")
    low = torch.minimum((first - half).clamp_min(0), limit)
    high = torch.minimum((last - half).clamp_min(0), limit)
    span = high - low + 1
    step = torch.minimum(torch.floor(span.double() * beta).long(), span - 1)
    return low + step


def _crop_sizes(
    height: torch.Tensor, width: torch.Tensor, scale: tuple[float, float],
    ratio: tuple[float, float], generator: torch.Generator | None, batch: int, device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(crop_h, crop_w, found)``: timm's size draw (first of 10 tries, else the fallback)."""
    hf, wf = height.double(), width.double()
    area = (hf * wf)[:, None]

    # timm's 10 tries, all drawn at once; the first candidate that fits wins.
    draws = _rand((batch, _TRIES, 2), generator, device)
    target_area = (scale[0] + (scale[1] - scale[0]) * draws[..., 0]) * area
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * draws[..., 1])
    cand_w = torch.round(torch.sqrt(target_area * aspect)).long()
    cand_h = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (cand_w <= width[:, None]) & (cand_h <= height[:, None])
    found = fits.any(dim=1)
    pick = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    crop_h = cand_h.gather(1, pick).squeeze(1)
    crop_w = cand_w.gather(1, pick).squeeze(1)

    # Central fallback (timm): clip the aspect ratio into `ratio`, centre the crop.
    in_ratio = wf / hf
    fb_w = torch.where(in_ratio < ratio[0], width, torch.where(
        in_ratio > ratio[1], torch.round(hf * ratio[1]).long(), width))
    fb_h = torch.where(in_ratio < ratio[0], torch.round(wf / ratio[0]).long(), height)
    crop_h = torch.where(found, crop_h, fb_h)
    crop_w = torch.where(found, crop_w, fb_w)
    return crop_h, crop_w, found


def _crop_offsets(
    height: torch.Tensor, width: torch.Tensor, crop_h: torch.Tensor, crop_w: torch.Tensor,
    boxes: torch.Tensor | None, valid: torch.Tensor | None, alpha: float, crop_mode: str,
    generator: torch.Generator | None, batch: int, device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(top, left)`` before the fallback centring: one uniform pair, box-guided or not."""
    # Offsets: uniform (RandomResizedCrop) or box-guided (ContrastiveCrop).
    u = _rand((batch, 2), generator, device)
    top = torch.floor(u[:, 0] * (height - crop_h + 1).double()).long()
    left = torch.floor(u[:, 1] * (width - crop_w + 1).double()).long()
    if crop_mode == "simccrop":
        boxes = torch.tensor(SIMCCROP_BOX, dtype=torch.float64, device=device).expand(batch, 4)
        guided = torch.ones(batch, dtype=torch.bool, device=device)
    elif crop_mode == "ccrop" and boxes is not None:
        guided = (torch.ones(batch, dtype=torch.bool, device=device) if valid is None
                  else valid.to(device=device, dtype=torch.bool))
    else:
        guided = None
    if guided is not None:
        boxes = boxes.to(device)
        table = _beta_table(alpha, device)
        beta = _beta_draws(u, table)
        box_top = _box_offsets(height, crop_h, boxes[:, 1], boxes[:, 3], beta[:, 0])
        box_left = _box_offsets(width, crop_w, boxes[:, 0], boxes[:, 2], beta[:, 1])
        top = torch.where(guided, box_top, top)
        left = torch.where(guided, box_left, left)
    return top, left


def sample_crop_params(
    heights: torch.Tensor | int,
    widths: torch.Tensor | int,
    boxes: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    alpha: float = 0.6,
    crop_mode: str = "ccrop",
    generator: torch.Generator | None = None,
    batch: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image ``(top, left, crop_h, crop_w)`` (long tensors ``[B]``) for a whole batch.

    Args:
        heights, widths: image sizes, ``[B]`` tensors or ints (then ``batch`` or ``boxes``
            gives ``B``).
        boxes: ``[B, 4]`` boxes ``(x0, y0, x1, y1)`` in the project's convention (used by
            'ccrop' only; validated boxes are assumed, as in the per-image hot path).
        valid: ``[B]`` bool; rows that are False (or all rows when ``boxes`` is None) are
            cropped like RandomResizedCrop. Pass ``table.valid[idx] & table.is_active``.
        scale, ratio, alpha: as :class:`~timm_ccrop.ContrastiveCrop`.
        crop_mode: 'rcrop', 'ccrop' or 'simccrop'.
        generator: a ``torch.Generator`` on ``device`` (default: torch's global RNG).
    """
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
    if device is None:
        device = next(
            (t.device for t in (heights, widths, boxes) if isinstance(t, torch.Tensor)), "cpu"
        )
    if batch is None:
        batch = next(
            (t.shape[0] for t in (heights, widths, boxes, valid)
             if isinstance(t, torch.Tensor) and t.ndim > 0),
            None,
        )
        if batch is None:
            raise ValueError("pass batch= when heights, widths and boxes are all scalars")
    height = _as_long(heights, batch, device)
    width = _as_long(widths, batch, device)
    crop_h, crop_w, found = _crop_sizes(height, width, scale, ratio, generator, batch, device)
    top, left = _crop_offsets(
        height, width, crop_h, crop_w, boxes, valid, alpha, crop_mode, generator, batch, device
    )
    top = torch.where(found, top, torch.div(height - crop_h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(width - crop_w, 2, rounding_mode="floor"))
    return top, left, crop_h, crop_w


def crop_geometry(
    top: torch.Tensor, left: torch.Tensor, crop_h: torch.Tensor, crop_w: torch.Tensor,
    height: int, width: int, flipped: torch.Tensor,
) -> torch.Tensor:
    """``[B, 5]`` float rows ``(x0, y0, x1, y1, flipped)``: each crop as a box in the
    project's convention (normalised by the image size, pixel edges) and its flip (0/1),
    the same layout as :class:`~timm_ccrop.crop.transforms.ViewGeometry` rows."""
    boxes = torch.stack([left / width, top / height, (left + crop_w) / width,
                         (top + crop_h) / height], dim=1)
    return torch.cat([boxes.float(), flipped.float()[:, None]], dim=1)


# ----------------------------------------------------------------------------- resize


def _resize_weights(
    start: torch.Tensor, length: torch.Tensor, size_in: int, size_out: int, antialias: bool,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``[B, size_out, size_in]`` bilinear weights of a crop ``[start, start + length)``.

    antialias=False: PyTorch's ``interpolate(mode='bilinear', align_corners=False)`` on
    the cropped signal (source index clamped into the crop). antialias=True: the triangle
    filter widened by the downscale factor, torchvision's / PIL's antialiased bilinear.
    """
    device = start.device
    length = length.clamp_min(1).to(dtype)[:, None, None]
    start_f = start.to(dtype)[:, None, None]
    out = torch.arange(size_out, device=device, dtype=dtype)[None, :, None]
    pix = torch.arange(size_in, device=device, dtype=dtype)[None, None, :]
    factor = length / size_out
    rel = pix - start_f  # pixel index inside the crop
    inside = (rel >= 0) & (rel < length)
    if antialias:
        support = factor.clamp_min(1.0)
        centre = (out + 0.5) * factor  # in crop coordinates, pixel centres at j + 0.5
        weights = (1.0 - ((rel + 0.5 - centre) / support).abs()).clamp_min(0.0)
    else:
        src = ((out + 0.5) * factor - 0.5).clamp(min=0.0)
        src = torch.minimum(src, length - 1)
        weights = (1.0 - (rel - src).abs()).clamp_min(0.0)
    weights = weights * inside
    return weights / weights.sum(dim=2, keepdim=True).clamp_min(1e-12)


def resized_crop(
    images: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    size: int | tuple[int, int],
    antialias: bool = True,
    value_scale: float = 1.0,
) -> torch.Tensor:
    """Crop ``[top, top + h) x [left, left + w)`` of each image and resize it to ``size``.

    ``images``: float ``[B, C, H, W]``; parameters: ``[B]`` integer tensors. One batched
    matmul per axis. Matches ``torchvision.transforms.functional.resized_crop`` with
    bilinear interpolation and the same ``antialias`` to float rounding. ``value_scale``
    multiplies the output (folded into the weights: uint8 input with ``1 / 255``).
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    _, _, in_h, in_w = images.shape
    dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    images = images.to(dtype)
    wy = _resize_weights(top, height, in_h, out_h, antialias, dtype)  # [B, S, H]
    if value_scale != 1.0:
        wy = wy * value_scale
    wx = _resize_weights(left, width, in_w, out_w, antialias, dtype)  # [B, S, W]
    batch, channels = images.shape[:2]
    # Rows: [B, S, H] @ [B, H, C*W]; columns: [B, S*C, W] @ [B, W, S]. Plain bmm, no
    # broadcasting (which falls back to a slow path on CPU).
    planes = images.permute(0, 2, 1, 3).reshape(batch, in_h, channels * in_w)
    rows = torch.bmm(wy, planes).reshape(batch, out_h * channels, in_w)
    out = torch.bmm(rows, wx.transpose(1, 2))  # [B, S*C, S]
    return out.reshape(batch, out_h, channels, out_w).permute(0, 2, 1, 3).contiguous()


# ------------------------------------------------------------------------- pipeline


class BatchedViews(torch.nn.Module):
    """Batched multi-view SSL augmentation on the device of the images.

    Args:
        recipes: one :class:`ViewRecipe` per view (e.g. ``VIEW_PRESETS['cifar']``).
        crop_mode: 'rcrop' (RandomResizedCrop), 'ccrop' or 'simccrop'.
        alpha: Beta parameter (default 0.6 for 'ccrop', 0.1 for 'simccrop').
        antialias: antialiased bilinear downscale (as PIL; default) or plain bilinear.
        blur_kernel: Gaussian blur kernel size (timm: 23).

    Call with ``images`` uint8 (or float in [0, 1]) ``[B, 3, H, W]``, ``boxes`` ``[B, 4]``
    or None, ``valid`` ``[B]`` bool or None (None with boxes: all rows valid) and an
    optional ``torch.Generator`` on the images' device; returns one float32 view
    ``[B, 3, S, S]`` per recipe. With ``return_geometry=True`` it returns ``(views,
    geometry)``, ``geometry`` a ``[B, V, 5]`` tensor of each view's crop box in the image
    and its flip (:func:`crop_geometry`); the views and the random draws are the same.
    """

    def __init__(
        self,
        recipes: Sequence[ViewRecipe],
        crop_mode: str = "ccrop",
        alpha: float | None = None,
        antialias: bool = True,
        blur_kernel: int = BLUR_KERNEL,
    ) -> None:
        super().__init__()
        mode = {"rrc": "rcrop"}.get(crop_mode, crop_mode)
        if mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        recipes = tuple(recipes)
        if not recipes or not all(isinstance(r, ViewRecipe) for r in recipes):
            raise ValueError("recipes must be a non-empty sequence of ViewRecipe")
        for recipe in recipes:
            if recipe.interpolation != "bilinear":
                raise ValueError(
                    f"BatchedViews resizes bilinearly only, got interpolation "
                    f"{recipe.interpolation!r}"
                )
        self.recipes = recipes
        self.crop_mode = mode
        # rcrop never reads alpha; 1.0 keeps the attribute valid.
        self.alpha = check_alpha(DEFAULT_ALPHA.get(mode, 1.0) if alpha is None else alpha)
        self.antialias = bool(antialias)
        self.blur_kernel = int(blur_kernel)

    @classmethod
    def from_preset(
        cls,
        preset: str | Sequence[ViewRecipe] = "cifar",
        crop_mode: str = "ccrop",
        alpha: float | None = None,
        size: int | None = None,
        num_views: int | None = None,
        **kwargs,
    ) -> BatchedViews:
        """Same arguments as :func:`timm_ccrop.multi_view_transform`."""
        return cls(preset_recipes(preset, size, num_views), crop_mode, alpha, **kwargs)

    def extra_repr(self) -> str:
        return (f"views={len(self.recipes)}, crop_mode={self.crop_mode!r}, alpha={self.alpha}, "
                f"sizes={[r.size for r in self.recipes]}")

    def forward(
        self,
        images: torch.Tensor,
        boxes: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_geometry: bool = False,
    ) -> list[torch.Tensor] | tuple[list[torch.Tensor], torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        scale = 1.0 / 255.0 if images.dtype == torch.uint8 else 1.0
        floats = images.float()
        outputs = [self.view(floats, recipe, boxes, valid, generator, scale, return_geometry)
                   for recipe in self.recipes]
        if not return_geometry:
            return outputs
        views, geometry = zip(*outputs, strict=True)
        return list(views), torch.stack(geometry, dim=1)

    def view(
        self,
        images: torch.Tensor,
        recipe: ViewRecipe,
        boxes: torch.Tensor | None,
        valid: torch.Tensor | None,
        generator: torch.Generator | None,
        value_scale: float = 1.0,
        return_geometry: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One view of float images (in [0, 1] after multiplying by ``value_scale``);
        with ``return_geometry``, also its ``[B, 5]`` crop boxes and flips."""
        batch, _, height, width = images.shape
        device = images.device
        top, left, crop_h, crop_w = sample_crop_params(
            height, width, boxes, valid, recipe.scale, recipe.ratio, self.alpha,
            self.crop_mode, generator, batch=batch, device=device,
        )
        out = resized_crop(images, top, left, crop_h, crop_w, recipe.size, self.antialias,
                           value_scale)
        # One draw of every per-image coin and factor, whether used or not (fixed cost).
        coins = _rand((batch, 5), generator, device, torch.float32)
        flipped = coins[:, 0] < recipe.hflip  # never true when hflip is 0 (coins < 1)
        if recipe.hflip > 0:
            out = apply_where(out, flipped, lambda x: x.flip(-1))
        jitter = recipe.color_jitter
        if recipe.color_jitter_prob > 0 and jitter and any(j > 0 for j in jitter):
            ops = tuple(i for i, v in enumerate(list(jitter)[:4]) if v > 0)
            out = color_jitter(out, *self._jitter_params(jitter, batch, generator, device),
                               coins[:, 1] < recipe.color_jitter_prob, ops)
        if recipe.grayscale_prob > 0:
            out = apply_where(out, coins[:, 2] < recipe.grayscale_prob,
                               lambda x: rgb_to_grayscale(x).expand_as(x))
        if recipe.gaussian_blur_prob > 0:
            sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * _rand(
                (batch,), generator, device, torch.float32)
            mask = coins[:, 3] < recipe.gaussian_blur_prob
            out = apply_where(out, mask, lambda x, s: gaussian_blur(x, s, self.blur_kernel),
                               sigma)
        if recipe.solarize_prob > 0:
            out = apply_where(out, coins[:, 4] < recipe.solarize_prob, solarize)
        mean = torch.tensor(recipe.mean, dtype=out.dtype, device=device).view(1, -1, 1, 1)
        std = torch.tensor(recipe.std, dtype=out.dtype, device=device).view(1, -1, 1, 1)
        out = out.sub_(mean).div_(std)  # normalize(), in place
        if not return_geometry:
            return out
        return out, crop_geometry(top, left, crop_h, crop_w, height, width, flipped)

    @staticmethod
    def _jitter_params(jitter, batch, generator, device):
        values = (list(jitter) + [0.0] * 4)[:4]
        u = _rand((batch, 4), generator, device, torch.float32)
        low = torch.tensor([max(0.0, 1 - v) for v in values[:3]] + [-values[3]], device=device)
        high = torch.tensor([1 + v for v in values[:3]] + [values[3]], device=device)
        # An op with strength 0 is skipped by torchvision: factor 1 (hue 0) is the identity.
        factors = low + (high - low) * u
        order = _rand((batch, 4), generator, device, torch.float32).argsort(dim=1)
        return factors, order


class DeviceImageBank:
    """A whole fixed-size uint8 dataset ``[N, 3, H, W]`` resident on the training device.

    CIFAR-10 is 150 MB as uint8: ``bank.batch(indices)`` is one ``index_select`` on the
    device, no DataLoader, no host-to-device copy per step.
    """

    def __init__(self, images_uint8: torch.Tensor, device: torch.device | str = "cpu") -> None:
        if images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images_uint8.shape)}")
        if images_uint8.dtype != torch.uint8:
            raise ValueError(f"images must be uint8, got {images_uint8.dtype}")
        self.device = torch.device(device)
        self.images = images_uint8.to(self.device).contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        index = torch.as_tensor(indices, dtype=torch.long).to(self.device, non_blocking=True)
        return self.images.index_select(0, index)
