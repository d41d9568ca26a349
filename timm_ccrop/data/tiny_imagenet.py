"""Tiny-ImageNet-200 (``tiny-imagenet-200``): 64x64 JPEGs, 200 classes, with boxes.

Boxes in ``gt_boxes`` use the project convention of :mod:`timm_ccrop.crop.boxes`: normalised
``(x0, y0, x1, y1)`` with pixel-edge coordinates (the box files give inclusive pixels).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from .base import ImageDatasetBase, check_split, missing_dataset, open_rgb, resolve_root

__all__ = ["TINY_IMAGENET_SIZE", "TINY_IMAGENET_URL", "TinyImageNetDataset"]

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

#: Tiny-ImageNet images are all 64x64; box files are in pixels of that size.
TINY_IMAGENET_SIZE = 64


def _is_image(name: str) -> bool:
    return has_file_allowed_extension(name, IMG_EXTENSIONS)


def _tiny_box(values: Sequence[str], where: str) -> list[float]:
    """Inclusive pixel box -> normalised pixel-edge box (see timm_ccrop.crop.boxes)."""
    try:
        x0, y0, x1, y1 = (int(float(v)) for v in values)
    except ValueError as err:
        raise ValueError(f"bad box {list(values)} at {where}") from err
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box {x0, y0, x1, y1} at {where} has its max corner before its min")
    s = float(TINY_IMAGENET_SIZE)
    box = [x0 / s, y0 / s, (x1 + 1) / s, (y1 + 1) / s]
    return [min(max(v, 0.0), 1.0) for v in box]


class TinyImageNetDataset(ImageDatasetBase):
    """Tiny-ImageNet-200 (64x64 JPEGs, 200 classes) with its ground-truth boxes.

    Layout: ``PATH/tiny-imagenet-200/`` (or ``PATH``) with ``wnids.txt``, optional
    ``words.txt``, ``train/<wnid>/images/*.JPEG`` with ``train/<wnid>/<wnid>_boxes.txt``,
    and ``val/images/*.JPEG`` with ``val/val_annotations.txt``.

    Class index = position of the wnid in the *sorted* wnids (as ImageFolder on ``train``
    would give). ``classes`` are the wnids; ``class_names`` the readable names from
    ``words.txt`` (first synonym; the wnid when absent). Splits: ``train``, ``val``, and
    ``test`` as an alias of ``val`` because the official test images have no labels.
    ``gt_boxes`` come from the box files; if any is missing, ``gt_boxes`` is ``None`` and a
    warning names the file.
    """

    kind = "tiny-imagenet"

    def __init__(self, path: str | os.PathLike[str], split: str = "train") -> None:
        split = check_split(self.kind, split)
        path = Path(path).expanduser()
        root = resolve_root(path, "tiny-imagenet-200")
        split = "val" if split == "test" else split
        super().__init__(root, split)
        layout = (
            f"{path}/tiny-imagenet-200/ (or {path} itself) holding wnids.txt, "
            "train/<wnid>/images/*.JPEG, train/<wnid>/<wnid>_boxes.txt, "
            "val/images/*.JPEG and val/val_annotations.txt"
        )

        def missing(p: Path) -> FileNotFoundError:
            """The error for ``p`` missing, with this split's layout."""
            return missing_dataset(
                f"Tiny-ImageNet {split} split",
                path if not path.is_dir() else p,
                layout,
                TINY_IMAGENET_URL,
                path,
            )

        wnids_file = root / "wnids.txt"
        if not wnids_file.is_file():
            raise missing(wnids_file)
        wnids = sorted({w.strip() for w in wnids_file.read_text().splitlines() if w.strip()})
        self.classes = wnids
        self.class_to_idx = {w: i for i, w in enumerate(wnids)}
        self.class_names = self._readable_names(root / "words.txt", wnids)

        if split == "train":
            files, targets, boxes = self._read_train(root, wnids, missing)
        else:
            files, targets, boxes = self._read_val(root, wnids_file, missing)
        self.files = files
        self.targets = targets
        if boxes is not None:
            absent = [f.name for f in files if f.name not in boxes]
            if absent:
                warnings.warn(
                    f"{len(absent)} Tiny-ImageNet {split} images have no box (e.g. "
                    f"{absent[0]}); gt_boxes will be None",
                    stacklevel=2,
                )
            else:
                self.gt_boxes = torch.tensor(
                    [boxes[f.name] for f in files], dtype=torch.float32
                ).reshape(-1, 4)

    def _read_train(
        self, root: Path, wnids: list[str], missing: Callable[[Path], FileNotFoundError]
    ) -> tuple[list[Path], list[int], dict[str, list[float]] | None]:
        """Files, targets and boxes (``None`` if a box file is missing) of ``train``."""
        files: list[Path] = []
        targets: list[int] = []
        boxes: dict[str, list[float]] = {}
        boxes_complete = True
        for wnid in wnids:
            image_dir = root / "train" / wnid / "images"
            if not image_dir.is_dir():
                raise missing(image_dir)
            names = sorted(e.name for e in os.scandir(image_dir) if _is_image(e.name))
            files += [image_dir / n for n in names]
            targets += [self.class_to_idx[wnid]] * len(names)
            box_file = root / "train" / wnid / f"{wnid}_boxes.txt"
            if not box_file.is_file():
                warnings.warn(
                    f"Tiny-ImageNet box file {box_file} is missing; gt_boxes will be None",
                    stacklevel=3,  # the caller of the constructor
                )
                boxes_complete = False
                continue
            for lineno, line in enumerate(box_file.read_text().splitlines(), 1):
                cols = line.split()
                if not cols:
                    continue
                if len(cols) != 5:
                    raise ValueError(
                        f"{box_file}:{lineno}: expected 'file x0 y0 x1 y1', got {line!r}"
                    )
                boxes[cols[0]] = _tiny_box(cols[1:], f"{box_file}:{lineno}")
        return files, targets, boxes if boxes_complete else None

    def _read_val(
        self, root: Path, wnids_file: Path, missing: Callable[[Path], FileNotFoundError]
    ) -> tuple[list[Path], list[int], dict[str, list[float]]]:
        """Files, targets and boxes of ``val`` from ``val/val_annotations.txt``."""
        image_dir = root / "val" / "images"
        ann_file = root / "val" / "val_annotations.txt"
        for p in (image_dir, ann_file):
            if not (p.is_dir() if p is image_dir else p.is_file()):
                raise missing(p)
        on_disk = {e.name for e in os.scandir(image_dir)}
        rows = []
        for lineno, line in enumerate(ann_file.read_text().splitlines(), 1):
            cols = line.strip().split("\t")
            if not cols[0]:
                continue
            if len(cols) != 6:
                raise ValueError(
                    f"{ann_file}:{lineno}: expected 6 tab-separated columns "
                    f"(file, wnid, x0, y0, x1, y1), got {line!r}"
                )
            if cols[1] not in self.class_to_idx:
                raise ValueError(
                    f"{ann_file}:{lineno}: wnid {cols[1]!r} is not in {wnids_file}"
                )
            if cols[0] not in on_disk:
                raise missing(image_dir / cols[0])
            rows.append(cols)
        files: list[Path] = []
        targets: list[int] = []
        boxes: dict[str, list[float]] = {}
        # Sorted by file name so the order does not depend on the annotation file.
        for cols in sorted(rows, key=lambda c: c[0]):
            files.append(image_dir / cols[0])
            targets.append(self.class_to_idx[cols[1]])
            boxes[cols[0]] = _tiny_box(cols[2:], f"{ann_file} ({cols[0]})")
        return files, targets, boxes

    @staticmethod
    def _readable_names(words_file: Path, wnids: list[str]) -> list[str]:
        if not words_file.is_file():
            return list(wnids)
        wanted = set(wnids)
        names: dict[str, str] = {}
        for line in words_file.read_text(encoding="utf-8").splitlines():
            wnid, _, words = line.partition("\t")
            if wnid in wanted:
                names[wnid] = words.split(",")[0].strip() or wnid
        return [names.get(w, w) for w in wnids]

    def sample_id(self, index: int) -> str:
        """The image file name (unique across Tiny-ImageNet)."""
        return self.files[self.checked_index(index)].name

    def load_image(self, index: int) -> Image.Image:
        """Open image ``index`` as RGB (a few Tiny-ImageNet JPEGs are grayscale)."""
        return open_rgb(self.files[index])
