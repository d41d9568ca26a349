"""CIFAR-stem ResNets registered as timm architectures.

timm's ResNet always downsamples by 4 in the stem (a strided conv plus a max-pool), so at
32 px its last stage is a 1x1 map: nothing to localize, and far from the networks of the
small-dataset results of the ContrastiveCrop paper. The CIFAR variant used there (and by
most self-supervised CIFAR work) has a single 3x3 stride-1 stem conv and no max-pool,
which gives a 4x4 last map at 32 px.

Importing this module registers ``resnet18_cifar``, ``resnet34_cifar`` and
``resnet50_cifar`` with timm's own registry, so ``timm.create_model('resnet18_cifar')``
works, and weights exported with ``save_for_hf`` / ``push_to_hf_hub`` (whose config.json
records only the architecture name and a few kwargs) rebuild the same network. They are
timm ``ResNet`` subclasses: ``feature_info``, ``forward_intermediates``,
``features_only=True`` and the state-dict layout (``conv1``, ``bn1``, ``layer1..4``,
``fc``) are timm's.
"""

from __future__ import annotations

import warnings
from typing import Any

from timm.models import generate_default_cfgs, is_model, model_entrypoint, register_model
from timm.models._builder import build_model_with_cfg
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from .constants import CIFAR_MEAN, CIFAR_STD

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "CIFAR_MODEL_NAMES",
    "CifarResNet",
    "register_cifar_models",
    "resnet18_cifar",
    "resnet34_cifar",
    "resnet50_cifar",
    "resnet_mini_cifar",
]

#: CIFAR-10 training-set channel statistics (the exact ones, not the widespread
#: (0.2023, 0.1994, 0.2010) std, which is the mean of per-image stds).

#: Architectures this module registers with timm.
CIFAR_MODEL_NAMES = ("resnet_mini_cifar", "resnet_tiny_cifar", "resnet18_cifar", "resnet34_cifar",
                     "resnet50_cifar")

# The timm stem reduces by 4 (stride-2 conv, stride-2 max-pool); the CIFAR stem by 1.
_TIMM_STEM_REDUCTION = 4


class CifarResNet(ResNet):
    """timm ``ResNet`` with a 3x3 stride-1 stem conv and no stem max-pool.

    Takes every ``timm.models.resnet.ResNet`` argument except the stem options
    (``stem_type``, ``stem_width``, ``replace_stem_pool``), which would contradict the
    stem. ``output_stride`` keeps timm's meaning (relative to timm's stride-4 stem): the
    default 32 gives a last-stage reduction of 8 here, 16 dilates ``layer4`` (reduction 4).
    ``stem_stride=2`` makes the stem conv strided (every reduction doubles): with
    ``output_stride=16`` the last map stays 4x4 at 32 px for about a fifth of the compute.
    """

    def __init__(self, *args: Any, stem_stride: int = 1, **kwargs: Any) -> None:
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        for option, plain in (("stem_type", ""), ("stem_width", 64), ("replace_stem_pool", False)):
            if kwargs.get(option, plain) != plain:
                raise ValueError(f"{type(self).__name__} has a fixed 3x3 stem; {option} is not "
                                 "supported")
        super().__init__(*args, **kwargs)
        dd = {"device": kwargs.get("device"), "dtype": kwargs.get("dtype")}
        # Replace in place: the module keeps its place (and name) in the state dict.
        self.conv1 = nn.Conv2d(self.in_chans, self.bn1.num_features, kernel_size=3,
                               stride=stem_stride, padding=1, bias=False, **dd)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        # make_blocks counted strides from timm's stride-4 stem: stem 2, stages 4..32.
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // _TIMM_STEM_REDUCTION) * stem_stride


