"""``timm-ccrop eval`` end to end: eval.json is complete, the numbers measure something,
bad input fails before any work."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from timm_ccrop.cli import build_parser, main
from timm_ccrop.cli.options import config_values
from timm_ccrop.evaluation import EvalConfig
from timm_ccrop.evaluation import run as evaluation_run  # where run_evaluation looks them up
from timm_ccrop.utils.constants import KNN_TEMPERATURE

from .fixtures import write_image_folder, write_stl10

# 4 shapes on a plain background: a few dozen supervised steps learn something.
SPEC = "synthetic:num_samples=480,image_size=32,num_classes=4,clutter=0"
QUICK = ["--image-size", "32", "--num-workers", "0", "--no-progress"]


def eval_json(path: Path) -> dict:
    report = json.loads(path.read_text())
    assert report["output"] == str(path.resolve())
    return report


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose backbone/ is test_resnet trained 40 steps WITH the labels."""
    import timm
    import yaml
    from timm.models import save_for_hf

    from timm_ccrop.data import build_dataset
    from timm_ccrop.localize import eval_transform

    dataset = build_dataset(SPEC, "train")
    transform = eval_transform(32, (0.5,) * 3, (0.5,) * 3)  # test_resnet's normalisation
    images = torch.stack([transform(dataset[i][0]) for i in range(len(dataset))])
    labels = torch.tensor(dataset.targets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("test_resnet", num_classes=4)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(40):
            batch = torch.randint(0, len(images), (32,), generator=generator)
            x = images[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = torch.nn.functional.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.reset_classifier(0)
    run = tmp_path_factory.mktemp("run")
    save_for_hf(model.eval(), run / "backbone", safe_serialization=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "test_resnet", "data": SPEC}))
    return run


