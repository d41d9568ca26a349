"""scripts/family_box_study.py: box IoU per pass of a short run per family."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import load_script


def test_it_reports_every_pass_against_its_references(tmp_path: Path) -> None:
    study = load_script("family_box_study")
    out = tmp_path / "families.md"
    text = study.main(["--models", "resnet_mini_cifar", "--data",
                       "scenes:num_samples=64,image_size=32,seed=8", "--image-size", "32",
                       "--epochs", "3", "--interval", "1", "--batch-size", "32",
                       "--runs", str(tmp_path / "runs"), "--out", str(out)])
    assert out.read_text() == text
    header, rule, row = text.splitlines()[2:5]
    assert header.startswith("| model | whole image | random init | after ep 1 | after ep 2")
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[0] == "resnet_mini_cifar" and len(cells) == len(header.split("|")) - 2
    assert all(0.0 < float(value) <= 1.0 for value in cells[1:-1])
    assert (tmp_path / "runs" / "resnet_mini_cifar" / "snapshots").is_dir()
