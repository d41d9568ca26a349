"""ContrastiveCrop and SimCCrop: box-guided random resized crops (Peng et al., CVPR 2022).

The crop size is drawn exactly as timm's ``RandomResizedCropAndInterpolation`` draws it
(area fraction in ``scale`` of the whole image, log-uniform aspect ratio in ``ratio``,
10 tries, then the central fallback). Only the position differs: per axis, the crop's
centre is drawn between the box's first and last pixel with ``Beta(alpha, alpha)``,
which pushes crops away from the box centre for ``alpha < 1`` ("center-suppressed").

Per axis (height ``H``, crop height ``h``, box rows ``first..last``)::

    lo  = clamp(first - h // 2, 0, H - h)
    hi  = clamp(last  - h // 2, 0, H - h)
    top = lo + min(floor((hi - lo + 1) * u), hi - lo),   u ~ Beta(alpha, alpha)

The range is clamped *before* sampling, so the crop always stays inside the image
without piling up against the border. The official code uses ``lo + int((hi - lo) * u)``,
which can never reach ``hi`` (an off-by-one); the ``+ 1`` here fixes that, so
``alpha = 1`` with the whole-image box gives offsets uniform on ``{0, ..., H - h}``,
exactly like RandomResizedCrop.

Samples without a box (a bare image, ``box=None``, an invalid row of the box table, the
warm-up before the first localization pass) are cropped exactly like timm's
RandomResizedCrop, with the same random stream. Randomness comes from Python's
``random`` module, as in timm, so ``random.seed`` reproduces crops and DataLoader workers
are seeded by torch. Beta draws use a cached inverse-CDF table (:func:`beta_quantiles`).
"""

from __future__ import annotations

import copy
import functools
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision import transforms as tv_transforms
from torchvision.transforms import functional as F

from .boxes import FULL_BOX, Box, validate_box

__all__ = [
    "CCROP_ALPHA",
    "ContrastiveCrop",
    "RecordingHorizontalFlip",
    "RecordingResizedCrop",
    "SimCCrop",
    "SIMCCROP_BOX",
    "ViewGeometry",
    "contrastive_crop_params",
    "recording_step",
    "to_rgb",
]

SIMCCROP_BOX = Box(0.25, 0.25, 0.75, 0.75)
#: The crop modes of a Siamese run: timm's RandomResizedCrop, ContrastiveCrop, SimCCrop.
CROP_MODES = ("rcrop", "ccrop", "simccrop")
#: ContrastiveCrop's Beta(alpha, alpha) of the crop centre: the paper's 0.6.
CCROP_ALPHA = 0.6
#: Beta(alpha, alpha) defaults per crop mode: the paper's 0.6 for ContrastiveCrop, the
#: official README's 0.1 for SimCCrop; rcrop has no alpha.
DEFAULT_ALPHA = {"ccrop": CCROP_ALPHA, "simccrop": 0.1}


def default_alpha(crop_mode: str) -> float | None:
    """The default alpha of ``crop_mode`` (None for ``rcrop``)."""
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
    return DEFAULT_ALPHA.get(crop_mode)

# Tolerance for reading float32 box edges back as pixel indices: 3/10 stored in float32
# times 10 is 2.9999998, which must still mean pixel 3.
EDGE_EPS = 1e-4

_16BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
_MISSING = object()


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit RGB.

    Grayscale, palette (with or without transparency), RGBA/LA, CMYK and YCbCr go
    through PIL's own conversion; 16-bit and 32-bit integer images are rescaled from
    their 16-bit range first (PIL alone would clip them to 255), float images from [0, 1].
    """
    if img.mode == "RGB":
        return img
    if img.mode in _16BIT_MODES or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            peak = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
        elif img.mode == "I" and values.size and values.max() <= 255:
            peak = 255.0
        else:
            peak = 65535.0
        scaled = np.clip(np.nan_to_num(values) * (255.0 / peak), 0, 255).round()
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _check_range(name: str, value: Sequence[float], upper: float | None) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {value!r}") from err
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or low > high:
        raise ValueError(f"{name} must satisfy 0 < min <= max, got {value!r}")
    if upper is not None and high > upper:
        raise ValueError(f"{name} max must be <= {upper}, got {value!r}")
    return low, high


def check_alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError) as err:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}") from err
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"alpha must be > 0 (Beta(alpha, alpha) concentration; the paper uses 0.6, "
            f"the official small-dataset configs 0.1), got {alpha!r}"
        )
    return value


def _sample_crop_size(
    height: int, width: int, scale: tuple[float, float], log_ratio: tuple[float, float], rng: Any
) -> tuple[int, int] | None:
    """timm's RandomResizedCrop size draw: ``(h, w)``, or None when all 10 tries fail."""
    area = height * width
    for _ in range(10):
        target_area = rng.uniform(*scale) * area
        aspect_ratio = math.exp(rng.uniform(*log_ratio))
        crop_w = int(round(math.sqrt(target_area * aspect_ratio)))
        crop_h = int(round(math.sqrt(target_area / aspect_ratio)))
        if crop_w <= width and crop_h <= height:
            return crop_h, crop_w
    return None


