"""scripts/compare_crops.py: a tiny end-to-end run and the false-positive-rate function."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_crops.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_crops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_false_positive_rate_on_hand_made_boxes(compare):
    gt = torch.tensor([[0.0, 0.0, 0.2, 0.2]] * 2)
    far = torch.tensor([[0.6, 0.6, 1.0, 1.0]] * 2)  # no overlap with the object
    covering = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 2)  # contains the object
    assert compare.false_positive_rate(covering, covering, gt) == 0.0
    assert compare.false_positive_rate(far, covering, gt) == 1.0
    assert compare.false_positive_rate(covering, far, gt) == 1.0
    # one pair of each kind -> 50%
    mixed_a = torch.stack([covering[0], far[0]])
    assert compare.false_positive_rate(mixed_a, covering, gt) == 0.5
    # threshold: a view covering a quarter of the object passes 20% but fails 30%
    quarter = torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 2)
    assert compare.coverage(quarter, gt)[0].item() == pytest.approx(0.25)
    assert compare.false_positive_rate(quarter, covering, gt, threshold=0.2) == 0.0
    assert compare.false_positive_rate(quarter, covering, gt, threshold=0.3) == 1.0


def test_sampled_views_follow_the_box(compare):
    from timm_ccrop.boxes import validate_box

    gt = torch.tensor([[0.0, 0.0, 0.2, 0.2]] * 50)
    boxes = [validate_box(row) for row in gt.tolist()]
    a, b, index = compare.sample_views(boxes, 32, 0.6, 2, seed=0)
    assert a.shape == b.shape == (100, 4) and index.tolist() == [i // 2 for i in range(100)]
    assert ((a >= 0) & (a <= 1)).all()
    oracle = compare.false_positive_rate(a, b, gt[index])
    a, b, index = compare.sample_views([None] * 50, 32, 0.6, 2, seed=0)
    assert compare.false_positive_rate(a, b, gt[index]) > oracle


def test_main_tiny_budget(compare, tmp_path):
    out = tmp_path / "results.md"
    result = compare.main([
        "--epochs", "1", "--num-samples", "128", "--batch-size", "64", "--seeds", "0",
        "--modes", "rcrop", "ccrop-gt", "--workers", "0",
        "--runs", str(tmp_path / "runs"), "--out", str(out), "--smoke-label",
    ])
    assert {(c["mode"], c["seed"]) for c in result["cells"]} == {("rcrop", 0), ("ccrop-gt", 0)}
    for cell in result["cells"]:
        assert 0 <= cell["knn"] <= 100 and 0 <= cell["linear"] <= 100
        assert 0 <= cell["fp_rate"] <= 1
    text = out.read_text()
    assert "SMOKE RUN" in text and "random init" in text
    for mode in ("rcrop", "ccrop-gt"):
        assert f"| simclr | {mode} |" in text
    assert "False-positive" in text and "Overhead" in text
    png = tmp_path / "results.png"
    assert png.exists() and Image.open(png).size[0] > 100
