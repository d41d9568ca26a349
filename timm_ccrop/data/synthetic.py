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

__all__ = ["SHAPE_NAMES", "SyntheticObjects"]

_SPLITS = {"train": 0, "test": 1}
_SS = 4  # super-sampling factor of the object mask (per axis)
_MAX_ROT = math.radians(15.0)  # objects are rotated by U(-15, 15) degrees
_MAX_ASPECT = 1.25  # one axis of the shape is squashed by up to this factor
_MAX_SHADING = 0.25  # object colour varies linearly by up to +-25% across the object
_N_COLOUR_CANDIDATES = 8
_MAX_STROKES = 8
_MAX_BLOBS = 4
_GRID = 4  # smooth background colour field: _GRID x _GRID random colours, bilinear
_CACHE_CHUNK = 256  # images rendered together when the lazy cache is filled
_MAX_ELEMENTS = 1 << 22  # bound on the per-image temporaries of one rendering batch
_TARGET_TAG = 0x5EED7A6  # keeps the target stream apart from the per-image streams


# --------------------------------------------------------------------------- shapes
# Every shape is an indicator over normalised object coordinates (u right, v down), and lies
# inside the open square (-1, 1)^2, which is the object's (side x side) square in the image.


def _disc(u, v):
    return u * u + v * v < 0.96


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) < 0.8


def _triangle(u, v):
    return (v < 0.9) & (np.abs(u) < (v + 0.98) * 0.51)


def _plus(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au < 0.28) & (av < 0.97)) | ((av < 0.28) & (au < 0.97))


def _ring(u, v):
    r2 = u * u + v * v
    return (r2 < 0.96) & (r2 > 0.36)


def _diamond(u, v):
    return np.abs(u) + np.abs(v) < 0.97


def _bar_pair(u, v):
    av = np.abs(v)
    return (np.abs(u) < 0.95) & (av > 0.3) & (av < 0.85)


def _l_shape(u, v):
    inside = np.maximum(np.abs(u), np.abs(v)) < 0.9
    return inside & ((u < -0.3) | (v > 0.3))


def _star(u, v):
    r = np.sqrt(u * u + v * v)
    theta = np.arctan2(u, -v)  # 0 = pointing up
    f = np.abs(((theta * (5.0 / (2.0 * np.pi))) % 1.0) - 0.5) * 2.0  # 1 at a tip, 0 between
    return r < 0.38 + 0.6 * f**1.5


def _hollow_square(u, v):
    m = np.maximum(np.abs(u), np.abs(v))
    return (m < 0.9) & (m > 0.5)


def _x_cross(u, v):
    inside = np.maximum(np.abs(u), np.abs(v)) < 0.92
    return inside & ((np.abs(u - v) < 0.42) | (np.abs(u + v) < 0.42))


def _t_shape(u, v):
    inside = np.maximum(np.abs(u), np.abs(v)) < 0.92
    return inside & ((v < -0.35) | (np.abs(u) < 0.28))


def _dome(u, v):
    # upper half of an ellipse whose flat side is at the bottom
    return (v < 0.8) & (u * u + ((v - 0.8) / 1.75) ** 2 < 0.94)


def _hourglass(u, v):
    inside = np.maximum(np.abs(u), np.abs(v)) < 0.92
    return inside & (np.abs(u) < np.abs(v) + 0.08)


def _crescent(u, v):
    return (u * u + v * v < 0.96) & ((u - 0.5) ** 2 + v * v > 0.55)


def _bar_pair_vertical(u, v):
    return _bar_pair(v, u)


_SHAPES: tuple[tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]], ...] = (
    ("disc", _disc),
    ("square", _square),
    ("triangle", _triangle),
    ("plus", _plus),
    ("ring", _ring),
    ("diamond", _diamond),
    ("bar_pair", _bar_pair),
    ("l_shape", _l_shape),
    ("star", _star),
    ("hollow_square", _hollow_square),
    ("x_cross", _x_cross),
    ("t_shape", _t_shape),
    ("dome", _dome),
    ("hourglass", _hourglass),
    ("crescent", _crescent),
    ("bar_pair_vertical", _bar_pair_vertical),
)
SHAPE_NAMES: tuple[str, ...] = tuple(name for name, _ in _SHAPES)


