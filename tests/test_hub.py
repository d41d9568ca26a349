"""Hub export, official-checkpoint conversion, model cards and publishing (timm_ccrop.hub)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import timm
import torch
import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import LocalTokenNotFoundError

try:
    from huggingface_hub.errors import HfHubHTTPError
except ImportError:  # huggingface_hub < 0.26
    from huggingface_hub.utils import HfHubHTTPError
from safetensors import safe_open
from safetensors.torch import load_file

import timm_ccrop  # noqa: F401  (registers the CIFAR-stem architectures)
from timm_ccrop import hub
from timm_ccrop.cli import main
from timm_ccrop.config import TrainConfig
from timm_ccrop.crop.boxes import from_official
from timm_ccrop.data.kinds import DATASET_KINDS, kind_names
from timm_ccrop.methods import build_method
from timm_ccrop.models.backbones import sha256_file, state_dict_sha256
from timm_ccrop.runs import BOXES_CSV_COLUMNS, CHECKPOINT_PATTERN, save_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so that a wrong or missing buffer changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def make_run(folder: Path, method: str = "simclr", model: str = "resnet_tiny_cifar",
             epochs: int = 2, **overrides: Any) -> torch.nn.Module:
    """A run folder as `timm-ccrop pretrain` leaves it: config.yaml, an epoch checkpoint
    holding the whole method state (backbone.* + heads), metrics.jsonl. Returns the
    backbone whose weights the checkpoint holds."""
    folder.mkdir(parents=True, exist_ok=True)
    method_kwargs = {"queue_size": 256} if method == "moco" else {}
    values = {"model": model, "method": method, "epochs": epochs, "output": str(folder),
              "data": "synthetic:num_samples=64,image_size=32", "method_kwargs": method_kwargs}
    config = TrainConfig.from_dict({**values, **overrides})
    torch.manual_seed(0)
    backbone = timm.create_model(model, num_classes=0)
    _randomise_bn(backbone)
    wrapper = build_method(method, backbone, **method_kwargs)
    (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    save_checkpoint({"model": wrapper.state_dict(), "epoch": epochs, "partial": False,
                     "config": config.to_dict()},
                    folder / CHECKPOINT_PATTERN.format(epoch=epochs))
    with open(folder / "metrics.jsonl", "w") as handle:
        for epoch in range(1, epochs + 1):
            handle.write(json.dumps({"epoch": epoch, "loss": 1.0, "knn_top1": 20.0 + epoch,
                                     "knn_top5": 60.0 + epoch}) + "\n")
    return backbone.eval()


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fake_eval_report(sha256: str, top1: float = 42.5) -> dict[str, Any]:
    """An eval.json as `timm-ccrop eval` writes it (the fields the card reads)."""
    return {
        "format": 1, "protocols": ["knn", "linear"],
        "backbone": {"sha256": sha256, "sha256_of": "state_dict", "architecture": "x"},
        "data": {"spec": "cifar10:/data/cifar10", "num_test": 10000},
        "settings": {"backbone": "runs/x", "data": "cifar10:/data/cifar10", "protocol": "both",
                     "knn_k": 200, "knn_temperature": 0.1, "linear_mode": "fast",
                     "probe_recipe": "auto",
                     "seed": 0, "val_fraction": 0.0},
        "knn": {"k": 200, "temperature": 0.1, "test": {"top1": top1, "top5": 80.25}},
        "linear": {"mode": "fast", "recipe": {"epochs": 100}, "test": {"top1": top1 + 10,
                                                                       "top5": 90.0}},
    }


def images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """One exported run (SimCLR), shared by the push tests."""
    root = tmp_path_factory.mktemp("exported")
    backbone = make_run(root / "run")
    out = hub.export_run(root / "run", root / "export")
    return out, backbone


# --------------------------------------------------------------------------------------
# export of run folders
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_export_keeps_only_the_backbone_and_rebuilds_it_exactly(tmp_path: Path,
                                                                method: str) -> None:
    backbone = make_run(tmp_path / "run", method=method)
    out = tmp_path / "export"
    assert main(["export", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]
    weights = load_file(str(out / "model.safetensors"))
    assert set(weights) == set(backbone.state_dict())  # no projector, momentum copy, queue
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet_tiny_cifar"
    assert config["num_features"] == backbone.num_features == 96
    assert config["model_args"]["num_classes"] == 0
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert type(loaded) is type(backbone)
    with torch.no_grad():
        assert torch.equal(loaded(images()), backbone(images()))
    assert loaded.pretrained_cfg["tag"] == f"ccrop_{method}"


def test_pretrained_cfg_overrides_every_field_of_the_registry_default(tmp_path: Path) -> None:
    # A backbone carrying timm's full ImageNet cfg of resnet18 (tag a1_in1k, its paper,
    # bicubic, crop_pct 0.95, test size 288, hub id...): none of it may reach config.json.
    backbone = timm.create_model("test_resnet", num_classes=0)
    registry_cfg = timm.models.get_pretrained_cfg("resnet18").to_dict()
    assert registry_cfg["tag"] == "a1_in1k" and registry_cfg["test_input_size"]
    backbone.pretrained_cfg = dict(registry_cfg, origin_url="https://example.org/x",
                                   notes=("imagenet",), description="not ours")
    config = TrainConfig(model="test_resnet", method="byol", crop="rcrop")
    hub.export_backbone(backbone, tmp_path / "out", config)
    assert backbone.pretrained_cfg["tag"] == "a1_in1k"  # the live model is left as it was
    written = json.loads((tmp_path / "out" / "config.json").read_text())["pretrained_cfg"]
    assert written["tag"] == "rcrop_byol"
    assert written["paper_ids"] == "arXiv:2202.03278"
    assert written["interpolation"] == "bilinear" and written["crop_pct"] == 1.0
    assert written["input_size"] == [3, 32, 32] and written["num_classes"] == 0
    assert written["license"] == "apache-2.0"
    assert "byol" in written["description"].lower()
    for leaked in ("origin_url", "test_input_size", "test_crop_pct", "hf_hub_id", "url", "file",
                   "source", "notes", "min_input_size", "test_pool_size", "label_names",
                   "label_offset", "architecture"):
        assert leaked not in written, leaked
    assert written["pool_size"] is None
    for key, value in written.items():  # nothing of the ImageNet cfg survives
        if key not in ("first_conv", "classifier", "custom_load", "fixed_input_size",
                       "crop_mode", "pool_size", "license"):
            assert value != registry_cfg.get(key), key


def test_trainer_export_is_config_and_weights_only(tmp_path: Path) -> None:
    backbone = timm.create_model("resnet_tiny_cifar", num_classes=0).eval()
    folder = hub.export_backbone(backbone, tmp_path / "backbone", TrainConfig())
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    # called again (a resumed run finishing), it replaces the folder
    hub.export_backbone(backbone, tmp_path / "backbone", TrainConfig())
    assert [p.name for p in tmp_path.iterdir()] == ["backbone"]
    assert oct(folder.stat().st_mode & 0o777) != oct(0o700)


def test_model_card(tmp_path: Path) -> None:
    make_run(tmp_path / "run", method="moco", data="cifar10:/data/cifar10", alpha=0.1,
             box_warmup_epochs=1, loc_interval=1, box_momentum=0.5)
    out = hub.export_run(tmp_path / "run", tmp_path / "out", repo_id="me/tiny-moco")
    text = (out / "README.md").read_text()
    meta = hub.card_metadata(text)
    assert meta is not None and meta["library_name"] == "timm"
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["uoft-cs/cifar10"]
    for tag in ("image-feature-extraction", "timm", "self-supervised", "contrastivecrop",
                "moco"):
        assert tag in meta["tags"]
    assert "model-index" not in meta  # nothing evaluated: no numbers claimed
    assert "no accuracy is claimed" in text
    assert "alpha=0.10" in text and "box_warmup_epochs=1" in text
    assert "box_momentum=0.5" in text
    # the localizer and its options
    assert "localizer=peak(reduction=contrast, keep=0.5, background=auto)" in text
    # ... and its settings resolved on the model; no k: peak has no union threshold
    assert "stage=-1" in text and "reduction=contrast" in text
    assert "dataset median map subtracted" in text  # auto, settled for a ResNet
    assert "threshold" not in text
    assert "MoCo v2" in text
    assert (tmp_path / "run" / "config.yaml").read_text().strip() in text  # the full recipe
    assert 'timm.create_model("hf-hub:me/tiny-moco", pretrained=True)' in text
    assert "import timm_ccrop" in text
    assert "@inproceedings{peng2022crafting" in text and "arXiv:2202.03278" in text
    assert "epoch 2" in text and "top-1 22.00" in text  # the trainer's kNN monitor
    # right under the title: the data the weights saw, and what they are good for
    body = text.split("\n---\n", 1)[1].strip().splitlines()
    assert body[0] == "# resnet_tiny_cifar.ccrop_moco"
    assert body[2] == ("**Data seen:** CIFAR-10 (`cifar10:/data/cifar10`), 2 of 2 epochs; "
                       "no labels.")
    assert body[4].startswith("**Good for:** not known yet: nothing was measured")


def _card_lines(info: hub.CardInfo) -> list[str]:
    """The card body's lines, from the title on (the front-matter dropped)."""
    return hub.render_card(info).split("\n---\n", 1)[1].strip().splitlines()


