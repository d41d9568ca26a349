"""The base class of every Siamese method: it owns the backbone, the momentum targets and
the optimizer parameter groups, so a method adds only its heads and its loss.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = [
    "MOMENTUM_SCHEDULES",
    "SiameseMethod",
    "backbone_feature_dim",
    "cosine_momentum",
]

#: Momentum schedules of the target networks (MoCo, BYOL).
MOMENTUM_SCHEDULES = ("constant", "cosine")


def cosine_momentum(base_momentum: float, progress: float) -> float:
    """BYOL's schedule: ``1 - (1 - base) * (cos(pi * progress) + 1) / 2``, base -> 1."""
    return 1.0 - (1.0 - base_momentum) * (math.cos(math.pi * progress) + 1.0) / 2.0


def backbone_feature_dim(backbone: nn.Module) -> int:
    """Width of a timm backbone's pooled output (``num_classes=0``).

    ``head_hidden_size`` when the model has one: some timm models put a pre-logits layer
    after ``num_features`` (MobileNetV3's conv_head, say), and the pooled output is that.
    """
    for attribute in ("head_hidden_size", "num_features"):
        value = getattr(backbone, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"{type(backbone).__name__} has neither head_hidden_size nor num_features: "
                     "pass a timm model")


class SiameseMethod(nn.Module):
    """A self-supervised method over two views, trained by a generic loop.

    Subclasses set ``name``, build their heads in ``__init__`` (after calling
    ``super().__init__(backbone)``; widths from ``self.num_features``), create momentum
    targets with :meth:`add_momentum_target`, and implement :meth:`forward`. Everything the
    method keeps (target networks, MoCo's queue) is a submodule or registered buffer, so
    ``state_dict()`` is the whole training state of the method.

    Args:
        backbone: a timm model created with ``num_classes=0`` (pooled features out).
    """

    name: ClassVar[str]
    #: Whether the official recipe synchronises BatchNorm across processes (the trainer
    #: converts on CUDA only; MoCo uses shuffle-BN instead).
    sync_batchnorm: ClassVar[bool] = True
    #: Submodules whose parameters keep a fixed learning rate when the method asks for it.
    fixed_lr_modules: tuple[str, ...] = ()

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        num_classes = getattr(backbone, "num_classes", 0)
        if num_classes:
            raise ValueError(f"the backbone has a {num_classes}-class classifier; create it with "
                             "num_classes=0 so that it returns pooled features")
        self.backbone = backbone
        self.num_features = backbone_feature_dim(backbone)
        self._momentum_pairs: list[tuple[str, str]] = []
        self.base_momentum = 0.0
        self.momentum_schedule = "constant"
        #: The momentum of the last target update (for logging).
        self.current_momentum = float("nan")

    # --- hyper-parameters ---------------------------------------------------------------------

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        """The keyword arguments of ``__init__`` (besides the backbone) and their defaults."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]
        return {p.name: p.default for p in parameters
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    # --- forward helpers ----------------------------------------------------------------------

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        """Loss of one batch: ``{'loss': scalar with grad, **detached scalar logs}``.

        Args:
            views: two tensors ``(B, 3, H, W)``, the two augmented views of the same images.
        """
        raise NotImplementedError

    @staticmethod
    def two_views(views: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Check and unpack the two views."""
        if len(views) != 2:
            raise ValueError(f"expected 2 views, got {len(views)} (multi-crop is not supported)")
        first, second = views
        if first.shape[0] != second.shape[0]:
            raise ValueError(f"the views hold different batch sizes: {first.shape[0]} and "
                             f"{second.shape[0]}")
        return first, second

    def encode(self, images: Tensor, backbone: nn.Module | None = None) -> Tensor:
        """Pooled ``(B, C)`` features of ``images`` from ``backbone`` (default: the online one)."""
        features = (backbone if backbone is not None else self.backbone)(images)
        if features.ndim != 2:
            raise ValueError(f"the backbone returned shape {tuple(features.shape)}, expected "
                             "(batch, features): create it with num_classes=0 and a global pool")
        return features

    # --- momentum targets ---------------------------------------------------------------------

    def set_momentum(self, momentum: float, schedule: str = "constant") -> None:
        """Set the target networks' base momentum and its schedule (validated)."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if schedule not in MOMENTUM_SCHEDULES:
            raise ValueError(f"momentum_schedule must be one of {MOMENTUM_SCHEDULES}, got "
                             f"{schedule!r}")
        self.base_momentum, self.momentum_schedule = float(momentum), schedule

    def add_momentum_target(self, online_name: str) -> nn.Module:
        """Register ``<online_name>_momentum``: a frozen copy of submodule ``online_name``,
        updated by :meth:`momentum_update` after each optimizer step."""
        target = copy.deepcopy(getattr(self, online_name))
        target.requires_grad_(False)
        target_name = f"{online_name}_momentum"
        self.add_module(target_name, target)
        self._momentum_pairs.append((online_name, target_name))
        return target

    def momentum_at(self, progress: float) -> float:
        """The target momentum at ``progress`` (fraction of training done, in [0, 1])."""
        if self.momentum_schedule == "cosine":
            return cosine_momentum(self.base_momentum, progress)
        return self.base_momentum

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """``target = momentum * target + (1 - momentum) * online``, parameters only.

        Buffers (BN running statistics) are not averaged: each target network keeps the
        statistics of its own forward passes, as in the official MoCo and BYOL code.
        """
        for online_name, target_name in self._momentum_pairs:
            online = [p.detach() for p in getattr(self, online_name).parameters()]
            target = list(getattr(self, target_name).parameters())
            if len(online) != len(target):
                raise RuntimeError(f"{online_name} and {target_name} no longer match")
            torch._foreach_mul_(target, momentum)
            torch._foreach_add_(target, online, alpha=1.0 - momentum)
        self.current_momentum = momentum

    def check_dataset(self, num_samples: int) -> None:
        """Warn about settings that do not suit a dataset of ``num_samples`` images (called
        by the trainer before training; nothing to check by default)."""

    def on_after_optimizer_step(self, progress: float) -> None:
        """Called by the trainer after every optimizer step (not after skipped ones).

        Args:
            progress: fraction of training done after this step, in [0, 1] (the BYOL cosine
                schedule reads it). Values above 1 (a few more steps than planned) count as
                1 rather than stopping a long run at its end.
        """
        if not progress >= 0.0:  # also NaN
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        if self._momentum_pairs:
            self.momentum_update(self.momentum_at(min(progress, 1.0)))

    # --- optimizer ----------------------------------------------------------------------------

    def _no_weight_decay_names(self) -> set[str]:
        # timm lists 1-d-looking but >1-d parameters (pos_embed, cls_token...) this way.
        names: set[str] = set()
        no_weight_decay = getattr(self.backbone, "no_weight_decay", None)
        if callable(no_weight_decay):
            names = {f"backbone.{name}" for name in no_weight_decay()}
        return names

    def parameter_groups(
        self, weight_decay: float, exclude_norm_bias: bool = True
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups of the trainable parameters (targets excluded).

        Args:
            weight_decay: decay of the decayed groups.
            exclude_norm_bias: no decay for biases, norm weights (every parameter of < 2
                dims) and the backbone's ``no_weight_decay()`` names (ViT pos_embed...).
                The official ContrastiveCrop code decays everything (False).

        Returns:
            Non-empty groups, each ``{'params', 'weight_decay', 'fixed_lr', 'name'}``.
            ``fixed_lr`` is True for the groups whose learning rate the schedule must not
            change (SimSiam's predictor with ``fixed_predictor_lr``).
        """
        skip = self._no_weight_decay_names() if exclude_norm_bias else set()
        buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            fixed = any(name.startswith(f"{module}.") for module in self.fixed_lr_modules)
            decay = not (exclude_norm_bias and (parameter.ndim <= 1 or name in skip))
            buckets.setdefault((fixed, decay), []).append(parameter)
        groups = []
        for fixed in (False, True):
            for decay in (True, False):
                params = buckets.get((fixed, decay))
                if params:
                    groups.append({
                        "params": params,
                        "weight_decay": weight_decay if decay else 0.0,
                        "fixed_lr": fixed,
                        "name": ("fixed_lr_" if fixed else "") + ("decay" if decay else "no_decay"),
                    })
        return groups
