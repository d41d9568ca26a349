"""Rendering of :class:`~timm_ccrop.data.synthetic.SyntheticObjects` images.

Every image is a pure function of ``(seed, split, index)`` and the dataset's options: all
its random numbers are drawn up front (:func:`_draw_params`), then the background, the
object's placement and mask, its colour and the composite are computed for a whole batch
with numpy. Masks are rendered with 4x4 super-sampling (anti-aliased).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import numpy as np

from .shapes import SHAPES

__all__ = ["RenderSettings", "render_images"]

_SS = 4  # super-sampling factor of the object mask (per axis)
_MAX_ROT = math.radians(15.0)  # objects are rotated by U(-15, 15) degrees
_MAX_ASPECT = 1.25  # one axis of the shape is squashed by up to this factor
_MAX_SHADING = 0.25  # object colour varies linearly by up to +-25% across the object
_N_COLOUR_CANDIDATES = 8
_MAX_STROKES = 8
_MAX_BLOBS = 4
_GRID = 4  # smooth background colour field: _GRID x _GRID random colours, bilinear
_MAX_ELEMENTS = 1 << 22  # bound on the per-image temporaries of one rendering batch


class RenderSettings(Protocol):
    """What rendering reads of a dataset (a :class:`SyntheticObjects` provides it)."""

    image_size: int
    num_classes: int
    seed: int
    split_id: int
    object_scale: tuple[float, float]
    clutter: float
    center_bias: float
    backgrounds: int
    palette: int
    class_colours: bool
    targets_array: np.ndarray  # int64 class of every sample


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


def _draw_params(ds: RenderSettings, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _add_distractors(ds: RenderSettings, U: np.ndarray, bg: np.ndarray) -> None:
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


def _background(ds: RenderSettings, U: np.ndarray) -> np.ndarray:
    """The backgrounds (B, 3, H, W) in [0, 1]: smooth colour field, texture, distractors."""
    W = H = ds.image_size
    B = U.shape[0]
    f32 = np.float32
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
    return bg


class _Placement(NamedTuple):
    """Where each object lies: its square's side and centre (pixels), the top-left corner
    of its ``n x n`` pixel window, and its coverage of that window's pixels in [0, 1]."""

    side: np.ndarray  # (B,)
    cx: np.ndarray  # (B,)
    cy: np.ndarray  # (B,)
    wx: np.ndarray  # (B,) int64
    wy: np.ndarray  # (B,) int64
    cov: np.ndarray  # (B, n, n) float32


def _place_objects(ds: RenderSettings, U: np.ndarray, targets: np.ndarray, n: int) -> _Placement:
    """Object geometry (side, position, aspect ratio, rotation) and its anti-aliased mask."""
    W = H = ds.image_size
    B = U.shape[0]
    f32 = np.float32
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
    for cls in np.unique(targets):
        sel = np.flatnonzero(targets == cls)
        mask[sel] = SHAPES[int(cls)][1](ux[sel] + uy[sel], vx[sel] + vy[sel])
    m5 = mask.view(np.uint8).reshape(B, n, _SS, n, _SS)
    cnt = np.zeros((B, n, n), dtype=np.uint8)
    for i in range(_SS):
        for j in range(_SS):
            cnt += m5[:, :, i, :, j]
    cov = cnt.astype(f32) * f32(1.0 / (_SS * _SS))  # (B, n, n), exact multiples of 1/16
    empty = ~cov.reshape(B, -1).any(axis=1)
    for b in np.flatnonzero(empty):  # degenerate tiny objects: mark the pixel under the centre
        cov[b, min(int(cy[b]), H - 1) - wy[b], min(int(cx[b]), W - 1) - wx[b]] = 1.0
    return _Placement(side, cx, cy, wx, wy, cov)