def _cfg(**kwargs: Any) -> dict[str, Any]:
    """Our own pretrained_cfg defaults: nothing inherited from timm's ImageNet entries."""
    return {
        "url": "",
        "num_classes": 0,  # self-supervised weights: a feature extractor, no classifier
        "input_size": (3, 32, 32),
        "pool_size": (4, 4),
        "crop_pct": 1.0,
        "crop_mode": "center",
        "interpolation": "bilinear",
        "mean": CIFAR_MEAN,
        "std": CIFAR_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        "paper_name": "Crafting Better Contrastive Views for Siamese Representation Learning",
        "paper_ids": "arXiv:2202.03278",
        **kwargs,
    }


# register_model reads the module global ``default_cfgs`` when an entrypoint is registered.
default_cfgs = generate_default_cfgs({name: _cfg() for name in CIFAR_MODEL_NAMES})


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    return build_model_with_cfg(CifarResNet, variant, pretrained, **kwargs)


def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2) with the CIFAR stem: 512 features, 4x4 map at 32 px."""
    model_args: dict[str, Any] = dict(block=BasicBlock, layers=(2, 2, 2, 2))
    return _create_cifar_resnet("resnet18_cifar", pretrained, **dict(model_args, **kwargs))


def resnet34_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3) with the CIFAR stem: 512 features."""
    model_args: dict[str, Any] = dict(block=BasicBlock, layers=(3, 4, 6, 3))
    return _create_cifar_resnet("resnet34_cifar", pretrained, **dict(model_args, **kwargs))


def resnet50_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3) with the CIFAR stem: 2048 features."""
    model_args: dict[str, Any] = dict(block=Bottleneck, layers=(3, 4, 6, 3))
    return _create_cifar_resnet("resnet50_cifar", pretrained, **dict(model_args, **kwargs))


def resnet_tiny_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """A tiny CIFAR-stem ResNet (BasicBlock 1-1-1-1, 32-48-64-96 channels, about 0.2M
    parameters, 96 features, 4x4 map at 32 px): the default of quick CPU runs and tests."""
    model_args: dict[str, Any] = dict(block=BasicBlock, layers=(1, 1, 1, 1),
                                      channels=(32, 48, 64, 96))
    return _create_cifar_resnet("resnet_tiny_cifar", pretrained, **dict(model_args, **kwargs))


def resnet_mini_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """``resnet_tiny_cifar``'s blocks and widths with a stride-2 stem conv and a dilated last
    stage: the same 96 features and 4x4 map at 32 px at about a fifth of the compute (about
    5x the training throughput on one CPU thread). For CPU experiments that need many epochs."""
    model_args: dict[str, Any] = dict(block=BasicBlock, layers=(1, 1, 1, 1),
                                      channels=(32, 48, 64, 96), stem_stride=2, output_stride=16)
    return _create_cifar_resnet("resnet_mini_cifar", pretrained, **dict(model_args, **kwargs))


_ENTRYPOINTS = (resnet_mini_cifar, resnet_tiny_cifar, resnet18_cifar, resnet34_cifar,
                resnet50_cifar)


def register_cifar_models() -> list[str]:
    """Register the CIFAR ResNets with timm; safe to call any number of times.

    A name already registered by this module is left alone (or, after a module reload,
    quietly re-pointed at the new entrypoint). A name that anything else registered is
    never touched: timm's ``register_model`` on an existing name drops that name's
    pretrained tags. Returns the names newly registered or re-pointed by this call.
    """
    changed = []
    for entrypoint in _ENTRYPOINTS:
        name = entrypoint.__name__
        if is_model(name):
            existing = model_entrypoint(name)
            if existing is entrypoint:
                continue
            if getattr(existing, "__module__", None) != __name__:
                warnings.warn(f"timm already has an architecture named {name!r} (from "
                              f"{existing.__module__}); not registering ours", stacklevel=2)
                continue
            with warnings.catch_warnings():  # our own stale entry (module reloaded)
                warnings.filterwarnings("ignore", message="Overwriting")
                register_model(entrypoint)
        else:
            register_model(entrypoint)
        changed.append(name)
    return changed


register_cifar_models()
