"""What every file-format reader shares: the dataset interface, its base class, split
checks, the helpful missing-file errors and the one way images are opened (as 8-bit RGB).

The readers are our own rather than torchvision's because torchvision's CIFAR/STL classes
verify MD5 sums of the official archives even with ``download=False``, which rules out
small test fixtures and re-packed copies. Nothing here downloads anything: a missing
dataset raises :class:`FileNotFoundError` that says where to get it and where to put it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..crop.transforms import to_rgb
from .kinds import dataset_kind

__all__ = [
    "NO_DOWNLOAD_NOTE",
    "ImageDatasetBase",
    "LabeledImageDataset",
    "check_split",
    "missing_dataset",
    "open_rgb",
    "require_files",
    "resolve_root",
]

NO_DOWNLOAD_NOTE = "timm-ccrop never downloads datasets"


@runtime_checkable
class LabeledImageDataset(Protocol):
    """What every dataset returned by :func:`~timm_ccrop.data.build_dataset` provides.

    ``dataset[i]`` is ``(PIL.Image in mode RGB, int target)`` with ``target == -1`` for an
    unlabeled sample. ``targets[i]`` is the same target without loading the image.
    ``gt_boxes`` is ``None`` or a float32 tensor ``[N, 4]`` of normalised pixel-edge
    ``(x0, y0, x1, y1)`` boxes. ``has_labels`` is true only when *every* sample is labelled
    (so a linear probe or kNN can use the split as is).
    """

    classes: list[str]
    targets: Sequence[int]
    gt_boxes: torch.Tensor | None

    @property
    def num_classes(self) -> int: ...

    @property
    def has_labels(self) -> bool: ...

    def sample_id(self, index: int) -> str: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Image.Image, int]: ...


def check_split(kind: str, split: str) -> str:
    """``split`` if it is one of the registry's splits of ``kind``; ValueError otherwise."""
    valid = dataset_kind(kind).splits
    if not isinstance(split, str) or split not in valid:
        raise ValueError(f"unknown split {split!r} for {kind}; valid splits: {', '.join(valid)}")
    return split


def open_rgb(path: Path) -> Image.Image:
    """Open an image file as 8-bit RGB through :func:`timm_ccrop.crop.transforms.to_rgb`.

    ``Image.convert("RGB")`` alone clips 16-bit PNGs to white; ``to_rgb`` rescales them.
    """
    with Image.open(path) as img:
        img.load()
        rgb = to_rgb(img)
        # to_rgb returns an RGB file image itself; copy it so the caller holds a plain
        # in-memory image, not one tied to the file being closed here.
        return rgb.copy() if rgb is img else rgb


class ImageDatasetBase(Dataset):
    """Shared implementation of :class:`LabeledImageDataset` for the readers here.

    Subclasses fill ``classes``, ``targets`` and ``gt_boxes`` in ``__init__`` and implement
    :meth:`load_image`; indices are checked here so every reader raises ``IndexError``
    the same way (which also makes plain ``for x in dataset`` iteration terminate).

    ``transform`` / ``target_transform`` (``None`` by default, so items are ``(PIL image,
    int)``) are applied in ``__getitem__`` when set: timm's ``create_loader`` assigns
    ``dataset.transform``, and :class:`~timm_ccrop.data.BoxedDataset` requires it be ``None``.
    """

    kind: str = ""

    def __init__(self, root: Path | None, split: str) -> None:
        self.root = root
        self.split = split
        self.classes: list[str] = []
        self.targets: list[int] = []
        self.gt_boxes: torch.Tensor | None = None
        self.transform: Callable[[Image.Image], Any] | None = None
        self.target_transform: Callable[[int], Any] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``); unlabeled splits still report them."""
        return len(self.classes)

    @property
    def has_labels(self) -> bool:
        """True when every sample has a label (no ``-1`` targets) and there are samples."""
        return len(self.targets) > 0 and min(self.targets) >= 0

    def __len__(self) -> int:
        return len(self.targets)

    def checked_index(self, index: int) -> int:
        """``index`` as a non-negative position (negative counts from the end).

        Raises:
            IndexError: ``index`` is out of range.
        """
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {self!r}")
        return index

    def load_image(self, index: int) -> Image.Image:
        """Return sample ``index`` (already range-checked) as an RGB PIL image."""
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """A stable identifier of sample ``index``: ``"<split>/<index>"`` unless the
        format has file names."""
        return f"{self.split}/{self.checked_index(index)}"

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = self.checked_index(index)
        img: Any = self.load_image(index)
        target: Any = self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"num_samples={len(self)}, num_classes={self.num_classes})"
        )


def missing_dataset(
    what: str, missing: Path, layout: str, source: str, path: Path, extra: str = ""
) -> FileNotFoundError:
    """The error for a dataset file not on disk: what is missing, the expected layout and
    where to download the dataset (nothing here downloads it)."""
    return FileNotFoundError(
        f"{what} not found: {missing} is missing.{extra} Expected layout: {layout}. "
        f"Get the dataset from {source} and extract it at {path} ({NO_DOWNLOAD_NOTE})."
    )


def require_files(
    root: Path, path: Path, files: Sequence[str], what: str, layout: str, source: str
) -> None:
    """Raise the helpful FileNotFoundError for the first of ``files`` missing in ``root``."""
    for fname in files:
        if not (root / fname).is_file():
            missing = path if not path.is_dir() else root / fname
            raise missing_dataset(what, missing, layout, source, path)


def resolve_root(path: Path, subdir: str) -> Path:
    """The official archives extract to a named folder; accept PATH or PATH/<that folder>."""
    nested = path / subdir
    return nested if nested.is_dir() else path
