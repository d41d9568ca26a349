"""Networks: the CIFAR-stem ResNets registered with timm, and any timm backbone.

Importing this package registers ``resnet*_cifar`` with timm, so exported weights of those
architectures reload through ``timm.create_model``.
"""

from .backbones import create_backbone, load_backbone_weights
from .cifar import (
    CIFAR_MEAN,
    CIFAR_MODEL_NAMES,
    CIFAR_STD,
    CifarResNet,
    register_cifar_models,
)

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_MODEL_NAMES",
    "CIFAR_STD",
    "CifarResNet",
    "create_backbone",
    "load_backbone_weights",
    "register_cifar_models",
]