def test_card_says_first_what_data_the_model_saw_and_what_it_is_good_for() -> None:
    # a zoo entry: its status is what the card says the weights are good for
    entry = hub.load_zoo()[0]
    model = timm.create_model(entry.architecture)
    info = hub.CardInfo.for_backbone(entry.release, model, status=entry.status,
                                     training={"Epochs": 5})
    lines = _card_lines(info)
    assert lines[0] == f"# {entry.name}" and lines[1] == ""
    assert lines[2] == (f"**Data seen:** {entry.release.dataset_name} (`{entry.dataset}`), "
                        "2500 images, 5 epochs; no labels.")  # the synthetic spec's size
    assert lines[4] == "**Good for:** " + " ".join(entry.status.split())
    # no status: what was measured on the weights; an explicit image count wins
    info = hub.CardInfo(release=_release(), num_features=512, num_parameters=1, num_images=50000)
    lines = _card_lines(info)
    assert lines[2] == ("**Data seen:** CIFAR-10 (`cifar10:/data/cifar10`), 50000 images, "
                        "epochs not recorded; no labels.")
    assert lines[4] == ("**Good for:** frozen features; measured: kNN top-1 61.25 "
                        "(`cifar10:/data/cifar10`, test).")


def test_card_takes_numbers_only_from_an_eval_of_these_weights(tmp_path: Path) -> None:
    backbone = make_run(tmp_path / "run")
    sha = state_dict_sha256(backbone.state_dict())
    (tmp_path / "run" / "eval.json").write_text(json.dumps(fake_eval_report(sha)))
    (tmp_path / "other.json").write_text(json.dumps(fake_eval_report("0" * 64, top1=99.0)))
    with pytest.warns(UserWarning, match="other weights"):
        out = hub.export_run(tmp_path / "run", tmp_path / "out",
                             eval_reports=[tmp_path / "other.json"])
    text = (out / "README.md").read_text()
    meta = hub.card_metadata(text)
    assert hub.card_measurements(meta) == [42.5, 80.25, 52.5, 90.0]
    assert "| kNN | `cifar10:/data/cifar10` | test | 42.50 | 80.25 |" in text
    assert "99.00" not in text
    assert "timm-ccrop eval --backbone runs/x --data cifar10:/data/cifar10 --protocol both" \
        in text
    assert hub.validate_export(out, require_metrics=True) == []


