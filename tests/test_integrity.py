"""Integrity of weights: exports record the sha256 of their tensors, every reader checks
it (eval, export, push, show-boxes), ``--no-verify-weights`` opts out, and ``push``
refuses pickles by content and symlinks that leave the folder."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy
import pytest
import timm
import torch
import yaml
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import timm_ccrop  # registers the CIFAR-stem architectures
from timm_ccrop import hub
from timm_ccrop.cli import main
from timm_ccrop.config import TrainConfig
from timm_ccrop.evaluation import load_backbone
from timm_ccrop.methods import build_method
from timm_ccrop.models.backbones import (
    WEIGHTS_SHA256_KEY,
    WeightsIntegrityError,
    read_state_dict,
    sha256_file,
    state_dict_sha256,
    verify_weights_file,
)
from timm_ccrop.runs import CHECKPOINT_PATTERN, read_checkpoint, save_checkpoint

MODEL = "resnet_tiny_cifar"
DATA = "synthetic:num_samples=32,image_size=32,num_classes=4"
EVAL = ["--data", DATA, "--protocol", "knn", "--image-size", "32", "--num-workers", "0",
        "--no-progress"]
FIX = "re-export it, or pass --no-verify-weights"


def make_run(folder: Path) -> tuple[Path, torch.nn.Module]:
    """A run folder with config.yaml and one checkpoint (weights_sha256 recorded)."""
    folder.mkdir(parents=True)
    config = TrainConfig.from_dict({"model": MODEL, "method": "simclr", "epochs": 1,
                                    "output": str(folder), "data": DATA})
    torch.manual_seed(0)
    backbone = timm.create_model(MODEL, num_classes=0)
    wrapper = build_method("simclr", backbone)
    (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    checkpoint = folder / CHECKPOINT_PATTERN.format(epoch=1)
    save_checkpoint({"model": wrapper.state_dict(), "epoch": 1, "partial": False,
                     "config": config.to_dict()}, checkpoint)
    return checkpoint, backbone.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.nn.Module]:
    """(run's checkpoint, the run's export, the backbone)."""
    root = tmp_path_factory.mktemp("integrity")
    checkpoint, backbone = make_run(root / "run")
    return checkpoint, hub.export_run(root / "run", root / "export"), backbone


def copy(folder: Path, where: Path) -> Path:
    shutil.copytree(folder, where)
    return where


def flip_safetensors(path: Path) -> None:
    """Flip bytes in the middle of the tensor data (the header stays valid)."""
    data = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", bytes(data[:8]))[0]
    middle = start + (len(data) - start) // 2
    for i in range(middle, middle + 4):
        data[i] ^= 0x01  # low bits: the tensors still parse and hold finite numbers
    path.write_bytes(bytes(data))


def flip_checkpoint(path: Path, tensor: torch.Tensor) -> None:
    """Flip bytes inside ``tensor``'s storage in a torch.save zip (torch.load still works)."""
    data = bytearray(path.read_bytes())
    raw = tensor.detach().contiguous().numpy().tobytes()
    at = bytes(data).find(raw)
    assert at > 0 and bytes(data).find(raw, at + 1) < 0, "the tensor's bytes are not unique"
    for i in range(at + len(raw) // 2, at + len(raw) // 2 + 4):
        data[i] ^= 0x01
    path.write_bytes(bytes(data))


def one_line_error(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"timm-ccrop {command}: error:") and "\n" not in err, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------------------
# writing and verifying
# --------------------------------------------------------------------------------------


def test_exports_record_the_sha256_of_their_weights(exported: tuple, tmp_path: Path) -> None:
    _, out, backbone = exported
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        recorded = handle.metadata()[WEIGHTS_SHA256_KEY]
    assert recorded == state_dict_sha256(load_file(str(out / "model.safetensors")))
    assert recorded == state_dict_sha256(backbone.state_dict())
    # timm's loader ignores the metadata
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert state_dict_sha256(loaded.state_dict()) == recorded
    # the trainer's export (RUN/backbone) records it too
    config = TrainConfig.from_dict({"model": MODEL, "data": DATA})
    folder = hub.export_backbone(backbone, tmp_path / "backbone", config)
    assert verify_weights_file(folder / "model.safetensors")
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        assert handle.metadata()[WEIGHTS_SHA256_KEY] == recorded


def test_verify_weights_file_and_read_state_dict(exported: tuple, tmp_path: Path) -> None:
    _, out, backbone = exported
    weights = copy(out, tmp_path / "export") / "model.safetensors"
    assert read_state_dict(weights).keys() == backbone.state_dict().keys()
    flip_safetensors(weights)
    with pytest.raises(WeightsIntegrityError, match=FIX) as caught:
        verify_weights_file(weights)
    assert str(weights) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(WeightsIntegrityError, match="does not match the sha256"):
        read_state_dict(weights)
    assert read_state_dict(weights, verify=False).keys() == backbone.state_dict().keys()
    # files without a recorded hash (older exports, timm's own) pass
    plain = tmp_path / "plain.safetensors"
    save_file(load_file(str(weights)), str(plain))
    assert verify_weights_file(plain)


def test_read_state_dict_verifies_a_training_checkpoint(exported: tuple,
                                                        tmp_path: Path) -> None:
    checkpoint, _, backbone = exported
    corrupted = tmp_path / checkpoint.name
    shutil.copy(checkpoint, corrupted)
    flip_checkpoint(corrupted, max(backbone.state_dict().values(), key=torch.Tensor.numel))
    torch.load(corrupted, weights_only=True)  # still a readable file
    with pytest.raises(WeightsIntegrityError, match="use another checkpoint"):
        read_state_dict(corrupted)
    assert read_state_dict(corrupted, verify=False)


# --------------------------------------------------------------------------------------
# the commands: flipped bytes fail in one line, --no-verify-weights proceeds
# --------------------------------------------------------------------------------------


def test_flipped_export_fails_eval_and_push_in_one_line(exported: tuple, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    _, out, _ = exported
    folder = copy(out, tmp_path / "export")
    flip_safetensors(folder / "model.safetensors")
    report = tmp_path / "eval.json"
    assert main(["eval", "--backbone", str(folder), *EVAL, "--output", str(report)]) == 2
    err = one_line_error(capsys, "eval")
    assert "does not match the sha256" in err and str(folder / "model.safetensors") in err
    assert not report.exists()
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_backbone(str(folder))
    assert load_backbone(str(folder), verify=False)[0] is not None

    assert main(["push", str(folder), "--repo-id", "ccrop-test/x", "--dry-run"]) == 2
    assert "does not match the sha256" in one_line_error(capsys, "push")
    with pytest.raises(hub.HubExportError, match="does not match the sha256"):
        hub.push_folder(folder, "ccrop-test/x", dry_run=True)
    assert main(["push", str(folder), "--repo-id", "ccrop-test/x", "--dry-run",
                 "--no-verify-weights"]) == 0
    capsys.readouterr()


def test_flipped_checkpoint_fails_eval_and_export_in_one_line(
        exported: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint, _, backbone = exported
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(checkpoint.parent / "config.yaml", run / "config.yaml")
    corrupted = run / checkpoint.name
    shutil.copy(checkpoint, corrupted)
    flip_checkpoint(corrupted, max(backbone.state_dict().values(), key=torch.Tensor.numel))
    report = tmp_path / "eval.json"
    assert main(["eval", "--backbone", str(corrupted), *EVAL, "--output", str(report)]) == 2
    err = one_line_error(capsys, "eval")
    assert "does not match the sha256" in err and str(corrupted) in err
    assert not report.exists()
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_backbone(str(corrupted))
    assert load_backbone(str(corrupted), verify=False)[0] is not None

    out = tmp_path / "export"
    assert main(["export", str(corrupted), "--out", str(out)]) == 2
    assert "does not match the sha256" in one_line_error(capsys, "export")
    assert not out.exists()
    assert main(["export", str(corrupted), "--out", str(out), "--no-verify-weights"]) == 0
    capsys.readouterr()
    assert verify_weights_file(out / "model.safetensors")  # re-exported: a new record


@pytest.mark.parametrize("kind", ["export", "checkpoint"])
def test_no_verify_weights_lets_eval_proceed(exported: tuple, tmp_path: Path,
                                             kind: str) -> None:
    checkpoint, out, backbone = exported
    if kind == "export":
        backbone_arg = copy(out, tmp_path / "export")
        flip_safetensors(backbone_arg / "model.safetensors")
    else:
        (tmp_path / "run").mkdir()
        shutil.copy(checkpoint.parent / "config.yaml", tmp_path / "run" / "config.yaml")
        backbone_arg = tmp_path / "run" / checkpoint.name
        shutil.copy(checkpoint, backbone_arg)
        flip_checkpoint(backbone_arg, max(backbone.state_dict().values(),
                                          key=torch.Tensor.numel))
    report = tmp_path / "eval.json"
    assert main(["eval", "--backbone", str(backbone_arg), *EVAL, "--output", str(report),
                 "--no-verify-weights"]) == 0
    evaluated = json.loads(report.read_text())["backbone"]
    edited, _ = load_backbone(str(backbone_arg), verify=False)
    # the numbers are those of the edited bytes, and the report says which ones they were
    assert evaluated["sha256"] == (sha256_file(backbone_arg / "model.safetensors")
                                   if kind == "export" else state_dict_sha256(edited.state_dict()))
    assert evaluated["sha256"] != state_dict_sha256(backbone.state_dict())


def test_export_verifies_a_runs_backbone_folder(exported: tuple, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    checkpoint, out, _ = exported
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(checkpoint.parent / "config.yaml", run / "config.yaml")
    shutil.copytree(out, run / "backbone")  # no checkpoint: export reads backbone/
    flip_safetensors(run / "backbone" / "model.safetensors")
    with pytest.raises(ValueError, match=FIX):
        hub.export_run(run, tmp_path / "a")
    assert hub.export_run(run, tmp_path / "b", verify=False).is_dir()


def test_show_boxes_verifies_its_checkpoint(exported: tuple, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    _, out, _ = exported
    weights = copy(out, tmp_path / "export") / "model.safetensors"
    flip_safetensors(weights)
    picture = tmp_path / "boxes.png"
    args = ["show-boxes", "--model", MODEL, "--checkpoint", str(weights), "--data",
            "synthetic:num_samples=2,image_size=32", "--num-images", "1", "--num-views", "0",
            "--out", str(picture)]
    assert main(args) == 2
    assert FIX in one_line_error(capsys, "show-boxes")
    assert not picture.exists()
    assert main([*args, "--no-verify-weights"]) == 0
    assert picture.is_file()


# --------------------------------------------------------------------------------------
# push: pickles by content, symlinks out of the folder
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,write", [
    ("weights.dat", lambda path: torch.save({"w": torch.ones(2)}, path)),  # a renamed .pt
    ("legacy.dat", lambda path: torch.save({"w": torch.ones(2)}, path,
                                           _use_new_zipfile_serialization=False)),
    ("notes.txt", lambda path: path.write_bytes(pickle.dumps({"a": 1}, protocol=4))),
    ("sub/extra.bin.txt", lambda path: path.write_bytes(pickle.dumps([1], protocol=2))),
])
def test_push_refuses_pickles_by_content(exported: tuple, tmp_path: Path, name: str,
                                         write, capsys: pytest.CaptureFixture) -> None:
    folder = copy(exported[1], tmp_path / "export")
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    write(folder / name)
    problems = hub.validate_export(folder)
    assert any("pickle-based files are not published" in p and name in p for p in problems)
    assert main(["push", str(folder), "--repo-id", "ccrop-test/x", "--dry-run"]) == 2
    assert "pickle-based" in one_line_error(capsys, "push")


def test_push_allows_plain_files_and_refuses_symlinks_out_of_the_folder(
        exported: tuple, tmp_path: Path) -> None:
    folder = copy(exported[1], tmp_path / "export")
    (folder / "notes.txt").write_text("\x80 is not a pickle on its own\n")
    (folder / "N.txt").write_text("N.")  # a pickle of None: imports nothing, harmless text
    (folder / "boxes.csv").write_text("index,x0\n0,0.1\n")
    Image.new("RGB", (4, 4)).save(folder / "views.png")
    (folder / "card-copy.md").symlink_to(folder / "README.md")  # stays inside: allowed
    assert hub.validate_export(folder) == []
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (folder / "leak.txt").symlink_to(secret)
    (folder / "leaks").symlink_to(tmp_path)
    problems = hub.validate_export(folder)
    assert len(problems) == 1 and "symlinks leading out of the folder" in problems[0]
    assert "leak.txt ->" in problems[0] and "leaks ->" in problems[0]
    with pytest.raises(hub.HubExportError, match="symlinks leading out"):
        hub.push_folder(folder, "ccrop-test/x", dry_run=True)


# --------------------------------------------------------------------------------------
# push: an allow-list of file kinds, each checked by its bytes (issue 23)
# --------------------------------------------------------------------------------------


class _Runs:
    """What a malicious pickle reduces to: a shell command on load."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def _gzip_pickle(path: Path) -> None:
    path.write_bytes(gzip.compress(pickle.dumps(_Runs())))


def _numpy_object(path: Path) -> None:
    with open(path, "wb") as handle:
        numpy.save(handle, numpy.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("name,write,message", [
    ("notes.txt", lambda p: p.write_bytes(pickle.dumps(_Runs(), protocol=0)),
     "pickle-based files are not published: notes.txt"),
    ("extra.safetensors", lambda p: p.write_bytes(pickle.dumps(_Runs(), protocol=0)),
     "pickle-based files are not published: extra.safetensors"),
    ("state.pkl.gz", _gzip_pickle, "a kind a model repository does not carry: state.pkl.gz"),
    ("notes2.txt", _gzip_pickle, "notes2.txt is not UTF-8 plain text"),
    ("boxes.npy", _numpy_object, "a kind a model repository does not carry: boxes.npy"),
    ("weights.zip", lambda p: p.write_bytes(b""), "does not carry: weights.zip"),
    ("more.safetensors", lambda p: p.write_text("{}"), "more.safetensors is not a safetensors"),
    ("extra.json", lambda p: p.write_text("{not json"), "extra.json is not UTF-8 JSON"),
    ("logo.png", lambda p: p.write_bytes(b"GIF89a"), "logo.png is not a PNG image"),
])
def test_push_takes_only_the_kinds_a_model_repository_carries(
        exported: tuple, tmp_path: Path, name: str, write, message: str,
        capsys: pytest.CaptureFixture) -> None:
    folder = copy(exported[1], tmp_path / "export")
    write(folder / name)
    problems = hub.validate_export(folder)
    assert any(message in problem for problem in problems), problems
    assert main(["push", str(folder), "--repo-id", "ccrop-test/x", "--dry-run"]) == 2
    assert message in one_line_error(capsys, "push")


def test_push_refuses_a_symlink_loop_in_one_line(exported: tuple, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    folder = copy(exported[1], tmp_path / "export")
    (folder / "a").symlink_to(folder / "b")
    (folder / "b").symlink_to(folder / "a")
    assert main(["push", str(folder), "--repo-id", "ccrop-test/x", "--dry-run"]) == 2
    assert "symlinks that loop or lead nowhere: a, b" in one_line_error(capsys, "push")


# --------------------------------------------------------------------------------------
# the project's own routes check an export's record: timm_ccrop.create_model, and
# timm.create_model for the architectures timm_ccrop registers (issue 23)
# --------------------------------------------------------------------------------------


def test_a_flipped_export_never_loads_quietly(exported: tuple, tmp_path: Path) -> None:
    folder = copy(exported[1], tmp_path / "export")
    name = f"local-dir:{folder}"
    assert timm_ccrop.create_model(name, pretrained=True) is not None  # intact: loads
    flip_safetensors(folder / "model.safetensors")
    # the fault is real: timm's own loader reads the flipped file without a word
    tensors = load_file(str(folder / "model.safetensors"))
    assert tensors
    for create in (timm.create_model, timm_ccrop.create_model):
        with pytest.raises(WeightsIntegrityError, match="sign_weights_file"):
            create(name, pretrained=True)
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_backbone(str(folder))
    assert load_backbone(str(folder), verify=False)[0] is not None  # opted out on purpose


def test_create_model_checks_timm_architectures_too(tmp_path: Path) -> None:
    """timm's own architectures (resnet here) have no hook of ours: only the project's
    route (timm_ccrop.create_model) can check them, and does."""
    folder = tmp_path / "resnet"
    model = timm.create_model("test_resnet", num_classes=0)
    config = TrainConfig.from_dict({"model": "test_resnet", "epochs": 1})
    hub.export_backbone(model, folder, config)
    flip_safetensors(folder / "model.safetensors")
    assert timm.create_model(f"local-dir:{folder}", pretrained=True) is not None  # unchecked
    with pytest.raises(WeightsIntegrityError):
        timm_ccrop.create_model(f"local-dir:{folder}", pretrained=True)


# --------------------------------------------------------------------------------------
# checkpoints: every entry a resume reads is covered by a record (issue 23)
# --------------------------------------------------------------------------------------


def _training_state() -> dict:
    """A checkpoint as the trainer writes it: model, SGD with momentum buffers, schedule,
    box table, harvest bank, epoch, config and the epoch's metrics row."""
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": None,
            "boxes": {"boxes": torch.rand(5, 4), "valid": torch.ones(5, dtype=torch.bool)},
            "harvest": {"mean": torch.rand(5, 3, 3), "weight": torch.rand(5)},
            "epoch": 2, "config": TrainConfig().to_dict(), "metrics_row": {"epoch": 2,
                                                                          "loss": 1.25}}


def _edit(state: dict, where: str) -> None:
    if where == "momentum-buffer":
        state["optimizer"]["state"][0]["momentum_buffer"][0, 0] += 1e-3
    elif where == "optimizer-lr":
        state["optimizer"]["param_groups"][0]["lr"] = 0.2
    elif where == "scheduler":
        state["scheduler"]["last_epoch"] += 1
    elif where == "box-table":
        state["boxes"]["boxes"][1, 2] = 0.5
    elif where == "box-valid":
        state["boxes"]["valid"][3] = False
    elif where == "harvest":
        state["harvest"]["mean"][0, 1, 1] += 1.0
    elif where == "epoch":
        state["epoch"] = 3
    elif where == "config":
        state["config"]["seed"] = 7
    elif where == "scaler":
        state["scaler"] = {"scale": 65536.0}
    else:
        state["model"]["weight"][0, 0] += 1.0


@pytest.mark.parametrize("where", ["model", "momentum-buffer", "optimizer-lr", "scheduler",
                                   "box-table", "box-valid", "harvest", "epoch", "config",
                                   "scaler"])
def test_every_entry_a_resume_reads_is_verified(tmp_path: Path, where: str) -> None:
    path = tmp_path / CHECKPOINT_PATTERN.format(epoch=2)
    save_checkpoint(_training_state(), path)
    assert read_checkpoint(path)[0]["epoch"] == 2  # intact: reads
    state = torch.load(path, weights_only=True)
    _edit(state, where)
    torch.save(state, path)  # the records stay: the file now differs from them
    what = "model weights" if where == "model" else "training state"
    with pytest.raises(WeightsIntegrityError, match=what):
        read_checkpoint(path)
    assert read_checkpoint(path, verify=False)[0] is not None
