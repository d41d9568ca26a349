"""The release record: one set of released weights, as config.json, the card and the zoo see it.

A :class:`Release` says what the weights are (architecture, tag), how they were made
(method, crop mode and its parameters, data), how to feed them (input size,
normalisation) and what was measured on them. It is the one source of

* the ``pretrained_cfg`` of ``config.json`` and of timm's registry
  (:meth:`Release.pretrained_cfg`),
* the model card's Hub metadata and text (:mod:`timm_ccrop.hub.card`),
* a zoo entry's fields (:meth:`Release.zoo_fields`; a :class:`~timm_ccrop.hub.zoo.ZooEntry`
  turns back into its release with ``entry.release``).

Dataset names come from the one registry of dataset kinds (:mod:`timm_ccrop.data.kinds`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from timm.models import PretrainedCfg
from torch import nn

from ..data.kinds import DATASET_KINDS

__all__ = [
    "BIBTEX",
    "CROP_NAMES",
    "METHOD_NAMES",
    "OFFICIAL_REPO_URL",
    "PAPER_ARXIV",
    "PAPER_NAME",
    "PAPER_URL",
    "HubExportError",
    "Measurement",
    "Release",
    "check_repo_id",
    "check_tag",
    "full_pretrained_cfg",
]

PAPER_NAME = "Crafting Better Contrastive Views for Siamese Representation Learning"
PAPER_ARXIV = "arXiv:2202.03278"
PAPER_URL = "https://arxiv.org/abs/2202.03278"
OFFICIAL_REPO_URL = "https://github.com/xyupeng/ContrastiveCrop"
BIBTEX = """@inproceedings{peng2022crafting,
  title     = {Crafting Better Contrastive Views for Siamese Representation Learning},
  author    = {Peng, Xiangyu and Wang, Kai and Zhu, Zheng and Wang, Mang and You, Yang},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern
               Recognition (CVPR)},
  year      = {2022}
}"""

#: How the card names each crop mode and method.
CROP_NAMES = {
    "ccrop": "ContrastiveCrop (semantic-aware localization + center-suppressed sampling)",
    "simccrop": "SimCCrop (fixed centre box, center-suppressed sampling)",
    "rcrop": "RandomResizedCrop (the baseline)",
}
METHOD_NAMES = {"simclr": "SimCLR", "moco": "MoCo v2", "byol": "BYOL", "simsiam": "SimSiam"}

_TAG = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
#: Every field of timm's PretrainedCfg: config.json sets each of them, to ours or None.
_PRETRAINED_CFG_FIELDS = tuple(f.name for f in dataclasses.fields(PretrainedCfg))


class HubExportError(ValueError):
    """A folder, checkpoint or argument that cannot be exported or pushed (nothing written)."""


def check_tag(tag: str) -> str:
    """A timm pretrained tag: lowercase letters, digits and '_' (no '.')."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise HubExportError(f"tag {tag!r} must be lowercase letters, digits and '_'")
    return tag


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` as the Hub accepts it, or HubExportError."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id \
            or "--" in repo_id or repo_id.endswith((".git", ".")):
        raise HubExportError(f"repo id {repo_id!r} is not of the form ORG/NAME (letters, "
                             "digits, '-', '_', '.'; no '--' or '..')")
    return repo_id


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


@dataclass(frozen=True)
class Measurement:
    """One measured accuracy of these weights."""

    protocol: str  # 'knn' or 'linear' ('knn-monitor' in the zoo)
    split: str
    top1: float
    top5: float | None
    dataset: str
    details: str
    command: str

    def zoo_row(self) -> dict[str, Any]:
        """The row of a zoo entry's ``metrics`` list."""
        row: dict[str, Any] = {"protocol": self.protocol, "dataset": self.dataset,
                               "split": self.split, "top1": self.top1}
        if self.top5 is not None:
            row["top5"] = self.top5
        return {**row, "settings": self.details, "command": self.command}

    @classmethod
    def from_zoo_row(cls, row: Mapping[str, Any]) -> Measurement | None:
        """A zoo ``metrics`` row as a measurement; None for a row that is not one (the
        zoo's validation names what is wrong with it)."""
        if not isinstance(row, Mapping) or not _is_number(row.get("top1")):
            return None
        top5 = row.get("top5")
        return cls(protocol=str(row.get("protocol", "")), split=str(row.get("split", "test")),
                   top1=float(row["top1"]), top5=float(top5) if _is_number(top5) else None,
                   dataset=str(row.get("dataset", "")), details=str(row.get("settings", "")),
                   command=str(row.get("command", "")))


def full_pretrained_cfg(
    backbone: nn.Module | None,
    *,
    architecture: str,
    tag: str,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    license: str = "apache-2.0",
    description: str | None = None,
    origin_url: str | None = None,
    notes: Sequence[str] | None = None,
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
) -> dict[str, Any]:
    """A value for EVERY field of timm's ``PretrainedCfg``: ours, or None.

    Only ``first_conv`` and ``classifier`` (module names, facts of the architecture) come
    from the backbone's current cfg; everything that describes weights (tag, source,
    paper, preprocessing, test-time size...) is ours, so timm's registry default of the
    architecture cannot leak into the export.
    """
    current = getattr(backbone, "pretrained_cfg", None) or {}
    ours: dict[str, Any] = {
        "architecture": architecture,
        "tag": tag,
        "custom_load": False,
        "input_size": tuple(int(v) for v in input_size),
        "fixed_input_size": bool(current.get("fixed_input_size", False)),
        "interpolation": interpolation,
        "crop_pct": float(crop_pct),
        "crop_mode": "center",
        "mean": tuple(float(v) for v in mean),
        "std": tuple(float(v) for v in std),
        "num_classes": 0,
        "pool_size": None,
        "first_conv": current.get("first_conv"),
        "classifier": current.get("classifier"),
        "license": license,
        "description": description,
        "origin_url": origin_url,
        "paper_name": PAPER_NAME,
        "paper_ids": PAPER_ARXIV,
        "notes": tuple(notes) if notes else None,
    }
    return {name: ours.get(name) for name in _PRETRAINED_CFG_FIELDS}


@dataclass(frozen=True)
class Release:
    """One released set of weights: the record config.json, the card and the zoo share."""

    architecture: str
    tag: str
    method: str
    crop: str
    dataset: str  # the data spec trained on (``cifar10:/data/cifar10``) or a kind
    input_size: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    license: str = "apache-2.0"
    kind: str | None = None  # the dataset kind, when the spec's own is not it (folder: ...)
    crop_params: Mapping[str, Any] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()
    hf_hub_id: str | None = None
    description: str | None = None
    origin_url: str | None = None
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    @property
    def name(self) -> str:
        """``architecture.tag``, timm's name of these weights."""
        return f"{self.architecture}.{self.tag}"

    @property
    def dataset_kind(self) -> str:
        """The dataset kind: the given ``kind``, else the data spec's."""
        if self.kind:
            return self.kind
        return str(self.dataset).split(":", 1)[0].strip().lower() or "unknown"

    @property
    def dataset_name(self) -> str:
        """The dataset kind's display name (the kind itself when it is not registered)."""
        kind = DATASET_KINDS.get(self.dataset_kind)
        return kind.display_name if kind is not None else self.dataset_kind

    @property
    def hub_dataset(self) -> str | None:
        """The dataset's Hugging Face Hub id, when it has one."""
        kind = DATASET_KINDS.get(self.dataset_kind)
        return kind.hub_id if kind is not None else None

    @property
    def method_name(self) -> str:
        """The method as the card names it (``MoCo v2``)."""
        return METHOD_NAMES.get(self.method, self.method)

    @property
    def crop_name(self) -> str:
        """The crop mode as the card describes it."""
        return CROP_NAMES.get(self.crop, self.crop)

    def pretrained_cfg(self, backbone: nn.Module | None = None) -> dict[str, Any]:
        """Every ``PretrainedCfg`` field (see :func:`full_pretrained_cfg`)."""
        return full_pretrained_cfg(
            backbone, architecture=self.architecture, tag=self.tag, input_size=self.input_size,
            mean=self.mean, std=self.std, license=self.license, description=self.description,
            origin_url=self.origin_url, interpolation=self.interpolation,
            crop_pct=self.crop_pct,
        )

    def zoo_fields(self) -> dict[str, Any]:
        """The fields of a ``zoo/models.yaml`` entry this release determines (the zoo's own
        ``recipe``, ``weights``, ``trained_here``, ``status`` are the maintainer's)."""
        return {
            "architecture": self.architecture, "tag": self.tag, "method": self.method,
            "crop": self.crop, "crop_params": dict(self.crop_params), "dataset": self.dataset,
            "license": self.license,
            "input": {"input_size": list(self.input_size), "mean": list(self.mean),
                      "std": list(self.std), "crop_pct": self.crop_pct,
                      "interpolation": self.interpolation},
            "metrics": [row.zoo_row() for row in self.measurements],
        }
