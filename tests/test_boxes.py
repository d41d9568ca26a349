"""Tests of :mod:`timm_ccrop.crop.boxes`: the official box converters and the shared box
table (the box-aware dataset wrapper: tests/test_boxed.py)."""

from __future__ import annotations

import pytest
import torch

from timm_ccrop import Box, BoxTable, from_official, to_official
from timm_ccrop.crop.boxes import blend_boxes


def test_official_boxes_convert_both_ways_and_sample_identically() -> None:
    # Official: rows 3..12 and columns 5..20 of a 32 x 32 map, stored as last index / size.
    official = torch.tensor([[3 / 32, 5 / 32, 12 / 32, 20 / 32], [0.0, 0.0, 31 / 32, 31 / 32]])
    ours = from_official(official, image_size=(32, 32))
    assert torch.allclose(ours[0], torch.tensor([5 / 32, 3 / 32, 21 / 32, 13 / 32]))
    assert torch.allclose(ours[1], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.allclose(to_official(ours, image_size=(32, 32)), official)
    # The sampler's last covered pixel (ceil(H*y1)-1) equals the official int(H*h_max).
    import math

    assert math.ceil(32 * float(ours[0, 3]) - 1e-4) - 1 == int(32 * float(official[0, 2]))
    assert torch.equal(from_official(official)[:, [1, 0, 3, 2]], official)


def test_box_table_validates_on_write_and_serves_rows() -> None:
    table = BoxTable(4)
    assert table.get(0) is None  # inactive
    table.set_active(True)
    assert table.get(0) is None  # no valid row yet: random crop
    table.update([[0.1, 0.2, 0.3, 0.4]], indices=[2])
    assert table.get(2) == Box(*torch.tensor([0.1, 0.2, 0.3, 0.4]).tolist())
    assert isinstance(table.get(2), Box) and table.get(1) is None
    table.update([[0.0, 0.0, 0.5, 0.5]] * 2, indices=[0, 1], valid=[True, False])
    assert table.get(0) is not None and table.get(1) is None
    with pytest.raises(ValueError, match="x1 < x0"):
        table.update([[0.5, 0.0, 0.1, 0.5]], indices=[0])
    with pytest.raises(ValueError, match="NaN"):
        table.update([[0.1, float("nan"), 0.2, 0.5]], indices=[0])
    with pytest.raises(ValueError, match="indices must lie"):
        table.update([[0.1, 0.1, 0.2, 0.5]], indices=[4])
    with pytest.raises(ValueError, match="4 samples"):
        table.update([[0.1, 0.1, 0.2, 0.5]])
    state = table.state_dict()
    fresh = BoxTable(4)
    fresh.load_state_dict(state)
    assert fresh.is_active and torch.equal(fresh.boxes, table.boxes)
    with pytest.raises(ValueError, match="another dataset"):
        BoxTable(5).load_state_dict(state)


def test_box_momentum_moves_valid_boxes_part_of_the_way_and_keeps_what_it_has() -> None:
    old = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 4)
    new = torch.tensor([[0.5, 0.5, 1.0, 1.0]] * 4)
    old_valid = torch.tensor([True, True, False, False])
    new_valid = torch.tensor([True, False, True, False])
    boxes, valid = blend_boxes(old, old_valid, new, new_valid, momentum=0.75)
    assert torch.allclose(boxes[0], torch.tensor([0.125, 0.125, 0.625, 0.625]))
    assert torch.equal(boxes[1], old[1])  # no new box: the old one stays
    assert torch.equal(boxes[2], new[2])  # nothing to move from: the new one as it is
    assert valid.tolist() == [True, True, True, False]
    kept, _ = blend_boxes(old, old_valid, new, new_valid, momentum=1.0)
    assert torch.equal(kept[:2], old[:2])
    replaced, _ = blend_boxes(old, old_valid, new, new_valid, momentum=0.0)
    assert torch.equal(replaced[0], new[0])
    with pytest.raises(ValueError, match="box momentum must be in"):
        blend_boxes(old, old_valid, new, new_valid, momentum=-0.1)
