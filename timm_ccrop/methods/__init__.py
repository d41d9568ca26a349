"""Siamese self-supervised methods on any timm backbone: SimCLR, MoCo v2, BYOL, SimSiam.

Every method is a :class:`SiameseMethod`: ``method(views)`` returns ``{'loss', **logs}``,
``method.on_after_optimizer_step(progress)`` updates momentum targets, and
``method.parameter_groups(weight_decay)`` gives the optimizer groups. Build one by name::

    backbone = timm.create_model("resnet18_cifar", num_classes=0)
    method = build_method("moco", backbone, queue_size=65536)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import MOMENTUM_SCHEDULES, SiameseMethod, backbone_feature_dim, cosine_momentum
from .byol import BYOL
from .heads import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    MoCoProjectionHead,
    ProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    SimSiamProjectionHead,
)
from .moco import MoCo
from .simclr import SimCLR
from .simsiam import SimSiam

__all__ = [
    "BYOL",
    "METHODS",
    "MOMENTUM_SCHEDULES",
    "BYOLPredictionHead",
    "BYOLProjectionHead",
    "MethodArgumentError",
    "MoCo",
    "MoCoProjectionHead",
    "ProjectionHead",
    "SiameseMethod",
    "SimCLR",
    "SimCLRProjectionHead",
    "SimSiam",
    "SimSiamPredictionHead",
    "SimSiamProjectionHead",
    "backbone_feature_dim",
    "build_method",
    "cosine_momentum",
]

class MethodArgumentError(TypeError, ValueError):
    """A method hyper-parameter the method does not take, or of the wrong type (a user
    error: the command line prints it as one line)."""


#: Method name -> class.
METHODS: dict[str, type[SiameseMethod]] = {
    cls.name: cls for cls in (SimCLR, MoCo, BYOL, SimSiam)
}


def build_method(name: str, backbone: nn.Module, **hparams: Any) -> SiameseMethod:
    """Build method ``name`` (see :data:`METHODS`) around ``backbone``.

    Args:
        name: 'simclr', 'moco', 'byol' or 'simsiam' (case-insensitive).
        backbone: timm model created with ``num_classes=0``.
        **hparams: the method's keyword arguments; ``METHODS[name].default_hparams()``
            lists them with their defaults.

    Raises:
        ValueError: unknown method name.
        MethodArgumentError: (a TypeError and a ValueError) a hyper-parameter the method
            does not take, or one of a type it cannot use.
    """
    key = name.lower()
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    cls = METHODS[key]
    accepted = cls.default_hparams()
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise MethodArgumentError(f"{key} does not take hyper-parameter(s) {unknown}; it "
                                  f"takes {sorted(accepted)}")
    wrong = {name: value for name, value in hparams.items()
             if _kind_differs(accepted[name], value)}
    if wrong:
        expected = ", ".join(f"{name} like {accepted[name]!r}" for name in sorted(wrong))
        raise MethodArgumentError(f"{key}: method_kwargs {wrong} have the wrong type; "
                                  f"expected {expected}")
    try:
        return cls(backbone, **hparams)
    except TypeError as err:  # a value the method cannot use (base_temperature: abc)
        if not hparams:
            raise
        raise MethodArgumentError(f"{key}: cannot use method_kwargs {hparams}: {err}") from err


def _kind_differs(default: Any, value: Any) -> bool:
    """Whether ``value`` is of another kind than the method's ``default``: a bool for a
    bool, an integer for an integer, a number for a float; other defaults (None,
    strings) leave the check to the method."""
    if isinstance(default, bool):
        return not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, bool) or not isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, bool) or not isinstance(value, (int, float))
    return False
