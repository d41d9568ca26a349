"""Crop and resize a whole batch at once: bilinear resampling as two batched matrix
products, one per axis.

Bilinear resampling is separable, so each image's crop-and-resize is two small matrix
products ``Wy[b] @ img[b] @ Wx[b]^T`` (one batched ``matmul`` each), with per-image
interpolation matrices built from the crop boxes. Unlike ``roi_align`` or
``grid_sample`` (which read outside the crop at its borders when upsampling), the
weights only ever touch pixels inside the crop, so ``antialias=False`` reproduces
``torchvision.transforms.functional.resized_crop(..., antialias=False)`` to float
rounding (tested to 1e-5). ``antialias=True`` (the default) widens the triangle filter
by the downscale factor, which is torchvision's / PIL's antialiased bilinear resize,
i.e. what the PIL pipeline does (tested against ``antialias=True`` to 1e-5).
"""

from __future__ import annotations

import torch

__all__ = ["resized_crop"]


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

