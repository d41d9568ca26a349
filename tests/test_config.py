"""Training config: the paper's box schedule, validation, recipes."""

from __future__ import annotations

import re

import pytest

from timm_ccrop.cli import build_parser
from timm_ccrop.cli.options import config_values
from timm_ccrop.config import (
    GROUPS,
    TrainConfig,
    config_options,
    list_recipes,
    load_config_file,
    load_recipe,
)
from timm_ccrop.localize import DEFAULT_LOCALIZER_OPTIONS
from timm_ccrop.studies import CompareConfig


def test_paper_schedule_500_epochs() -> None:
    config = TrainConfig(epochs=500, box_warmup_epochs=100, loc_interval=100)
    updates = [e for e in range(1, 501) if config.box_update_due(e)]
    assert updates == [100, 200, 300, 400]  # "4 updates in total, except the last epoch"
    assert not config.uses_boxes_from(100) and config.uses_boxes_from(101)


def test_the_papers_schedule_is_every_fifth_of_training() -> None:
    config = TrainConfig(epochs=10, box_warmup_epochs=None)
    assert config.resolved_schedule() == (2, 2)
    assert [e for e in range(1, 11) if config.box_update_due(e)] == [2, 4, 6, 8]
    assert config.resolved_box_momentum() == 0.0  # fresh boxes at every pass
    short = TrainConfig(epochs=3, box_warmup_epochs=None)
    assert [e for e in range(1, 4) if short.box_update_due(e)] == [1, 2]


def test_default_boxes_come_from_the_random_init_network_and_are_kept() -> None:
    config = TrainConfig(epochs=10)
    assert config.resolved_schedule() == (0, 2)
    assert [e for e in range(0, 11) if config.box_update_due(e)] == [0, 2, 4, 6, 8]
    assert config.uses_boxes_from(1)
    assert config.resolved_box_momentum() == 1.0
    # a given momentum wins; without model boxes (or after a warm-up) the default is 0
    assert TrainConfig(box_momentum=0.5).resolved_box_momentum() == 0.5
    assert TrainConfig(box_warmup_epochs=3).resolved_box_momentum() == 0.0
    assert TrainConfig(box_source="ground-truth").resolved_box_momentum() == 0.0
    assert TrainConfig(crop="rcrop").resolved_box_momentum() == 0.0


def test_a_run_records_the_defaults_that_depend_on_other_settings() -> None:
    pinned = TrainConfig().with_pinned_defaults()
    assert pinned.box_momentum == 1.0 and pinned.localizer_kwargs is not None
    assert TrainConfig(box_warmup_epochs=None).with_pinned_defaults().box_momentum == 0.0
    # a config saved before the key existed (no box_momentum) meant the paper's update
    assert TrainConfig.from_dict({"box_warmup_epochs": None}).resolved_box_momentum() == 0.0


def test_a_short_warm_up_updates_the_boxes_where_it_ends() -> None:
    # the interval counts from the warm-up's end: a warm-up of 2 with an interval of 4
    # must not crop epochs 3-4 with the initial whole-image boxes
    config = TrainConfig(epochs=14, box_warmup_epochs=2, loc_interval=4)
    assert [e for e in range(1, 15) if config.box_update_due(e)] == [2, 6, 10]
    assert config.uses_boxes_from(3) and not config.uses_boxes_from(2)
    assert [e for e in range(1, 15) if config.on_box_schedule(e)] == [2, 6, 10, 14]


def test_no_warm_up_means_a_box_pass_before_the_first_epoch() -> None:
    config = TrainConfig(epochs=10, box_warmup_epochs=0, loc_interval=5)
    assert [e for e in range(0, 11) if config.box_update_due(e)] == [0, 5]
    assert config.uses_boxes_from(1)
    # a warm-up (here the paper's 20%): no such pass
    assert not TrainConfig(epochs=10, box_warmup_epochs=None).box_update_due(0)


@pytest.mark.parametrize("crop, box_source", [("rcrop", "model"), ("simccrop", "model"),
                                              ("ccrop", "ground-truth")])
def test_no_box_passes_without_model_localization(crop: str, box_source: str) -> None:
    config = TrainConfig(epochs=10, crop=crop, box_source=box_source)
    assert not any(config.box_update_due(e) for e in range(1, 11))
    assert config.uses_boxes_from(5) == (crop == "ccrop")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lr": -0.1}, "lr must be > 0"),
        ({"alpha": 0.0}, "alpha must be > 0"),
        ({"localizer": "union", "localizer_kwargs": {"threshold": 1.5}},
         "threshold must be in"),
        ({"crop": "random"}, "crop must be one of"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"loc_interval": 0}, "loc_interval"),
        ({"box_momentum": 1.5}, "box_momentum must be in"),
        ({"localizer": "harvest", "box_warmup_epochs": 0}, "add --box-warmup-epochs null"),
    ],
)
def test_invalid_settings_are_rejected_up_front(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes).validate()


