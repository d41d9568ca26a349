"""timm-ccrop: ContrastiveCrop (Peng et al., CVPR 2022) for timm.

Importing the package adds ``train_crop_mode='ccrop'`` (and ``'simccrop'``) to timm's
``create_transform`` and ``create_loader``; see :mod:`timm_ccrop.crop.factory`.
"""

from . import models  # noqa: F401  (registers resnet*_cifar: exported weights reload)
from .config import TrainConfig
from .crop.boxes import FULL_BOX, Box, BoxTable, from_official, to_official, validate_box
from .crop.factory import (
    create_transform,
    is_registered,
    parse_crop_mode,
    register_timm_crop_mode,
    unregister_timm_crop_mode,
)
from .crop.transforms import (
    SIMCCROP_BOX,
    ContrastiveCrop,
    SimCCrop,
    contrastive_crop_params,
    to_rgb,
)
from .crop.views import (
    VIEW_PRESETS,
    MultiViewTransform,
    ViewRecipe,
    multi_view_transform,
    view_transform,
)
from .data import BoxedDataset
from .methods import BYOL, METHODS, MoCo, SiameseMethod, SimCLR, SimSiam, build_method
from .models.cifar import CIFAR_MEAN, CIFAR_STD, CifarResNet, register_cifar_models
from .train import train
from .version import __version__

register_timm_crop_mode()
from .hub import create_model  # noqa: E402
from .hub import registry as zoo_registry  # noqa: E402,F401  (zoo/models.yaml -> timm tags)

__all__ = [
    "__version__",
    "BYOL",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "CifarResNet",
    "METHODS",
    "MoCo",
    "SiameseMethod",
    "SimCLR",
    "SimSiam",
    "build_method",
    "create_model",
    "register_cifar_models",
    "train",
    "TrainConfig",
    "FULL_BOX",
    "SIMCCROP_BOX",
    "VIEW_PRESETS",
    "Box",
    "BoxTable",
    "BoxedDataset",
    "ContrastiveCrop",
    "MultiViewTransform",
    "SimCCrop",
    "ViewRecipe",
    "contrastive_crop_params",
    "create_transform",
    "from_official",
    "is_registered",
    "multi_view_transform",
    "parse_crop_mode",
    "register_timm_crop_mode",
    "to_official",
    "to_rgb",
    "unregister_timm_crop_mode",
    "validate_box",
    "view_transform",
]
