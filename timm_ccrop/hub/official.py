"""Official ContrastiveCrop checkpoints (github.com/xyupeng/ContrastiveCrop) in timm's layout.

The official ``last.pth`` holds one method wrapper's state dict (``simclr_state``, ...)
under DDP's ``module.`` prefix, and the final boxes. :func:`export_official` keeps the
online encoder's backbone (its ResNet names its layers as timm's does), writes it with the
official dataset's input size and normalisation (from the dataset-kind registry), and
optionally the boxes as ``boxes.csv`` in the package's one boxes schema.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..crop.boxes import FULL_BOX, from_official
from ..data.kinds import DATASET_KINDS, kind_names
from ..models.backbones import create_backbone, strip_wrapper_prefixes
from ..runs import write_boxes_csv
from ..utils.folders import EXPORT_FOLDER_FILES, replace_folder, staging_folder
from .builder import write_weights_and_config
from .card import CARD_NAME, CardInfo, render_card
from .measurements import export_hashes, matching_eval_results, measurements_from_eval
from .release import OFFICIAL_REPO_URL, HubExportError, Release

__all__ = [
    "OFFICIAL_DATASETS",
    "OFFICIAL_STATE_KEYS",
    "convert_official_state_dict",
    "export_official",
    "official_architecture",
    "official_method",
]

#: Checkpoint key holding the model's state dict, by method.
OFFICIAL_STATE_KEYS = {"simclr": "simclr_state", "moco": "moco_state", "byol": "byol_state",
                       "simsiam": "simsiam_state"}
#: Prefix of the online encoder inside each official method wrapper (after 'module.').
_OFFICIAL_ENCODER = {"simclr": "", "moco": "encoder_q.", "byol": "encoder_q.",
                     "simsiam": "encoder."}
#: Official normalisation and input size per dataset (the configs' mean/std; eval size),
#: read off the dataset-kind registry.
OFFICIAL_DATASETS: dict[str, dict[str, Any]] = {
    name: {"size": DATASET_KINDS[name].official_size, "mean": DATASET_KINDS[name].official_mean,
           "std": DATASET_KINDS[name].official_std}
    for name in kind_names(official=True)
}
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
#: Backbone keys of the official ResNet (models/resnet.py); identical names in timm's ResNet.
_OFFICIAL_BACKBONE_KEY = re.compile(
    rf"^(conv1\.weight|bn1\.{_BN}|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.{_BN}"
    rf"|downsample\.0\.weight|downsample\.1\.{_BN}))$"
)
_RESNET_DEPTHS = {((2, 2, 2, 2), False): 18, ((3, 4, 6, 3), False): 34,
                  ((3, 4, 6, 3), True): 50, ((3, 4, 23, 3), True): 101,
                  ((3, 8, 36, 3), True): 152}


def official_method(checkpoint: Mapping[str, Any]) -> str:
    """The method of an official checkpoint, from its state key (``simclr_state``, ...)."""
    found = [m for m, key in OFFICIAL_STATE_KEYS.items() if key in checkpoint]
    if len(found) != 1:
        raise HubExportError(
            "not an official ContrastiveCrop checkpoint: expected exactly one of "
            f"{sorted(OFFICIAL_STATE_KEYS.values())}, found keys {sorted(map(str, checkpoint))}")
    return found[0]


def convert_official_state_dict(state: Mapping[str, torch.Tensor],
                                method: str) -> dict[str, torch.Tensor]:
    """Map an official method state dict to timm ResNet backbone keys.

    Drops DDP's ``module.`` prefix, keeps the online encoder (SimCLR: the model itself;
    MoCo/BYOL: ``encoder_q``; SimSiam: ``encoder``) without its ``fc`` projector, and
    drops the momentum encoder, the predictor and the queue. The official ResNet names
    its layers as timm does (``conv1``, ``bn1``, ``layerN.i.convK/bnK``,
    ``downsample.0/1``), so the kept keys map one to one.
    """
    if method not in _OFFICIAL_ENCODER:
        raise HubExportError(f"unknown method {method!r}; choose from {sorted(_OFFICIAL_ENCODER)}")
    prefix = _OFFICIAL_ENCODER[method]
    out: dict[str, torch.Tensor] = {}
    strays = []
    for raw_key, value in state.items():
        key = strip_wrapper_prefixes(str(raw_key))
        if prefix and not key.startswith(prefix):
            continue  # encoder_k, predictor, queue, queue_ptr
        key = key[len(prefix):]
        if key.startswith("fc."):
            continue  # the projector (the official models put it in place of fc)
        if not _OFFICIAL_BACKBONE_KEY.match(key):
            strays.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise HubExportError(f"official key {raw_key!r} is not a tensor")
        out[key] = value
    if strays:
        raise HubExportError(f"unexpected keys in the official {method} encoder: {strays[:8]}")
    if "conv1.weight" not in out:
        raise HubExportError(f"no backbone weights found in the official {method} state dict "
                             f"(expected keys like 'module.{prefix}conv1.weight')")
    return out


def official_architecture(state: Mapping[str, torch.Tensor]) -> str:
    """The timm architecture of a converted official backbone: ``resnet18_cifar`` (3x3
    stem, the small-dataset configs), ``resnet34/50_cifar``, or timm's ``resnet18/34/50/
    101/152`` for the 7x7-stem ImageNet ResNets."""
    conv1 = state["conv1.weight"]
    if conv1.shape[0] != 64:
        raise HubExportError(f"unsupported official ResNet: stem width {conv1.shape[0]} != 64")
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = tuple(
        len({key.split(".")[1] for key in state if key.startswith(f"layer{n}.")})
        for n in range(1, 5)
    )
    depth = _RESNET_DEPTHS.get((blocks, bottleneck))
    if depth is None:
        raise HubExportError(f"unsupported official ResNet: blocks {blocks}, "
                             f"{'bottleneck' if bottleneck else 'basic'} blocks")
    kernel = conv1.shape[-1]
    if kernel == 3:
        if depth not in (18, 34, 50):
            raise HubExportError(f"no CIFAR-stem ResNet-{depth} architecture in timm_ccrop")
        return f"resnet{depth}_cifar"
    if kernel == 7:
        return f"resnet{depth}"
    raise HubExportError(f"unsupported official ResNet stem: {kernel}x{kernel} conv")


def _load_official(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError...
        raise HubExportError(f"cannot read {path} with torch.load(weights_only=True): "
                             f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
                             if str(err).strip() else f"cannot read {path}") from err
    if not isinstance(checkpoint, dict):
        raise HubExportError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def _official_backbone(raw: Mapping[str, Any], method: str) -> tuple[nn.Module, str]:
    """The online encoder's backbone of an official checkpoint (loaded strictly) and its
    architecture."""
    state = convert_official_state_dict(raw[OFFICIAL_STATE_KEYS[method]], method)
    architecture = official_architecture(state)
    backbone = create_backbone(architecture)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise HubExportError(f"converted weights do not load into {architecture}: "
                             f"{str(err).splitlines()[0]}") from err
    return backbone.eval(), architecture


def _official_crop(boxes: Any) -> str:
    """rcrop when every box is still the initial whole image (the official rcrop configs
    never update the boxes), else ccrop."""
    if isinstance(boxes, torch.Tensor) and boxes.numel():
        rows = boxes.reshape(-1, 4)
        initial = torch.tensor(FULL_BOX, dtype=boxes.dtype)
        if torch.equal(rows, initial.expand(rows.shape[0], 4)):
            return "rcrop"
    return "ccrop"


def _official_release(architecture: str, method: str, dataset: str, crop: str,
                      repo_id: str | None) -> Release:
    preset = OFFICIAL_DATASETS[dataset]
    size = preset["size"]
    release = Release(
        architecture=architecture,
        tag=f"{crop}_{method}_{dataset.replace('-', '')}_official", method=method, crop=crop,
        dataset=dataset, input_size=(3, size, size), mean=preset["mean"], std=preset["std"],
        license="mit", origin_url=OFFICIAL_REPO_URL, hf_hub_id=repo_id)
    return dataclasses.replace(
        release, description=f"Official ContrastiveCrop {release.method_name} ({crop}) "
                             f"checkpoint on {dataset}, converted to timm by timm-ccrop")


def _official_note(path: Path, method: str, dataset: str, crop: str, crop_given: bool,
                   epoch: Any) -> str:
    return (f"Converted with `timm-ccrop export --official {path.name} --method {method} "
            f"--dataset {dataset}` from the official checkpoint"
            + (f" (epoch {epoch})" if epoch is not None else "") + ". The official repository "
            f"({OFFICIAL_REPO_URL}, MIT license) holds the training config; the crop mode "
            + (f"'{crop}' was given on the command line." if crop_given
               else f"'{crop}' was read off the checkpoint's boxes (all still the initial "
                    "whole image: rcrop, else ccrop)."))


def export_official(checkpoint: str | Path, out: str | Path, *, method: str | None = None,
                    dataset: str = "cifar10", crop: str | None = None, boxes: bool = False,
                    overwrite: bool = False, repo_id: str | None = None,
                    eval_reports: Sequence[str | Path] = ()) -> Path:
    """Convert an official ContrastiveCrop checkpoint (``last.pth``) to timm's Hub layout.

    Args:
        checkpoint: the official ``last.pth`` / ``epoch_N.pth`` (read with
            ``weights_only=True``; nothing is unpickled beyond tensors and containers).
        method: simclr, moco, byol or simsiam; default: from the checkpoint's state key.
        dataset: the pretraining dataset (its official mean/std and input size go into the
            config): cifar10, cifar100, stl10, tiny-imagenet or imagenet.
        crop: ccrop or rcrop; default: ccrop unless every box is still the initial whole
            image (the official rcrop configs never update the boxes).
        boxes: also write the final boxes as ``boxes.csv`` in timm-ccrop's convention
            (``timm_ccrop.crop.boxes.from_official``) and the one boxes schema.
    """
    path, out = Path(checkpoint), Path(out)
    if dataset not in OFFICIAL_DATASETS:
        raise HubExportError(f"unknown dataset {dataset!r}; choose from "
                             f"{sorted(OFFICIAL_DATASETS)}")
    raw = _load_official(path)
    found = official_method(raw)
    if method is not None and method != found:
        raise HubExportError(f"--method {method} but {path} is a {found} checkpoint "
                             f"(it holds {OFFICIAL_STATE_KEYS[found]!r})")
    backbone, architecture = _official_backbone(raw, found)
    official_boxes = raw.get("boxes")
    chosen = crop if crop is not None else _official_crop(official_boxes)
    release = _official_release(architecture, found, dataset, chosen, repo_id)
    size = release.input_size[-1]
    with staging_folder(out, overwrite, EXPORT_FOLDER_FILES) as staging:
        write_weights_and_config(backbone, staging, release.pretrained_cfg(backbone), None)
        if boxes and isinstance(official_boxes, torch.Tensor):
            write_boxes_csv(staging / "boxes.csv", from_official(
                official_boxes.reshape(-1, 4).float(), image_size=(size, size)))
        reports = matching_eval_results([out / "eval.json", *(Path(p) for p in eval_reports)],
                                        export_hashes(staging, backbone))
        release = dataclasses.replace(release, measurements=tuple(
            row for report in reports for row in measurements_from_eval(report)))
        epoch = raw.get("epoch")
        info = CardInfo.for_backbone(
            release, backbone,
            recipe_note=_official_note(path, found, dataset, chosen, crop is not None, epoch),
            training={"Epochs": epoch if epoch is not None else "unknown"},
            provenance=f"Weights of the official implementation ({OFFICIAL_REPO_URL}), "
                       "converted key by key (backbone only; projector, predictor, momentum "
                       "encoder and queue dropped).")
        (staging / CARD_NAME).write_text(render_card(info))
        replace_folder(staging, out, overwrite, EXPORT_FOLDER_FILES)
    return out
