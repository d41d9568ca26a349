"""``viz.arm_boxes_grid``: the same images under each arm's boxes, with the ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from timm_ccrop.pictures.viz import GT_BOX_COLOR, arm_boxes_grid

RED = (235, 60, 50)


def _has_colour(tile: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((tile == np.array(colour, dtype=np.uint8)).all(axis=-1).any())


def test_one_column_per_arm_with_its_box_and_the_ground_truth() -> None:
    images = [Image.new("RGB", (32, 32), (0, 0, 0)) for _ in range(2)]
    gt = [(0.25, 0.25, 0.75, 0.75)] * 2
    arms = {"ccrop": [(0.0, 0.0, 0.5, 0.5), None], "ccrop-gt": gt}
    grid = arm_boxes_grid(images, arms, gt, tile=32)
    assert grid.size[0] == 4 + 2 * (32 + 4)  # two columns of 32-pixel tiles
    pixels = np.asarray(grid)
    column_x = [4, 4 + 36]
    row_y = [grid.size[1] - 2 * (32 + 14 + 4) + r * (32 + 14 + 4) for r in range(2)]
    tiles = {(r, c): pixels[y:y + 32, x:x + 32] for r, y in enumerate(row_y)
             for c, x in enumerate(column_x)}
    assert _has_colour(tiles[0, 0], GT_BOX_COLOR) and _has_colour(tiles[1, 0], GT_BOX_COLOR)
    assert _has_colour(tiles[0, 0], RED)  # the arm's box
    assert not _has_colour(tiles[1, 0], RED)  # None: no box drawn
    # the oracle's box is the ground truth: the arm's outline is drawn over it
    assert _has_colour(tiles[0, 1], RED) and not _has_colour(tiles[0, 1], GT_BOX_COLOR)


def test_bad_input_fails_early() -> None:
    images = [Image.new("RGB", (8, 8))]
    with pytest.raises(ValueError, match="empty"):
        arm_boxes_grid(images, {})
    with pytest.raises(ValueError, match="'a'"):
        arm_boxes_grid(images, {"a": [(0, 0, 1, 1), (0, 0, 1, 1)]})
    with pytest.raises(ValueError, match="tile"):
        arm_boxes_grid(images, {"a": [(0, 0, 1, 1)]}, tile=4)
    with pytest.raises(ValueError):
        arm_boxes_grid(images, {"a": [(0.5, 0.0, 0.2, 1.0)]})  # x1 < x0
