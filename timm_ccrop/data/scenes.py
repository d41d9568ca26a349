"""``PhotoScenes``: objects on crops of real photographs, a different background per image.

The built-in :class:`~timm_ccrop.data.synthetic.SyntheticObjects` can share one background
across all images, which is what the default localizer's median map removes. Real data
does not: every photograph has its own background, often with things in it that are more
salient than the labelled object. ``PhotoScenes`` is a harder, more realistic stand-in:

* **background**: a random crop (position, size, flip) of one of 16 real photographs
  installed with scikit-image and scikit-learn (a person, a cat, a rocket, coffee, grass,
  gravel, bricks, a galaxy field, ...), grey ones tinted with a random colour;
  ``backgrounds='busy'`` keeps the crop sharp, ``'calm'`` defocuses it (a Gaussian blur of
  ``image_size / 10`` px), ``'mixed'`` (default) draws one of the two per image;
* **object**: one per image, the class: a shape of :mod:`.shapes` (``objects='shapes'``)
  or a real handwritten digit (``objects='digits'``: scikit-learn's 8x8 digits, upscaled
  smoothly; train and test use different writers' samples), with a random size in
  ``object_scale``, position, aspect ratio, rotation, shading and a random colour chosen
  to stand out from what it covers, so colour never gives the class away;
* **distractors**: ``distractors`` smooth blobs of the same sizes and colours, which are
  no class, drawn under the object.

The box is the object's tight box (pixel-edge convention, as ``SyntheticObjects``).
Everything is a pure function of ``(seed, split, index)``; images are rendered on first
access and cached as uint8. Needs scikit-image and scikit-learn (``pip install
timm-ccrop[scenes]``) for the photographs and digits; nothing is downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from .shapes import SHAPES

__all__ = ["BACKGROUND_STYLES", "OBJECT_KINDS", "PHOTOS", "PhotoScenes"]

#: The photographs (file names in scikit-image's and scikit-learn's data folders).
PHOTOS: tuple[str, ...] = (
    "astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg",
    "motorcycle_left.png", "rocket.jpg", "retina.jpg", "ihc.png", "china.jpg", "flower.jpg",
    "brick.png", "camera.png", "grass.png", "gravel.png", "moon.png", "coins.png",
)
OBJECT_KINDS = ("shapes", "digits")
BACKGROUND_STYLES = ("busy", "calm", "mixed")
_SPLITS = {"train": 0, "test": 1}
_SS = 4  # supersampling of the object masks (anti-aliased edges)
_PHOTO_SIDE = 384  # photographs are kept at most this large (crops are resized anyway)
_MAX_ROT = math.radians(25)
_MAX_ASPECT = 1.35
_COLOUR_CANDIDATES = 8
_TAG = 0x5CE7E5


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The photographs as float32 RGB arrays in [0, 1] (grey ones replicated to RGB)."""
    try:
        import skimage
        import sklearn.datasets
    except ImportError as err:
        raise ImportError(f"PhotoScenes needs scikit-image and scikit-learn ({err.name} is "
                          "missing): pip install 'timm-ccrop[scenes]'") from None
    folders = [Path(skimage.__file__).parent / "data",
               Path(sklearn.datasets.__file__).parent / "images"]
    photos = []
    for name in PHOTOS:
        path = next((folder / name for folder in folders if (folder / name).exists()), None)
        if path is None:
            raise FileNotFoundError(f"photograph {name} is not in {folders[0]} or "
                                    f"{folders[1]}: reinstall scikit-image / scikit-learn")
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((_PHOTO_SIDE, _PHOTO_SIDE), Image.Resampling.LANCZOS)
            photos.append(np.asarray(image, dtype=np.float32) / 255.0)
    return tuple(photos)


@lru_cache(maxsize=1)
def _digit_masks() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits as smooth 64x64 masks, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    masks = np.stack([
        np.asarray(Image.fromarray((image * 16).astype(np.uint8)).resize(
            (64, 64), Image.Resampling.BICUBIC), dtype=np.float32) / 256.0
        for image in digits.images])
    return masks > 0.28, digits.target.astype(np.int64)