def test_export_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_run(tmp_path / "run")
    out = tmp_path / "out"

    def broken(info: Any) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(hub.builder, "render_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        hub.export_run(tmp_path / "run", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no half folder, no temp
    monkeypatch.undo()
    hub.export_run(tmp_path / "run", out)
    before = folder_digest(out)
    monkeypatch.setattr(hub.builder, "render_card", broken)
    with pytest.raises(RuntimeError):
        hub.export_run(tmp_path / "run", out, overwrite=True)
    assert folder_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]


def test_export_refuses_to_overwrite_without_asking(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    make_run(tmp_path / "run")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    # --overwrite never deletes what the export did not write (issue 23)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "out"),
                 "--overwrite"]) == 2
    assert "keep.txt" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    (tmp_path / "out" / "keep.txt").unlink()
    for _ in range(2):  # an empty folder, then the export it holds: both replaced
        assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "out"),
                     "--overwrite"]) == 0
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert main(["export", "--out", str(tmp_path / "x")]) == 2


def _release(**changes: Any) -> hub.Release:
    values: dict[str, Any] = dict(
        architecture="resnet18_cifar", tag="ccrop_byol_cifar10", method="byol", crop="ccrop",
        dataset="cifar10:/data/cifar10", input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25), crop_params={"alpha": 0.6}, hf_hub_id="me/ccrop-byol",
        description="byol + ccrop on cifar10:/data/cifar10 (timm-ccrop zoo)",
        measurements=(hub.Measurement("knn", "test", 61.25, 90.5, "cifar10:/data/cifar10",
                                      "k=200, T=0.1", "timm-ccrop eval --backbone x"),))
    values.update(changes)
    return hub.Release(**values)


def test_one_release_record_feeds_pretrained_cfg_card_and_zoo_entry(tmp_path: Path) -> None:
    release = _release()
    cfg = release.pretrained_cfg()
    assert cfg["architecture"] == "resnet18_cifar" and cfg["tag"] == "ccrop_byol_cifar10"
    assert cfg["input_size"] == (3, 32, 32) and cfg["mean"] == (0.5, 0.5, 0.5)
    assert cfg["paper_ids"] == hub.PAPER_ARXIV and cfg["num_classes"] == 0
    assert cfg["first_conv"] is None  # no backbone given: nothing of an architecture's cfg
    # the card's metadata: the release's dataset (from the kind registry) and its numbers
    meta = hub.card_front_matter(release)
    assert meta["datasets"] == [DATASET_KINDS["cifar10"].hub_id]
    assert meta["model-index"][0]["name"] == release.name
    assert hub.card_measurements(meta) == [61.25, 90.5]
    # the zoo entry: written from the release, it reads back as the same release
    values = {**release.zoo_fields(), "recipe": "cifar10-byol-ccrop", "trained_here": False,
              "weights": {"hf_hub_id": release.hf_hub_id}}
    entry = hub.ZooEntry.from_dict(values)
    assert entry.release == release
    assert entry.metric("knn") == 61.25
    registered = hub.zoo_pretrained_cfg(entry)
    assert registered["hf_hub_id"] == "me/ccrop-byol" and registered["mean"] == (0.5, 0.5, 0.5)
    assert registered["description"] == release.description


