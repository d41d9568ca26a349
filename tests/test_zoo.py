"""The model zoo: zoo/models.yaml entries, their timm pretrained tags, `timm-ccrop zoo`."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.models import _registry as registry

import timm_ccrop  # noqa: F401
from timm_ccrop.cli import main
from timm_ccrop.hub import (
    ZooEntry,
    entry_problems,
    load_zoo,
    register_zoo,
    registered_zoo_tags,
    remove_pretrained_tag,
    zoo_root,
)

ENTRIES = load_zoo()


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


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entries_load_as_timm_pretrained_tags(entry: ZooEntry) -> None:
    assert entry.name in timm.list_pretrained("*ccrop*")
    assert entry.name in timm.list_pretrained(f"{entry.architecture}.*")
    model = timm.create_model(entry.name, pretrained=True).eval()
    assert model.pretrained_cfg["tag"] == entry.tag
    assert model.num_classes == 0
    folder = entry.bundled_folder()
    if folder is not None:
        # the installed package's own copy, whatever the working directory
        assert Path(model.pretrained_cfg["file"]) == folder / "model.safetensors"
        assert Path(model.pretrained_cfg["file"]).is_relative_to(zoo_root())
        weights = load_file(str(folder / "model.safetensors"))
        for key, value in model.state_dict().items():
            assert torch.equal(value, weights[key]), key
    cfg = timm.data.resolve_model_data_config(model)
    assert list(cfg["input_size"]) == list(entry.input["input_size"])
    assert list(cfg["mean"]) == pytest.approx(entry.input["mean"])


def _test_entry(tmp_path: Path, **changes: object) -> ZooEntry:
    values = dict(ENTRIES[0].raw)
    values.update(changes)
    return ZooEntry.from_dict(values)


def test_a_zoo_tag_on_a_timm_architecture_keeps_timm_own_tags() -> None:
    # A test-only entry for timm's resnet18 (weights "published" on the Hub).
    before = timm.list_pretrained("resnet18.*")
    default_before = timm.models.get_pretrained_cfg("resnet18")
    assert "resnet18.a1_in1k" in before
    entry = _test_entry(Path("."), architecture="resnet18", tag="ccrop_test_only",
                        weights={"hf_hub_id": "ccrop-test/resnet18-ccrop"},
                        input={"input_size": [3, 224, 224], "mean": [0.485, 0.456, 0.406],
                               "std": [0.229, 0.224, 0.225]})
    try:
        assert register_zoo([entry]) == ["resnet18.ccrop_test_only"]
        after = timm.list_pretrained("resnet18.*")
        assert set(before) < set(after) and "resnet18.ccrop_test_only" in after
        assert timm.models.get_pretrained_cfg("resnet18") == default_before  # default kept
        assert timm.models.get_pretrained_cfg("resnet18.a1_in1k").hf_hub_id == \
            "timm/resnet18.a1_in1k"
        ours = timm.models.get_pretrained_cfg("resnet18.ccrop_test_only")
        assert ours.hf_hub_id == "ccrop-test/resnet18-ccrop" and ours.num_classes == 0
        assert ours.architecture == "resnet18" and ours.tag == "ccrop_test_only"
        assert "ccrop_test_only" in registry._model_default_cfgs["resnet18"].cfgs
        assert timm.create_model("resnet18").pretrained_cfg["tag"] == "a1_in1k"
        # registering again changes nothing
        assert register_zoo([entry]) == ["resnet18.ccrop_test_only"]
        assert registry._model_with_tags["resnet18"].count("resnet18.ccrop_test_only") == 1
    finally:
        assert remove_pretrained_tag("resnet18.ccrop_test_only")
    assert timm.list_pretrained("resnet18.*") == before
    assert "ccrop_test_only" not in registry._model_default_cfgs["resnet18"].tags


def test_tags_never_point_at_missing_weights(tmp_path: Path) -> None:
    entry = _test_entry(tmp_path, tag="ccrop_missing_weights",
                        weights={"bundled": "weights/not-there"})
    with pytest.warns(UserWarning, match="do not exist"):
        assert register_zoo([entry], root=tmp_path) == []
    assert "resnet_tiny_cifar.ccrop_missing_weights" not in timm.list_pretrained()
    entry = _test_entry(tmp_path, tag="ccrop_bad_id", weights={"hf_hub_id": "not an id"})
    with pytest.warns(UserWarning, match="ORG/NAME"):
        assert register_zoo([entry]) == []


def test_timm_own_tags_are_never_replaced() -> None:
    before = timm.models.get_pretrained_cfg("resnet18.a1_in1k")
    entry = _test_entry(Path("."), architecture="resnet18", tag="a1_in1k",
                        weights={"hf_hub_id": "ccrop-test/hijack"})
    with pytest.warns(UserWarning, match="already has pretrained weights"):
        assert register_zoo([entry]) == []
    assert timm.models.get_pretrained_cfg("resnet18.a1_in1k") == before
    with pytest.warns(UserWarning, match="no architecture"):
        register_zoo([_test_entry(Path("."), architecture="no_such_net")])


def test_registration_at_import_is_idempotent() -> None:
    names = registered_zoo_tags()
    assert {entry.name for entry in ENTRIES} <= set(names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(register_zoo()) == sorted(entry.name for entry in ENTRIES)
    for entry in ENTRIES:
        assert registry._model_with_tags[entry.architecture].count(entry.name) == 1


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


def test_zoo_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["zoo"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:4] == ["model", "method", "crop", "data"]
    for entry in ENTRIES:
        line = next(line for line in printed.splitlines() if line.startswith(entry.name))
        assert entry.method in line and ("bundled" in line or str(entry.hf_hub_id) in line)
        if entry.metric("knn") is not None:
            assert f"{entry.metric('knn'):.2f}" in line
    assert main(["zoo", "--validate"]) == 0
    assert f"validated {len(ENTRIES)} entries: 0 with problems" in capsys.readouterr().out
    assert main(["zoo", "--json"]) == 0
    assert ENTRIES[0].tag in capsys.readouterr().out


def test_import_timm_ccrop_registers_the_zoo_in_a_fresh_interpreter(tmp_path: Path) -> None:
    script = ("import timm, timm_ccrop; "
              "print(' '.join(timm.list_pretrained('*ccrop*')))")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "timm-ccrop zoo" not in done.stderr  # no entry skipped
    assert set(done.stdout.split()) == {entry.name for entry in ENTRIES}


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
