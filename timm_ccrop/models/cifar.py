"""CIFAR-stem ResNets registered as timm architectures.

timm's ResNet always downsamples by 4 in the stem (a strided conv plus a max-pool), so at
32 px its last stage is a 1x1 map: nothing to localize, and far from the networks of the
small-dataset results of the ContrastiveCrop paper. The CIFAR variant used there (and by
most self-supervised CIFAR work) has a single 3x3 stride-1 stem conv and no max-pool,
which gives a 4x4 last map at 32 px.

Importing this module registers ``resnet_mini_cifar``, ``resnet_tiny_cifar`` and
``resnet18/34/50_cifar`` with timm's own registry, so ``timm.create_model('resnet18_cifar')``
works, and weights exported with ``save_for_hf`` / ``push_to_hf_hub`` (whose config.json
records only the architecture name and a few kwargs) rebuild the same network. They are
timm ``ResNet`` subclasses: ``feature_info``, ``forward_intermediates``,
``features_only=True`` and the state-dict layout (``conv1``, ``bn1``, ``layer1..4``,
``fc``) are timm's.

Pretrained tags (``resnet_tiny_cifar.TAG``) are declared as timm declares its own: in the
module-global ``default_cfgs`` (``generate_default_cfgs``) that ``register_model`` reads.
:func:`register_cifar_models` takes the tagged cfgs (the zoo's, given by
:mod:`timm_ccrop.hub.registry`; this module never reads the zoo) and registers the
architectures again with them.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

from timm.models import (
    DefaultCfg,
    PretrainedCfg,
    generate_default_cfgs,
    is_model,
    model_entrypoint,
    register_model,
)
from timm.models._builder import build_model_with_cfg
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from ..utils.constants import CIFAR_MEAN, CIFAR_STD
from ..utils.integrity import verify_pretrained_file

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "CIFAR_MODEL_NAMES",
    "CifarResNet",
    "cifar_pretrained_cfgs",
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


_PRETRAINED_CFG_FIELDS = frozenset(f.name for f in dataclasses.fields(PretrainedCfg))
_WEIGHT_SOURCES = ("file", "url", "hf_hub_id")

# The tagged cfgs last registered ('arch.tag' -> cfg). importlib.reload re-runs this file in
# the same namespace: keeping the dict lets a reload re-point the entrypoints without
# dropping the tags the zoo declared.
_tagged_cfgs: dict[str, dict[str, Any]] = globals().get("_tagged_cfgs", {})
# name -> the tagged cfgs it was last registered with by this module (idempotence).
_registered: dict[str, dict[str, dict[str, Any]]] = {}


def _default_cfgs(tagged: Mapping[str, Mapping[str, Any]]) -> dict[str, DefaultCfg]:
    """timm's ``DefaultCfg`` of every architecture: the untagged cfg is the default, then the
    tags. generate_default_cfgs makes the first tag WITH weights the default unless a key
    ending in '*' claims it afterwards, so the untagged cfg (no weights) comes last as
    ``arch.*``: ``timm.create_model('resnet18_cifar')`` must not take a zoo tag's cfg."""
    cfgs: dict[str, dict[str, Any]] = {}
    for name in CIFAR_MODEL_NAMES:
        cfgs.update({key: _cfg(**cfg) for key, cfg in tagged.items()
                     if key.split(".", 1)[0] == name})
        cfgs[f"{name}.*"] = _cfg()
    return generate_default_cfgs(cfgs)


# register_model reads the module global ``default_cfgs`` when an entrypoint is registered.
default_cfgs = _default_cfgs(_tagged_cfgs)


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    model = build_model_with_cfg(CifarResNet, variant, pretrained, **kwargs)
    if pretrained:
        # timm's loader ignores the sha256 an export records; our entrypoint is the one
        # place on timm's own route (timm.create_model('local-dir:DIR', pretrained=True))
        # that can check it: a corrupted file fails here instead of loading quietly.
        verify_pretrained_file(model.pretrained_cfg)
    return model


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


