"""The one registry of dataset kinds: what every part of the package knows about a kind.

A data spec's kind (``cifar10`` of ``cifar10:/data/cifar``) names a :class:`DatasetKind`:
its reader (or generator), its view preset, its splits, its default training and
evaluation split, its display name, its Hugging Face Hub dataset id (for model cards), and
the official code's input size and normalisation (for converting official checkpoints).
Readers, the trainer, eval, export, the model card and the zoo all look kinds up here; the
reader table of :mod:`timm_ccrop.data.build` is derived from this one and checked against
it (with the view presets of :mod:`timm_ccrop.crop.views`) when it is imported, so a new
kind is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DATASET_KINDS", "DatasetKind", "dataset_kind", "kind_names"]


@dataclass(frozen=True)
class DatasetKind:
    """What the package knows about one kind of dataset."""

    name: str
    display_name: str
    # The class that reads (or, for a generated kind, makes) it, as ``module.Class`` inside
    # timm_ccrop.data; None: no reader (imagenet: only a card and official name).
    reader: str | None = None
    # The view preset of timm_ccrop.crop.views made for its images (None: sizes vary).
    views: str | None = None
    splits: tuple[str, ...] = ("train", "test")
    train_split: str = "train"
    eval_split: str = "test"
    needs_path: bool = True  # spec is KIND:PATH (False: generated, e.g. synthetic)
    hub_id: str | None = None
    # The official code's eval input size and normalisation, where it has a config.
    official_size: int | None = None
    official_mean: tuple[float, ...] | None = None
    official_std: tuple[float, ...] | None = None
    # Every image of the kind is stored at this square size (None: sizes vary). Views made
    # on the device from such images lose nothing (augment_on='auto' picks the device).
    stored_size: int | None = None

    @property
    def readable(self) -> bool:
        """Whether a spec may name it: a reader (or generator) exists."""
        return self.reader is not None


DATASET_KINDS: dict[str, DatasetKind] = {kind.name: kind for kind in (
    DatasetKind("cifar10", "CIFAR-10", "cifar.CifarDataset", "cifar", hub_id="uoft-cs/cifar10",
                official_size=32, stored_size=32,
                official_mean=(0.4914, 0.4822, 0.4465), official_std=(0.2023, 0.1994, 0.2010)),
    DatasetKind("cifar100", "CIFAR-100", "cifar.CifarDataset", "cifar",
                hub_id="uoft-cs/cifar100", official_size=32, stored_size=32,
                official_mean=(0.5071, 0.4867, 0.4408), official_std=(0.2675, 0.2565, 0.2761)),
    # Pretraining uses train+unlabeled: the paper's 105k images.
    DatasetKind("stl10", "STL-10", "stl10.STL10Dataset", "stl10",
                splits=("train", "test", "unlabeled", "train+unlabeled"),
                train_split="train+unlabeled", hub_id="tanganke/stl10", official_size=96,
                stored_size=96,
                official_mean=(0.4406, 0.4273, 0.3858), official_std=(0.2312, 0.2265, 0.2237)),
    # "test" is an alias of "val": the official Tiny-ImageNet test split has no labels.
    DatasetKind("tiny-imagenet", "Tiny ImageNet", "tiny_imagenet.TinyImageNetDataset",
                "tiny-imagenet", splits=("train", "val", "test"), eval_split="val",
                hub_id="zh-plus/tiny-imagenet", official_size=64, stored_size=64,
                official_mean=(0.4802, 0.4481, 0.3975), official_std=(0.2302, 0.2265, 0.2262)),
    DatasetKind("imagenet", "ImageNet-1k", None, "imagenet", splits=("train", "val"),
                eval_split="val", hub_id="ILSVRC/imagenet-1k", official_size=224,
                official_mean=IMAGENET_MEAN, official_std=IMAGENET_STD),
    DatasetKind("folder", "an image folder", "folder.FolderDataset",
                splits=("train", "val", "test"), eval_split="val"),
    DatasetKind("synthetic", "timm-ccrop's built-in synthetic objects",
                "synthetic.SyntheticObjects", needs_path=False),
    DatasetKind("scenes", "timm-ccrop's objects on real photographs", "scenes.PhotoScenes",
                needs_path=False),
)}


def kind_names(*, readable: bool | None = None, official: bool | None = None) -> tuple[str, ...]:
    """Names of the registered kinds, in registry order, optionally filtered."""
    return tuple(
        kind.name for kind in DATASET_KINDS.values()
        if (readable is None or kind.readable == readable)
        and (official is None or (kind.official_size is not None) == official)
    )


def dataset_kind(name: str) -> DatasetKind:
    """The :class:`DatasetKind` of ``name``; ValueError naming the known kinds otherwise."""
    kind = DATASET_KINDS.get(str(name).strip().lower())
    if kind is None:
        raise ValueError(f"unknown dataset kind {name!r}; known kinds: "
                         f"{', '.join(DATASET_KINDS)}")
    return kind
