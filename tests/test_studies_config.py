"""``timm_ccrop.studies`` settings: CompareConfig's checks, the arms' localizers and folders,
the cell signatures that decide what a rerun reuses."""

from __future__ import annotations

import json

import pytest

from timm_ccrop.config import TrainConfig
from timm_ccrop.crop.transforms import CROP_MODES
from timm_ccrop.studies import ARMS, MODEL_BOX_ARMS, CompareConfig
from timm_ccrop.studies.cells import (
    cell_folder,
    cell_signature,
    cell_train_config,
    finished_cell,
)
from timm_ccrop.studies.scoring import Scoring

HELD_OUT = Scoring("test")


def test_arms_are_crop_modes_of_the_package():
    assert {arm.crop for arm in ARMS.values()} <= set(CROP_MODES)
    assert set(MODEL_BOX_ARMS) == {"ccrop", "ccrop-paper", "ccrop-harvest"}
    assert ARMS["ccrop-gt"].box_source == "ground-truth"


def test_defaults_follow_the_project():
    config = CompareConfig()
    assert config.problems() == []
    assert config.localizer == TrainConfig().localizer
    assert config.resolved_localizer()[1] == TrainConfig().resolved_localizer_kwargs()
    assert (config.methods, config.model, config.epochs, config.augment_on, config.jobs) == (
        ("simclr",), "resnet_mini_cifar", 24, "device", 2)
    assert config.seeds == (0, 1, 2, 3, 4, 5) and "num_samples=2500" in config.data
    # the report's command pins the arms and the localizer: their defaults change
    command = config.command_line(("rcrop", "ccrop"))
    assert command.startswith("timm-ccrop compare --modes rcrop ccrop --localizer ")
    assert "--localizer-kwargs" in command and "--epochs" not in command
    assert CompareConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("values", "named"), [
    ({"jobs": 0}, "jobs"), ({"seeds": ()}, "seeds"), ({"seeds": (1, 1)}, "twice"),
    ({"modes": ("rcrop", "nonsense")}, "nonsense"), ({"methods": ("simclr", 3)}, "methods"),
    ({"localizer": "component", "localizer_kwargs": {"rule": "bogus"}}, "bogus"),
    ({"val_fraction": 1.0}, "val_fraction"), ({"lr": 0.0}, "lr"),
])
def test_bad_settings_are_named(values, named):
    with pytest.raises(ValueError, match=named):
        CompareConfig(**values).validate()
    with pytest.raises(ValueError, match="unknown compare setting"):
        CompareConfig.from_dict({"bogus": 1})


def test_localizer_is_part_of_the_signature_of_model_box_arms_only():
    base = CompareConfig(localizer="component")
    other = CompareConfig(localizer="component", localizer_kwargs={"rule": "max",
                                                                    "pick": "largest"})
    changed = {mode for mode in ARMS if cell_signature(base, mode, HELD_OUT)
               != cell_signature(other, mode, HELD_OUT)}
    assert changed == {"ccrop"}
    # ccrop-paper is always the 'paper' localizer, whatever --localizer says
    assert cell_signature(base, "ccrop-paper", HELD_OUT)["localizer"] == {
        "name": "paper", "kwargs": {}}
    assert cell_signature(base, "ccrop-harvest", HELD_OUT)["localizer"] == {
        "name": "harvest", "kwargs": {}}
    assert "localizer" not in cell_signature(base, "rcrop", HELD_OUT)
    assert "localizer" not in cell_signature(base, "ccrop-gt", HELD_OUT)
    # a carved-out scoring split is part of every signature; the held-out split adds nothing
    carved = Scoring("train", carved=True, val_fraction=0.2)
    assert cell_signature(base, "rcrop", carved) != cell_signature(base, "rcrop", HELD_OUT)
    assert "scored" not in cell_signature(base, "rcrop", HELD_OUT)