def _central_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, ...]:
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_h, crop_w = height, int(round(height * ratio[1]))
    else:
        crop_h, crop_w = height, width
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


QUANTILE_POINTS = 4096


@functools.lru_cache(maxsize=64)
def beta_quantiles(alpha: float) -> tuple[float, ...]:
    """Inverse CDF of the symmetric Beta(alpha, alpha) at ``u = i / 4096``, ``i = 0..4096``.

    Sampling by table lookup costs one ``random()`` and a linear interpolation (about
    0.3 us) instead of two gamma draws (about 1.2 us in ``random.betavariate``). The CDF
    is integrated once per alpha on [0, 1/2] (symmetry gives the rest); for alpha < 1
    after substituting ``t = s ** (1 / alpha)``, which removes the singularity at 0:
    ``int_0^x t^(a-1) (1-t)^(a-1) dt = (1/a) int_0^(x^a) (1 - s^(1/a))^(a-1) ds``.
    The interpolation error is far below what any crop offset can resolve (the tests
    compare offsets with the exact distribution).
    """
    if alpha < 1.0:
        s = np.linspace(0.0, 0.5**alpha, 400_001)
        grid, integrand = s ** (1.0 / alpha), (1.0 - s ** (1.0 / alpha)) ** (alpha - 1.0)
    else:  # no singularity: integrate the density itself
        s = grid = np.linspace(0.0, 0.5, 400_001)
        integrand = (grid * (1.0 - grid)) ** (alpha - 1.0)
    steps = (integrand[1:] + integrand[:-1]) * 0.5 * np.diff(s)
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])
    lower_cdf = 0.5 * cumulative / cumulative[-1]  # CDF on [0, 1/2], 0.5 at x = 1/2
    half = QUANTILE_POINTS // 2
    lower = np.interp(np.linspace(0.0, 0.5, half + 1), lower_cdf, grid)
    return tuple(np.concatenate([lower, 1.0 - lower[::-1][1:]]).tolist())


def _beta_draw(alpha: float, rng: Any) -> float:
    """One Beta(alpha, alpha) draw from the cached inverse CDF."""
    table = beta_quantiles(alpha)
    position = rng.random() * QUANTILE_POINTS
    index = int(position)
    return table[index] + (position - index) * (table[index + 1] - table[index])


def _box_offset(size: int, crop: int, start: float, end: float, alpha: float, rng: Any) -> int:
    """Offset of a ``crop``-long window whose centre is Beta-sampled inside ``[start, end]``."""
    first = math.floor(size * start + EDGE_EPS)
    last = max(first, math.ceil(size * end - EDGE_EPS) - 1)
    limit = size - crop
    half = crop // 2
    low = min(max(first - half, 0), limit)
    high = min(max(last - half, 0), limit)
    span = high - low + 1
    if span == 1:
        return low
    return low + min(int(span * _beta_draw(alpha, rng)), span - 1)


def contrastive_crop_params(
    height: int,
    width: int,
    box: Box | None,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    alpha: float = CCROP_ALPHA,
    rng: Any = None,
) -> tuple[int, int, int, int]:
    """Sample ``(top, left, crop_h, crop_w)`` of one ContrastiveCrop.

    Args:
        height, width: image size in pixels.
        box: a validated box in the project's convention, or ``None`` for timm's
            RandomResizedCrop (same random stream, same result for the same seed).
        scale, ratio: as RandomResizedCrop; not validated here (hot path).
        alpha: Beta(alpha, alpha) concentration of the centre inside the box.
        rng: a ``random.Random``; default Python's global generator (as timm).
    """
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    return _sample_params(height, width, box, scale, ratio, log_ratio, alpha,
                          random if rng is None else rng)


