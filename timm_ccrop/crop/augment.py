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

Crop parameters and crop + resize
    :func:`~timm_ccrop.crop.crop_params.sample_crop_params` draws timm's crop sizes and
    the uniform or box-guided offsets of the whole batch;
    :func:`~timm_ccrop.crop.resize.resized_crop` crops and resizes it with two batched
    matrix products (both re-exported here).

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
from .crop_params import crop_geometry, sample_crop_params, uniforms
from .resize import resized_crop
from .transforms import CROP_MODES, DEFAULT_ALPHA, check_alpha
from .views import ViewRecipe, preset_recipes

__all__ = ["BatchedViews", "DeviceImageBank", "crop_geometry", "resized_crop",
           "sample_crop_params"]

BLUR_SIGMA = (0.1, 2.0)  # torchvision GaussianBlur default


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
        coins = uniforms((batch, 5), generator, device, torch.float32)
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
            sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * uniforms(
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
        u = uniforms((batch, 4), generator, device, torch.float32)
        low = torch.tensor([max(0.0, 1 - v) for v in values[:3]] + [-values[3]], device=device)
        high = torch.tensor([1 + v for v in values[:3]] + [values[3]], device=device)
        # An op with strength 0 is skipped by torchvision: factor 1 (hue 0) is the identity.
        factors = low + (high - low) * u
        order = uniforms((batch, 4), generator, device, torch.float32).argsort(dim=1)
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