def test_default_grid_crops_with_random_init_boxes_and_harvest_keeps_a_warm_up(tmp_path):
    grid = CompareConfig(runs=str(tmp_path))
    assert grid.arm_box_schedule("ccrop") == (0, 1.0)
    assert grid.arm_box_schedule("ccrop-paper") == (0, 1.0)
    # harvest has no maps before training: the paper's 20%, fresh boxes, its old cells
    assert grid.arm_box_schedule("ccrop-harvest") == (None, 0.0)
    assert cell_folder(grid, "simclr", "ccrop-harvest", 1).name == "simclr-ccrop-harvest-seed1"
    assert grid.arm_box_schedule("ccrop-gt") == (0, 0.0)  # the oracle: the grid's schedule
    assert cell_folder(grid, "simclr", "ccrop", 1).name.endswith("-w0-m1-seed1")
    signature = cell_signature(grid, "ccrop", HELD_OUT)
    assert (signature["box_warmup_epochs"], signature["box_momentum"]) == (0, 1.0)
    # the cells of a grid run before the switch with --box-warmup-epochs 0 --box-momentum 1
    # are the same cells (folder and signature)
    explicit = CompareConfig(runs=str(tmp_path), box_warmup_epochs=0, box_momentum=1)
    assert cell_signature(explicit, "ccrop", HELD_OUT) == signature
    assert cell_folder(explicit, "simclr", "ccrop", 1) == cell_folder(grid, "simclr", "ccrop", 1)
    trained = cell_train_config(grid, "simclr", "ccrop-harvest", 1)
    assert trained.box_warmup_epochs is None and not trained.problems()
    harvest_arm = CompareConfig(runs=str(tmp_path), localizer="harvest")  # as the ccrop arm
    assert harvest_arm.arm_box_schedule("ccrop") == (None, 0.0)
    assert not cell_train_config(harvest_arm, "simclr", "ccrop", 1).problems()


def test_alpha_and_warm_up_variants_get_folders_of_their_own(tmp_path):
    runs = str(tmp_path)
    default = CompareConfig(runs=runs, box_warmup_epochs=None)  # the paper's schedule
    variant = CompareConfig(runs=runs, alpha=0.1, box_warmup_epochs=2)
    assert cell_folder(variant, "simclr", "ccrop", 3).name == (
        "simclr-ccrop-peak-background-auto-keep-0.5-reduction-contrast-a0.1-w2-seed3")
    assert cell_folder(default, "simclr", "ccrop", 3).name == (
        "simclr-ccrop-peak-background-auto-keep-0.5-reduction-contrast-seed3")
    momentum = CompareConfig(runs=runs, box_warmup_epochs=0, box_momentum=0.9)
    assert cell_folder(momentum, "simclr", "ccrop", 3).name == (
        "simclr-ccrop-peak-background-auto-keep-0.5-reduction-contrast-w0-m0.9-seed3")
    # the oracle has no box passes: the momentum leaves its folder (and cells) alone
    assert cell_folder(momentum, "simclr", "ccrop-gt", 3).name == "simclr-ccrop-gt-w0-seed3"
    assert "box_momentum" in cell_signature(momentum, "ccrop", HELD_OUT)
    assert "box_momentum" not in cell_signature(momentum, "ccrop-gt", HELD_OUT)
    plain = CompareConfig(runs=runs, localizer="peak", localizer_kwargs={},
                          box_warmup_epochs=None)
    assert cell_folder(plain, "simclr", "ccrop", 3).name == "simclr-ccrop-peak-seed3"
    assert cell_folder(default, "simclr", "ccrop-gt", 3).name == "simclr-ccrop-gt-seed3"
    assert CompareConfig(localizer="component").resolved_localizer() == ("component", {})
    # rcrop reads neither setting: one folder, and its finished cell serves every variant
    rcrop = cell_folder(variant, "simclr", "rcrop", 3)
    assert rcrop == cell_folder(default, "simclr", "rcrop", 3)
    rcrop.mkdir(parents=True)
    (rcrop / "cell.json").write_text(json.dumps(
        {"knn": 1.0, "signature": cell_signature(default, "rcrop", HELD_OUT)}))
    assert finished_cell(rcrop, cell_signature(variant, "rcrop", HELD_OUT), "rcrop")["knn"] == 1
    # ...but a ccrop cell of another alpha is stale, and so is any cell of another lr
    assert finished_cell(rcrop, cell_signature(variant, "ccrop", HELD_OUT), "ccrop") is None
    assert finished_cell(rcrop, cell_signature(CompareConfig(lr=0.1), "rcrop", HELD_OUT),
                         "rcrop") is None