def _digit_mask_fn(mask: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """An indicator over object coordinates ``(u, v)`` in (-1, 1)^2 of one digit mask."""
    size = mask.shape[0]

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        col = np.floor((u * 0.95 + 1.0) * 0.5 * size).astype(np.int64)
        row = np.floor((v * 0.95 + 1.0) * 0.5 * size).astype(np.int64)
        valid = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        return valid & mask[row.clip(0, size - 1), col.clip(0, size - 1)]

    return inside


def _blob_fn(rng: np.random.Generator) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A smooth random blob (a radius with random low harmonics): a distractor, no class."""
    amplitude = rng.uniform(0.05, 0.18, 3)
    phase = rng.uniform(0, 2 * np.pi, 3)

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        theta = np.arctan2(v, u)
        radius = 0.7 + sum(a * np.cos((k + 2) * theta + p)
                           for k, (a, p) in enumerate(zip(amplitude, phase, strict=True)))
        return u * u + v * v < radius * radius

    return inside


def _background(rng: np.random.Generator, size: int, style: str) -> np.ndarray:
    """A random crop of a random photograph, ``(size, size, 3)`` float32 in [0, 1]."""
    photos = _photos()
    photo = photos[rng.integers(len(photos))]
    height, width = photo.shape[:2]
    side = int(min(height, width) * rng.uniform(0.35, 1.0))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop = Image.fromarray((photo[top:top + side, left:left + side] * 255).astype(np.uint8))
    crop = crop.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    calm = style == "calm" or (style == "mixed" and rng.random() < 0.5)
    if calm:
        crop = crop.filter(ImageFilter.GaussianBlur(radius=size / 10))
    image = np.asarray(crop, dtype=np.float32) / 255.0
    if np.ptp(image.reshape(-1, 3).mean(axis=0)) < 0.02:  # a grey photograph: tint it
        image = image * (0.55 + 0.45 * rng.random(3, dtype=np.float32))
    return image


def _coverage(inside: Callable[[np.ndarray, np.ndarray], np.ndarray], side: float,
              centre: tuple[float, float], rotation: float, aspect: float, size: int
              ) -> tuple[np.ndarray, int, int]:
    """Anti-aliased coverage of a shape drawn in a ``side`` px square at ``centre``:
    ``(coverage (n, n), left, top)`` of its window in the image."""
    n = min(int(math.ceil(side)) + 2, size)
    left = int(np.clip(math.floor(centre[0] - side / 2) - 1, 0, size - n))
    top = int(np.clip(math.floor(centre[1] - side / 2) - 1, 0, size - n))
    sub = (np.arange(n * _SS, dtype=np.float32) + 0.5) / _SS
    dx = left + sub[None, :] - centre[0]
    dy = top + sub[:, None] - centre[1]
    sx, sy = max(aspect, 1.0), max(1.0 / aspect, 1.0)
    cos, sin = math.cos(rotation), math.sin(rotation)
    fit = max(abs(cos) / sx + abs(sin) / sy, abs(sin) / sx + abs(cos) / sy)
    scale = 2.0 * fit / side
    u = (cos * dx + sin * dy) * scale * sx
    v = (-sin * dx + cos * dy) * scale * sy
    mask = inside(u, v).astype(np.float32)
    return mask.reshape(n, _SS, n, _SS).mean(axis=(1, 3)), left, top


def _colour_candidates(rng: np.random.Generator, hue: float | None, spread: float
                       ) -> np.ndarray:
    """Candidate colours ``(K, 3)``: any colour, or (``hue`` in [0, 1) given) hues within
    ``spread`` degrees around it, at random saturation and brightness."""
    if hue is None or spread >= 360:
        return rng.random((_COLOUR_CANDIDATES, 3), dtype=np.float32)
    hues = (hue + rng.uniform(-0.5, 0.5, _COLOUR_CANDIDATES) * spread / 360.0) % 1.0
    saturation = rng.uniform(0.45, 1.0, _COLOUR_CANDIDATES)
    value = rng.uniform(0.45, 1.0, _COLOUR_CANDIDATES)
    sector = hues * 6.0
    # HSV -> RGB: each channel's distance (in sextants) from its primary's hue
    channel = np.abs((sector[:, None] - np.array([0.0, 2.0, 4.0])[None] + 3.0) % 6.0 - 3.0)
    weight = np.clip(channel - 1.0, 0.0, 1.0)
    return (value[:, None] * (1.0 - saturation[:, None] * weight)).astype(np.float32)


def _paint(image: np.ndarray, coverage: np.ndarray, left: int, top: int,
           rng: np.random.Generator, hue: float | None = None, spread: float = 360.0
           ) -> None:
    """Composite a shaded shape of a colour that stands out from what it covers."""
    n = coverage.shape[0]
    window = image[top:top + n, left:left + n]
    covered = window[coverage > 0]
    candidates = _colour_candidates(rng, hue, spread)
    if len(covered):
        distance = ((candidates[:, None, :] - covered[None, :, :]) ** 2).sum(-1)
        colour = candidates[np.argmax(np.quantile(distance, 0.1, axis=1))]
    else:
        colour = candidates[0]
    gradient = rng.uniform(-0.25, 0.25, 2).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    shade = 1.0 + gradient[0] * ramp[None, :] + gradient[1] * ramp[:, None]
    painted = np.clip(shade[..., None] * colour, 0.0, 1.0)
    window += coverage[..., None] * (painted - window)


class PhotoScenes(torch.utils.data.Dataset):
    """One object per image on a crop of a real photograph; the class is the object.

    Args:
        num_samples: images in the split (>= 1).
        image_size: side of the square RGB images (>= 16).
        num_classes: classes used (shapes: up to 16; digits: up to 10).
        seed: base seed; image ``i`` is a pure function of ``(seed, split, i)``.
        split: ``'train'`` or ``'test'`` (independent streams; digits of other writers).
        objects: ``'shapes'`` or ``'digits'``.
        object_scale: ``(lo, hi)``: the object's side is ``U(lo, hi) * image_size``.
        backgrounds: ``'busy'``, ``'calm'`` or ``'mixed'``.
        distractors: blobs (no class) drawn under the object, >= 0.
        hue_spread: degrees of hue around the class's own hue (class ``k`` of ``K``:
            ``360 k / K``) that the object's colour is drawn from; 360 (default): any
            colour, so colour says nothing about the class; 90: colour narrows the class
            down to two or three of ten, as colour does in real photographs.
        transform / target_transform: applied in ``__getitem__``.
    """

    has_labels = True
    DEFAULT_IMAGE_SIZE = 64

    def __init__(self, num_samples: int = 2000, image_size: int = DEFAULT_IMAGE_SIZE,
                 num_classes: int = 10, seed: int = 0, split: str = "train",
                 objects: str = "shapes", object_scale: tuple[float, float] = (0.3, 0.5),
                 backgrounds: str = "mixed", distractors: int = 0,
                 hue_spread: float = 360.0, *,
                 transform: Callable[[Image.Image], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        _validate(num_samples, image_size, num_classes, seed, split, objects, object_scale,
                  backgrounds, distractors, hue_spread)
        self.num_samples, self.image_size = int(num_samples), int(image_size)
        self.num_classes, self.seed, self.split = int(num_classes), int(seed), split
        self.objects, self.backgrounds = objects, backgrounds
        self.object_scale = (float(object_scale[0]), float(object_scale[1]))
        self.distractors, self.hue_spread = int(distractors), float(hue_spread)
        self.transform, self.target_transform = transform, target_transform
        names = [name for name, _ in SHAPES] if objects == "shapes" else \
            [f"digit_{d}" for d in range(10)]
        self.classes: list[str] = names[:self.num_classes]
        order = np.random.default_rng([self.seed, _SPLITS[split], _TAG]).permutation(
            self.num_samples)
        self.targets: list[int] = (order % self.num_classes).tolist()
        self._images = np.zeros((self.num_samples, image_size, image_size, 3), np.uint8)
        self._boxes = np.zeros((self.num_samples, 4), np.float32)
        self._done = np.zeros(self.num_samples, bool)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = self._rendered(index)
        image: Any = Image.fromarray(self._images[index])
        target: Any = self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def sample_id(self, index: int) -> str:
        """Stable id, e.g. ``scenes-train-00012``."""
        return f"scenes-{self.split}-{self._check(index):05d}"

    @property
    def gt_boxes(self) -> torch.Tensor:
        """float32 ``(N, 4)`` tight object boxes ``(x0, y0, x1, y1)`` in [0, 1]."""
        self.prerender()
        return torch.from_numpy(self._boxes.copy())

    def prerender(self) -> PhotoScenes:
        """Render the whole split now (e.g. before loader workers fork). Returns ``self``."""
        for index in np.flatnonzero(~self._done):
            self._rendered(int(index))
        return self

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``index`` from scratch: ``(uint8 (H, W, 3), box (4,))``."""
        return _render(self, self._check(index))

    def __repr__(self) -> str:
        return (f"PhotoScenes(num_samples={self.num_samples}, image_size={self.image_size}, "
                f"num_classes={self.num_classes}, seed={self.seed}, split={self.split!r}, "
                f"objects={self.objects!r}, object_scale={self.object_scale}, "
                f"backgrounds={self.backgrounds!r}, distractors={self.distractors}, "
                f"hue_spread={self.hue_spread:g})")

    def _check(self, index: int) -> int:
        i = int(index) + (self.num_samples if int(index) < 0 else 0)
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        return i

    def _rendered(self, index: int) -> int:
        index = self._check(index)
        if not self._done[index]:
            self._images[index], self._boxes[index] = _render(self, index)
            self._done[index] = True
        return index


