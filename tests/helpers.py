"""Small datasets and models shared by the tests (not fixtures of the real on-disk formats)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import timm
import torch
from PIL import Image
from timm.models.levit import Levit
from timm.models.mlp_mixer import MlpMixer
from torch import nn
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


# --------------------------------------------------------------------------- timm models
# Small members of each layout family. Real architectures are shrunk through their own
# constructor arguments (same classes, same hooked modules, same output layouts).
FAMILIES: dict[str, tuple] = {
    # name: (builder, input shape, raw layout of the hooked output)
    "resnet": (lambda: timm.create_model("test_resnet"), (2, 3, 96, 96), "nchw"),
    "convnext": (lambda: timm.create_model("test_convnext"), (2, 3, 96, 96), "nchw"),
    "efficientnet": (lambda: timm.create_model("test_efficientnet"), (2, 3, 96, 96), "nchw"),
    "regnet": (lambda: timm.create_model("regnetx_002"), (1, 3, 96, 96), "nchw"),
    "vit": (
        lambda: timm.create_model("test_vit", dynamic_img_size=True),
        (2, 3, 64, 64),
        "tokens",
    ),
    "deit_distilled": (
        lambda: timm.create_model(
            "deit_tiny_distilled_patch16_224", img_size=64, depth=2, embed_dim=64, num_heads=2
        ),
        (2, 3, 64, 64),
        "tokens",
    ),
    "swin": (
        lambda: timm.create_model(
            "swin_tiny_patch4_window7_224",
            img_size=96,
            window_size=3,
            embed_dim=16,
            depths=(1, 1, 1, 1),
            num_heads=(1, 1, 1, 1),
        ),
        (2, 3, 96, 96),
        "nhwc",
    ),
    "mixer": (
        lambda: MlpMixer(img_size=64, patch_size=16, num_blocks=2, embed_dim=32),
        (2, 3, 64, 64),
        "tokens",
    ),
    "levit": (
        lambda: Levit(
            img_size=192, embed_dim=(32, 48, 64), key_dim=16, num_heads=(1, 1, 1),
            depth=(1, 1, 1),
        ),
        (2, 3, 192, 192),
        "tokens",
    ),
    "mambaout": (lambda: timm.create_model("test_mambaout"), (2, 3, 96, 96), "nhwc"),
}


@functools.cache
def family_model(family: str) -> nn.Module:
    """A cached eval-mode model of ``family`` (tests that change its mode make their own)."""
    torch.manual_seed(0)
    return FAMILIES[family][0]().eval()


@functools.cache
def vit(dynamic_img_pad: bool = False) -> nn.Module:
    """A cached eval-mode ``test_vit`` with a dynamic image size (and padding if asked)."""
    torch.manual_seed(0)
    return timm.create_model(
        "test_vit", dynamic_img_size=True, dynamic_img_pad=dynamic_img_pad
    ).eval()


def images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Seeded standard-normal input of ``shape``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def oracle(model: nn.Module, x: torch.Tensor, index: int | None = None) -> torch.Tensor:
    """timm's own NCHW map: the last stage, or feature-info entry ``index``."""
    with torch.no_grad():
        if index is None:
            return model.forward_intermediates(x, indices=1, intermediates_only=True)[-1]
        return model.forward_intermediates(x, indices=[index], intermediates_only=True)[-1]
