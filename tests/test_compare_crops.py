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


def test_paired_differences_match_seeds(compare):
    rcrop = [{"seed": 0, "knn": 50.0, "linear": 40.0}, {"seed": 1, "knn": 60.0, "linear": 45.0}]
    ccrop = [{"seed": 1, "knn": 62.0, "linear": 44.0}, {"seed": 0, "knn": 53.0, "linear": 41.0},
             {"seed": 7, "knn": 99.0, "linear": 99.0}]  # seed 7 has no rcrop partner
    deltas = compare.paired_differences(ccrop, rcrop)
    assert deltas == {"knn": [2.0, 3.0], "linear": [-1.0, 1.0]}
    assert compare.mean_std(deltas["knn"], signed=True) == "+2.50 ± 0.71"
    assert compare.mean_std([-1.0], signed=True) == "-1.00 (n=1)"
    assert compare.mean_std([float("nan")]) == "n/a"


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_main_tiny_budget(compare, tmp_path, jobs):
    out = tmp_path / "results.md"
    argv = [
        "--epochs", "1", "--data", "synthetic:num_samples=128,object_scale=0.2:0.35",
        "--batch-size", "64", "--seeds", "0",
        "--modes", "rcrop", "ccrop-gt", "--workers", "0", "--jobs", jobs,
        "--runs", str(tmp_path / "runs"), "--out", str(out), "--smoke-label",
    ]
    result = compare.main(argv)
    assert {(c["mode"], c["seed"]) for c in result["cells"]} == {("rcrop", 0), ("ccrop-gt", 0)}
    for cell in result["cells"]:
        assert 0 <= cell["knn"] <= 100 and 0 <= cell["linear"] <= 100
        assert 0 <= cell["fp_rate"] <= 1
    text = out.read_text()
    assert "SMOKE RUN" in text and "random init" in text
    for mode in ("rcrop", "ccrop-gt"):
        assert f"| simclr | {mode} |" in text
    assert "False-positive" in text and "Overhead" in text
    assert "Difference from rcrop" in text and "| simclr | ccrop-gt | " in text
    png = tmp_path / "results.png"
    assert png.exists() and Image.open(png).size[0] > 100
    if jobs == "2":  # each cell ran in its own process, and left its log
        assert (tmp_path / "runs" / "simclr-rcrop-seed0" / "log.txt").exists()

    # A rerun reuses the finished cells (resume), and a changed setting recomputes them.
    stamp = (tmp_path / "runs" / "simclr-rcrop-seed0" / "cell.json").stat().st_mtime_ns
    again = compare.main(argv)
    assert "3 of 3 cells, random init included, reused" in out.read_text()
    assert [c["knn"] for c in again["cells"]] == [c["knn"] for c in result["cells"]]
    assert (tmp_path / "runs" / "simclr-rcrop-seed0" / "cell.json").stat().st_mtime_ns == stamp
    compare.main([*argv, "--lr", "0.3"])
    assert (tmp_path / "runs" / "simclr-rcrop-seed0" / "cell.json").stat().st_mtime_ns != stamp


@pytest.mark.parametrize(("argv", "named"), [
    (["--jobs", "0"], "--jobs"),
    (["--data", "cifar10:/data"], "cifar10:/data"),
    (["--data", "synthetic:bogus"], "bogus"),
])
def test_bad_arguments_fail_early(compare, capsys, argv, named):
    with pytest.raises(SystemExit):
        compare.parse_args(argv)
    assert named in capsys.readouterr().err


@pytest.mark.slow
def test_other_methods_behind_the_flag(compare, tmp_path):
    result = compare.main([
        "--methods", "moco", "byol", "--modes", "rcrop", "ccrop", "--epochs", "1",
        "--data", "synthetic:num_samples=96", "--batch-size", "32", "--seeds", "0",
        "--jobs", "1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "r.md"),
    ])
    assert {(c["method"], c["mode"]) for c in result["cells"]} == {
        ("moco", "rcrop"), ("moco", "ccrop"), ("byol", "rcrop"), ("byol", "ccrop")}
    text = (tmp_path / "r.md").read_text()
    assert "| moco + rcrop |" in text and "| byol | ccrop |" in text