def test_release_names_its_dataset_from_the_kind_registry() -> None:
    release = _release(dataset="folder:/data/imagenet", kind="imagenet")
    assert release.dataset_kind == "imagenet"
    assert release.dataset_name == DATASET_KINDS["imagenet"].display_name
    assert release.hub_dataset == DATASET_KINDS["imagenet"].hub_id
    unknown = _release(dataset="mnist:/data")
    assert unknown.dataset_name == "mnist" and unknown.hub_dataset is None
    assert hub.card_front_matter(unknown)["datasets"] == []
    assert "model-index" not in hub.card_front_matter(_release(measurements=()))


def test_release_for_config_follows_the_train_config() -> None:
    config = TrainConfig(model="resnet_tiny_cifar", method="moco", crop="simccrop")
    release = hub.release_for_config(config, "mit", hf_hub_id="me/x")
    mean, std = config.normalisation()
    size = config.resolved_image_size()
    assert release.tag == "simccrop_moco" and release.license == "mit"
    assert release.input_size == (3, size, size)
    assert release.mean == tuple(mean) and release.std == tuple(std)
    assert release.hf_hub_id == "me/x" and "MoCo v2" in str(release.description)


def test_card_metadata_is_read_back_with_huggingface_hub(tmp_path: Path) -> None:
    card = tmp_path / "README.md"
    info = hub.CardInfo(release=_release(), num_features=512, num_parameters=11_000_000)
    card.write_text(hub.render_card(info))
    assert hub.read_card_metadata(card) == hub.card_metadata(card.read_text())
    assert hub.read_card_metadata(card) == hub.card_front_matter(info.release)
    assert info.ours  # resnet18_cifar is registered by timm_ccrop: the card says to import it
    card.write_text("---\n- a list\n---\n# x\n")
    assert hub.read_card_metadata(card) is None and hub.card_metadata(card.read_text()) is None
    card.write_text("---\nkey: [unclosed\n---\n# x\n")
    assert hub.read_card_metadata(card) is None
    card.write_text("# no front matter\n")
    assert hub.read_card_metadata(card) is None


def test_export_hashes_name_the_file_and_the_state_dict(tmp_path: Path) -> None:
    backbone = timm.create_model("resnet_tiny_cifar", num_classes=0).eval()
    folder = hub.export_backbone(backbone, tmp_path / "out", TrainConfig())
    assert hub.export_hashes(folder, backbone) == {
        sha256_file(folder / "model.safetensors"), state_dict_sha256(backbone.state_dict())}


def test_official_datasets_come_from_the_kind_registry() -> None:
    assert list(hub.OFFICIAL_DATASETS) == list(kind_names(official=True))
    for name, preset in hub.OFFICIAL_DATASETS.items():
        kind = DATASET_KINDS[name]
        assert preset == {"size": kind.official_size, "mean": kind.official_mean,
                          "std": kind.official_std}


# --------------------------------------------------------------------------------------
# official ContrastiveCrop checkpoints
# --------------------------------------------------------------------------------------

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def official_resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of the official repo's models/resnet.py ResNet(depth=18,
    maxpool=False) backbone (BasicBlock, [2, 2, 2, 2], 64-512 channels, 3x3 stem),
    without its fc (each method replaces fc by its projector)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3)}
    shapes.update({f"bn1.{k}": (64,) if k != "num_batches_tracked" else () for k in _BN_KEYS})
    inplanes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if (layer > 1 and block == 0) else 1
            prefix = f"layer{layer}.{block}."
            shapes[prefix + "conv1.weight"] = (planes, inplanes, 3, 3)
            shapes[prefix + "conv2.weight"] = (planes, planes, 3, 3)
            for bn in ("bn1", "bn2"):
                shapes.update({f"{prefix}{bn}.{k}": (planes,) if k != "num_batches_tracked"
                               else () for k in _BN_KEYS})
            if stride != 1 or inplanes != planes:
                shapes[prefix + "downsample.0.weight"] = (planes, inplanes, 1, 1)
                shapes.update({f"{prefix}downsample.1.{k}": (planes,)
                               if k != "num_batches_tracked" else () for k in _BN_KEYS})
            inplanes = planes
    return shapes


