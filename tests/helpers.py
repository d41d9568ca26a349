"""Small datasets shared by the tests (not fixtures of the real on-disk formats)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

#: Pixel value = coordinate * COORD_SCALE, so a crop's position can be read off its pixels.
COORD_SCALE = 4


def coordinate_image(height: int = 64, width: int = 64) -> Image.Image:
    """RGB image whose red channel encodes x and green channel encodes y."""
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs * COORD_SCALE, ys * COORD_SCALE, np.zeros_like(xs)], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


class CoordinateImages(Dataset):
    """``num_samples`` coordinate images; the target of sample i is i."""

    def __init__(self, num_samples: int, size: int = 64) -> None:
        self.num_samples = num_samples
        self.image = coordinate_image(size, size)
        self.transform = None

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.image.copy(), index


def crop_centre(view: np.ndarray) -> tuple[float, float]:
    """(x, y) source pixel at the middle of an HWC or CHW uint8 view of a coordinate image."""
    if view.shape[0] == 3 and view.shape[-1] != 3:
        view = view.transpose(1, 2, 0)
    height, width = view.shape[:2]
    centre = view[height // 2, width // 2].astype(np.float64)
    return centre[0] / COORD_SCALE, centre[1] / COORD_SCALE


#: The repository's scripts/ folder (benchmarks and studies the tests import).
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/NAME.py`` as module ``NAME`` (registered in ``sys.modules``, so
    dataclasses and pickling inside it work)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
