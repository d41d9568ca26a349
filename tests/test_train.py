"""The training loop end to end: outputs, exact resume after SIGKILL, signals, NaN, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from PIL import Image

import timm_ccrop  # noqa: F401  (registers the crop modes and architectures)
from timm_ccrop.cli import main
from timm_ccrop.config import TrainConfig
from timm_ccrop.crop.augment import BatchedViews
from timm_ccrop.crop.views import multi_view_transform
from timm_ccrop.data import build_dataset, parse_data_spec
from timm_ccrop.localize import localize_dataset
from timm_ccrop.methods import build_method
from timm_ccrop.models.backbones import create_backbone
from timm_ccrop.runs import list_checkpoints, read_checkpoint, save_checkpoint
from timm_ccrop.train.setup import build_optimizer
from timm_ccrop.utils.distributed import ignored_precision

TINY = [
    "--model", "test_resnet", "--data", "synthetic:num_samples=96,image_size=32",
    "--image-size", "32", "--localizer-kwargs", "{stage: -3}",
    "--batch-size", "32", "--num-workers", "0",
    "--knn-max-train", "64", "--progress", "false",
]


def run_cli(tmp: Path, *extra: str) -> int:
    return main(["pretrain", *TINY, "--output", str(tmp), *extra])


def spawn(tmp: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "timm_ccrop.cli", "pretrain", *TINY, "--output", str(tmp), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_end_to_end_outputs_and_exported_backbone(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "--epochs", "2", "--method", "simclr") == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert "knn_top1" in records[-1] and "box_mean_iou" in records[0]
    assert (tmp_path / "config.yaml").is_file() and list_checkpoints(tmp_path)
    rows = (tmp_path / "boxes.csv").read_text().splitlines()
    assert rows[0].startswith("index,sample_id,x0") and len(rows) == 97
    with Image.open(tmp_path / "boxes-epoch0001.png") as picture:
        assert picture.width > 100
    export = tmp_path / "backbone"
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "model.safetensors"]
    loaded = timm.create_model(f"local-dir:{export}", pretrained=True).eval()
    state, _ = read_checkpoint(tmp_path)
    trained = timm.create_model("test_resnet", num_classes=0)
    trained.load_state_dict({k[len("backbone."):]: v for k, v in state["model"].items()
                             if k.startswith("backbone.")})
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), trained.eval()(x))
    assert loaded.pretrained_cfg["tag"] == "ccrop_simclr"


def final_state(folder: Path) -> dict[str, torch.Tensor]:
    state, _ = read_checkpoint(folder)
    return {"model": state["model"], "boxes": state["boxes"]["boxes"],
            "valid": state["boxes"]["valid"], "epoch": state["epoch"]}


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    args = ("--epochs", "5", "--method", "moco", "--method-kwargs", "{queue_size: 64}",
            "--knn-every", "0", "--pictures", "0")
    reference = spawn(tmp_path / "reference", *args)
    killed = spawn(tmp_path / "killed", *args)
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "checkpoint-epoch0002.pt").exists():
        assert killed.poll() is None, killed.stdout.read()
        assert time.time() < deadline, "no checkpoint after 5 minutes"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # mid-epoch 3 (or its box pass): no chance to save
    killed.wait()
    assert not list((tmp_path / "killed").glob("*epoch0005*"))
    resumed = spawn(tmp_path / "killed", *args, "--resume", "auto")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resumed from" in output
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    expected, got = final_state(tmp_path / "reference"), final_state(tmp_path / "killed")
    assert got["epoch"] == expected["epoch"] == 5
    assert torch.equal(got["boxes"], expected["boxes"]) and torch.equal(got["valid"],
                                                                        expected["valid"])
    assert got["valid"].any(), "the box passes must have run"
    for key, tensor in expected["model"].items():
        assert torch.equal(got["model"][key], tensor), key  # queue and momentum encoder too


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_keeps_the_finished_epochs_checkpoint(tmp_path: Path) -> None:
    process = spawn(tmp_path, "--epochs", "50", "--knn-every", "0", "--pictures", "0")
    deadline = time.time() + 300
    while not (tmp_path / "metrics.jsonl").exists():
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143, output  # 128 + SIGTERM, the shell's convention
    assert "stopped by SIGTERM" in output and "--resume auto repeats epoch" in output
    state, _ = read_checkpoint(tmp_path)
    # The checkpoint is that of a finished epoch (never a partial state), and its row is
    # the last one in metrics.jsonl: resuming redoes the interrupted epoch exactly
    # (tests/test_reliability.py checks the resumed run).
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "partial" not in state and state["epoch"] == rows[-1]["epoch"] >= 1


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, tmp_path / "checkpoint-epoch0001.pt")
    save_checkpoint({"epoch": 2, "weights": torch.ones(3)}, tmp_path / "checkpoint-epoch0002.pt")
    newest = tmp_path / "checkpoint-epoch0002.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    state, source = read_checkpoint(tmp_path)
    assert state["epoch"] == 1 and source.name == "checkpoint-epoch0001.pt"
    assert not list(tmp_path.glob(".*tmp*")), "atomic writes leave no temp files"


def test_a_non_finite_loss_stops_with_a_clear_message(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    code = run_cli(tmp_path, "--epochs", "3", "--lr", "1e30", "--knn-every", "0",
                   "--pictures", "0", "--crop", "rcrop")
    assert code == 3
    assert "non-finite loss" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--lr", "-1"), "lr must be > 0"),
        (("--batch-size", "512"), "exceeds the 96 training samples"),
        (("--data", "cifar10:/nowhere"), "/nowhere"),
        (("--alpha", "0"), "alpha must be > 0"),
        (("--model", "not_a_model"), "unknown timm model"),
        (("--method", "swav"), "swav"),
    ],
)
def test_bad_input_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         extra: tuple, message: str) -> None:
    assert run_cli(tmp_path, *extra) == 2
    assert message in capsys.readouterr().err
    assert not list_checkpoints(tmp_path)


def test_bf16_mixed_precision_on_cpu(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "--epochs", "1", "--mixed-precision", "bf16", "--method", "byol",
                   "--knn-every", "0", "--pictures", "0") == 0
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert torch.isfinite(torch.tensor(record["loss"]))


@pytest.mark.distributed
def test_two_processes_under_accelerate_launch(tmp_path: Path) -> None:
    """The real multi-process path: `accelerate launch` with 2 CPU processes (gloo)."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
        "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "timm_ccrop.cli", "pretrain", *TINY, "--output", str(tmp_path), "--epochs", "2",
        "--method", "moco", "--method-kwargs", "{queue_size: 64}", "--pictures", "0",
    ]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # one writer, not one per process
    assert records[0]["processes"] == 2
    assert "knn_top1" in records[-1]
    # the default's box pass on the random-init network, sharded over both processes
    baseline = json.loads((tmp_path / "baseline.json").read_text())
    assert 0 <= baseline["box_pass"]["box_mean_iou"] <= 1
    assert (tmp_path / "backbone" / "model.safetensors").is_file()


