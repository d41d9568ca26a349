"""STL-10 from the official binary files (``stl10_binary``), memory-mapped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..crop.transforms import to_rgb
from .base import ImageDatasetBase, check_split, require_files, resolve_root

__all__ = ["STL10_URL", "STL10Dataset"]

STL10_URL = "https://cs.stanford.edu/~acoates/stl10/"

_STL_SIZE = 96
_STL_BYTES = 3 * _STL_SIZE * _STL_SIZE


class STL10Dataset(ImageDatasetBase):
    """STL-10 from the official binary files.

    Layout: ``PATH/stl10_binary/`` (or ``PATH``) with ``train_X.bin``, ``train_y.bin``,
    ``test_X.bin``, ``test_y.bin``, ``unlabeled_X.bin`` and ``class_names.txt``. An X file
    is uint8 ``(N, 3, 96, 96)`` with each channel stored column-major; a y file holds one
    uint8 label 1..10 per image (stored 0-based here).

    Splits: ``train`` (5k), ``test`` (8k), ``unlabeled`` (100k, targets ``-1``) and
    ``train+unlabeled`` (the 105k images ContrastiveCrop pretrains on; train first).
    X files are memory-mapped (opened lazily in each process and dropped when pickled), so
    the 2.6 GB unlabeled file is never read into RAM nor copied to DataLoader workers.
    """

    kind = "stl10"

    def __init__(self, path: str | os.PathLike[str], split: str = "train") -> None:
        split = check_split(self.kind, split)
        path = Path(path).expanduser()
        root = resolve_root(path, "stl10_binary")
        super().__init__(root, split)
        parts = {"train+unlabeled": ["train", "unlabeled"]}.get(split, [split])
        needed = ["class_names.txt"]
        for part in parts:
            needed += [f"{part}_X.bin"] + ([] if part == "unlabeled" else [f"{part}_y.bin"])
        layout = f"{path}/stl10_binary/{{{', '.join(needed)}}} (or the files directly in {path})"
        require_files(root, path, needed, f"STL-10 {split} split", layout,
                       f"{STL10_URL} (the binary archive stl10_binary.tar.gz)")

        names = (root / "class_names.txt").read_text(encoding="utf-8").splitlines()
        self.classes = [n.strip() for n in names if n.strip()]
        # (X file, number of images, first global index) for each part, in order.
        self._parts: list[tuple[Path, int, int]] = []
        targets: list[int] = []
        for part in parts:
            x_file = root / f"{part}_X.bin"
            size = x_file.stat().st_size
            if size % _STL_BYTES:
                raise ValueError(
                    f"{x_file} has {size} bytes, not a multiple of one 3x96x96 "
                    f"image ({_STL_BYTES} bytes); the file is truncated or corrupt"
                )
            n = size // _STL_BYTES
            if part == "unlabeled":
                part_targets = [-1] * n
            else:
                y_file = root / f"{part}_y.bin"
                y = np.fromfile(y_file, dtype=np.uint8)
                if len(y) != n:
                    raise ValueError(f"{y_file} has {len(y)} labels but {x_file} has {n} images")
                if n and not 1 <= int(y.min()) <= int(y.max()) <= len(self.classes):
                    raise ValueError(f"{y_file}: labels must be 1..{len(self.classes)}")
                part_targets = (y.astype(np.int64) - 1).tolist()
            self._parts.append((x_file, n, len(targets)))
            targets.extend(part_targets)
        self.targets = targets
        self._maps: list[np.ndarray | None] = [None] * len(self._parts)

    def _array(self, part: int) -> np.ndarray:
        arr = self._maps[part]
        if arr is None:
            x_file, n, _ = self._parts[part]
            arr = np.memmap(x_file, dtype=np.uint8, mode="r", shape=(n, 3, _STL_SIZE, _STL_SIZE))
            self._maps[part] = arr
        return arr

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # Pickling a memmap would copy the whole file into the pickle (spawned workers).
        state["_maps"] = [None] * len(self._parts)
        return state

    def load_image(self, index: int) -> Image.Image:
        """Return image ``index`` as a 96x96 RGB PIL image."""
        part = 0
        while part + 1 < len(self._parts) and index >= self._parts[part + 1][2]:
            part += 1
        x = self._array(part)[index - self._parts[part][2]]
        # Stored (channel, column, row): column-major per channel, hence the swap.
        return to_rgb(Image.fromarray(np.ascontiguousarray(x.transpose(2, 1, 0))))
