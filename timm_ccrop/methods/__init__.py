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
        TypeError: a hyper-parameter the method does not take.
    """
    key = name.lower()
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    cls = METHODS[key]
    accepted = cls.default_hparams()
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise TypeError(f"{key} does not take hyper-parameter(s) {unknown}; it takes "
                        f"{sorted(accepted)}")
    return cls(backbone, **hparams)
