"""Fault injection: real signals, a full disk, corrupted and concurrent runs, bad folders.

Every fault runs for real in a subprocess of ``timm-ccrop pretrain`` (the command a user
runs): SIGKILL/SIGTERM/SIGINT mid-epoch, a disk that fills up (RLIMIT_FSIZE: no root
needed), a truncated or bit-flipped newest checkpoint, two trainers on one folder, a
second run into a finished folder. After each, ``--resume auto`` must end with exactly the
weights, boxes and metrics of an uninterrupted run, with no metrics row twice and no
temporary file left. The README's "Reliability" section lists these guarantees.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from timm_ccrop.cli import main
from timm_ccrop.methods import SiameseMethod
from timm_ccrop.runs import read_checkpoint

pytestmark = pytest.mark.slow

TINY = [
    "--model", "test_resnet", "--data", "synthetic:num_samples=96,image_size=32",
    "--image-size", "32", "--localizer-kwargs", "{stage: -3}",
    "--batch-size", "16", "--num-workers", "0",
    "--knn-every", "0", "--pictures", "0", "--no-progress", "--method", "moco",
    "--method-kwargs", "{queue_size: 64}", "--epochs", "4",
]
#: A child that stops for the fault to land where it should (mid-epoch, during a save).
DEADLINE_SECONDS = 300


def spawn(output: Path, *extra: str, limit_bytes: int | None = None) -> subprocess.Popen:
    """``timm-ccrop pretrain`` in a subprocess (one thread, like the reference runs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def limit_file_size() -> None:  # a "full disk" for every file this process writes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen(
        [sys.executable, "-m", "timm_ccrop.cli", "pretrain", *TINY, "--output", str(output),
         *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=limit_file_size if limit_bytes else None,
    )


def finish(process: subprocess.Popen) -> str:
    output = process.communicate(timeout=DEADLINE_SECONDS)[0]
    assert process.returncode == 0, output
    return output


def wait_for(process: subprocess.Popen, path: Path) -> None:
    deadline = time.time() + DEADLINE_SECONDS
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run that every faulty run must reproduce exactly."""
    folder = tmp_path_factory.mktemp("reference")
    finish(spawn(folder))
    return folder


def assert_same_run(got: Path, expected: Path) -> None:
    """Same final weights (queue and momentum encoder too), boxes and metrics rows."""
    mine, theirs = read_checkpoint(got)[0], read_checkpoint(expected)[0]
    assert mine["epoch"] == theirs["epoch"] == 4
    for key, tensor in theirs["model"].items():
        assert torch.equal(mine["model"][key], tensor), key
    assert torch.equal(mine["boxes"]["boxes"], theirs["boxes"]["boxes"])
    rows, reference_rows = metrics(got), metrics(expected)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4], "each epoch's row exactly once"
    assert [r["loss"] for r in rows] == [r["loss"] for r in reference_rows]
    assert not list(got.glob(".*.tmp-*")), "no temporary file is left behind"


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_stop_mid_epoch_resumes_exactly(reference: Path, tmp_path: Path, stop: int) -> None:
    process = spawn(tmp_path)
    wait_for(process, tmp_path / "checkpoint-epoch0002.pt")
    process.send_signal(stop)  # in epoch 3 (or writing epoch 2's row): mid-run either way
    checkpoint = (tmp_path / "checkpoint-epoch0002.pt").read_bytes()
    output = process.communicate(timeout=DEADLINE_SECONDS)[0]
    if stop != signal.SIGKILL:
        assert process.returncode == 128 + stop, output  # 143 for SIGTERM, 130 for SIGINT
        assert "--resume auto repeats epoch" in output
        # The clean checkpoint of the last finished epoch is never replaced by a partial one.
        assert (tmp_path / "checkpoint-epoch0002.pt").read_bytes() == checkpoint
    assert "resumed from" in finish(spawn(tmp_path, "--resume", "auto"))
    assert_same_run(tmp_path, reference)


def test_a_full_disk_fails_in_one_line_and_resumes_exactly(reference: Path,
                                                           tmp_path: Path) -> None:
    first = spawn(tmp_path, "--epochs", "4")
    wait_for(first, tmp_path / "checkpoint-epoch0001.pt")
    first.kill()
    first.wait()
    size = (tmp_path / "checkpoint-epoch0001.pt").stat().st_size
    # Room for metrics and config, not for one more checkpoint.
    full = spawn(tmp_path, "--resume", "auto", limit_bytes=size // 2)
    output = full.communicate(timeout=DEADLINE_SECONDS)[0]
    assert full.returncode == 2, output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cannot write checkpoint" in errors[0], output
    assert "Traceback" not in output
    assert not list(tmp_path.glob(".*.tmp-*")), "the partial file is removed"
    assert [r["epoch"] for r in metrics(tmp_path)] == [1], "no row without its checkpoint"
    finish(spawn(tmp_path, "--resume", "auto"))
    assert_same_run(tmp_path, reference)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_newest_checkpoint_falls_back_and_resumes_exactly(
        reference: Path, tmp_path: Path, damage: str) -> None:
    process = spawn(tmp_path)
    wait_for(process, tmp_path / "checkpoint-epoch0003.pt")
    process.kill()
    process.wait()
    newest = tmp_path / "checkpoint-epoch0003.pt"
    data = bytearray(newest.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # bytes inside a tensor's storage: torch.load still succeeds
        weights = read_checkpoint(newest)[0]["model"]["backbone.conv1.0.weight"]
        start = bytes(data).find(weights.numpy().tobytes()[:64])
        assert start > 0
        data[start + 8: start + 12] = b"\xff\xff\xff\x7f"
    newest.write_bytes(bytes(data))
    output = finish(spawn(tmp_path, "--resume", "auto"))
    assert "checkpoint-epoch0002.pt" in output  # the fallback is named
    assert_same_run(tmp_path, reference)


def test_one_folder_one_trainer(tmp_path: Path) -> None:
    first = spawn(tmp_path, "--epochs", "50")
    wait_for(first, tmp_path / "config.yaml")
    second = spawn(tmp_path, "--epochs", "50")
    output = second.communicate(timeout=DEADLINE_SECONDS)[0]
    first.kill()
    first.wait()
    assert second.returncode == 2, output
    assert "is in use by another trainer" in output and "Traceback" not in output


def test_a_finished_folder_is_never_mixed_with_a_new_run(reference: Path,
                                                          tmp_path: Path) -> None:
    finish(spawn(tmp_path, "--epochs", "2"))
    def files() -> dict[str, bytes]:  # the lock file records its last holder: not a run file
        return {p.name: p.read_bytes() for p in tmp_path.iterdir()
                if p.is_file() and p.name != ".lock"}

    before = files()
    again = spawn(tmp_path, "--epochs", "4")
    output = again.communicate(timeout=DEADLINE_SECONDS)[0]
    assert again.returncode == 2, output
    assert "already holds a run" in output and "--overwrite" in output
    assert files() == before
    finish(spawn(tmp_path, "--epochs", "4", "--overwrite"))
    assert_same_run(tmp_path, reference)
    assert not (tmp_path / "checkpoint-epoch0001.pt").exists()  # nothing of the old run


def test_non_finite_weights_are_never_saved_as_good(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    """A finite loss can hide blown-up buffers (``--lr 1e6``: BN running_var inf): such a
    state is never written as a checkpoint, and the message names the last good one."""
    calls = {"steps": 0}

    def blow_up_in_epoch_two(self: SiameseMethod, progress: float) -> None:
        calls["steps"] += 1
        if calls["steps"] == 6 + 3:  # 6 steps per epoch: mid epoch 2
            bn = next(m for m in self.backbone.modules() if hasattr(m, "running_var"))
            bn.running_var.fill_(float("inf"))

    monkeypatch.setattr(SiameseMethod, "on_after_optimizer_step", blow_up_in_epoch_two)
    code = main(["pretrain", *TINY, "--output", str(tmp_path)])
    assert code == 3
    assert "weights became non-finite in epoch 2" in capsys.readouterr().err  # the log
    assert [p.name for p in tmp_path.glob("checkpoint-*.pt")] == ["checkpoint-epoch0001.pt"]
    state = read_checkpoint(tmp_path)[0]["model"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert [r["epoch"] for r in metrics(tmp_path)] == [1]


@pytest.mark.parametrize("output", ["a-file", "/proc/timm-ccrop-test/run"])
def test_an_unusable_output_fails_in_one_line(tmp_path: Path, output: str) -> None:
    target = Path(output) if output.startswith("/") else tmp_path / output
    if not output.startswith("/"):
        target.write_text("not a folder")
    process = spawn(target)
    text = process.communicate(timeout=DEADLINE_SECONDS)[0]
    assert process.returncode == 2, text
    assert "Traceback" not in text
    assert sum("error:" in line for line in text.splitlines()) == 1, text


def _flip_tensor_bytes(path: Path, tensor: torch.Tensor) -> None:
    """Flip bytes inside ``tensor``'s storage in the checkpoint file (torch.load still
    reads it: only the numbers change)."""
    data = bytearray(path.read_bytes())
    raw = tensor.contiguous().numpy().tobytes()
    start = bytes(data).find(raw[:64])
    assert start > 0 and len(raw) >= 12
    data[start + 8: start + 12] = bytes(b ^ 0x01 for b in data[start + 8: start + 12])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["momentum-buffer", "box-table"])
def test_a_flipped_byte_in_the_training_state_never_resumes(
        reference: Path, tmp_path: Path, where: str) -> None:
    """Not only the model: the optimizer's momentum buffers and the box table are
    verified too. A flipped checkpoint named with --resume is refused in one line;
    --resume auto falls back to the previous one and still ends exactly as the reference."""
    process = spawn(tmp_path)
    wait_for(process, tmp_path / "checkpoint-epoch0003.pt")
    process.kill()
    process.wait()
    newest = tmp_path / "checkpoint-epoch0003.pt"
    state = read_checkpoint(newest)[0]
    if where == "momentum-buffer":
        buffers = [s["momentum_buffer"] for s in state["optimizer"]["state"].values()]
        target = max(buffers, key=torch.Tensor.numel)
    else:
        target = state["boxes"]["boxes"]
    _flip_tensor_bytes(newest, target)
    assert torch.load(newest, weights_only=True)["epoch"] == 3  # still a readable file

    refused = spawn(tmp_path / "elsewhere", "--resume", str(newest))
    output = refused.communicate(timeout=DEADLINE_SECONDS)[0]
    assert refused.returncode == 2, output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "training state" in errors[0] and "Traceback" not in output
    assert not (tmp_path / "elsewhere").exists()

    output = finish(spawn(tmp_path, "--resume", "auto"))
    assert "checkpoint-epoch0002.pt" in output and "training state" in output
    assert_same_run(tmp_path, reference)