def _fill(shapes: dict[str, tuple[int, ...]], generator: torch.Generator
          ) -> dict[str, torch.Tensor]:
    out = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            out[key] = torch.randn(shape, generator=generator)
    return out


def _bn(prefix: str, n: int, affine: bool = True) -> dict[str, tuple[int, ...]]:
    keys = _BN_KEYS if affine else _BN_KEYS[2:]
    return {f"{prefix}.{k}": (n,) if k != "num_batches_tracked" else () for k in keys}


def official_method_state(method: str, seed: int = 0) -> tuple[dict[str, torch.Tensor],
                                                                dict[str, torch.Tensor]]:
    """``(state_dict as the official DDP script saves it, the online backbone's keys)``.

    Layouts read from the official code: SimCLR wraps the ResNet itself with fc =
    Sequential(Linear, ReLU, Linear); MoCo has encoder_q/encoder_k (fc replaced by an MLP
    with mlp=True), queue and queue_ptr; BYOL encoder_q/encoder_k with fc = Sequential(fc,
    BN1d, ReLU, Linear) and a predictor; SimSiam encoder (3-layer projector in fc) and a
    predictor. Everything under DDP's 'module.'. Head sizes are shrunk (they are dropped).
    """
    generator = torch.Generator().manual_seed(seed)
    backbone = _fill(official_resnet18_shapes(), generator)
    dim, hidden = 16, 32
    if method == "simclr":
        heads = {"fc.0.weight": (512, 512), "fc.0.bias": (512,), "fc.2.weight": (dim, 512),
                 "fc.2.bias": (dim,)}
        state = {**backbone, **_fill(heads, generator)}
    elif method == "moco":
        mlp = {"fc.0.weight": (512, 512), "fc.0.bias": (512,), "fc.2.weight": (dim, 512),
               "fc.2.bias": (dim,)}
        online = {**backbone, **_fill(mlp, generator)}
        target = _fill({**official_resnet18_shapes(), **mlp}, generator)
        state = {**{f"encoder_q.{k}": v for k, v in online.items()},
                 **{f"encoder_k.{k}": v for k, v in target.items()},
                 "queue": torch.randn(dim, 64, generator=generator),
                 "queue_ptr": torch.zeros(1, dtype=torch.long)}
    elif method == "byol":
        projector = {"fc.0.weight": (hidden, 512), "fc.0.bias": (hidden,), **_bn("fc.1", hidden),
                     "fc.3.weight": (dim, hidden), "fc.3.bias": (dim,)}
        predictor = {"predictor.0.weight": (hidden, dim), "predictor.0.bias": (hidden,),
                     **_bn("predictor.1", hidden), "predictor.3.weight": (dim, hidden),
                     "predictor.3.bias": (dim,)}
        online = {**backbone, **_fill(projector, generator)}
        target = _fill({**official_resnet18_shapes(), **projector}, generator)
        state = {**{f"encoder_q.{k}": v for k, v in online.items()},
                 **{f"encoder_k.{k}": v for k, v in target.items()},
                 **_fill(predictor, generator)}
    else:  # simsiam
        projector = {"fc.0.weight": (512, 512), **_bn("fc.1", 512), "fc.3.weight": (512, 512),
                     **_bn("fc.4", 512), "fc.6.weight": (dim, 512), "fc.6.bias": (dim,),
                     **_bn("fc.7", dim, affine=False)}
        predictor = {"predictor.0.weight": (hidden, dim), **_bn("predictor.1", hidden),
                     "predictor.3.weight": (dim, hidden), "predictor.3.bias": (dim,)}
        state = {**{f"encoder.{k}": v for k, v in {**backbone,
                                                   **_fill(projector, generator)}.items()},
                 **_fill(predictor, generator)}
    return {f"module.{k}": v for k, v in state.items()}, backbone


@pytest.mark.parametrize("method", ["simclr", "moco", "byol", "simsiam"])
def test_official_state_dicts_convert_to_resnet18_cifar(method: str) -> None:
    state, backbone = official_method_state(method)
    converted = hub.convert_official_state_dict(state, method)
    assert hub.official_architecture(converted) == "resnet18_cifar"
    model = timm.create_model("resnet18_cifar", num_classes=0)
    model.load_state_dict(converted, strict=True)
    ours = model.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv2.weight",
                "layer2.0.downsample.0.weight", "layer3.0.downsample.1.running_var",
                "layer4.1.bn2.weight", "layer4.1.bn2.num_batches_tracked"):
        assert torch.equal(ours[key], backbone[key]), key
    assert set(ours) == set(backbone)
    # saved without DDP (no 'module.' prefix): the same backbone
    plain = {key[len("module."):]: value for key, value in state.items()}
    assert hub.convert_official_state_dict(plain, method).keys() == converted.keys()