# --------------------------------------------------------------------------- dataset


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

    def __init__(
        self,
        num_samples: int = 5000,
        image_size: int = 32,
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
        self._targets_np = np.asarray(self.targets, dtype=np.int64)
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

    def render(self, indices: Sequence[int] | np.ndarray, draw_object: bool = True):
        """Render ``indices`` from scratch (bypassing the cache).

        Returns ``(images uint8 [B,H,W,3], coverage float32 [B,H,W] in [0,1], boxes float32
        [B,4])``.  With ``draw_object=False`` the images are the backgrounds alone (same random
        draws), which is what the object was composited onto; coverage and boxes are unchanged.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise IndexError(f"indices must lie in [0, {self.num_samples}), got {idx.tolist()}")
        return _render(self, idx, draw_object=draw_object)

    def extra_repr(self) -> str:
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
        imgs, _, boxes = _render(self, np.arange(lo, hi), draw_object=True)
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
            or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}; "
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


def _bilinear_setup(size: int, grid: int):
    pos = (np.arange(size) + 0.5) / size * (grid - 1)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, grid - 2)
    w = (pos - i0).astype(np.float32)
    return i0, i0 + 1, w


# Layout of the uniform numbers drawn per image (one ``rng.random`` call, then the noise).
_U_FIELDS = (
    ("side", 1), ("pos", 2),
    ("shape", 4),  # rotation, aspect ratio, shading gain, shading direction
    ("grid", _GRID * _GRID * 3),
    ("tex", 2 * 7),  # per grating: frequency, angle, phase, amplitude, r, g, b tint
    ("n_strokes", 1), ("strokes", _MAX_STROKES * 9),  # x, y, angle, len, width, opacity, rgb
    ("n_blobs", 1), ("blobs", _MAX_BLOBS * 7),  # x, y, sigma, opacity, rgb
    ("cand", _N_COLOUR_CANDIDATES * 3),
)
_U_SLICES: dict[str, slice] = {}
_off = 0
for _name, _len in _U_FIELDS:
    _U_SLICES[_name] = slice(_off, _off + _len)
    _off += _len
_U_TOTAL = _off
_BACKGROUND_COLUMNS = np.concatenate([
    np.arange(_U_SLICES[field].start, _U_SLICES[field].stop)
    for field in ("grid", "tex", "n_strokes", "strokes", "n_blobs", "blobs")
])
_BACKGROUND_TAG = 0xB6C0
_PALETTE_TAG = 0xC0105
del _off, _name, _len


def _class_colours(num_classes: int) -> np.ndarray:
    """``num_classes`` saturated colours with evenly spaced hues, float32 ``(K, 3)``."""
    hue = np.arange(num_classes) / num_classes
    k = (np.array([5.0, 3.0, 1.0])[None, :] + hue[:, None] * 6.0) % 6.0
    rgb = 1.0 - 0.8 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)  # HSV (h, 0.8, 1) -> RGB
    return (0.85 * rgb).astype(np.float32)


def _poisson_from_uniform(u: np.ndarray, lam: float, cap: int) -> np.ndarray:
    """Inverse-CDF Poisson(lam) sample, capped at ``cap`` (vectorised, exact CDF)."""
    if lam <= 0:
        return np.zeros(u.shape, dtype=np.int64)
    k = np.arange(cap)
    log_pmf = -lam + k * math.log(lam) - np.array([math.lgamma(j + 1) for j in k])
    cdf = np.cumsum(np.exp(log_pmf))
    return np.searchsorted(cdf, u, side="right").astype(np.int64)  # values in 0..cap


def _draw_params(ds: SyntheticObjects, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All random numbers of every image, each from its own generator, in a fixed order:
    ``rng.random(_U_TOTAL)`` then ``rng.standard_normal((3, H, W), float32)``."""
    W = ds.image_size
    U = np.empty((idx.size, _U_TOTAL), dtype=np.float64)
    noise = np.empty((idx.size, 3, W, W), dtype=np.float32)
    for j, i in enumerate(idx.tolist()):
        rng = np.random.default_rng([ds.seed, ds.split_id, i])
        rng.random(out=U[j])
        rng.standard_normal(out=noise[j], dtype=np.float32)
    if ds.backgrounds:
        # Separate streams: the images' own numbers (and so every other option's images)
        # stay exactly as they are without shared backgrounds.
        picks = np.array([np.random.default_rng([ds.seed, ds.split_id, i, _BACKGROUND_TAG])
                          .integers(ds.backgrounds) for i in idx.tolist()], dtype=np.int64)
        for b in np.unique(picks):  # each shared background drawn once per call
            shared = np.random.default_rng([ds.seed, _BACKGROUND_TAG, int(b)]).random(_U_TOTAL)
            rows = np.flatnonzero(picks == b)
            U[np.ix_(rows, _BACKGROUND_COLUMNS)] = shared[_BACKGROUND_COLUMNS]
    return U, noise


def _map_bias(c: np.ndarray, bias: float) -> np.ndarray:
    if bias == 0.0:
        return c
    p = 1.0 / (1.0 - bias) if bias > 0 else 1.0 + bias
    return np.sign(c) * np.abs(c) ** p


def _add_distractors(ds: SyntheticObjects, U: np.ndarray, bg: np.ndarray) -> None:
    """Composite each image's distractor blobs, then strokes, onto ``bg`` (B,3,H,W) in place."""
    B, _, H, W = bg.shape
    f32 = np.float32
    scale = W / 32.0
    n_s = _poisson_from_uniform(U[:, _U_SLICES["n_strokes"]][:, 0], 3.0 * ds.clutter,
                                _MAX_STROKES)
    n_b = _poisson_from_uniform(U[:, _U_SLICES["n_blobs"]][:, 0], 1.5 * ds.clutter, _MAX_BLOBS)
    st = U[:, _U_SLICES["strokes"]].reshape(B, _MAX_STROKES, 9)
    bl = U[:, _U_SLICES["blobs"]].reshape(B, _MAX_BLOBS, 7)
    sb, sk = np.nonzero(np.arange(_MAX_STROKES)[None, :] < n_s[:, None])
    bb, bk = np.nonzero(np.arange(_MAX_BLOBS)[None, :] < n_b[:, None])
    if sb.size + bb.size == 0:
        return
    s = st[sb, sk].astype(f32)  # (Ms, 9): x, y, angle, length, width, opacity, r, g, b
    b = bl[bb, bk].astype(f32)  # (Mb, 7): x, y, sigma, opacity, r, g, b
    pix = np.arange(W, dtype=f32) + f32(0.5)
    X, Y = pix[None, None, :], pix[None, :, None]

    # blobs: soft Gaussian spots
    sig = (f32(0.03) + f32(0.06) * b[:, 2]) * f32(W)
    d2 = (X - (b[:, 0] * W)[:, None, None]) ** 2 + (Y - (b[:, 1] * H)[:, None, None]) ** 2
    a_b = np.exp(d2 * (-0.5 / (sig * sig))[:, None, None])
    a_b *= (f32(0.35) + f32(0.45) * b[:, 3])[:, None, None]

    # strokes: anti-aliased segments, alpha = clip(width/2 + 1/2 - distance, 0, 1)
    ang = s[:, 2] * f32(2 * np.pi)
    length = (f32(0.2) + f32(0.35) * s[:, 3]) * f32(W)
    dx, dy = (np.cos(ang) * length)[:, None, None], (np.sin(ang) * length)[:, None, None]
    px = X - (s[:, 0] * W)[:, None, None]
    py = Y - (s[:, 1] * H)[:, None, None]
    t = (px * dx + py * dy) * (1.0 / (length * length))[:, None, None]
    np.clip(t, 0.0, 1.0, out=t)
    ex = px - t * dx
    ey = py - t * dy
    d = np.sqrt(ex * ex + ey * ey)
    half_w = ((f32(0.6) + s[:, 4]) * f32(scale) * f32(0.5) + f32(0.5))[:, None, None]
    a_s = np.clip(half_w - d, 0.0, 1.0)
    a_s *= (f32(0.55) + f32(0.45) * s[:, 5])[:, None, None]

    alpha = np.concatenate([a_b, a_s])  # (M, H, W)
    owner = np.concatenate([bb, sb])
    slot = np.concatenate([bk, n_b[sb] + sk])  # drawing order within an image
    col = np.concatenate([b[:, 4:7], s[:, 6:9]])[:, :, None, None]  # (M, 3, 1, 1)
    for j in range(int(slot.max()) + 1):
        rows = np.flatnonzero(slot == j)
        o = owner[rows]  # distinct images
        cur = bg[o]
        cur += alpha[rows][:, None] * (col[rows] - cur)
        bg[o] = cur


def _render(ds: SyntheticObjects, idx: np.ndarray, draw_object: bool = True):
    W = H = ds.image_size
    B = idx.size
    f32 = np.float32
    if B == 0:
        return (np.zeros((0, H, W, 3), np.uint8), np.zeros((0, H, W), f32),
                np.zeros((0, 4), f32))
    n = min(int(math.ceil(ds.object_scale[1] * W)) + 2, W)  # object window side (pixels)
    per_image = max((n * _SS) ** 2, 3 * H * W, max(_N_COLOUR_CANDIDATES, ds.palette) * n * n)
    max_batch = max(1, _MAX_ELEMENTS // per_image)
    if idx.size > max_batch:  # bound the temporaries for large images (results are per-image)
        parts = [_render(ds, idx[i:i + max_batch], draw_object)
                 for i in range(0, B, max_batch)]
        return tuple(np.concatenate(arrs) for arrs in zip(*parts, strict=True))
    U, noise = _draw_params(ds, idx)
    scale = W / 32.0  # texture geometry is specified at 32 px and scaled with the image
    pix = np.arange(W, dtype=f32) + f32(0.5)
    X = pix[None, None, :]  # (1, 1, W)
    Y = pix[None, :, None]  # (1, H, 1)

    # ---- smooth colour field (bilinear upsampling of a _GRID x _GRID colour grid)
    i0, i1, w = _bilinear_setup(W, _GRID)
    g = (f32(0.15) + f32(0.7) * U[:, _U_SLICES["grid"]].astype(f32)).reshape(B, 3, _GRID, _GRID)
    rows = g[:, :, i0] * (1 - w)[:, None] + g[:, :, i1] * w[:, None]  # (B, 3, H, G)
    bg = np.empty((B, 3, H, W), dtype=f32)  # channel-first (C-contiguous) while rendering
    np.multiply(rows[..., i0], 1 - w, out=bg)
    bg += rows[..., i1] * w

    if ds.clutter > 0:
        cl = f32(ds.clutter)
        # ---- oriented texture: two tinted sine gratings
        tex = U[:, _U_SLICES["tex"]].astype(f32).reshape(B, 2, 7)
        for k in range(2):
            f = (f32(0.15) + f32(0.3) * tex[:, k, 0]) / f32(scale)  # cycles per pixel
            th = tex[:, k, 1] * f32(np.pi)
            fx = (f32(2 * np.pi) * f * np.cos(th))[:, None, None]
            fy = (f32(2 * np.pi) * f * np.sin(th))[:, None, None]
            wave = np.sin(X * fx + Y * fy + (tex[:, k, 2] * f32(2 * np.pi))[:, None, None])
            amp = cl * (f32(0.03) + f32(0.07) * tex[:, k, 3])
            tint = amp[:, None] * (f32(0.2) + f32(0.8) * tex[:, k, 4:7])  # (B, 3)
            for ch in range(3):
                bg[:, ch] += wave * tint[:, ch, None, None]
        # ---- distractor strokes and blobs
        _add_distractors(ds, U, bg)
    np.clip(bg, 0.0, 1.0, out=bg)

    # ---- object geometry: side, position, aspect ratio, rotation
    lo, hi = ds.object_scale
    side = (lo + (hi - lo) * U[:, _U_SLICES["side"]][:, 0]) * W
    side = np.maximum(side, min(2.0, float(W)))  # pixels
    c = _map_bias(U[:, _U_SLICES["pos"]] * 2.0 - 1.0, ds.center_bias)  # (B, 2) in [-1, 1]
    ox = (c[:, 0] + 1.0) * 0.5 * (W - side)  # top-left corner of the object's square
    oy = (c[:, 1] + 1.0) * 0.5 * (H - side)
    cx, cy = ox + side / 2, oy + side / 2
    shape_u = U[:, _U_SLICES["shape"]]  # rotation, aspect, shading gain, shading direction
    rot = (shape_u[:, 0] * 2.0 - 1.0) * _MAX_ROT
    aspect = np.exp((shape_u[:, 1] * 2.0 - 1.0) * math.log(_MAX_ASPECT))
    sx, sy = np.maximum(aspect, 1.0), np.maximum(1.0 / aspect, 1.0)  # squash one axis
    ca, sa = np.abs(np.cos(rot)), np.abs(np.sin(rot))
    # shrink so that the squashed, rotated shape stays inside the object's square
    fit = np.maximum(ca / sx + sa / sy, sa / sx + ca / sy)
    wx = np.clip(np.floor(ox).astype(np.int64), 0, W - n)
    wy = np.clip(np.floor(oy).astype(np.int64), 0, H - n)
    sub = (np.arange(n * _SS, dtype=np.float64) + 0.5) / _SS  # sub-sample offsets in pixels
    k_ = 2.0 * fit / side
    dxs = (wx[:, None] - cx[:, None] + sub[None, :]).astype(f32)  # (B, nS)
    dys = (wy[:, None] - cy[:, None] + sub[None, :]).astype(f32)
    cu, su = (np.cos(rot) * k_ * sx).astype(f32), (np.sin(rot) * k_ * sx).astype(f32)
    cv, sv = (np.cos(rot) * k_ * sy).astype(f32), (np.sin(rot) * k_ * sy).astype(f32)
    ux, uy = (cu[:, None] * dxs)[:, None, :], (su[:, None] * dys)[:, :, None]
    vx, vy = (-sv[:, None] * dxs)[:, None, :], (cv[:, None] * dys)[:, :, None]
    mask = np.empty((B, n * _SS, n * _SS), dtype=bool)
    targets = ds._targets_np[idx]
    for cls in np.unique(targets):
        sel = np.flatnonzero(targets == cls)
        mask[sel] = _SHAPES[int(cls)][1](ux[sel] + uy[sel], vx[sel] + vy[sel])
    m5 = mask.view(np.uint8).reshape(B, n, _SS, n, _SS)
    cnt = np.zeros((B, n, n), dtype=np.uint8)
    for i in range(_SS):
        for j in range(_SS):
            cnt += m5[:, :, i, :, j]
    cov = cnt.astype(f32) * f32(1.0 / (_SS * _SS))  # (B, n, n), exact multiples of 1/16
    empty = ~cov.reshape(B, -1).any(axis=1)
    for b in np.flatnonzero(empty):  # degenerate tiny objects: mark the pixel under the centre
        cov[b, min(int(cy[b]), H - 1) - wy[b], min(int(cx[b]), W - 1) - wx[b]] = 1.0

    bidx = np.arange(B)[:, None, None]
    RY = (wy[:, None] + np.arange(n)[None, :])[:, :, None]  # (B, n, 1), inside the image
    RX = (wx[:, None] + np.arange(n)[None, :])[:, None, :]  # (B, 1, n)
    bg_win = bg[bidx, :, RY, RX]  # (B, n, n, 3)

    # ---- object colour: the candidate farthest (worst case) from the background it covers
    if ds.palette:
        fixed = np.random.default_rng([ds.seed, _PALETTE_TAG]).random((ds.palette, 3))
        cand = np.broadcast_to(fixed.astype(f32), (B, ds.palette, 3))
    else:
        cand = U[:, _U_SLICES["cand"]].astype(f32).reshape(B, _N_COLOUR_CANDIDATES, 3)
    covered = cov.reshape(B, n * n) > 0
    bgv = bg_win.reshape(B, n * n, 3)
    for ch in range(3):  # squared distances, accumulated per channel
        diff = cand[:, :, None, ch] - bgv[:, None, :, ch]  # (B, K, n*n)
        if ch == 0:
            d2 = diff * diff
        else:
            d2 += diff * diff
    d2[~np.broadcast_to(covered[:, None, :], d2.shape)] = np.inf
    colour = cand[np.arange(B), np.argmax(d2.min(axis=2), axis=1)]  # (B, 3)
    if ds.class_colours:
        colour = _class_colours(ds.num_classes)[ds._targets_np[idx]]

    # ---- composite: linear shading across the object, then sensor noise, then quantise
    img = bg
    if draw_object:
        gain = (_MAX_SHADING * shape_u[:, 2]).astype(f32)
        phi = shape_u[:, 3] * 2.0 * np.pi
        gx = (gain * np.cos(phi) * 2.0 / side).astype(f32)
        gy = (gain * np.sin(phi) * 2.0 / side).astype(f32)
        pc = np.arange(n, dtype=f32) + f32(0.5)
        px = (wx - cx).astype(f32)[:, None] + pc[None, :]  # (B, n) offsets from the centre
        py = (wy - cy).astype(f32)[:, None] + pc[None, :]
        shade = f32(1.0) + (gx[:, None] * px)[:, None, :] + (gy[:, None] * py)[:, :, None]
        obj = np.clip(shade[..., None] * colour[:, None, None, :], 0.0, 1.0)  # (B, n, n, 3)
        bg_win += cov[..., None] * (obj - bg_win)
        img[bidx, :, RY, RX] = bg_win
    if ds.clutter > 0:
        noise *= f32(0.035) * f32(ds.clutter)
        img += noise
    img *= f32(255.0)
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    img_u8 = img.transpose(0, 2, 3, 1).astype(np.uint8, order="C")  # (B, H, W, 3)

    full_cov = np.zeros((B, H, W), dtype=f32)
    full_cov[bidx, RY, RX] = cov
    cols, rows_ = cov.any(axis=1), cov.any(axis=2)  # (B, n) window columns / rows
    x0 = wx + cols.argmax(axis=1)
    x1 = wx + n - 1 - cols[:, ::-1].argmax(axis=1)
    y0 = wy + rows_.argmax(axis=1)
    y1 = wy + n - 1 - rows_[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0 / W, y0 / H, (x1 + 1) / W, (y1 + 1) / H], axis=1).astype(np.float32)
    return img_u8, full_cov, boxes
