"""Any ImageFolder tree (``<root>/<class>/<image>``), optionally split into
``train``/``val``/``test`` subfolders."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from .base import NO_DOWNLOAD_NOTE, ImageDatasetBase, check_split, open_rgb
from .kinds import dataset_kind

__all__ = ["FolderDataset"]


class FolderDataset(ImageDatasetBase):
    """Any ImageFolder tree: ``<root>/<class>/<image>`` (files with torchvision's
    ``IMG_EXTENSIONS``; anything else is ignored).

    If ``PATH/train`` is a folder, the split picks ``PATH/<split>``; ``val`` and ``test``
    stand in for each other when only one of them exists. Class indices always come from
    the train folder (sorted class folder names) so they agree across splits; an eval
    split may have a subset of the classes. Without ``PATH/train``, ``PATH`` itself is the
    ``train`` split and other splits raise ``ValueError``. ``sample_id`` is the path
    relative to the split folder.
    """

    kind = "folder"

    def __init__(self, path: str | os.PathLike[str], split: str = "train") -> None:
        split = check_split(self.kind, split)
        path = Path(path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"image folder not found: {path} is missing. Expected layout: {path}/<class>/"
                f"<image> or {path}/{{train,val,test}}/<class>/<image> ({NO_DOWNLOAD_NOTE})."
            )
        train_dir = path / "train"
        if train_dir.is_dir():
            split_dir = path / split
            if not split_dir.is_dir() and split in ("val", "test"):
                other = path / ("test" if split == "val" else "val")
                split_dir = other if other.is_dir() else split_dir
            if not split_dir.is_dir():
                present = [s for s in dataset_kind(self.kind).splits if (path / s).is_dir()]
                raise ValueError(
                    f"split {split!r} not found: {path / split} does not exist; "
                    f"splits present in {path}: {', '.join(present)}"
                )
        else:
            if split != "train":
                raise ValueError(
                    f"{path} has no train/ subfolder, so it is a single 'train' split and has "
                    f"no {split!r} split; put the splits in {path}/train, {path}/val (or "
                    f"{path}/test) to evaluate on a held-out folder"
                )
            split_dir = train_dir = path
        super().__init__(split_dir, split)

        self.classes, self.class_to_idx = self._find_classes(train_dir)
        if split_dir != train_dir:
            split_classes, _ = self._find_classes(split_dir)
            unknown = sorted(set(split_classes) - set(self.class_to_idx))
            if unknown:
                raise ValueError(
                    f"{split_dir} has class folders not in {train_dir}: {', '.join(unknown[:10])}"
                )
            class_to_idx = {c: self.class_to_idx[c] for c in split_classes}
        else:
            class_to_idx = self.class_to_idx
        try:
            samples = make_dataset(str(split_dir), class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as err:
            # torchvision raises this for class folders without any image file.
            raise ValueError(f"empty image folder dataset at {split_dir}: {err}") from err
        if not samples:
            raise ValueError(f"empty image folder dataset: no images in {split_dir}")
        self.files = [Path(p) for p, _ in samples]
        self.targets = [t for _, t in samples]

    @staticmethod
    def _find_classes(directory: Path) -> tuple[list[str], dict[str, int]]:
        try:
            return find_classes(str(directory))
        except FileNotFoundError as err:
            raise ValueError(
                f"empty image folder dataset: no class folders in {directory} (expected "
                f"{directory}/<class>/<image>)"
            ) from err

    def sample_id(self, index: int) -> str:
        """The image path relative to the split folder, with ``/`` separators."""
        assert self.root is not None
        return self.files[self.checked_index(index)].relative_to(self.root).as_posix()

    def load_image(self, index: int) -> Image.Image:
        """Open image ``index`` as 8-bit RGB (16-bit images rescaled, not clipped)."""
        return open_rgb(self.files[index])