def test_unknown_keys_name_themselves() -> None:
    with pytest.raises(ValueError, match="unknown config keys \\['learning_rate'\\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_every_recipe_loads_and_validates() -> None:
    names = list_recipes()
    assert names, "zoo/recipes must ship recipes"
    for name in names:
        config = TrainConfig.from_dict(load_recipe(name))
        config.validate()
    with pytest.raises(FileNotFoundError, match="available"):
        load_recipe("no-such-recipe")


def test_every_recipe_names_a_real_model_and_method_settings() -> None:
    import timm

    import timm_ccrop.models.cifar  # noqa: F401
    from timm_ccrop.methods import build_method

    backbone = timm.create_model("test_resnet", num_classes=0)
    for name in list_recipes():
        recipe = load_recipe(name)
        assert timm.is_model(recipe["model"]), name
        build_method(recipe["method"], backbone, **recipe.get("method_kwargs", {}))


def test_every_field_declares_its_option() -> None:
    """Help, group, type: the one source the command line is generated from."""
    options = config_options()
    assert [o.name for o in options] == list(TrainConfig.__dataclass_fields__)
    assert {o.group for o in options} == set(GROUPS)
    for option in options:
        assert option.help and option.kind in (int, float, str, bool, dict), option.name
        assert option.problem(getattr(TrainConfig(), option.name)) is None, option.name
    by_name = {o.name: o for o in options}
    assert by_name["crop"].choices == ("rcrop", "ccrop", "simccrop")
    assert by_name["alpha"].optional and by_name["alpha"].bounds.describe() == "> 0"
    assert by_name["momentum"].bounds.describe() == "in [0, 1)"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lr": "abc"}, "lr must be a number, got str 'abc'"),
        ({"epochs": 1.5}, "epochs must be an integer, got float 1.5"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"progress": "no"}, "progress must be true or false"),
        ({"method_kwargs": [1]}, "method_kwargs must be a mapping"),
        ({"lr": float("inf")}, "lr must be > 0, got inf"),
        ({"localizer_kwargs": {"reduction": "max"}}, "reduction must be one of"),
        ({"views": "huge"}, "views must be one of"),
        ({"data": None}, "data must be set"),
    ],
)
def test_types_are_checked_by_the_same_validation(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        TrainConfig(**changes).validate()
    assert "\n" not in str(caught.value)  # one line, whatever the number of problems


def test_yaml_numbers_left_as_strings_are_read_as_floats() -> None:
    config = TrainConfig.from_dict({"weight_decay": "5e-4", "lr": 1})  # YAML 1.1: '5e-4' is str
    assert config.weight_decay == 5e-4 and config.lr == 1
    config.validate()  # an int is a fine float


def test_config_file_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_config_file(bad)
    bad.write_text("epochs: [1\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config_file(bad)
    bad.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="bad.yaml: unknown config keys \\['epoch'\\]"):
        load_config_file(bad)
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "missing.yaml")


def test_the_default_localizer_subtracts_the_background_and_others_take_no_options() -> None:
    assert TrainConfig().resolved_localizer_kwargs() == {"reduction": "contrast", "keep": 0.5,
                                                         "background": "auto"}
    assert TrainConfig().build_localizer().describe() == \
        "peak(reduction=contrast, keep=0.5, background=auto)"
    assert TrainConfig(localizer="paper").build_localizer().describe() == "paper"
    assert TrainConfig(localizer="component").resolved_localizer_kwargs() == {}
    # given options replace the default's (documented): here no background
    given = TrainConfig(localizer_kwargs={"level": 1.5})
    assert given.build_localizer().background is None
    # an old run's config keeps what it ran with
    old = TrainConfig.from_dict({**TrainConfig().to_dict(), "localizer_kwargs": {}})
    assert old.build_localizer().describe() == "peak"


def test_list_fields_are_typed_per_item_on_the_command_line_and_in_python() -> None:
    args = build_parser().parse_args(["compare", "--seeds", "3", "1", "--modes", "rcrop",
                                      "ccrop"])
    config = CompareConfig(**config_values(args, CompareConfig))
    assert config.seeds == (3, 1) and config.modes == ("rcrop", "ccrop")
    assert CompareConfig(seeds=[0, 1]).seeds == (0, 1)  # a YAML list is kept as a tuple
    problems = "; ".join(CompareConfig(seeds=(0, 1.5), modes=("rcrop", "xcrop")).problems())
    assert "seeds must hold int values, got 1.5" in problems
    assert "modes: 'xcrop' is not one of" in problems
    assert "seeds must name at least one value" in "; ".join(CompareConfig(seeds=()).problems())
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--seeds", "one"])


def test_the_old_name_of_the_box_warm_up_is_read_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="warmup_epochs are read as box_warmup_epochs"):
        config = TrainConfig.from_dict({"warmup_epochs": 3, "epochs": 10})
    assert config.box_warmup_epochs == 3 and config.resolved_schedule()[0] == 3
    with pytest.raises(ValueError, match="same setting"):
        TrainConfig.from_dict({"warmup_epochs": 3, "box_warmup_epochs": 4})


def test_options_given_to_the_default_localizer_name_the_defaults_they_leave_out() -> None:
    assert TrainConfig(localizer_kwargs={"stage": -2}).dropped_localizer_defaults() == dict(
        DEFAULT_LOCALIZER_OPTIONS)
    kept = TrainConfig(localizer_kwargs={**DEFAULT_LOCALIZER_OPTIONS, "stage": -2})
    assert kept.dropped_localizer_defaults() == {}
    assert TrainConfig().dropped_localizer_defaults() == {}  # nothing given: the defaults
    assert TrainConfig(localizer="union", localizer_kwargs={}).dropped_localizer_defaults() == {}