def test_official_conversion_rejects_foreign_layouts() -> None:
    state, _ = official_method_state("simclr")
    with pytest.raises(hub.HubExportError, match="no backbone weights"):
        hub.convert_official_state_dict(state, "moco")  # no encoder_q.* in a SimCLR state
    state["module.layer1.0.se.fc.weight"] = torch.zeros(1)
    with pytest.raises(hub.HubExportError, match="unexpected keys"):
        hub.convert_official_state_dict(state, "simclr")
    with pytest.raises(hub.HubExportError, match="not an official"):
        hub.official_method({"state_dict": {}})


def test_export_official_checkpoint(tmp_path: Path) -> None:
    state, backbone = official_method_state("simclr", seed=3)
    generator = torch.Generator().manual_seed(0)
    low = torch.rand(50, 2, generator=generator) * 0.4
    official_boxes = torch.cat([low, low + 0.5], dim=1)  # (h_min, w_min, h_max, w_max)
    checkpoint = tmp_path / "last.pth"
    torch.save({"simclr_state": state, "optimizer_state": {"state": {}, "param_groups": []},
                "boxes": official_boxes, "epoch": 500}, checkpoint)
    out = tmp_path / "export"
    assert main(["export", "--official", str(checkpoint), "--method", "simclr", "--out",
                 str(out), "--boxes"]) == 0
    config = json.loads((out / "config.json").read_text())
    cfg = config["pretrained_cfg"]
    assert config["architecture"] == "resnet18_cifar" and config["num_features"] == 512
    assert cfg["tag"] == "ccrop_simclr_cifar10_official" and cfg["license"] == "mit"
    assert cfg["std"] == [0.2023, 0.1994, 0.2010]  # the official configs' normalisation
    assert cfg["origin_url"] == hub.OFFICIAL_REPO_URL
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:  # integrity
        assert handle.metadata()["weights_sha256"] == state_dict_sha256(
            load_file(str(out / "model.safetensors")))
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True)
    for key in ("conv1.weight", "layer2.0.downsample.1.running_mean", "layer4.1.conv2.weight"):
        assert torch.equal(loaded.state_dict()[key], backbone[key]), key
    rows = (out / "boxes.csv").read_text().splitlines()
    assert rows[0] == ",".join(BOXES_CSV_COLUMNS) and len(rows) == 51  # the one schema
    expected = from_official(official_boxes, image_size=(32, 32))
    first = torch.tensor([float(v) for v in rows[1].split(",")[2:6]])
    assert torch.allclose(first, expected[0], atol=1e-6)
    card = (out / "README.md").read_text()
    assert "epoch 500" in card and "MIT" in card and hub.card_metadata(card)["license"] == "mit"
    assert "**Data seen:** CIFAR-10 (`cifar10`), 500 epochs; no labels." in card.splitlines()
    assert hub.validate_export(out) == []
    # the wrong method is refused, naming what the checkpoint holds
    assert main(["export", "--official", str(checkpoint), "--method", "moco", "--out",
                 str(tmp_path / "other")]) == 2
    assert not (tmp_path / "other").exists()


def test_official_rcrop_checkpoint_is_recognised(tmp_path: Path) -> None:
    state, _ = official_method_state("simsiam")
    checkpoint = tmp_path / "last.pth"
    torch.save({"simsiam_state": state, "boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 4),
                "epoch": 500}, checkpoint)
    out = hub.export_official(checkpoint, tmp_path / "out", dataset="cifar100")
    cfg = json.loads((out / "config.json").read_text())["pretrained_cfg"]
    assert cfg["tag"] == "rcrop_simsiam_cifar100_official"
    assert cfg["mean"] == [0.5071, 0.4867, 0.4408]


# --------------------------------------------------------------------------------------
# push
# --------------------------------------------------------------------------------------


def stand_in_api(cache: Path) -> mock.MagicMock:
    """An HfApi whose create_repo/upload_folder fill a local Hub cache instead.

    Built with create_autospec: a call that does not fit huggingface_hub's real signature
    fails, so a change of the library breaks this test, not a user's upload.
    """
    api = mock.create_autospec(HfApi, instance=True)
    repos: set[str] = set()

    def create_repo(repo_id: str, **kwargs: Any) -> str:
        assert kwargs.get("exist_ok") is True
        repos.add(repo_id)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(*, repo_id: str, folder_path: str, revision: str | None = None,
                      allow_patterns: list[str] | None = None, **kwargs: Any) -> Any:
        assert repo_id in repos, "upload before create_repo"
        sha = uuid.uuid4().hex + "0" * 8
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / sha
        snapshot.mkdir(parents=True)
        for name in allow_patterns or []:
            shutil.copy2(Path(folder_path) / name, snapshot / name)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / (revision or "main")).write_text(sha)
        return mock.Mock(commit_url=f"https://huggingface.co/{repo_id}/commit/{sha}",
                         pr_url=None, oid=sha)

    api.create_repo.side_effect = create_repo
    api.upload_folder.side_effect = upload_folder
    return api


