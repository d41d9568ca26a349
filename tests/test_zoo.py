"""The model zoo: zoo/models.yaml entries, how they load by name, `timm-ccrop zoo`."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import timm_ccrop
from timm_ccrop.cli import main
from timm_ccrop.hub import (
    ZooEntry,
    entry_problems,
    format_zoo_table,
    load_zoo,
    register_zoo,
    registered_zoo_tags,
    unregister_zoo,
    write_weights_and_config,
    zoo_root,
)
from timm_ccrop.models import cifar

ENTRIES = load_zoo()
PACKAGE = Path(timm_ccrop.__file__).parent
# The demonstration model bundled with the package (an architecture of ours).
BUNDLED = "resnet_mini_cifar.simclr_ccrop_synthetic"


def test_the_zoo_is_not_empty_and_names_are_unique() -> None:
    assert ENTRIES, "zoo/models.yaml lists no model"
    names = [entry.name for entry in ENTRIES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_entry_is_valid(entry: ZooEntry) -> None:
    assert entry_problems(entry) == []
    # numbers are only ever measured ones, each with its command
    for row in entry.metrics:
        assert row["command"].startswith("timm-ccrop ")
    if entry.trained_here:
        assert entry.status, "a model trained here says what it is good for"


def _assert_loads_the_entry(model: torch.nn.Module, entry: ZooEntry, root: Path) -> None:
    assert model.pretrained_cfg["tag"] == entry.tag
    assert model.num_classes == 0
    folder = entry.bundled_folder(root)
    if folder is not None:
        assert Path(model.pretrained_cfg["file"]) == folder / "model.safetensors"
        weights = load_file(str(folder / "model.safetensors"))
        state = model.state_dict()
        assert set(state) == set(weights)
        for key, value in state.items():
            assert torch.equal(value, weights[key]), key
    cfg = timm.data.resolve_model_data_config(model)
    assert list(cfg["input_size"]) == list(entry.input["input_size"])
    assert list(cfg["mean"]) == pytest.approx(entry.input["mean"])


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_entry_loads_by_name(entry: ZooEntry) -> None:
    assert entry.name in registered_zoo_tags()
    model = timm_ccrop.create_model(entry.name, pretrained=True).eval()
    _assert_loads_the_entry(model, entry, zoo_root())
    if entry.bundled_folder() is not None:  # the installed package's own copy
        assert Path(model.pretrained_cfg["file"]).is_relative_to(zoo_root())
    if entry.architecture in cifar.CIFAR_MODEL_NAMES:  # ours: timm itself knows the tag
        assert entry.name in timm.list_pretrained(f"{entry.architecture}.*")
        _assert_loads_the_entry(timm.create_model(entry.name, pretrained=True), entry,
                                zoo_root())
    else:  # timm's: nothing was written into timm's registry
        assert entry.name not in timm.list_pretrained()


def test_tags_of_our_architectures_are_declared_through_default_cfgs() -> None:
    assert BUNDLED in timm.list_pretrained("*ccrop*")
    cfg = timm.models.get_pretrained_cfg(BUNDLED)
    assert cfg.architecture == "resnet_mini_cifar" and cfg.tag == "simclr_ccrop_synthetic"
    assert Path(cfg.file) == zoo_root() / "weights" / BUNDLED / "model.safetensors"
    assert cfg.hf_hub_id is None and cfg.num_classes == 0 and cfg.first_conv == "conv1"
    # declared where timm reads declarations: the module's default_cfgs
    assert "simclr_ccrop_synthetic" in cifar.default_cfgs["resnet_mini_cifar"].tags
    # the architecture's default stays the untagged cfg: no zoo weights by surprise
    assert timm.models.get_pretrained_cfg("resnet_tiny_cifar").tag is None
    plain = timm.create_model("resnet_tiny_cifar")
    assert plain.pretrained_cfg.get("tag") is None and plain.pretrained_cfg.get("file") is None
    model = timm.create_model(BUNDLED, pretrained=True)
    weights = load_file(str(zoo_root() / "weights" / BUNDLED / "model.safetensors"))
    assert all(torch.equal(value, weights[key]) for key, value in model.state_dict().items())


def _test_entry(**changes: object) -> ZooEntry:
    values = dict(ENTRIES[0].raw)
    values.update(changes)
    return ZooEntry.from_dict(values)


def _bundle_timm_weights(root: Path, architecture: str, tag: str) -> tuple[ZooEntry, dict]:
    """A test-only zoo entry on a timm architecture, its weights written under ``root``."""
    entry = _test_entry(architecture=architecture, tag=tag,
                        weights={"bundled": f"weights/{architecture}.{tag}"},
                        input={"input_size": [3, 64, 64], "mean": [0.5, 0.5, 0.5],
                               "std": [0.25, 0.25, 0.25], "crop_pct": 1.0,
                               "interpolation": "bilinear"})
    torch.manual_seed(3)
    backbone = timm.create_model(architecture, num_classes=0)
    with torch.no_grad():  # weights unlike any fresh or timm-pretrained model
        for value in backbone.state_dict().values():
            if value.is_floating_point():
                value.normal_()
    folder = root / "weights" / entry.name
    folder.mkdir(parents=True)
    write_weights_and_config(backbone, folder, entry.release.pretrained_cfg(backbone), None)
    return entry, backbone.state_dict()


def test_a_zoo_entry_on_a_timm_architecture_loads_without_touching_timm(tmp_path: Path) -> None:
    name = "resnet10t.ccrop_test_only"
    before = timm.list_pretrained()
    default_before = timm.models.get_pretrained_cfg("resnet10t")
    entry, weights = _bundle_timm_weights(tmp_path, "resnet10t", "ccrop_test_only")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert register_zoo([entry], root=tmp_path) == [name]
            assert register_zoo([entry], root=tmp_path) == [name]  # again: nothing changes
        assert name in registered_zoo_tags()
        # timm's registry is as it was: no tag added, the default kept
        assert timm.list_pretrained() == before and name not in timm.list_pretrained()
        assert timm.models.get_pretrained_cfg("resnet10t") == default_before
        with pytest.raises(RuntimeError, match="Invalid pretrained tag"):
            timm.models.get_pretrained_cfg(name)
        with pytest.raises(RuntimeError):
            timm.create_model(name)
        # timm_ccrop.create_model loads the entry's own weights
        model = timm_ccrop.create_model(name, pretrained=True).eval()
        assert type(model).__name__ == "ResNet" and model.num_classes == 0
        state = model.state_dict()
        assert set(state) == set(weights)
        for key, value in state.items():
            assert torch.equal(value, weights[key]), key
        cfg = model.pretrained_cfg
        assert cfg["tag"] == "ccrop_test_only" and cfg["architecture"] == "resnet10t"
        assert Path(cfg["file"]) == tmp_path / "weights" / name / "model.safetensors"
        assert cfg["input_size"] == (3, 64, 64) and cfg["mean"] == (0.5, 0.5, 0.5)
        # nothing of timm's default tag leaks into ours; facts of the architecture stay
        for leaked in ("hf_hub_id", "url", "test_input_size", "origin_url"):
            assert cfg.get(leaked) is None, leaked
        assert cfg["first_conv"] == default_before.first_conv
        assert cfg["paper_ids"] == "arXiv:2202.03278"
        # any other name is plain timm.create_model
        plain = timm_ccrop.create_model("resnet10t")
        assert plain.pretrained_cfg["tag"] == default_before.tag
        with pytest.raises(ValueError, match="pretrained_cfg_overlay"):
            timm_ccrop.create_model(name, pretrained_cfg_overlay={"file": "x"})
    finally:
        assert unregister_zoo([name]) == [name]
    assert name not in registered_zoo_tags()
    with pytest.raises(RuntimeError):
        timm_ccrop.create_model(name)


def test_create_model_rejects_bad_arguments_in_one_line() -> None:
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="model name must be a non-empty string"):
            timm_ccrop.create_model(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pretrained must be True or False, got 'yes'"):
        timm_ccrop.create_model(BUNDLED, pretrained="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes ZooEntry objects"):
        register_zoo(["resnet18.x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"unregister_zoo\(\['x'\]\)"):
        unregister_zoo("x")


def test_tags_never_point_at_missing_weights(tmp_path: Path) -> None:
    entry = _test_entry(tag="ccrop_missing_weights", weights={"bundled": "weights/not-there"})
    with pytest.warns(UserWarning, match="do not exist"):
        assert register_zoo([entry], root=tmp_path) == []
    assert "resnet_tiny_cifar.ccrop_missing_weights" not in timm.list_pretrained()
    entry = _test_entry(tag="ccrop_bad_id", weights={"hf_hub_id": "not an id"})
    with pytest.warns(UserWarning, match="ORG/NAME"):
        assert register_zoo([entry]) == []
    assert "resnet_tiny_cifar.ccrop_bad_id" not in registered_zoo_tags()


def test_timm_own_tags_are_never_shadowed() -> None:
    before = timm.models.get_pretrained_cfg("resnet18.a1_in1k")
    entry = _test_entry(architecture="resnet18", tag="a1_in1k",
                        weights={"hf_hub_id": "ccrop-test/hijack"})
    with pytest.warns(UserWarning, match="already has pretrained weights 'resnet18.a1_in1k'"):
        assert register_zoo([entry]) == []
    assert timm.models.get_pretrained_cfg("resnet18.a1_in1k") == before
    assert timm_ccrop.create_model("resnet18.a1_in1k").pretrained_cfg["hf_hub_id"] == \
        "timm/resnet18.a1_in1k"
    with pytest.warns(UserWarning, match="no architecture"):
        assert register_zoo([_test_entry(architecture="no_such_net")]) == []


def test_registration_at_import_is_idempotent() -> None:
    names = registered_zoo_tags()
    assert {entry.name for entry in ENTRIES} <= set(names)
    before = timm.list_pretrained()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Overwriting" warning of timm either
        assert sorted(register_zoo()) == sorted(entry.name for entry in ENTRIES)
    assert timm.list_pretrained() == before
    assert registered_zoo_tags() == names


def test_no_module_reaches_into_timm_private_registry() -> None:
    private = re.compile(r"timm\.models\._registry|_model_(pretrained_cfgs|default_cfgs|"
                         r"with_tags|has_pretrained|entrypoints)\b")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        offenders += [f"{path.name}: {match.group(0)}" for match in private.finditer(source)]
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("timm"):
                names = [node.module or "", *(alias.name for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [f"{path.name}: import {name}" for name in names
                          if name.split(".")[-1] == "_registry" and name.startswith(
                              ("timm", "_registry"))]
    assert len(list(PACKAGE.rglob("*.py"))) > 20  # the whole package was searched
    assert offenders == []


def test_entry_problems_name_what_is_wrong(tmp_path: Path) -> None:
    entry = ENTRIES[0]
    bad = dataclasses.replace(
        entry, tag="Bad.Tag", method="swav", crop="center", dataset="mnist",
        recipe="no-such-recipe",
        weights={**entry.weights, "sha256": "0" * 64, "hf_hub_id": "x"},
        metrics=[{"protocol": "knn", "top1": 120.0, "dataset": "d", "split": "test",
                  "command": "python eval.py"}, {"protocol": "knn"}],
    )
    problems = "\n".join(entry_problems(bad))
    for expected in ("lowercase letters", "method 'swav'", "crop 'center'", "dataset 'mnist'",
                     "recipe 'no-such-recipe' not found", "does not match weights.sha256",
                     "repo id 'x'", "metrics[0].top1 must be a percentage",
                     "metrics[0].command must be the timm-ccrop command",
                     "metrics[1] lacks"):
        assert expected in problems, expected
    wrong_recipe = dataclasses.replace(entry, recipe="cifar10-byol-ccrop")
    assert any("recipe 'cifar10-byol-ccrop' has model='resnet18_cifar'" in p
               for p in entry_problems(wrong_recipe))


def test_zoo_table_shows_the_measured_numbers() -> None:
    entry = _test_entry(
        tag="ccrop_table_test", dataset="cifar10:/data/cifar10", method="byol", crop="ccrop",
        weights={"hf_hub_id": "me/table-test", "sha256": "0123456789abcdef" * 4},
        metrics=[{"protocol": "knn", "dataset": "cifar10", "split": "test", "top1": 61.25,
                  "command": "timm-ccrop eval"},
                 {"protocol": "linear", "dataset": "cifar10", "split": "test", "top1": 70.5,
                  "command": "timm-ccrop eval"}])
    lines = format_zoo_table([ENTRIES[0], entry]).splitlines()
    assert lines[0].split() == ["model", "kNN", "top-1", "linear", "top-1", "method", "crop",
                                "sha256"]
    row = next(i for i, line in enumerate(lines) if line.startswith(entry.name))
    assert lines[row].split()[1:] == ["61.25", "70.50", "byol", "ccrop", "0123456789"]
    assert lines[row + 1].split() == ["data", "cifar10:/data/cifar10;", "weights",
                                      "hf-hub:me/table-test;", "trained", "here"]
    first = lines.index(next(line for line in lines if line.startswith(ENTRIES[0].name)))
    knn = ENTRIES[0].metric("knn")
    assert lines[first].split()[1] == (f"{knn:.2f}" if knn is not None else "-")
    linear = ENTRIES[0].metric("linear")
    assert lines[first].split()[2] == (f"{linear:.2f}" if linear is not None else "-")
    unmeasured = _test_entry(tag="ccrop_unmeasured", metrics=[
        {"protocol": "knn", "dataset": "d", "split": "test", "top1": 50.0, "command": "c"}])
    unmeasured_row = format_zoo_table([unmeasured]).splitlines()[2]
    assert unmeasured_row.split()[2] == "-"  # no linear probe measured: nothing claimed
    # the numbers line up under their headers
    assert lines[row].index("61.25") + 5 == lines[0].index("kNN top-1") + 9
    assert all(len(line) <= 100 for line in lines)
    with pytest.raises(ValueError, match="takes ZooEntry objects"):
        format_zoo_table([entry.raw])  # type: ignore[list-item]


def test_zoo_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["zoo"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split()[:3] == ["model", "kNN", "top-1"]
    for entry in ENTRIES:
        index = next(i for i, line in enumerate(lines) if line.startswith(entry.name + " "))
        cells = lines[index].split()
        knn, linear = entry.metric("knn"), entry.metric("linear")
        assert cells[1] == (f"{knn:.2f}" if knn is not None else "-")
        assert cells[2] == (f"{linear:.2f}" if linear is not None else "-")
        assert cells[3:5] == [entry.method, entry.crop]
        assert cells[5] == str(entry.weights.get("sha256") or "-")[:10]
        # the details line wraps long data specs onto indented continuation lines
        details = "".join(line.strip() for line in lines[index + 1:index + 4])
        assert entry.dataset in details
    assert all(len(line) <= 100 for line in lines)
    assert f"{len(ENTRIES)} loadable with timm_ccrop.create_model" in printed
    assert main(["zoo", "--validate"]) == 0
    assert f"validated {len(ENTRIES)} entries: 0 with problems" in capsys.readouterr().out
    assert main(["zoo", "--json"]) == 0
    assert ENTRIES[0].tag in capsys.readouterr().out


def test_import_timm_ccrop_registers_the_zoo_in_a_fresh_interpreter(tmp_path: Path) -> None:
    script = ("import timm, timm_ccrop; "
              "print(' '.join(timm_ccrop.hub.registered_zoo_tags())); "
              "print(' '.join(timm.list_pretrained('*_cifar.*')))")
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", script],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # no warning: no entry skipped, no overwrite
    loadable, in_timm = done.stdout.splitlines()
    assert set(loadable.split()) == {entry.name for entry in ENTRIES}
    assert set(in_timm.split()) == {entry.name for entry in ENTRIES
                                    if entry.architecture in cifar.CIFAR_MODEL_NAMES}


def test_an_entry_is_a_release_of_its_well_formed_numbers() -> None:
    entry = ENTRIES[0]
    release = entry.release
    assert release.name == entry.name and release.license == entry.license
    assert list(release.input_size) == list(entry.input["input_size"])
    assert [m.top1 for m in release.measurements] == [float(r["top1"]) for r in entry.metrics]
    assert [m.zoo_row()["command"] for m in release.measurements] == \
        [r["command"] for r in entry.metrics]
    broken = dataclasses.replace(entry, metrics=[{"protocol": "knn"}, *entry.metrics])
    assert broken.release.measurements == release.measurements  # entry_problems names it