def _check_tagged_cfgs(pretrained_cfgs: Any) -> dict[str, dict[str, Any]]:
    """Fresh copies of the tagged cfgs, or ValueError naming the bad key or field."""
    if not isinstance(pretrained_cfgs, Mapping):
        raise ValueError(f"pretrained_cfgs must be a mapping 'ARCH.TAG' -> pretrained_cfg, got "
                         f"{type(pretrained_cfgs).__name__}; pass e.g. "
                         "{'resnet18_cifar.my_tag': {'file': 'model.safetensors'}}")
    checked = {}
    for key, cfg in pretrained_cfgs.items():
        arch, _, tag = str(key).partition(".")
        if not isinstance(key, str) or arch not in CIFAR_MODEL_NAMES or not tag \
                or "." in tag or "*" in tag:
            raise ValueError(f"pretrained_cfgs key {key!r} must be 'ARCH.TAG' with ARCH one of "
                             f"{', '.join(CIFAR_MODEL_NAMES)} and a TAG without '.' or '*'")
        if not isinstance(cfg, Mapping):
            raise ValueError(f"pretrained_cfgs[{key!r}] must be a mapping of pretrained_cfg "
                             f"fields, got {type(cfg).__name__}")
        unknown = sorted(set(map(str, cfg)) - _PRETRAINED_CFG_FIELDS)
        if unknown:
            raise ValueError(f"pretrained_cfgs[{key!r}] has unknown fields {unknown}; use "
                             "timm.models.PretrainedCfg's field names")
        if not any(cfg.get(source) for source in _WEIGHT_SOURCES):
            raise ValueError(f"pretrained_cfgs[{key!r}] names no weights; set one of "
                             f"{', '.join(_WEIGHT_SOURCES)}")
        checked[key] = dict(cfg)
    return checked


def cifar_pretrained_cfgs() -> dict[str, dict[str, Any]]:
    """The tagged cfgs registered last (``'ARCH.TAG' -> cfg``, copies): to add one tag
    without dropping the others, pass ``{**cifar_pretrained_cfgs(), name: cfg}`` to
    :func:`register_cifar_models`."""
    return {key: dict(cfg) for key, cfg in _tagged_cfgs.items()}


def register_cifar_models(
    pretrained_cfgs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Register the CIFAR ResNets with timm, with their pretrained tags; idempotent.

    Args:
        pretrained_cfgs: ``'ARCH.TAG' -> pretrained_cfg`` (fields of timm's
            ``PretrainedCfg``, naming weights with ``file``, ``url`` or ``hf_hub_id``) for
            ARCH among :data:`CIFAR_MODEL_NAMES`; fields not given take this module's CIFAR
            defaults. They replace the tags registered before. None keeps those.

    Each architecture's default cfg stays the untagged one (no weights). A name this module
    registered is registered again only when its entrypoint (a module reload) or its tags
    changed, without timm's "Overwriting" warning. A name that anything else registered is
    never touched (warning): timm's ``register_model`` on it would drop its pretrained tags.
    Returns the names registered by this call.
    """
    global default_cfgs
    tagged = dict(_tagged_cfgs) if pretrained_cfgs is None else \
        _check_tagged_cfgs(pretrained_cfgs)
    default_cfgs = _default_cfgs(tagged)
    changed = []
    for entrypoint in _ENTRYPOINTS:
        name = entrypoint.__name__
        tags = {key: cfg for key, cfg in tagged.items() if key.split(".", 1)[0] == name}
        if is_model(name):
            existing = model_entrypoint(name)
            if getattr(existing, "__module__", None) != __name__:
                warnings.warn(f"timm already has an architecture named {name!r} (from "
                              f"{existing.__module__}); not registering ours", stacklevel=2)
                continue
            if existing is entrypoint and _registered.get(name) == tags:
                continue
        with warnings.catch_warnings():  # our own entry: new tags, or the module reloaded
            warnings.filterwarnings("ignore", message="Overwriting", category=UserWarning)
            register_model(entrypoint)
        _registered[name] = tags
        changed.append(name)
    _tagged_cfgs.clear()
    _tagged_cfgs.update(tagged)
    return changed


register_cifar_models()