LOAD_OFFLINE = textwrap.dedent("""
    import sys, torch, timm
    import timm_ccrop  # registers resnet_tiny_cifar
    model = timm.create_model("hf-hub:" + sys.argv[1], pretrained=True).eval()
    x = torch.load(sys.argv[2])
    with torch.no_grad():
        torch.save(model(x), sys.argv[3])
    print(model.pretrained_cfg["tag"], model.pretrained_cfg.get("hf_hub_id"))
""")


def test_push_then_load_from_the_hub_cache_offline(tmp_path: Path, exported: tuple) -> None:
    out, backbone = exported
    cache = tmp_path / "hub-cache"
    api = stand_in_api(cache)
    before = folder_digest(out)
    result = hub.push_folder(out, "ccrop-test/tiny-simclr", private=True, api=api)
    assert folder_digest(out) == before
    api.create_repo.assert_called_once_with("ccrop-test/tiny-simclr", repo_type="model",
                                            private=True, exist_ok=True)
    assert api.upload_folder.call_args.kwargs["create_pr"] is False
    api.create_branch.assert_not_called()
    assert [name for name, _ in result.files] == ["README.md", "config.json",
                                                  "model.safetensors"]
    assert result.commit_url and "ccrop-test/tiny-simclr" in result.commit_url
    torch.save(images(), tmp_path / "x.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "HF_HOME": str(tmp_path / "hf-home"), "OMP_NUM_THREADS": "1"}
    env.pop("HF_TOKEN", None)
    done = subprocess.run([sys.executable, "-c", LOAD_OFFLINE, "ccrop-test/tiny-simclr",
                           str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ccrop_simclr", "ccrop-test/tiny-simclr"]
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt"), backbone(images()))


def test_push_to_a_branch_or_as_a_pull_request(tmp_path: Path, exported: tuple) -> None:
    out, _ = exported
    api = stand_in_api(tmp_path / "cache")
    hub.push_folder(out, "ccrop-test/x", revision="v1", api=api)
    api.create_branch.assert_called_once_with("ccrop-test/x", branch="v1", repo_type="model",
                                              exist_ok=True)
    assert api.upload_folder.call_args.kwargs["revision"] == "v1"
    api = stand_in_api(tmp_path / "cache2")
    hub.push_folder(out, "ccrop-test/x", create_pr=True, api=api)
    api.create_branch.assert_not_called()
    assert api.upload_folder.call_args.kwargs["create_pr"] is True


def _http_error() -> Exception:
    message = "401 Unauthorized: invalid token hf_abcdefghijklmnopqrstuvwxyz0123"
    url = "https://huggingface.co/api/repos/create"
    # the HTTP client this huggingface_hub version is built on: httpx2, httpx or requests
    client = HfHubHTTPError.__mro__[1].__module__.split(".")[0]
    if client == "requests":
        import requests

        response = requests.Response()
        response.status_code, response.url = 401, url
        response.request = requests.Request("POST", url).prepare()
        return HfHubHTTPError(message, response=response)
    http = __import__(client)
    request = http.Request("POST", url)
    return HfHubHTTPError(message, response=http.Response(401, request=request))


def _connection_error() -> Exception:
    import requests  # optional: the HTTP client of older huggingface_hub versions

    return requests.ConnectionError("Max retries exceeded with url: /api/repos/create")


def _token_missing() -> Exception:
    return LocalTokenNotFoundError("Token is required (`token=True`), but no token found.")


@pytest.mark.parametrize("make_error", [_http_error, _connection_error, _token_missing,
                                        lambda: OSError("Network is unreachable")],
                         ids=["http-401", "connection", "no-token", "oserror"])
@pytest.mark.parametrize("step", ["create_repo", "upload_folder"])
def test_push_failure_is_reported_and_leaves_the_folder_alone(
        tmp_path: Path, exported: tuple, make_error: Any, step: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    out, _ = exported
    api = stand_in_api(tmp_path / "cache")
    getattr(api, step).side_effect = make_error()
    before = folder_digest(out)
    with pytest.raises(hub.PushError, match="ccrop-test/x") as caught:
        hub.push_folder(out, "ccrop-test/x", api=api)
    message = str(caught.value)
    assert "not changed" in message and "hf_abcdefghijklmnopqrstuvwxyz0123" not in message
    assert folder_digest(out) == before
    # the command line says so and exits 1, without printing the token
    monkeypatch.setenv("HF_TOKEN", "hf_secretsecretsecretsecret0000")
    api = stand_in_api(tmp_path / "cache2")
    getattr(api, step).side_effect = OSError("refused hf_secretsecretsecretsecret0000")
    with mock.patch("huggingface_hub.HfApi", return_value=api):
        assert main(["push", str(out), "--repo-id", "ccrop-test/x"]) == 1
    captured = capsys.readouterr()
    assert "could not" in captured.err and "not changed" in captured.err
    assert "secretsecret" not in captured.out + captured.err
    assert folder_digest(out) == before


def test_error_messages_never_carry_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_mysecrettokenvalue1234567890")
    assert "hf_mysecret" not in hub.scrub_token("bad token hf_mysecrettokenvalue1234567890 given")
    assert "hf_***" in hub.scrub_token("Authorization: Bearer hf_zzzzzzzzzzzzzzzzzzzzzzzz")


def _break(folder: Path, how: str) -> None:
    if how == "no-card":
        (folder / "README.md").unlink()
    elif how == "no-front-matter":
        (folder / "README.md").write_text("# a model\n")
    elif how == "pickle":
        torch.save({}, folder / "pytorch_model.bin")
    elif how == "no-architecture":
        config = json.loads((folder / "config.json").read_text())
        del config["architecture"]
        (folder / "config.json").write_text(json.dumps(config))
    elif how == "bad-weights":
        (folder / "model.safetensors").write_bytes(b"not safetensors")
    elif how == "bad-json":
        (folder / "config.json").write_text("{")


@pytest.mark.parametrize("how,message", [
    ("no-card", "README.md (the model card) is missing"),
    ("no-front-matter", "no YAML front-matter"),
    ("pickle", "pickle-based files are not published: pytorch_model.bin"),
    ("no-architecture", "no 'architecture'"),
    ("bad-weights", "model.safetensors does not load"),
    ("bad-json", "does not parse as JSON"),
])
def test_push_refuses_an_invalid_folder(tmp_path: Path, exported: tuple, how: str,
                                        message: str, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "export"
    shutil.copytree(exported[0], folder)
    _break(folder, how)
    api = stand_in_api(tmp_path / "cache")
    with pytest.raises(hub.HubExportError, match="refusing to push") as caught:
        hub.push_folder(folder, "ccrop-test/x", api=api)
    assert message in str(caught.value)
    assert api.method_calls == []
    assert main(["push", str(folder), "--repo-id", "ccrop-test/x", "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_require_metrics_and_repo_ids(tmp_path: Path, exported: tuple) -> None:
    out, _ = exported
    api = stand_in_api(tmp_path / "cache")
    with pytest.raises(hub.HubExportError, match="no measured numbers"):
        hub.push_folder(out, "ccrop-test/x", require_metrics=True, api=api)
    for bad in ("no-namespace", "a/b/c", "org/na me", "org--x/y", "-org/x", ""):
        with pytest.raises(hub.HubExportError, match="ORG/NAME"):
            hub.push_folder(out, bad, api=api)
    assert api.method_calls == []


def test_dry_run_lists_files_and_touches_nothing(exported: tuple,
                                                 capsys: pytest.CaptureFixture) -> None:
    out, _ = exported
    before = folder_digest(out)
    with mock.patch("huggingface_hub.HfApi", side_effect=AssertionError("no HfApi")):
        assert main(["push", str(out), "--repo-id", "ccrop-test/tiny", "--dry-run",
                     "--private"]) == 0
    printed = capsys.readouterr().out
    assert "would upload 3 files" in printed and "https://huggingface.co/ccrop-test/tiny" \
        in printed
    size = (out / "model.safetensors").stat().st_size
    assert "model.safetensors" in printed and f"{size / 1024 / 1024:.1f} MB" in printed
    assert "dry run: nothing was created or uploaded" in printed
    assert folder_digest(out) == before


def _hub_reachable() -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not os.environ.get("HF_TOKEN"),
                    reason="real Hub round trip: needs HF_TOKEN (a token that may create repos)")
def test_real_hub_round_trip(tmp_path: Path, exported: tuple) -> None:
    if not _hub_reachable():
        pytest.skip("real Hub round trip: huggingface.co:443 is not reachable from here")
    out, backbone = exported
    api = HfApi()
    user = api.whoami()["name"]
    repo_id = f"{user}/timm-ccrop-test-{uuid.uuid4().hex[:8]}"
    try:
        hub.push_folder(out, repo_id, private=True, api=api)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = timm.create_model(f"hf-hub:{repo_id}", pretrained=True,
                                       cache_dir=str(tmp_path)).eval()
        with torch.no_grad():
            assert torch.equal(loaded(images()), backbone(images()))
    finally:
        api.delete_repo(repo_id, missing_ok=True)