def _object_fn(scenes: PhotoScenes, target: int, rng: np.random.Generator
               ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if scenes.objects == "shapes":
        return SHAPES[target][1]
    masks, labels = _digit_masks()
    # train and test draw from disjoint halves of each digit's samples (other writers)
    pool = np.flatnonzero(labels == target)[_SPLITS[scenes.split]::2]
    return _digit_mask_fn(masks[pool[rng.integers(len(pool))]])


def _render(scenes: PhotoScenes, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Background, distractors, then the object; returns the image and the object's box."""
    size = scenes.image_size
    rng = np.random.default_rng([scenes.seed, _SPLITS[scenes.split], index])
    image = _background(rng, size, scenes.backgrounds)
    draws = [(_blob_fn(rng), False) for _ in range(scenes.distractors)]
    draws.append((_object_fn(scenes, scenes.targets[index], rng), True))
    lo, hi = scenes.object_scale
    for inside, is_object in draws:
        side = max(rng.uniform(lo, hi) * size, 3.0)
        centre = (rng.uniform(side / 2, size - side / 2), rng.uniform(side / 2, size - side / 2))
        rotation = rng.uniform(-1, 1) * _MAX_ROT
        aspect = math.exp(rng.uniform(-1, 1) * math.log(_MAX_ASPECT))
        coverage, left, top = _coverage(inside, side, centre, rotation, aspect, size)
        hue = scenes.targets[index] / scenes.num_classes if is_object else None
        _paint(image, coverage, left, top, rng, hue, scenes.hue_spread)
        if is_object:
            box = _tight_box(coverage, left, top, size)
    noisy = image + rng.normal(0, 0.015, image.shape).astype(np.float32)
    return (np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8), box


def _tight_box(coverage: np.ndarray, left: int, top: int, size: int) -> np.ndarray:
    rows, cols = np.flatnonzero(coverage.any(axis=1)), np.flatnonzero(coverage.any(axis=0))
    if not len(rows):  # a shape thinner than the supersampling: its window
        rows = cols = np.array([0, coverage.shape[0] - 1])
    return np.array([left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1],
                    dtype=np.float32) / size


def _validate(num_samples: Any, image_size: Any, num_classes: Any, seed: Any, split: Any,
              objects: Any, object_scale: Any, backgrounds: Any, distractors: Any,
              hue_spread: Any) -> None:
    if isinstance(hue_spread, bool) or not isinstance(hue_spread, (int, float)) \
            or not 0 <= hue_spread <= 360:
        raise ValueError(f"hue_spread must be a number of degrees in [0, 360], got "
                         f"{hue_spread!r}; 360: any colour")
    for name, value, low in (("num_samples", num_samples, 1), ("image_size", image_size, 16),
                             ("seed", seed, 0), ("distractors", distractors, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if objects not in OBJECT_KINDS:
        raise ValueError(f"objects must be one of {', '.join(OBJECT_KINDS)}, got {objects!r}")
    most = len(SHAPES) if objects == "shapes" else 10
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or not 2 <= num_classes <= most:
        raise ValueError(f"num_classes must be an integer in [2, {most}] for objects="
                         f"{objects}, got {num_classes!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if backgrounds not in BACKGROUND_STYLES:
        raise ValueError(f"backgrounds must be one of {', '.join(BACKGROUND_STYLES)}, got "
                         f"{backgrounds!r}")
    try:
        lo, hi = (float(s) for s in object_scale)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"object_scale must be lo:hi with 0 < lo <= hi <= 1, got "
                         f"{object_scale!r}; e.g. object_scale=0.3:0.5")
