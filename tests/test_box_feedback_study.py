"""scripts/box_feedback_study.py: box-update policies replayed over a run's passes."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import load_script


def found(*pass_boxes: list[float]) -> dict[str, torch.Tensor]:
    """One image whose ground truth is the left half; epoch 0 then a pass per box, and a
    last epoch (no pass) after them."""
    count = len(pass_boxes)
    return {"epochs": torch.tensor([0, *range(1, count)]),
            "boxes": torch.tensor([[box] for box in pass_boxes]),
            "degenerate": torch.zeros(count, 1, dtype=torch.bool),
            "gt": torch.tensor([[0.0, 0.0, 0.5, 1.0]]), "last_epoch": torch.tensor(count - 1)}


def test_policies_start_where_they_say_and_move_as_far_as_their_momentum() -> None:
    study = load_script("box_feedback_study")
    # random init finds the object; the passes drift to the right half; the last snapshot
    # (the final epoch) has no pass
    runs = found([0.0, 0.0, 0.5, 1.0], [0.25, 0.0, 0.75, 1.0], [0.5, 0.0, 1.0, 1.0],
                 [0.0, 0.0, 0.5, 1.0])
    assert study.replay(runs, from_random_init=False, momentum=0.0) == pytest.approx([1 / 3, 0.0])
    assert study.replay(runs, from_random_init=True, momentum=1.0) == [1.0, 1.0, 1.0]
    half = study.replay(runs, from_random_init=True, momentum=0.5)
    assert half[0] == 1.0 and 1.0 > half[1] > half[2] > 0.0
    assert study.targets([1.0, 0.99, 0.5], random_init=1.0, whole=0.5) == {
        "first >= random init": True, "no drop > 0.02": False, "never below whole image": True}
    # a pass whose map gives no box keeps the momentum's old box
    runs["degenerate"][2] = True
    assert study.replay(runs, from_random_init=True, momentum=0.5)[2] == half[1]
