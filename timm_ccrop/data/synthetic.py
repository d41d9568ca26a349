"""``SyntheticObjects``: a procedurally generated, download-free object dataset.

Each image holds exactly one object whose *shape* is the class (disc, square, triangle, ...)
and whose colour, position, size, aspect ratio, small rotation and shading are random, on a
cluttered background (smooth random colour field + oriented texture + distractor strokes and
blobs + pixel noise).  Masks are rendered with 4x4 super-sampling (anti-aliased).
The object colour is chosen to contrast with the background it covers, so the object is
salient, but neither colour nor position gives the class away.  The tight box of the object
is known exactly, which lets tests and benchmarks check ContrastiveCrop's box localisation.

Everything is a deterministic function of ``(seed, split, index)``; see ``docs/synthetic.md``
for the argument reference, the box convention, rendering speed and learnability numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..utils.constants import MIN_IMAGE_SIZE
from .shapes import SHAPE_NAMES
from .synthetic_render import render_images

__all__ = ["SHAPE_NAMES", "SyntheticObjects"]

_SPLITS = {"train": 0, "test": 1}  # random-stream id of each split (fixed: images depend on it)
_CACHE_CHUNK = 256  # images rendered together when the lazy cache is filled
_TARGET_TAG = 0x5EED7A6  # keeps the target stream apart from the per-image streams


class SyntheticObjects(Dataset):
    """One random shape per image on a cluttered background; the class is the shape.

    Args:
        num_samples: number of images in the split (>= 1).
        image_size: side of the square RGB images in pixels (>= 8).
        num_classes: number of shape classes used, 1..``len(SHAPE_NAMES)`` (16); class ``k``
            is ``SHAPE_NAMES[k]``.
        seed: base seed.  Image ``i`` is a pure function of ``(seed, split, i)`` (and of the
            other constructor arguments), drawn from ``np.random.default_rng([seed, split, i])``.
        split: ``"train"`` or ``"test"``; the two splits use independent random streams.
        object_scale: ``(lo, hi)``; the side of the object's square is
            ``uniform(lo, hi) * image_size`` pixels (at least 2 px), ``0 < lo <= hi <= 1``.
        clutter: background clutter strength ``>= 0``.  ``0`` = smooth colour field only; ``1`` =
            default texture amplitude, pixel noise and on average 3 strokes + 1.5 blobs;
            values above 1 scale all of these up (counts capped at 8 strokes / 4 blobs).
        center_bias: in ``(-1, 1)``.  ``0`` = object position uniform over all positions that
            keep it fully inside the image; ``> 0`` pulls it towards the image centre, ``< 0``
            pushes it towards the borders/corners (per-axis offset ``c ~ U(-1, 1)`` is mapped to
            ``sign(c) |c|**p`` with ``p = 1 / (1 - center_bias)`` or ``p = 1 + center_bias``).
        backgrounds: ``0`` (default) gives every image its own background.  ``N > 0`` draws
            each image's background (colour field, texture, distractors) from ``N`` shared
            ones, the same in both splits, so that only the object tells images apart: the
            background is then a shortcut for neither class nor instance.  Sensor noise
            stays per image.
        palette: ``0`` (default) draws each object's colour from 8 random candidates (the one
            standing out most from the background it covers).  ``K > 0`` picks it from ``K``
            fixed colours instead (again the one standing out most), so that colour says
            little about which image a view came from and shape has to.
        class_colours: when true, every object of class ``k`` has the class's own colour
            (``num_classes`` hues spread evenly around the colour wheel) instead: class is
            then shape and colour, which a network learns from far fewer examples, but only
            by looking at the object, since neither the background nor the object position
            depends on the class.
        transform / target_transform: optional callables applied in ``__getitem__`` (timm's
            ``create_loader`` sets ``dataset.transform``).

    Rendering is lazy: images are rendered in chunks of 256 on first access and cached as uint8
    (``3 * image_size**2`` bytes each); ``gt_boxes`` and ``images_uint8()`` render the whole
    split.  Targets are available immediately.
    """

    has_labels = True
    DEFAULT_IMAGE_SIZE = 32

    def __init__(
        self,
        num_samples: int = 5000,
        image_size: int = DEFAULT_IMAGE_SIZE,
        num_classes: int = 10,
        seed: int = 0,
        split: str = "train",
        object_scale: tuple[float, float] = (0.3, 0.55),
        clutter: float = 1.0,
        center_bias: float = 0.0,
        backgrounds: int = 0,
        palette: int = 0,
        class_colours: bool = False,
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        _validate(num_samples, image_size, num_classes, seed, split, object_scale, clutter,
                  center_bias, backgrounds, palette, class_colours)
        self.num_samples = int(num_samples)
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.split = split
        self.split_id = _SPLITS[split]
        self.object_scale = (float(object_scale[0]), float(object_scale[1]))
        self.clutter = float(clutter)
        self.center_bias = float(center_bias)
        self.backgrounds = int(backgrounds)
        self.palette = int(palette)
        self.class_colours = bool(class_colours)
        self.transform = transform
        self.target_transform = target_transform
        self.classes: list[str] = list(SHAPE_NAMES[: self.num_classes])
        self.targets: list[int] = _balanced_targets(
            self.num_samples, self.num_classes, self.seed, self.split_id
        ).tolist()
        #: The targets as an int64 array (what rendering indexes).
        self.targets_array = np.asarray(self.targets, dtype=np.int64)
        n = self.num_samples
        self._images = np.zeros((n, self.image_size, self.image_size, 3), dtype=np.uint8)
        self._boxes = np.zeros((n, 4), dtype=np.float32)
        self._chunk_done = np.zeros((n + _CACHE_CHUNK - 1) // _CACHE_CHUNK, dtype=bool)
        self._gt_boxes: torch.Tensor | None = None

    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int):
        index = self._check_index(index)
        self._ensure_rendered(index)
        img = Image.fromarray(self._images[index])  # (H, W, 3) uint8 -> RGB
        target = self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def sample_id(self, index: int) -> str:
        """Stable, human-readable id, e.g. ``"synthetic-train-00012"``."""
        index = self._check_index(index)
        return f"synthetic-{self.split}-{index:05d}"

    @property
    def gt_boxes(self) -> torch.Tensor:
        """float32 ``[N, 4]`` tight object boxes ``(x0, y0, x1, y1)`` in [0, 1], pixel-edge
        convention: an object covering pixel columns ``a..b`` has ``x0 = a / W``,
        ``x1 = (b + 1) / W`` (a pixel belongs to the object if any mask sub-sample hits it)."""
        if self._gt_boxes is None:
            self._render_all()
            self._gt_boxes = torch.from_numpy(self._boxes)  # complete: never written again
        return self._gt_boxes

    def prerender(self) -> SyntheticObjects:
        """Render (and cache) the whole split now, e.g. before DataLoader workers fork so that
        they share the cache instead of each rendering its own copy.  Returns ``self``."""
        self._render_all()
        return self

    def images_uint8(self) -> torch.Tensor:
        """The whole split as a contiguous ``torch.uint8`` tensor ``(N, 3, H, W)`` (a copy)."""
        self._render_all()
        return torch.from_numpy(np.ascontiguousarray(self._images.transpose(0, 3, 1, 2)))

    def image_array(self, index: int) -> np.ndarray:
        """Image ``index`` as a read-only ``(H, W, 3)`` uint8 view of the cache."""
        index = self._check_index(index)
        self._ensure_rendered(index)
        view = self._images[index].view()
        view.flags.writeable = False
        return view

    def render(
        self, indices: Sequence[int] | np.ndarray, draw_object: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render ``indices`` from scratch (bypassing the cache).

        Returns ``(images uint8 [B,H,W,3], coverage float32 [B,H,W] in [0,1], boxes float32
        [B,4])``.  With ``draw_object=False`` the images are the backgrounds alone (same random
        draws), which is what the object was composited onto; coverage and boxes are unchanged.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise IndexError(f"indices must lie in [0, {self.num_samples}), got {idx.tolist()}")
        return render_images(self, idx, draw_object=draw_object)

    def extra_repr(self) -> str:
        """The constructor arguments, as shown by ``repr``."""
        return (
            f"num_samples={self.num_samples}, image_size={self.image_size}, "
            f"num_classes={self.num_classes}, seed={self.seed}, split={self.split!r}, "
            f"object_scale={self.object_scale}, clutter={self.clutter}, "
            f"center_bias={self.center_bias}, backgrounds={self.backgrounds}, "
            f"palette={self.palette}, class_colours={self.class_colours}"
        )

    def __repr__(self) -> str:
        return f"SyntheticObjects({self.extra_repr()})"

    # ------------------------------------------------------------------ internals
    def _check_index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        return i

    def _ensure_rendered(self, index: int) -> None:
        c = index // _CACHE_CHUNK
        if not self._chunk_done[c]:
            self._render_chunk(c)

    def _render_chunk(self, c: int) -> None:
        lo = c * _CACHE_CHUNK
        hi = min(lo + _CACHE_CHUNK, self.num_samples)
        imgs, _, boxes = render_images(self, np.arange(lo, hi), draw_object=True)
        self._images[lo:hi] = imgs
        self._boxes[lo:hi] = boxes
        self._chunk_done[c] = True

    def _render_all(self) -> None:
        for c in np.flatnonzero(~self._chunk_done):
            self._render_chunk(int(c))


# --------------------------------------------------------------------------- helpers


def _validate(num_samples, image_size, num_classes, seed, split, object_scale, clutter,
              center_bias, backgrounds=0, palette=0, class_colours=False) -> None:
    if class_colours not in (True, False):  # also admits 0 and 1, as a spec string gives
        raise ValueError(f"class_colours must be true or false (1 or 0), got {class_colours!r}")
    for name, value, zero in (("backgrounds", backgrounds, "one background per image"),
                              ("palette", palette, "any object colour")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0 (0: {zero}), got {value!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}; "
                         "pass e.g. num_samples=5000")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}; "
                         "pass e.g. image_size=32")
    n_shapes = len(SHAPE_NAMES)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or not 1 <= num_classes <= n_shapes:
        raise ValueError(f"num_classes must be an integer in [1, {n_shapes}] (SyntheticObjects "
                         f"defines {n_shapes} shapes), got {num_classes!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        lo, hi = (float(s) for s in object_scale)
    except (TypeError, ValueError):
        raise ValueError(f"object_scale must be a pair (lo, hi) of floats with "
                         f"0 < lo <= hi <= 1, got {object_scale!r}") from None
    if not (0.0 < lo <= hi <= 1.0):
        raise ValueError(f"object_scale must satisfy 0 < lo <= hi <= 1, got {object_scale!r}; "
                         "pass e.g. object_scale=(0.3, 0.55)")
    if not (isinstance(clutter, (int, float, np.floating)) and math.isfinite(clutter)
            and clutter >= 0):
        raise ValueError(f"clutter must be a finite float >= 0, got {clutter!r}; "
                         "0 = plain background, 1 = default")
    if not (isinstance(center_bias, (int, float, np.floating)) and -1.0 < center_bias < 1.0):
        raise ValueError(f"center_bias must be a float in (-1, 1), got {center_bias!r}; "
                         "0 = uniform positions, >0 towards the centre, <0 towards the borders")


def _balanced_targets(n: int, num_classes: int, seed: int, split_id: int) -> np.ndarray:
    """Every consecutive block of ``num_classes`` indices holds each class once, in a seeded
    random order.  A prefix of a longer split has the same targets (prefix-stable)."""
    blocks = (n + num_classes - 1) // num_classes
    rng = np.random.default_rng([seed, 2 + split_id, _TARGET_TAG])
    perms = np.argsort(rng.random((blocks, num_classes)), axis=1, kind="stable")
    return perms.reshape(-1)[:n].astype(np.int64)
