"""Training config: the paper's box schedule, validation, recipes."""

from __future__ import annotations

import pytest

from timm_ccrop.config import TrainConfig, list_recipes, load_recipe


def test_paper_schedule_500_epochs() -> None:
    config = TrainConfig(epochs=500, warmup_epochs=100, loc_interval=100)
    updates = [e for e in range(1, 501) if config.box_update_due(e)]
    assert updates == [100, 200, 300, 400]  # "4 updates in total, except the last epoch"
    assert not config.uses_boxes_from(100) and config.uses_boxes_from(101)


def test_default_schedule_is_every_fifth_of_training() -> None:
    config = TrainConfig(epochs=10)
    assert config.resolved_schedule() == (2, 2)
    assert [e for e in range(1, 11) if config.box_update_due(e)] == [2, 4, 6, 8]
    short = TrainConfig(epochs=3)
    assert [e for e in range(1, 4) if short.box_update_due(e)] == [1, 2]


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
        ({"threshold": 1.5}, "threshold must be in"),
        ({"crop": "random"}, "crop must be one of"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"loc_interval": 0}, "loc_interval"),
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

    import timm_ccrop.models  # noqa: F401
    from timm_ccrop.methods import build_method

    backbone = timm.create_model("test_resnet", num_classes=0)
    for name in list_recipes():
        recipe = load_recipe(name)
        assert timm.is_model(recipe["model"]), name
        build_method(recipe["method"], backbone, **recipe.get("method_kwargs", {}))