def test_device_augmentation_path_trains_with_boxes(tmp_path: Path) -> None:
    """--augment-on device: uint8 batches from the loader, views made batched."""
    assert run_cli(tmp_path, "--epochs", "3", "--augment-on", "device", "--knn-every", "0",
                   "--pictures", "0") == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # the default boxes come from the random-init network: ContrastiveCrop from epoch 1
    assert [r["uses_boxes"] for r in records] == [True, True, True]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)


@pytest.mark.parametrize(("name", "expected"), [("sgd", "SGD"), ("lars", "Lars"),
                                                ("lamb", "Lamb"), ("adamw", "AdamW")])
def test_optimizer_comes_from_timm_with_the_methods_groups(name: str, expected: str) -> None:
    config = TrainConfig(model="resnet_mini_cifar", optimizer=name, lr=0.3, weight_decay=1e-4)
    method = build_method("simclr", create_backbone("resnet_mini_cifar"))
    optimizer = build_optimizer(config, method)
    assert type(optimizer).__name__ == expected
    decays = sorted({group["weight_decay"] for group in optimizer.param_groups})
    assert decays == [0.0, 1e-4]  # norms and biases keep no decay (no LARS adaptation)
    if name == "sgd":  # the official recipes' classical momentum, not timm's Nesterov 'sgd'
        assert optimizer.defaults["nesterov"] is False
        assert optimizer.defaults["momentum"] == 0.9


