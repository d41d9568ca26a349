"""``timm-ccrop compare``: a user's image folder end to end, a rerun that reuses every
cell, and bad input refused in one line before anything is trained."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from timm_ccrop.cli import main

from .fixtures import write_image_folder

TINY = ["--model", "resnet_tiny_cifar", "--epochs", "1", "--batch-size", "8",
        "--image-size", "16", "--jobs", "1", "--smoke-label"]


@pytest.mark.slow
def test_compare_on_a_folder_of_images(tmp_path, capsys):
    """A folder without val/ or test/: rcrop vs ccrop, scored on a carve-out of train; the
    sections that need ground-truth boxes say why they are empty; a rerun reuses it all."""
    write_image_folder(tmp_path / "photos", classes=("cat", "dog"), n_per_class=8,
                       size=(16, 16))
    runs, out = tmp_path / "runs", tmp_path / "report.md"
    argv = ["compare", "--data", f"folder:{tmp_path / 'photos'}", "--seeds", "0", "1",
            "--val-fraction", "0.25", "--runs", str(runs), "--out", str(out), *TINY]
    assert main(argv) == 0
    assert f"report: {out}" in capsys.readouterr().out
    text = out.read_text()
    assert "crop modes ['rcrop', 'ccrop']" in text and "no ground-truth boxes" in text
    assert "fitted on 75% of the train split and scored on the other 25%" in text
    for section in ("Difference from rcrop", "Share of the oracle's gain", "False-positive",
                    "Box quality"):
        assert section in text
    assert text.count("has no ground-truth boxes, so") == 3
    assert "| simclr | ccrop | " in text.split("## Difference from rcrop")[1]
    results = json.loads((runs / "report.json").read_text())
    assert {(c["mode"], c["seed"]) for c in results["cells"]} == {
        (m, s) for m in ("rcrop", "ccrop") for s in (0, 1)}
    assert all(c["fp_rate"] is None and 0 <= c["linear"] <= 100 for c in results["cells"])
    assert Image.open(tmp_path / "report.png").size[0] > 100
    assert (tmp_path / "report-boxes.png").exists()  # the ccrop arm's boxes, no ground truth
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/cell.json")}
    assert len(stamps) == 6  # two random inits, two arms x two seeds

    assert main(argv) == 0  # the rerun reuses every cell and computes nothing
    assert "6 of 6 cells, random init included, reused" in out.read_text()
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/cell.json")} == stamps
    again = json.loads((runs / "report.json").read_text())
    assert [c["linear"] for c in again["cells"]] == [c["linear"] for c in results["cells"]]


@pytest.mark.parametrize(("argv", "named"), [
    (["--jobs", "0"], "jobs must be >= 1, got 0"),
    (["--seeds", "x"], "'x'"),
    (["--modes", "rcrop", "nonsense"], "nonsense"),
    (["--localizer", "nonsense"], "nonsense"),
    (["--localizer", "component", "--localizer-kwargs", "{rule: bogus}"], "bogus"),
    (["--localizer", "paper", "--localizer-kwargs", "[1, 2]"], "mapping"),
    (["--val-fraction", "1"], "val_fraction must be in (0, 1), got 1"),
    (["--data", "synthetic:bogus"], "bogus"),
    (["--data", "cifar10:/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--seeds", "1", "1"], "twice"),
])
def test_bad_input_is_one_line_before_training(tmp_path, capsys, argv, named):
    try:  # the parser exits; the config and the data checks return the code
        code = main(["compare", "--runs", str(tmp_path / "runs"), *argv])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_the_oracle_needs_boxes(tmp_path, capsys):
    write_image_folder(tmp_path / "photos", n_per_class=2, size=(16, 16))
    code = main(["compare", "--data", f"folder:{tmp_path / 'photos'}", "--modes", "rcrop",
                 "ccrop-gt", "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "ccrop-gt needs ground-truth boxes" in err
