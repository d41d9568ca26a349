"""scripts/compare_crops.py: a tiny end-to-end run, the false-positive-rate function, the
t interval, the bootstrap share of the oracle's gain and the per-arm cell signatures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from timm_ccrop.crop.boxes import validate_box
from timm_ccrop.crop.pair_quality import (
    coverage,
    false_positive_pair_rate,
    sample_view_pairs,
    view_pair_miss_rate,
)

from .helpers import load_script


@pytest.fixture(scope="module")
def compare():
    return load_script("compare_crops")


def test_false_positive_rate_on_hand_made_boxes():
    gt = torch.tensor([[0.0, 0.0, 0.2, 0.2]] * 2)
    far = torch.tensor([[0.6, 0.6, 1.0, 1.0]] * 2)  # no overlap with the object
    covering = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 2)  # contains the object
    assert view_pair_miss_rate(covering, covering, gt) == 0.0
    assert view_pair_miss_rate(far, covering, gt) == 1.0
    assert view_pair_miss_rate(covering, far, gt) == 1.0
    # one pair of each kind -> 50%
    mixed_a = torch.stack([covering[0], far[0]])
    assert view_pair_miss_rate(mixed_a, covering, gt) == 0.5
    # threshold: a view covering a quarter of the object passes 20% but fails 30%
    quarter = torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 2)
    assert coverage(quarter, gt)[0].item() == pytest.approx(0.25)
    assert view_pair_miss_rate(quarter, covering, gt, threshold=0.2) == 0.0
    assert view_pair_miss_rate(quarter, covering, gt, threshold=0.3) == 1.0


def test_sampled_views_follow_the_box():
    gt = torch.tensor([[0.0, 0.0, 0.2, 0.2]] * 50)
    boxes = [validate_box(row) for row in gt.tolist()]
    a, b, index = sample_view_pairs(boxes, 32, 0.6, 2, seed=0)
    assert a.shape == b.shape == (100, 4) and index.tolist() == [i // 2 for i in range(100)]
    assert ((a >= 0) & (a <= 1)).all()
    oracle = view_pair_miss_rate(a, b, gt[index])
    assert oracle == false_positive_pair_rate(boxes, gt, 32, 0.6, pairs=2, seed=0)
    a, b, index = sample_view_pairs([None] * 50, 32, 0.6, 2, seed=0)
    assert view_pair_miss_rate(a, b, gt[index]) > oracle


def test_paired_differences_match_seeds(compare):
    rcrop = [{"seed": 0, "knn": 50.0, "linear": 40.0}, {"seed": 1, "knn": 60.0, "linear": 45.0}]
    ccrop = [{"seed": 1, "knn": 62.0, "linear": 44.0}, {"seed": 0, "knn": 53.0, "linear": 41.0},
             {"seed": 7, "knn": 99.0, "linear": 99.0}]  # seed 7 has no rcrop partner
    deltas = compare.paired_differences(ccrop, rcrop)
    assert deltas == {"knn": [2.0, 3.0], "linear": [-1.0, 1.0]}
    assert compare.mean_std(deltas["knn"], signed=True) == "+2.50 ± 0.71"
    assert compare.mean_std([-1.0], signed=True) == "-1.00 (n=1)"
    assert compare.mean_std([float("nan")]) == "n/a"


def test_t_quantile_and_interval_match_known_values(compare):
    # two-sided 95% critical values of Student's t (any statistics table)
    for df, value in [(1, 12.7062), (2, 4.3027), (3, 3.1824), (5, 2.5706), (10, 2.2281),
                      (30, 2.0423), (60, 2.0003)]:
        assert compare.t_quantile(0.975, df) == pytest.approx(value, abs=1e-4)
    assert compare.t_quantile(0.95, 5) == pytest.approx(2.0150, abs=1e-4)
    assert compare.t_quantile(0.025, 5) == pytest.approx(-2.5706, abs=1e-4)
    assert compare.t_cdf(0.0, 7) == 0.5
    assert compare.t_cdf(2.5706, 5) == pytest.approx(0.975, abs=1e-5)
    # mean 3.5, sd 1.8708, n 6: 3.5 -+ 2.5706 * 1.8708 / sqrt(6)
    low, high = compare.t_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert low == pytest.approx(1.5367, abs=1e-4) and high == pytest.approx(5.4633, abs=1e-4)
    assert compare.t_interval([2.0, 2.0]) == (2.0, 2.0)
    assert compare.t_interval([1.0]) is None and compare.t_interval([]) is None
    assert compare.format_interval(None) == "n/a"
    assert compare.format_interval((-1.0, 2.5)) == "[-1.00, +2.50]"


def test_bootstrap_share_of_the_oracle_gain(compare):
    # every seed gains half of the oracle's gain: share 0.5 in every resample
    share, low, high = compare.bootstrap_share([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert (share, low, high) == pytest.approx((0.5, 0.5, 0.5))
    # oracle +1 on every seed, arm 0 or 1: share = mean of 4 resampled coin flips, whose
    # 2.5% and 97.5% percentiles are 0 and 1 (P(all four 0) = 1/16 > 2.5%)
    share, low, high = compare.bootstrap_share([0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    assert (share, low, high) == pytest.approx((0.5, 0.0, 1.0))
    # seeded: the same numbers give the same interval, another seed may not
    arm, oracle = [0.3, 2.0, -0.5, 1.1, 0.8, 1.7], [2.0, 3.1, 1.2, 2.6, 1.9, 4.0]
    assert compare.bootstrap_share(arm, oracle) == compare.bootstrap_share(arm, oracle)
    share, low, high = compare.bootstrap_share(arm, oracle)
    assert share == pytest.approx(sum(arm) / sum(oracle)) and low < share < high
    # n/a: the oracle's gain interval includes 0, or a single seed
    assert compare.bootstrap_share([0.0, 1.0, 0.0, 1.0], [1.0, -1.0, 2.0, -2.0]) is None
    assert compare.bootstrap_share([1.0], [2.0]) is None
    with pytest.raises(ValueError):
        compare.bootstrap_share([1.0, 2.0], [1.0])


def test_localizer_is_part_of_the_signature_of_model_box_arms_only(compare):
    base = compare.parse_args(["--localizer", "component"])
    other = compare.parse_args(["--localizer", "component", "--localizer-kwargs",
                                "{rule: max, pick: largest}"])
    assert other.localizer_kwargs == {"rule": "max", "pick": "largest"}
    changed = {mode for mode in compare.CROP_MODES
               if compare.cell_signature(base, "d", mode)
               != compare.cell_signature(other, "d", mode)}
    assert changed == {"ccrop"}
    # ccrop-paper is always the 'paper' localizer, whatever --localizer says
    assert compare.cell_signature(base, "d", "ccrop-paper")["localizer"] == {
        "name": "paper", "kwargs": {}}
    assert "localizer" not in compare.cell_signature(base, "d", "rcrop")
    assert "localizer" not in compare.cell_signature(base, "d", "ccrop-gt")
    assert set(compare.MODEL_BOX_MODES) == {"ccrop", "ccrop-paper", "ccrop-harvest"}
    assert compare.cell_signature(base, "d", "ccrop-harvest")["localizer"] == {
        "name": "harvest", "kwargs": {}}


def test_alpha_and_warm_up_variants_get_folders_of_their_own(compare, tmp_path):
    default = compare.parse_args([])
    variant = compare.parse_args(["--alpha", "0.1", "--box-warmup-epochs", "2"])
    assert compare.cell_folder(variant, tmp_path, "simclr", "ccrop", 3).name == (
        "simclr-ccrop-peak-background-median-a0.1-w2-seed3")
    # the ccrop arm's folder always names its localizer: the project default changes
    assert compare.cell_folder(default, tmp_path, "simclr", "ccrop", 3).name == (
        "simclr-ccrop-peak-background-median-seed3")
    plain = compare.parse_args(["--localizer", "peak", "--localizer-kwargs", "{}"])
    assert compare.cell_folder(plain, tmp_path, "simclr", "ccrop", 3).name == (
        "simclr-ccrop-peak-seed3")
    assert compare.cell_folder(default, tmp_path, "simclr", "ccrop-gt", 3).name == (
        "simclr-ccrop-gt-seed3")
    # another localizer alone takes none of the default's options
    assert compare.parse_args(["--localizer", "component"]).localizer_kwargs == {}
    # rcrop reads neither setting: one folder, and its finished cell serves every variant
    rcrop = compare.cell_folder(variant, tmp_path, "simclr", "rcrop", 3)
    assert rcrop == compare.cell_folder(default, tmp_path, "simclr", "rcrop", 3)
    rcrop.mkdir(parents=True)
    (rcrop / "cell.json").write_text(json.dumps(
        {"knn": 1.0, "signature": compare.cell_signature(default, "d", "rcrop")}))
    assert compare.finished_cell(rcrop, compare.cell_signature(variant, "d", "rcrop"),
                                 "rcrop")["knn"] == 1.0
    # ...but a ccrop cell of another alpha is stale
    assert compare.finished_cell(rcrop, compare.cell_signature(variant, "d", "ccrop"),
                                 "ccrop") is None
    lr = compare.parse_args(["--lr", "0.1"])
    assert compare.finished_cell(rcrop, compare.cell_signature(lr, "d", "rcrop"),
                                 "rcrop") is None


def test_defaults_follow_the_project(compare):
    from timm_ccrop.config import TrainConfig

    args = compare.parse_args([])
    assert args.modes == ["rcrop", "ccrop-paper", "ccrop", "ccrop-harvest", "ccrop-gt"]
    assert args.seeds == [0, 1, 2, 3, 4, 5]
    assert args.localizer == TrainConfig().localizer
    assert args.localizer_kwargs == TrainConfig().resolved_localizer_kwargs()
    assert (args.methods, args.model, args.epochs, args.augment_on, args.jobs) == (
        ["simclr"], "resnet_mini_cifar", 24, "device", 2)
    assert "num_samples=2500" in args.data
    # the report's command pins the localizer, since the project default changes
    command = compare.reproduce_command([], args)
    assert command.startswith("python scripts/compare_crops.py --localizer ")
    assert "--localizer-kwargs" in command
    assert compare.reproduce_command(["--localizer", "paper", "--localizer-kwargs", "{}"],
                                     args).count("--localizer") == 2


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_main_tiny_budget(compare, tmp_path, jobs):
    out = tmp_path / "results.md"
    arms = ("rcrop", "ccrop-paper", "ccrop", "ccrop-gt")
    seeds = (0, 1) if jobs == "1" else (0,)  # two seeds pair up; one keeps the test short
    argv = [
        "--epochs", "1", "--data", "synthetic:num_samples=128,object_scale=0.2:0.35",
        "--batch-size", "64", "--seeds", *map(str, seeds),
        "--modes", *arms, "--localizer", "component", "--workers", "0", "--jobs", jobs,
        "--runs", str(tmp_path / "runs"), "--out", str(out), "--smoke-label",
    ]
    result = compare.main(argv)
    assert {(c["mode"], c["seed"]) for c in result["cells"]} == {
        (mode, seed) for mode in arms for seed in seeds}
    for cell in result["cells"]:
        assert 0 <= cell["knn"] <= 100 and 0 <= cell["linear"] <= 100
        assert 0 <= cell["fp_rate"] <= 1
    localizers = {c["mode"]: c["localizer"] for c in result["cells"]}
    assert localizers == {"rcrop": None, "ccrop-paper": "paper", "ccrop": "component",
                          "ccrop-gt": None}
    stored = json.loads((tmp_path / "runs" / "simclr-ccrop-component-seed0" / "cell.json"
                         ).read_text())
    assert stored["localizer"] == "component"
    assert stored["signature"]["localizer"] == {"name": "component", "kwargs": {}}
    text = out.read_text()
    assert "SMOKE RUN" in text and "random init" in text
    for mode in arms:
        assert f"| simclr | {mode} |" in text
    assert "False-positive" in text and "Overhead" in text
    assert "Difference from rcrop" in text and "| simclr | ccrop-gt | " in text
    assert "95% CI kNN" in text and "Share of the oracle's gain" in text
    assert "| simclr | ccrop | `component` |" in text
    assert "| simclr | ccrop-paper | `paper` |" in text
    assert "Accuracy per seed" in text and "| simclr | ccrop | 0 |" in text
    assert "- machine: " in text and f"{os.cpu_count()} cores" in text and "- date: " in text
    assert ("python scripts/compare_crops.py --epochs 1" in text
            and "--localizer-kwargs '{}'" in text)
    for mode in ("ccrop-paper", "ccrop"):  # both model-box arms have an overhead row
        assert sum(line.startswith(f"| simclr | {mode} | ") for line in
                   text.split("## Overhead")[1].splitlines()) == 1
    png = tmp_path / "results.png"
    assert png.exists() and Image.open(png).size[0] > 100
    boxes_png = tmp_path / "results-boxes.png"  # one column per boxed arm
    assert "Each arm's boxes" in text and Image.open(boxes_png).size[0] > 3 * 64
    if jobs == "2":  # each cell ran in its own process, and left its log
        assert (tmp_path / "runs" / "simclr-rcrop-seed0" / "log.txt").exists()

    # A rerun reuses the finished cells (resume), and a changed setting recomputes them.
    folders = {c["mode"]: Path(c["run"]) for c in result["cells"] if c["seed"] == 0}

    def stamps():
        return {mode: (folders[mode] / "cell.json").stat().st_mtime_ns for mode in arms}

    before = stamps()
    stamp = before["rcrop"]
    again = compare.main(argv)
    total = 5 * len(seeds)  # a random init and four arms per seed
    assert f"{total} of {total} cells, random init included, reused" in out.read_text()
    assert [c["knn"] for c in again["cells"]] == [c["knn"] for c in result["cells"]]
    assert (tmp_path / "runs" / "simclr-rcrop-seed0" / "cell.json").stat().st_mtime_ns == stamp
    assert stamps() == before
    if jobs == "1":  # other localizer options train ccrop cells of their own, and keep these
        compare.main([*argv, "--localizer-kwargs", "{rule: max}"])
        after = stamps()
        assert after == before
        assert (tmp_path / "runs" / "simclr-ccrop-component-rule-max-seed0" / "cell.json"
                ).exists()
        assert "8 of 10 cells, random init included, reused" in out.read_text()
        assert "`component(rule=max)`" in out.read_text()
    if jobs == "1":  # another alpha trains its own ccrop cells and reuses rcrop's
        compare.main([*argv, "--alpha", "0.1", "--modes", "rcrop", "ccrop-gt",
                      "--out", str(tmp_path / "alpha.md")])
        assert (tmp_path / "runs" / "simclr-ccrop-gt-a0.1-seed0" / "cell.json").exists()
        assert stamps() == after
        # each report keeps its own results JSON and box picture
        assert (tmp_path / "runs" / "alpha.json").exists()
        assert (tmp_path / "runs" / "results.json").exists()
        assert (tmp_path / "alpha-boxes.png").exists()
    compare.main([*argv, "--lr", "0.3", "--modes", "rcrop"])  # rcrop is enough to show it
    assert (tmp_path / "runs" / "simclr-rcrop-seed0" / "cell.json").stat().st_mtime_ns != stamp


@pytest.mark.parametrize(("argv", "named"), [
    (["--jobs", "0"], "--jobs"),
    (["--data", "cifar10:/data"], "cifar10:/data"),
    (["--data", "synthetic:bogus"], "bogus"),
    (["--localizer", "nonsense"], "nonsense"),
    (["--localizer", "component", "--localizer-kwargs", "{rule: bogus}"], "bogus"),
    (["--localizer", "paper", "--localizer-kwargs", "[1, 2]"], "mapping"),
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


def test_a_stopped_cell_is_never_recorded(compare, tmp_path, monkeypatch):
    """A stop signal during a cell's training ends the grid; the half-trained cell is not
    evaluated or stored as finished (a rerun trains it again)."""
    import sys

    from timm_ccrop.train import TrainResult

    training = sys.modules["timm_ccrop.train"]  # the package (its name is also a function)

    def stopped_train(config, overwrite=False):
        return TrainResult(Path(config.output), 1, None, None,
                                    Path(config.output) / "metrics.jsonl", "signal", "SIGTERM")

    monkeypatch.setattr(training, "train", stopped_train)
    argv = ["--epochs", "2", "--seeds", "0", "--modes", "rcrop", "--jobs", "1",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "r.md")]
    args = compare.parse_args(argv)
    with pytest.raises(SystemExit, match="stopped by SIGTERM"):
        compare.compute_cell(args, "simclr", "rcrop", 0, args.data, tmp_path / "runs")
    assert not (tmp_path / "runs" / "simclr-rcrop-seed0" / "cell.json").exists()