def _object_colour(ds: RenderSettings, U: np.ndarray, cov: np.ndarray, bg_win: np.ndarray,
                   targets: np.ndarray) -> np.ndarray:
    """Each object's colour (B, 3): the candidate farthest (worst case) from the background
    it covers, or its class's colour with ``class_colours``."""
    B, n = cov.shape[0], cov.shape[1]
    f32 = np.float32
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
        colour = _class_colours(ds.num_classes)[targets]
    return colour


def _draw_objects(U: np.ndarray, place: _Placement, colour: np.ndarray,
                  bg_win: np.ndarray) -> None:
    """Composite each shaded object onto its window ``bg_win`` (B, n, n, 3) in place."""
    f32 = np.float32
    n = place.cov.shape[1]
    shape_u = U[:, _U_SLICES["shape"]]
    gain = (_MAX_SHADING * shape_u[:, 2]).astype(f32)
    phi = shape_u[:, 3] * 2.0 * np.pi
    gx = (gain * np.cos(phi) * 2.0 / place.side).astype(f32)
    gy = (gain * np.sin(phi) * 2.0 / place.side).astype(f32)
    pc = np.arange(n, dtype=f32) + f32(0.5)
    px = (place.wx - place.cx).astype(f32)[:, None] + pc[None, :]  # (B, n) offsets from centre
    py = (place.wy - place.cy).astype(f32)[:, None] + pc[None, :]
    shade = f32(1.0) + (gx[:, None] * px)[:, None, :] + (gy[:, None] * py)[:, :, None]
    obj = np.clip(shade[..., None] * colour[:, None, None, :], 0.0, 1.0)  # (B, n, n, 3)
    bg_win += place.cov[..., None] * (obj - bg_win)


def render_images(
    ds: RenderSettings, idx: np.ndarray, draw_object: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render the images ``idx`` of ``ds`` from scratch.

    Returns ``(images uint8 [B,H,W,3], coverage float32 [B,H,W] in [0,1], boxes float32
    [B,4])``; with ``draw_object=False`` the images are the backgrounds alone.
    """
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
        parts = [render_images(ds, idx[i:i + max_batch], draw_object)
                 for i in range(0, B, max_batch)]
        return tuple(np.concatenate(arrs) for arrs in zip(*parts, strict=True))
    U, noise = _draw_params(ds, idx)
    bg = _background(ds, U)
    targets = ds.targets_array[idx]
    place = _place_objects(ds, U, targets, n)

    bidx = np.arange(B)[:, None, None]
    RY = (place.wy[:, None] + np.arange(n)[None, :])[:, :, None]  # (B, n, 1), inside the image
    RX = (place.wx[:, None] + np.arange(n)[None, :])[:, None, :]  # (B, 1, n)
    bg_win = bg[bidx, :, RY, RX]  # (B, n, n, 3)
    colour = _object_colour(ds, U, place.cov, bg_win, targets)

    # ---- composite: linear shading across the object, then sensor noise, then quantise
    img = bg
    if draw_object:
        _draw_objects(U, place, colour, bg_win)
        img[bidx, :, RY, RX] = bg_win
    if ds.clutter > 0:
        noise *= f32(0.035) * f32(ds.clutter)
        img += noise
    img *= f32(255.0)
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    img_u8 = img.transpose(0, 2, 3, 1).astype(np.uint8, order="C")  # (B, H, W, 3)

    cov = place.cov
    full_cov = np.zeros((B, H, W), dtype=f32)
    full_cov[bidx, RY, RX] = cov
    cols, rows_ = cov.any(axis=1), cov.any(axis=2)  # (B, n) window columns / rows
    x0 = place.wx + cols.argmax(axis=1)
    x1 = place.wx + n - 1 - cols[:, ::-1].argmax(axis=1)
    y0 = place.wy + rows_.argmax(axis=1)
    y1 = place.wy + n - 1 - rows_[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0 / W, y0 / H, (x1 + 1) / W, (y1 + 1) / H], axis=1).astype(np.float32)
    return img_u8, full_cov, boxes
