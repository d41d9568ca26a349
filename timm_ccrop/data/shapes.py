"""The shapes of :class:`~timm_ccrop.data.synthetic.SyntheticObjects`: class ``k`` is
``SHAPES[k]``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SHAPES", "SHAPE_NAMES", "ShapeMask"]

#: An indicator of the shape over normalised object coordinates ``(u, v)``.
ShapeMask = Callable[[np.ndarray, np.ndarray], np.ndarray]

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


SHAPES: tuple[tuple[str, ShapeMask], ...] = (
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
SHAPE_NAMES: tuple[str, ...] = tuple(name for name, _ in SHAPES)