def _sample_params(
    height: int,
    width: int,
    box: Box | None,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    log_ratio: tuple[float, float],
    alpha: float,
    rng: Any,
) -> tuple[int, int, int, int]:
    size = _sample_crop_size(height, width, scale, log_ratio, rng)
    if size is None:
        return _central_fallback(height, width, ratio)
    crop_h, crop_w = size
    if box is None:
        return rng.randint(0, height - crop_h), rng.randint(0, width - crop_w), crop_h, crop_w
    top = _box_offset(height, crop_h, box.y0, box.y1, alpha, rng)
    left = _box_offset(width, crop_w, box.x0, box.x1, alpha, rng)
    return top, left, crop_h, crop_w


def _image_size(img: Any) -> tuple[int, int]:
    if isinstance(img, Image.Image):
        return img.height, img.width
    if isinstance(img, torch.Tensor):
        if img.ndim < 2:
            raise ValueError(f"tensor images must be (C, H, W) or (H, W), got {tuple(img.shape)}")
        return int(img.shape[-2]), int(img.shape[-1])
    raise TypeError(
        f"ContrastiveCrop takes a PIL image or a (C, H, W) tensor, got {type(img).__name__}"
    )


class ContrastiveCrop(RandomResizedCropAndInterpolation):
    """RandomResizedCrop whose position is guided by the sample's object box.

    Call it with an image, ``(image, box)`` or ``(image, None)``. A box is
    ``(x0, y0, x1, y1)`` normalised to [0, 1] (see :mod:`timm_ccrop.crop.boxes`); without one
    the crop is timm's RandomResizedCrop. PIL images of any mode are converted to RGB;
    uint8 and float ``(C, H, W)`` tensors work too.

    Args:
        size: output size, int or ``(h, w)``.
        scale: area fraction of the whole image, as RandomResizedCrop. Default (0.2, 1.0)
            as in the paper.
        ratio: aspect-ratio range, as RandomResizedCrop.
        alpha: Beta(alpha, alpha) parameter of the crop centre inside the box; < 1 pushes
            crops toward the box edges. Paper: 0.6; official small-dataset configs: 0.1.
        interpolation: 'bilinear', 'bicubic', 'nearest', ... or 'random' (as timm).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        alpha: float = CCROP_ALPHA,
        interpolation: str = "bilinear",
    ) -> None:
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if len(sizes) != 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
            raise ValueError(f"size must be a positive int or (h, w), got {size!r}")
        super().__init__(
            sizes,
            scale=_check_range("scale", scale, upper=1.0),
            ratio=_check_range("ratio", ratio, upper=None),
            interpolation=interpolation,
        )
        self.alpha = check_alpha(alpha)
        self._log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        self._fixed_box: Box | None = None
        #: Where to record each call's crop (None: nothing recorded; see ViewGeometry).
        self.geometry: ViewGeometry | None = None

    def get_box_params(self, img: Any, box: Box | None) -> tuple[int, int, int, int]:
        """``(top, left, crop_h, crop_w)`` for ``img`` and an already validated box."""
        height, width = _image_size(img)
        return _sample_params(height, width, box, self.scale, self.ratio, self._log_ratio,
                              self.alpha, random)

    def _resolve_box(self, box: Any) -> Box | None:
        if box is None or isinstance(box, Box):
            return box
        return validate_box(box)

    def __call__(self, img: Any, box: Any = _MISSING) -> Any:
        # The hot path of every training view: kept flat, no helper calls for PIL inputs.
        if box is _MISSING:
            img, box = img if type(img) is tuple and len(img) == 2 else (img, None)
        if box is not None and type(box) is not Box or self._fixed_box is not None:
            box = self._resolve_box(box)
        if isinstance(img, Image.Image):
            if img.mode != "RGB":
                img = to_rgb(img)
            width, height = img.size
        else:
            height, width = _image_size(img)
        top, left, crop_h, crop_w = _sample_params(
            height, width, box, self.scale, self.ratio, self._log_ratio, self.alpha, random
        )
        if self.geometry is not None:
            self.geometry.set_crop(top, left, crop_h, crop_w, height, width)
        interpolation = self.interpolation
        if type(interpolation) in (tuple, list):
            interpolation = random.choice(interpolation)
        return F.resized_crop(img, top, left, crop_h, crop_w, self.size, interpolation)

    def __repr__(self) -> str:
        text = super().__repr__()
        return f"{text[:-1]}, alpha={self.alpha})"


class SimCCrop(ContrastiveCrop):
    """ContrastiveCrop with the fixed centre box (0.25, 0.25, 0.75, 0.75) for every image.

    No localization at all (the official README's SimCCrop, alpha 0.1 by default). Any box
    passed in is ignored.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        alpha: float = 0.1,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__(size, scale=scale, ratio=ratio, alpha=alpha, interpolation=interpolation)
        self._fixed_box = SIMCCROP_BOX

    def _resolve_box(self, box: Any) -> Box:
        return SIMCCROP_BOX


class ViewGeometry:
    """What one view's pipeline did to its image: the crop box and the horizontal flip.

    The crop box is ``(x0, y0, x1, y1)`` in the project's box convention (normalised by
    the size of the image the crop was taken from, pixel edges); ``flipped`` says whether
    the view was mirrored after the crop. The recording steps below write into one shared
    instance per view pipeline; :class:`~timm_ccrop.crop.views.MultiViewTransform` resets it
    before each call and reads it after.
    """

    __slots__ = ("box", "flipped")

    def __init__(self) -> None:
        self.box: tuple[float, float, float, float] = tuple(FULL_BOX)
        self.flipped = False

    def reset(self) -> None:
        """Forget the last view (whole image, not flipped: a pipeline without a crop)."""
        self.box, self.flipped = tuple(FULL_BOX), False

    def set_crop(self, top: int, left: int, crop_h: int, crop_w: int, height: int,
                 width: int) -> None:
        """Record a crop of ``crop_h x crop_w`` pixels at ``(top, left)`` of an image of
        ``height x width``."""
        self.box = (left / width, top / height, (left + crop_w) / width, (top + crop_h) / height)

    def row(self) -> list[float]:
        """``[x0, y0, x1, y1, flipped]`` (the flip as 0.0 or 1.0)."""
        return [*self.box, float(self.flipped)]


class RecordingResizedCrop(RandomResizedCropAndInterpolation):
    """timm's RandomResizedCropAndInterpolation that also records its crop: the same
    ``get_params`` call, so the same random draws and the same output."""

    def __init__(self, crop: RandomResizedCropAndInterpolation, geometry: ViewGeometry) -> None:
        self.__dict__.update(crop.__dict__)
        self.geometry = geometry

    def __call__(self, img: Any) -> Any:
        top, left, crop_h, crop_w = self.get_params(img, self.scale, self.ratio)
        height, width = _image_size(img)
        self.geometry.set_crop(top, left, crop_h, crop_w, height, width)
        interpolation = self.interpolation
        if isinstance(interpolation, (tuple, list)):
            interpolation = random.choice(interpolation)
        return F.resized_crop(img, top, left, crop_h, crop_w, self.size, interpolation)


class RecordingHorizontalFlip(tv_transforms.RandomHorizontalFlip):
    """torchvision's RandomHorizontalFlip that also records whether it flipped: the same
    single ``torch.rand(1)`` draw per call, so the same random stream."""

    def __init__(self, p: float, geometry: ViewGeometry) -> None:
        super().__init__(p)
        self.geometry = geometry

    def forward(self, img: Any) -> Any:
        flipped = bool(torch.rand(1) < self.p)
        self.geometry.flipped = flipped
        return F.hflip(img) if flipped else img


def recording_step(step: Any, geometry: ViewGeometry) -> Any:
    """A copy of a pipeline step that records into ``geometry`` (crops and horizontal
    flips; every other step is returned as it is). The copy draws the same random numbers
    as the original, so recording never changes a view."""
    if isinstance(step, ContrastiveCrop):
        recording = copy.copy(step)
        recording.geometry = geometry
        return recording
    if type(step) is RandomResizedCropAndInterpolation:
        return RecordingResizedCrop(step, geometry)
    if type(step) is tv_transforms.RandomHorizontalFlip:
        return RecordingHorizontalFlip(step.p, geometry)
    return step
