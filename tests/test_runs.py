"""The run folder (timm_ccrop.runs): atomic files, checkpoints, one boxes.csv schema."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from timm_ccrop.config import TrainConfig
from timm_ccrop.hub import export_backbone
from timm_ccrop.methods import build_method
from timm_ccrop.models import create_backbone
from timm_ccrop.runs import (
    BOXES_CSV_COLUMNS,
    OutputExistsError,
    RunFolder,
    atomic_write_text,
    build_run_backbone,
    read_boxes_csv,
    read_checkpoint,
    read_metrics,
    read_run_weights,
    replace_folder,
    staging_folder,
    write_boxes_csv,
)


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_run_folder_checkpoints_keep_the_newest(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    run.create()
    for epoch in (1, 2, 3):
        path = run.save_checkpoint({"epoch": epoch, "w": torch.full((2,), epoch)}, epoch, keep=2)
        assert path == run.checkpoint_path(epoch)
    assert [p.name for p in run.checkpoints()] == ["checkpoint-epoch0003.pt",
                                                   "checkpoint-epoch0002.pt"]
    state, source = run.read_checkpoint()
    assert state["epoch"] == 3 and source == run.checkpoint_path(3)


def test_unreadable_newest_checkpoint_falls_back_but_a_named_file_does_not(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.save_checkpoint({"epoch": 1}, 1, keep=5)
    run.save_checkpoint({"epoch": 2}, 2, keep=5)
    newest = run.checkpoint_path(2)
    newest.write_bytes(newest.read_bytes()[:20])
    state, source = read_checkpoint(tmp_path)
    assert state["epoch"] == 1 and source == run.checkpoint_path(1)
    with pytest.raises(ValueError, match="unreadable") as caught:
        read_checkpoint(newest)
    assert "previous" not in str(caught.value)  # a single file has no previous one
    run.checkpoint_path(1).write_bytes(b"junk")
    with pytest.raises(ValueError, match="every checkpoint"):
        read_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "empty")


def test_config_and_metrics_round_trip(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.write_config({"model": "resnet18", "epochs": 3, "model_kwargs": {"a": 1}})
    assert run.read_config() == {"model": "resnet18", "epochs": 3, "model_kwargs": {"a": 1}}
    run.append_metrics({"epoch": 1, "loss": 1.5})
    run.append_metrics({"epoch": 2, "loss": 1.25})
    assert [row["epoch"] for row in run.read_metrics()] == [1, 2]
    assert read_metrics(run.metrics_path) == read_metrics(tmp_path)
    assert RunFolder(tmp_path / "none").read_config() is None


def test_boxes_csv_has_one_schema(tmp_path: Path) -> None:
    boxes = torch.tensor([[0.0, 0.1, 0.5, 0.6], [0.2, 0.2, 1.0, 1.0]])
    write_boxes_csv(tmp_path / "a.csv", boxes, torch.tensor([True, False]), ["x", "y"])
    write_boxes_csv(tmp_path / "b.csv", boxes)  # defaults: index ids, all valid
    for name, ids, valid in (("a.csv", ["x", "y"], ["1", "0"]), ("b.csv", ["0", "1"], ["1", "1"])):
        with open(tmp_path / name) as handle:
            rows = list(csv.reader(handle))
        assert tuple(rows[0]) == BOXES_CSV_COLUMNS
        assert [r[1] for r in rows[1:]] == ids and [r[6] for r in rows[1:]] == valid
        assert [float(v) for v in rows[1][2:6]] == pytest.approx([0.0, 0.1, 0.5, 0.6])
    with pytest.raises(ValueError, match="differ in length"):
        write_boxes_csv(tmp_path / "c.csv", boxes, sample_ids=["only one"])


def test_boxes_csv_reads_back_what_was_written_and_refuses_other_files(tmp_path: Path) -> None:
    boxes = torch.tensor([[0.0, 0.1, 0.5, 0.6], [0.2, 0.2, 1.0, 1.0]])
    folder = RunFolder(tmp_path)
    write_boxes_csv(folder.boxes_path, boxes, torch.tensor([True, False]), ["x", "y"])
    read, valid, ids = folder.read_boxes()
    assert torch.allclose(read, boxes) and valid.tolist() == [True, False] and ids == ["x", "y"]
    assert torch.equal(read_boxes_csv(folder.boxes_path)[0], read)  # the file or its folder
    (tmp_path / "other.csv").write_text("index,x,y\n0,1,2\n")
    with pytest.raises(ValueError, match="not the boxes.csv schema"):
        read_boxes_csv(tmp_path / "other.csv")
    lines = folder.boxes_path.read_text().splitlines()
    folder.boxes_path.write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n")
    with pytest.raises(ValueError, match="line 2 is not a boxes.csv row"):
        folder.read_boxes()
    with pytest.raises(FileNotFoundError):
        read_boxes_csv(tmp_path / "missing.csv")


def test_a_runs_weights_come_from_its_newest_checkpoint_else_its_export(tmp_path: Path) -> None:
    config = TrainConfig(model="resnet_tiny_cifar", output=str(tmp_path))
    method = build_method("simclr", create_backbone(config.model))
    folder = RunFolder(tmp_path)
    folder.write_config(config.to_dict())
    with pytest.raises(FileNotFoundError, match="no checkpoint-epoch"):
        read_run_weights(tmp_path)
    export_backbone(method.backbone, folder.backbone_dir, config)
    exported = read_run_weights(tmp_path)
    assert exported.source == folder.backbone_dir / "model.safetensors"
    assert exported.epoch is None and exported.config == config
    with torch.no_grad():
        for tensor in method.backbone.parameters():
            tensor.add_(1.0)  # the checkpoint holds other weights than the export
    folder.save_checkpoint({"model": method.state_dict(), "epoch": 3,
                            "config": config.to_dict()}, 3, keep=2)
    newest = read_run_weights(tmp_path)
    assert newest.source == folder.checkpoint_path(3) and newest.epoch == 3
    model = build_run_backbone(newest)
    assert not model.training
    for name, tensor in method.backbone.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_staging_folder_replaces_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staging_folder(target, overwrite=False) as staging:
        (staging / "f").write_text("1")
        replace_folder(staging, target, overwrite=False)
    with pytest.raises(OutputExistsError, match="already exists"), \
            staging_folder(target, overwrite=False):
        pass
    with pytest.raises(RuntimeError), staging_folder(target, overwrite=True) as staging:
        (staging / "f").write_text("2")
        raise RuntimeError("failed half way")
    assert (target / "f").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert isinstance(OutputExistsError("x"), ValueError)  # a user error for the CLI