def test_trained_backbone_beats_random_init_and_eval_json_is_complete(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    probe = ["--epochs", "30", "--knn-k", "20"]
    # --data defaults to the run's own dataset; eval.json lands in the run folder
    assert main(["eval", "--backbone", str(trained_run), *probe, *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "kNN (k=20" in printed and "linear probe (fast, 30 epochs, final epoch)" in printed
    trained = eval_json(trained_run / "eval.json")
    assert main(["eval", "--backbone", "test_resnet", "--data", SPEC, "--output",
                 str(tmp_path / "random.json"), *probe, *QUICK]) == 0
    random_init = eval_json(tmp_path / "random.json")

    for protocol in ("knn", "linear"):
        ours, baseline = trained[protocol]["test"]["top1"], random_init[protocol]["test"]["top1"]
        assert ours > baseline + 5, (protocol, ours, baseline)
        assert ours > 25 + 5, (protocol, ours)  # 4 classes: chance is 25%

    backbone = trained["backbone"]
    weights = trained_run / "backbone" / "model.safetensors"
    assert backbone["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (backbone["kind"], backbone["sha256_of"], backbone["num_features"]) == (
        "export", "file", 96)
    assert random_init["backbone"]["random_init"] is True
    assert re.fullmatch(r"[0-9a-f]{64}", random_init["backbone"]["sha256"])
    assert trained["data"] == {
        "spec": SPEC, "train_split": "train", "test_split": "test", "num_classes": 4,
        "num_train": 480, "num_val": 0, "num_test": 480, "val_fraction": 0.0, "val_seed": None}
    assert trained["protocols"] == ["knn", "linear"]
    assert trained["input"]["image_size"] == 32 and trained["input"]["crop_pct"] == 1.0
    assert trained["knn"]["k"] == 20 and trained["knn"]["temperature"] == 0.1
    linear = trained["linear"]
    assert (linear["mode"], linear["augment"], linear["reported_epoch"]) == ("fast", False, 30)
    assert linear["recipe"]["name"] == "small" and linear["recipe"]["lr"] == 10.0
    assert linear["recipe"]["milestones"] == [18, 24] and len(linear["history"]) == 30
    assert "val" not in linear and "val_top1" not in linear["history"][0]
    assert trained["skipped_unreadable"] == {"train": 0, "test": 0}
    assert {"features_train_s", "features_test_s", "knn_s", "linear_s", "total_s"} <= set(
        trained["timings"])
    assert {"timm", "torch", "timm_ccrop", "accelerate"} <= set(trained["versions"])
    assert trained["settings"]["seed"] == 0 and trained["processes"] == 1


def test_validation_split_top5_and_paper_mode_through_the_cli(tmp_path: Path) -> None:
    spec = "synthetic:num_samples=40,image_size=16,num_classes=6"
    out = tmp_path / "paper"
    assert main(["eval", "--backbone", "test_resnet", "--data", spec, "--output", str(out),
                 "--linear-mode", "paper", "--epochs", "2", "--batch-size", "16",
                 "--val-fraction", "0.25", "--seed", "3", "--knn-k", "500",
                 "--image-size", "16", "--num-workers", "0", "--no-progress"]) == 0
    report = eval_json(out / "eval.json")
    assert report["data"]["num_train"] == 30 and report["data"]["num_val"] == 10
    assert report["data"]["val_seed"] == 3
    assert report["knn"]["k_used"] == 30  # k larger than the train set: all of it votes
    for protocol in ("knn", "linear"):
        for split in ("test", "val"):
            assert set(report[protocol][split]) == {"top1", "top5"}, (protocol, split)
            assert all(0 <= v <= 100 for v in report[protocol][split].values())
    linear = report["linear"]
    assert (linear["mode"], linear["augment"], linear["recipe"]["batch_size"]) == (
        "paper", True, 16)
    assert [set(row) for row in linear["history"]] == [{"epoch", "loss", "lr", "val_top1"}] * 2


def test_unreadable_images_are_counted(tmp_path: Path) -> None:
    fx = write_image_folder(tmp_path / "folder", n_per_class=3, with_splits=True, size=(16, 16))
    broken = fx.split_dirs["val"] / fx.samples["val"][0][0]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.warns(UserWarning, match="unreadable"):
        assert main(["eval", "--backbone", "test_resnet", "--data", f"folder:{fx.root}",
                     "--protocol", "knn", "--output", str(tmp_path / "out"), *QUICK]) == 0
    report = eval_json(tmp_path / "out" / "eval.json")
    assert report["data"]["test_split"] == "val"
    assert report["skipped_unreadable"] == {"train": 0, "test": 1}
    assert "linear" not in report and report["protocols"] == ["knn"]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch):
    """Fail the test if any weights are loaded or any feature is extracted."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(evaluation_run, "load_backbone", refuse)
    monkeypatch.setattr(evaluation_run, "extract_features", refuse)


def test_bad_input_fails_before_any_work(
    no_work, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    stl = write_stl10(tmp_path / "stl", n_train=2, n_test=2, n_unlabeled=2).root
    out = tmp_path / "out"
    cases = [
        (["--backbone", "test_resnet", "--data", f"stl10:{stl}", "--train-split", "unlabeled"],
         "has no labels"),
        (["--backbone", "test_resnet", "--data", "synthetic", "--test-split", "val"],
         "split 'val'"),
        (["--backbone", str(tmp_path / "missing-run"), "--data", "synthetic"],
         "does not exist"),
        (["--backbone", "test_resnet", "--data", f"cifar10:{tmp_path / 'nowhere'}"],
         "not found"),
        (["--backbone", "test_resnet"], "give --data"),
        (["--backbone", "resnet_tiny_cifra", "--data", "synthetic"], "did you mean"),
    ]
    for args, message in cases:
        assert main(["eval", *args, "--output", str(out), "--no-progress"]) == 2, args
        error = capsys.readouterr().err
        assert "timm-ccrop eval: error:" in error and message in error, (args, error)
    assert not out.exists()
    assert main(["eval", "--backbone", "test_resnet", "--val-fraction", "1.0"]) == 2
    assert "val_fraction must be in [0, 1), got 1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--backbone", "test_resnet", "--protocol", "svm"])


def test_knn_temperature_flag_and_its_old_alias() -> None:
    parser = build_parser()
    for flag in ("--knn-temperature", "--knn-t"):
        args = parser.parse_args(["eval", "--backbone", "test_resnet", flag, "0.2"])
        assert args.knn_temperature == 0.2
    unset = parser.parse_args(["eval", "--backbone", "test_resnet"])
    assert EvalConfig(**config_values(unset, EvalConfig)).knn_temperature == KNN_TEMPERATURE
    zero = parser.parse_args(["eval", "--backbone", "test_resnet", "--knn-t", "0"])
    with pytest.raises(ValueError, match="knn_temperature must be > 0, got 0"):
        EvalConfig(**config_values(zero, EvalConfig)).validate()
