"""Colour operations on a batch of float images ``[B, 3, H, W]`` in [0, 1], per-image
factors: torchvision's tensor ops, batched (see :mod:`timm_ccrop.crop.augment`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as nnf

__all__ = ["BLUR_KERNEL", "apply_where", "adjust_brightness", "adjust_contrast", "adjust_hue",
           "adjust_saturation", "color_jitter", "gaussian_blur", "normalize", "rgb_to_grayscale",
           "solarize"]

BLUR_KERNEL = 23  # timm's hard-coded GaussianBlur kernel size
_GRAY = (0.2989, 0.587, 0.114)


def _per_image(factor: torch.Tensor | float, images: torch.Tensor) -> torch.Tensor:
    factor = torch.as_tensor(factor, dtype=images.dtype, device=images.device)
    return factor.reshape(-1, 1, 1, 1)


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, 1, H, W]``, torchvision's weights."""
    r, g, b = images.unbind(dim=-3)
    gray = r * _GRAY[0]
    return gray.add_(g, alpha=_GRAY[1]).add_(b, alpha=_GRAY[2]).unsqueeze(-3)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return torch.lerp(other, images, factor).clamp_(0.0, 1.0)


def adjust_brightness(images: torch.Tensor, factor) -> torch.Tensor:
    """Per-image ``torchvision.transforms.functional.adjust_brightness`` (float images)."""
    return (images * _per_image(factor, images)).clamp_(0.0, 1.0)


def adjust_contrast(images: torch.Tensor, factor) -> torch.Tensor:
    weights = torch.tensor(_GRAY, dtype=images.dtype, device=images.device)
    mean = (images.mean(dim=(-2, -1)) @ weights).view(-1, 1, 1, 1)  # mean of the gray image
    return _blend(images, mean, _per_image(factor, images))


def adjust_saturation(images: torch.Tensor, factor) -> torch.Tensor:
    return _blend(images, rgb_to_grayscale(images), _per_image(factor, images))


def adjust_hue(images: torch.Tensor, factor) -> torch.Tensor:
    """Per-image hue shift in [-0.5, 0.5]: torchvision's RGB -> HSV -> RGB round trip,
    algebraically simplified (hue kept in sixths; ``v * s`` is the chroma ``max - min``)."""
    r, g, b = images.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    numerator = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    base = 4.0 - 4.0 * is_r.to(images.dtype) - 2.0 * is_g.to(images.dtype)  # 0, 2 or 4
    shift = torch.as_tensor(factor, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    # Flat pixels have numerator 0, so any positive divisor gives torchvision's hue 0.
    hue6 = (numerator / chroma.clamp_min(1e-12)).add_(base).add_(6.0 * shift)
    hue6 = hue6.sub_(torch.floor(hue6 / 6.0).mul_(6.0))  # mod 6 (remainder is slow on CPU)
    # HSV -> RGB: channel n = v - chroma * clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6.
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=images.dtype, device=images.device)
    k = offsets.view(1, 3, 1, 1) + hue6.unsqueeze(-3)  # in [1, 11)
    k = k.sub_((k >= 6.0).to(images.dtype).mul_(6.0))
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(-3) - chroma.unsqueeze(-3) * ramp


def solarize(images: torch.Tensor, threshold: float = 128 / 255) -> torch.Tensor:
    return torch.where(images >= threshold, 1.0 - images, images)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int = BLUR_KERNEL):
    """torchvision's tensor ``gaussian_blur`` with one sigma per image (reflect padding)."""
    batch, channels, height, width = images.shape
    kernel_size = min(kernel_size, 2 * (min(height, width) - 1) + 1)
    half = kernel_size // 2
    x = torch.linspace(-half, half, kernel_size, dtype=images.dtype, device=images.device)
    sigma = torch.as_tensor(sigma, dtype=images.dtype, device=images.device).reshape(-1, 1)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    flat = images.reshape(1, batch * channels, height, width)
    flat = nnf.pad(flat, (half, half, half, half), mode="reflect")
    flat = nnf.conv2d(flat, kernel[:, None, None, :], groups=batch * channels)
    flat = nnf.conv2d(flat, kernel[:, None, :, None], groups=batch * channels)
    return flat.reshape(batch, channels, height, width)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]):
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def apply_where(images: torch.Tensor, mask: torch.Tensor, op, *args) -> torch.Tensor:
    """``images[mask] = op(images[mask], *args[mask])``, in place (one host sync for the
    ``nonzero``)."""
    index = mask.nonzero().squeeze(1)
    if index.numel() == 0:
        return images
    picked = op(images.index_select(0, index), *(a.index_select(0, index) for a in args))
    return images.index_copy_(0, index, picked)


def color_jitter(
    images: torch.Tensor,
    factors: torch.Tensor,
    order: torch.Tensor,
    apply: torch.Tensor,
    ops: Sequence[int] = (0, 1, 2, 3),
) -> torch.Tensor:
    """ColorJitter with per-image ``factors`` ``[B, 4]`` (b, c, s, hue) in per-image
    ``order`` ``[B, 4]`` (a permutation of 0..3), on the rows where ``apply`` is True.
    Ops not in ``ops`` (strength 0) are skipped, as torchvision skips them."""
    images = images.clone()  # the steps below write in place
    for step in range(4):
        for op_id, op in enumerate(_JITTER_OPS):
            if op_id not in ops:
                continue
            mask = apply & (order[:, step] == op_id)
            images = apply_where(images, mask, op, factors[:, op_id])
    return images