def test_simccrop_default_alpha_is_its_own() -> None:
    assert TrainConfig(crop="simccrop").resolved_alpha() == 0.1
    assert TrainConfig(crop="ccrop").resolved_alpha() == 0.6
    assert TrainConfig(crop="rcrop", alpha=0.3).resolved_alpha() is None
    assert TrainConfig(crop="ccrop", alpha=0.3).resolved_alpha() == 0.3


def test_unknown_view_preset_has_one_error() -> None:
    message = ("views must be one of cifar, stl10, tiny-imagenet, imagenet, byol-imagenet, "
               "got 'cifra'")
    for make in (lambda: multi_view_transform("cifra"), lambda: BatchedViews.from_preset("cifra"),
                 lambda: TrainConfig(views="cifra").validate()):
        with pytest.raises(ValueError, match=message):
            make()


def test_no_warm_up_boxes_from_the_random_init_and_a_full_momentum_keeps_them(
        tmp_path: Path) -> None:
    """box_warmup_epochs=0: a pass on the random-init network before epoch 1 (recorded in
    the baseline, with a snapshot); box_momentum=1: later passes never move those boxes."""
    assert run_cli(tmp_path, "--epochs", "3", "--box-warmup-epochs", "0", "--loc-interval", "1",
                   "--box-momentum", "1", "--knn-every", "0", "--pictures", "0",
                   "--snapshots", "passes") == 0
    baseline = json.loads((tmp_path / "baseline.json").read_text())
    assert baseline["box_pass"]["epoch"] == 0 and "box_mean_iou" in baseline["box_pass"]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["uses_boxes"] for r in records] == [True, True, True]
    assert [r["epoch"] for r in records if "box_pass_mean_iou" in r] == [1, 2]
    snapshot, _ = read_checkpoint(tmp_path / "snapshots" / "epoch0000.pt")
    config = TrainConfig.from_dict(snapshot["config"])
    method = build_method(config.method, create_backbone(config.model), **config.method_kwargs)
    method.load_state_dict(snapshot["model"])
    localizer = config.build_localizer()
    localizer.attach(method.projector)
    first = localize_dataset(method.backbone, build_dataset(parse_data_spec(config.data)), 32,
                             localizer=localizer, mean=config.normalisation()[0],
                             std=config.normalisation()[1], progress=False)
    # every box the random-init network gave is what the crops still use (a row it gave
    # none may take a later pass's box)
    final, found = final_state(tmp_path), ~first.degenerate
    assert found.any() and final["valid"][found].all()
    assert torch.allclose(final["boxes"][found], first.boxes[found])


def test_a_full_momentum_skips_the_passes_once_every_image_has_its_box(tmp_path: Path) -> None:
    # the default options give every random-init map of this data a box (the run above,
    # with {stage: -3} alone, leaves some without one, which later passes fill)
    assert run_cli(tmp_path, "--epochs", "3", "--box-warmup-epochs", "0", "--loc-interval", "1",
                   "--box-momentum", "1", "--knn-every", "0", "--pictures", "0",
                   "--localizer-kwargs",
                   "{stage: -3, reduction: contrast, keep: 0.5, background: auto}") == 0
    baseline = json.loads((tmp_path / "baseline.json").read_text())
    assert baseline["box_pass"]["box_degenerate_share"] == 0.0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert not any("box_pass_seconds" in r for r in records)  # no pass could change a box
    assert all(r["uses_boxes"] for r in records)


def test_fp16_on_the_cpu_says_it_runs_in_fp32(tmp_path: Path,
                                              capfd: pytest.CaptureFixture) -> None:
    """Accelerate quietly trains fp16 in fp32 on the CPU: the run says so."""
    assert ignored_precision(SimpleNamespace(mixed_precision="bf16",
                                             device=torch.device("cpu"))) is None
    assert ignored_precision(SimpleNamespace(mixed_precision="fp16",
                                             device=torch.device("cuda"))) is None
    assert run_cli(tmp_path, "--epochs", "1", "--mixed-precision", "fp16", "--knn-every", "0",
                   "--pictures", "0", "--crop", "rcrop") == 0
    assert "fp16 has no effect on the CPU" in capfd.readouterr().err
