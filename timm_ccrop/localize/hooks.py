"""Feature maps of any timm backbone: forward hooks on a stage, brought to NCHW.

The hook sits on the module that timm's ``feature_info`` names for the chosen stage, so
the same capture works inside any forward (also a training step). Hooked outputs are
brought to NCHW for every family: CNNs give NCHW, ViT/DeiT give tokens (prefix tokens
stripped, the grid restored, dynamic sizes too), Swin/MambaOut give NHWC, Mixer/LeViT
give tokens without prefix.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..models.backbones import unwrap_model

__all__ = ["MIN_MAP_SIZE", "FeatureHook", "resolve_stage", "to_nchw"]

#: Maps smaller than this (per side) give no usable box: one cell is a third of the image.
MIN_MAP_SIZE = 3


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
    def output(self) -> Any:
        """The stage module's last output as it came (before the NCHW conversion of
        :attr:`feature_map`); None before the hook fired."""
        return self._output

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
