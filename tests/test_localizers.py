"""Tests of :mod:`timm_ccrop.localize.localizers`: registry, component rules, finer maps,
what a localizer resolves on a model (settings, map size, the too-coarse warning), config
wiring and the configs of older versions."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import timm
import torch
import yaml
from timm.models.mlp_mixer import MlpMixer

from timm_ccrop.config import TrainConfig, load_config_file
from timm_ccrop.localize import (
    FeatureHook,
    create_localizer,
    default_localizer,
    heatmap_boxes,
    reduce_channels,
)
from timm_ccrop.localize.components import (
    component_mask,
    label_components,
    mask_boxes,
    threshold_maps,
)
from timm_ccrop.localize.localizers import stride_removed
from timm_ccrop.localize.sources import MapSource
from timm_ccrop.models.backbones import create_backbone
from timm_ccrop.train.resume import setting_changes
from timm_ccrop.train.setup import build_method_for


def test_labels_split_4_connected_components_and_boxes_are_tight() -> None:
    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[0, 0:2, 0:2] = True  # 4 cells
    mask[0, 3:6, 3] = True  # a vertical bar of 3 cells, apart from the rest
    mask[0, 2, 2] = True  # diagonal neighbour of (1, 1): a component of its own
    labels = label_components(mask)
    assert len(labels[mask].unique()) == 3
    assert (labels[~mask] == 0).all()
    maps = torch.zeros(1, 6, 6)
    maps[0, 4, 3] = 1.0  # the peak sits in the vertical bar
    peak = component_mask(maps, mask, "peak")
    largest = component_mask(maps, mask, "largest")
    boxes, empty = mask_boxes(torch.cat([peak, largest]))
    expected = torch.tensor([[3 / 6, 3 / 6, 4 / 6, 1.0], [0.0, 0.0, 2 / 6, 2 / 6]])
    torch.testing.assert_close(boxes, expected)
    assert not empty.any()
    boxes, empty = mask_boxes(torch.zeros(1, 4, 4, dtype=torch.bool))
    assert empty.all() and boxes.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_threshold_rules() -> None:
    maps = torch.tensor([[[0.0, 0.1], [0.3, 0.6]]])
    assert threshold_maps(maps, "mean", 1.0).tolist() == [[[False, False], [True, True]]]
    assert threshold_maps(maps, "max", 0.5).tolist() == [[[False, False], [False, True]]]
    # the cells holding 60% of the mass: 0.6 alone holds 0.6 of 1.0
    assert threshold_maps(maps, "mass", 0.6).tolist() == [[[False, False], [False, True]]]
    assert threshold_maps(maps, "mass", 0.7).tolist() == [[[False, False], [True, True]]]
    with pytest.raises(ValueError, match="threshold rule must be one of mean, max, mass"):
        threshold_maps(maps, "median", 1.0)


def test_one_stray_cell_stretches_the_paper_box_but_not_a_component() -> None:
    maps = torch.zeros(1, 8, 8)
    maps[0, 2:4, 2:4] = 1.0
    maps[0, 7, 7] = 0.5  # a stray cell far away
    paper = heatmap_boxes(maps, 0.1, (8, 8))
    assert paper.tolist() == [[0.25, 0.25, 1.0, 1.0]]
    rule = create_localizer("component", rule="max", level=0.2).rule
    boxes, _ = rule.boxes(maps, (8, 8), network=None)
    assert boxes.tolist() == [[0.25, 0.25, 0.5, 0.5]]


def test_paper_localizer_is_the_official_rule() -> None:
    model = create_backbone("resnet_mini_cifar", seed=0).eval()
    images = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        boxes, _ = create_localizer("paper").boxes(model, images, (32, 32))
        with FeatureHook(model, -1) as hook:
            model(images)
            expected = heatmap_boxes(reduce_channels(hook.feature_map, "sum"), 0.1, (32, 32))
    assert torch.equal(boxes, expected)


def test_registry_names_and_options_fail_early() -> None:
    with pytest.raises(ValueError, match="unknown localizer 'best'; choose from paper"):
        create_localizer("best")
    with pytest.raises(ValueError, match="'paper' does not take threshold"):
        create_localizer("paper", threshold=0.3)
    with pytest.raises(ValueError, match="pick must be 'peak' or 'largest'"):
        create_localizer("component", pick="biggest")
    assert create_localizer("component", rule="max", level=0.2).describe() == \
        "component(rule=max, level=0.2)"


def test_stride_removal_doubles_the_map_and_restores_the_model() -> None:
    model = create_backbone("resnet_mini_cifar", seed=0).eval()
    before = {name: getattr(m, "stride", None) for name, m in model.named_modules()}
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), FeatureHook(model, -1) as hook:
        model(images)
        coarse = hook.feature_map.shape[-2:]
        with stride_removed(model, -1):
            model(images)
            fine = hook.feature_map.shape[-2:]
    assert tuple(coarse) == (4, 4) and tuple(fine) == (8, 8)
    assert before == {name: getattr(m, "stride", None) for name, m in model.named_modules()}


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenetv3_small_100", "densenet121"])
def test_stride_removal_finds_a_stride_that_sits_before_the_listed_stage(name: str) -> None:
    # EfficientNet's last listed stage (blocks.6) has no stride of its own: blocks.5 has
    # it; DenseNet pools in a transition between its listed blocks. The map used to stay
    # as coarse as without stride removal, silently.
    model = create_backbone(name, seed=0).eval()
    with torch.no_grad():
        coarse, _ = MapSource(reduction="l2").maps(model, torch.randn(1, 3, 96, 96))
        fine, _ = MapSource(reduction="l2", dilate=True).maps(model, torch.randn(1, 3, 96, 96))
    assert tuple(coarse.shape[1:]) == (3, 3) and tuple(fine.shape[1:]) == (6, 6)


def test_peak_removes_the_stride_where_the_family_defaults_say_so() -> None:
    # measured on EfficientNet at 96 px: its plain 3x3 map boxes better than the 6x6 one
    # (docs/realistic.md); every other family keeps the finer map
    efficientnet = create_backbone("efficientnet_b0", seed=0).eval()
    resnet = create_backbone("resnet18", seed=0).eval()
    default = create_localizer("peak")
    assert default.map_size(efficientnet, (96, 96)) == (3, 3)
    assert default.map_size(resnet, (96, 96)) == (6, 6)
    assert create_localizer("peak", dilate=True).map_size(efficientnet, (96, 96)) == (6, 6)
    resolved = default.resolve(efficientnet)
    assert not resolved.finer and "dilate" in resolved.family_defaults
    with pytest.raises(ValueError, match="dilate must be true, false or auto"):
        create_localizer("peak", dilate="yes")


def test_a_stage_without_a_stride_to_remove_is_said_and_the_plain_map_used() -> None:
    model = create_backbone("resnet18", seed=0).eval()
    for _, layer in model.layer4.named_modules():  # a ResNet whose last stage lost its stride
        if isinstance(layer, torch.nn.Conv2d) and layer.stride == (2, 2):
            layer.stride = (1, 1)
    source = MapSource(reduction="l2", dilate=True)
    with torch.no_grad(), pytest.warns(UserWarning, match="no stride-2 layer between"):
        maps, _ = source.maps(model, torch.randn(1, 3, 64, 64))
    assert not source.dilate and tuple(maps.shape) == (1, 4, 4)
    # a ViT has no stride anywhere: nothing to say, the plain token map
    vit = create_backbone("test_vit", seed=0).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokens, _ = MapSource(reduction="l2", dilate=True).maps(vit, torch.randn(1, 3, 160, 160))
    assert tokens.shape[0] == 1


@pytest.mark.parametrize("name", ["resnet_mini_cifar", "test_vit", "test_convnext"])
@pytest.mark.parametrize("options", [{}, {"dilate": True}, {"fuse": [-2, -1]},
                                     {"rule": "mass", "level": 0.6, "pick": "largest"}])
def test_component_localizer_on_any_family(name: str, options: dict) -> None:
    kwargs = {"dynamic_img_size": True} if name == "test_vit" else {}
    model = create_backbone(name, seed=0, **kwargs).eval()
    if name == "test_vit" and options.get("dilate"):
        options = {}  # a ViT has no stride to remove: the plain map
    localizer = create_localizer("component", **options)
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(model, torch.randn(4, 3, 64, 64), (64, 64))
    assert boxes.shape == (4, 4) and degenerate.shape == (4,)
    assert ((boxes[:, 2:] > boxes[:, :2]) & (boxes >= 0).all(1, keepdim=True)).all()


def test_degenerate_maps_give_the_whole_image() -> None:
    model = timm.create_model("test_resnet", num_classes=0).eval()
    for module in model.modules():  # a constant network: every map is flat
        for parameter in module.parameters(recurse=False):
            parameter.data.zero_()
    with torch.no_grad():
        boxes, degenerate = create_localizer("component").boxes(
            model, torch.randn(3, 3, 64, 64), (64, 64))
    assert degenerate.all() and (boxes == torch.tensor([0.0, 0.0, 1.0, 1.0])).all()


def test_config_builds_the_localizer_and_rejects_bad_options() -> None:
    config = TrainConfig(localizer="component",
                         localizer_kwargs={"pick": "largest", "stage": -2})
    localizer = config.build_localizer()
    assert localizer.describe() == "component(pick=largest, stage=-2)"
    with pytest.raises(ValueError, match="'paper' does not take threshold"):
        TrainConfig(localizer="paper", localizer_kwargs={"threshold": 0.3}).validate()
    TrainConfig(crop="rcrop", localizer="paper",
                localizer_kwargs={"threshold": 0.3}).validate()  # no box pass
    for key in ("threshold", "reduction", "stage"):  # localizer options only
        with pytest.raises(TypeError):
            TrainConfig(**{key: None})


def test_keep_widens_the_box_over_comparable_peaks() -> None:
    from timm_ccrop.localize.components import component_mask, mask_boxes, threshold_maps

    maps = torch.zeros(2, 6, 6)
    maps[:, 1, 1] = 1.0
    maps[0, 4, 4] = 0.8  # a second peak nearly as hot: the box spans both
    maps[1, 4, 4] = 0.3  # a weak one: only the peak's component
    mask = threshold_maps(maps, "mean", 1.0)
    tight = mask_boxes(component_mask(maps, mask, "peak"))[0]
    wide = mask_boxes(component_mask(maps, mask, "peak", keep=0.5))[0]
    assert torch.allclose(tight, torch.tensor([[1 / 6, 1 / 6, 2 / 6, 2 / 6]] * 2))
    assert torch.allclose(wide[0], torch.tensor([1 / 6, 1 / 6, 5 / 6, 5 / 6]))
    assert torch.allclose(wide[1], tight[1])
    assert create_localizer("peak", keep=0.5).rule.keep == 0.5
    with pytest.raises(ValueError, match="keep must be in"):
        create_localizer("peak", keep=0.0)
    with pytest.raises(ValueError, match="keep must be in"):
        create_localizer("component", pick="largest", keep=0.5)


# ------------------------------------------------------------ what a localizer resolves


def test_resolve_names_every_setting_on_the_model() -> None:
    model = timm.create_model("test_resnet").eval()
    union = create_localizer("union").resolve(model)
    assert (union.stage, union.reduction, union.threshold) == (-1, "sum", 0.4)
    assert set(union.family_defaults) == {"reduction", "threshold"}
    assert union.module == model.feature_info[-1]["module"]
    assert union.card_params() == {"localizer": "union", "stage": -1,
                                   "reduction": "sum (family default)",
                                   "threshold": "0.4 (family default)"}
    paper = create_localizer("paper").resolve(model)
    assert (paper.reduction, paper.threshold, paper.family_defaults) == ("sum", 0.1, ())
    peak = create_localizer("peak", background="median", stage=-2).resolve(model)
    assert peak.threshold is None and peak.finer and peak.background == "median"
    assert peak.module == model.feature_info[-2]["module"]
    assert "threshold" not in peak.card_params() and "stage -2" in peak.text()
    assert create_localizer("ddt").resolve(model).reduction is None  # raw features
    fused = create_localizer("component", fuse=[-1, -2]).resolve(model)
    assert fused.fuse == (-1, -2) and fused.module == model.feature_info[-2]["module"]


def test_map_size_is_the_map_the_rule_reads() -> None:
    model = create_backbone("resnet_mini_cifar", seed=0)
    assert create_localizer("union").map_size(model, (32, 32)) == (4, 4)
    assert create_localizer("peak").map_size(model, (32, 32)) == (8, 8)  # stride removed
    resnet = timm.create_model("test_resnet").eval()  # stages -1 and -2: 2x2 and 4x4
    assert create_localizer("component", fuse=[-1, -2]).map_size(resnet, (64, 64)) == (4, 4)
    harvest = create_localizer("harvest", resolution=12)
    assert harvest.map_size(model, (32, 32)) == (4, 4)  # no bank yet: the plain map
    harvest.make_bank(2)
    assert harvest.map_size(model, (32, 32)) == (12, 12)  # the bank's running maps


def test_too_coarse_asks_the_localizer_not_the_stage() -> None:
    model = timm.create_model("test_resnet").eval()
    union = create_localizer("union")
    with pytest.warns(UserWarning, match="too coarse") as record:
        assert union.too_coarse(model, (32, 32)) is True
    message = str(record[0].message)
    assert "union gives 1x1 maps" in message and "{stage: -2}" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert union.too_coarse(model, (128, 128)) is False
        assert union.too_coarse(model, (96, 96)) is False  # 3x3 is enough
        assert create_localizer("union", stage=-3).too_coarse(model, (32, 32)) is False
        assert create_localizer("peak").too_coarse(model, (64, 64)) is False  # 4x4
    with pytest.warns(UserWarning, match="2x4"):
        assert union.too_coarse(model, (64, 128)) is True


@pytest.mark.parametrize("size", [72, 80, 95])
def test_too_coarse_uses_the_real_map_size(size) -> None:
    # ConvNeXt's patchify stem floors: 2x2 at 72-95 px, where ceil(size / 32) says 3.
    torch.manual_seed(0)
    model = timm.create_model("test_convnext").train()
    union = create_localizer("union")
    assert union.map_size(model, (size, size)) == (2, 2)
    with pytest.warns(UserWarning, match="2x2"):
        assert union.too_coarse(model, (size, size)) is True
    assert model.training  # the probe forward ran in eval mode and restored the mode
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert union.too_coarse(model, (96, 96)) is False


def test_too_coarse_falls_back_for_fixed_size_models() -> None:
    # A Mixer cannot run at another size: the stride estimate decides (4x4 here).
    model = MlpMixer(img_size=64, patch_size=16, num_blocks=2, embed_dim=32).eval()
    union = create_localizer("union")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert union.too_coarse(model, (48, 48)) is False
    with pytest.warns(UserWarning, match="2x2"):
        assert union.too_coarse(model, (32, 32)) is True


def _build_method(localizer_name: str, **kwargs) -> list[str]:
    """The messages of the too-coarse warning when the trainer builds resnet18 for 64 px
    views with this localizer."""
    config = TrainConfig(model="resnet18", localizer=localizer_name, **kwargs)
    data = SimpleNamespace(localizer=config.build_localizer(), image_size=64,
                           dataset=range(512))
    accelerator = SimpleNamespace(device=torch.device("cpu"), num_processes=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_method_for(config, accelerator, data)
    return [str(item.message) for item in caught if "too coarse" in str(item.message)]


def test_the_trainers_too_coarse_warning_follows_the_localizer() -> None:
    """resnet18 at 64 px has a 2x2 last map, but the default localizer removes its stride
    (4x4, boxes of about 30% of the image): no warning. A localizer that keeps the 2x2
    map is warned about, naming itself."""
    assert _build_method("peak") == []
    warned = _build_method("peak", localizer_kwargs={"dilate": False})
    assert len(warned) == 1 and "peak(dilate=False) gives 2x2 maps on ResNet" in warned[0]


# ------------------------------------------------------------ configs of older versions


def test_an_old_config_with_threshold_stage_reduction_loads(tmp_path) -> None:
    """Before 2026-12 TrainConfig had threshold/reduction/stage beside the localizer; an
    old config.yaml or checkpoint still loads: at their defaults they are dropped, else
    they become localizer_kwargs as the old config built its localizer."""
    old = {k: v for k, v in TrainConfig().to_dict().items()}
    old.update(threshold=None, reduction=None, stage=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults: silently dropped; an unset
        # localizer_kwargs is read as what it meant then (the median map), not today's
        assert TrainConfig.from_dict(old) == TrainConfig(
            localizer_kwargs={"background": "median"})
    old.update(stage=-2, reduction="l2")
    with pytest.warns(FutureWarning, match="localizer_kwargs"):
        upgraded = TrainConfig.from_dict(old)
    assert upgraded.localizer_kwargs == {"background": "median", "stage": -2,
                                         "reduction": "l2"}
    assert upgraded.build_localizer().describe() == \
        "peak(background=median, reduction=l2, stage=-2)"
    union = {**old, "localizer": "union", "localizer_kwargs": {"stage": -3},
             "threshold": 0.3}
    with pytest.warns(FutureWarning):
        assert TrainConfig.from_dict(union).localizer_kwargs == {
            "stage": -3, "reduction": "l2", "threshold": 0.3}  # given kwargs win
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    with pytest.warns(FutureWarning):
        values = load_config_file(path)
    assert "stage" not in values and values["localizer_kwargs"]["stage"] == -2


def test_an_old_checkpoint_resumes_with_its_localizer_as_kwargs() -> None:
    """A resume compares the checkpoint's config (old keys read as localizer_kwargs) with
    the run's: the same localizer written the new way is the same run."""
    saved = {**TrainConfig().to_dict(), "threshold": None, "reduction": None, "stage": -2}
    same = TrainConfig(localizer_kwargs={"background": "median", "stage": -2})
    with pytest.warns(FutureWarning):
        assert setting_changes(saved, same) == []
    with pytest.warns(FutureWarning):
        changes = setting_changes(saved, TrainConfig())
    assert [key for key, _, _ in changes] == ["localizer_kwargs"]


def test_the_default_background_is_the_model_familys_choice() -> None:
    # 'auto': the median map, except where the family study found it empties the map
    efficientnet = timm.create_model("test_efficientnet", num_classes=0)
    resnet = timm.create_model("test_resnet", num_classes=0)
    localizer = default_localizer()
    assert localizer.background_option == "auto" and localizer.needs_fit  # until it is checked
    localizer.check(efficientnet)
    assert localizer.background is None and not localizer.needs_fit
    assert localizer.resolve(efficientnet).background is None
    localizer.check(resnet)  # the same localizer on another family settles again
    assert localizer.background == "median" and localizer.needs_fit
    forced = create_localizer("peak", background="median")
    forced.check(efficientnet)  # an explicit choice is kept
    assert forced.background == "median"
    with pytest.raises(ValueError, match="background must be one of median, auto"):
        create_localizer("peak", background="mean")


def test_a_run_records_its_localizer_options_so_a_new_default_cannot_change_it() -> None:
    pinned = TrainConfig().with_pinned_defaults()
    assert pinned.localizer_kwargs == TrainConfig().resolved_localizer_kwargs()
    assert TrainConfig(crop="rcrop").with_pinned_defaults().localizer_kwargs is None
    given = TrainConfig(localizer_kwargs={"keep": 0.5})
    assert given.with_pinned_defaults().localizer_kwargs == {"keep": 0.5}
    # a run saved before the legacy keys left (unset kwargs then meant the median map)
    # resumed under today's default: refused, naming the options, never silently changed
    saved = {**TrainConfig().to_dict(), "threshold": None, "reduction": None, "stage": -1}
    changes = setting_changes(saved, pinned)
    assert [key for key, _, _ in changes] == ["localizer_kwargs"]
    assert changes[0][1] == {"background": "median"}


def test_a_run_of_the_papers_schedule_resumes_only_with_that_schedule() -> None:
    """Saved before random-init boxes became the default (2026-12-08): ``null`` still means
    20% of training, and a config without ``box_momentum`` meant fresh boxes."""
    saved = {**TrainConfig(epochs=10, box_warmup_epochs=None).to_dict()}
    del saved["box_momentum"]
    same = TrainConfig(epochs=10, box_warmup_epochs=None)
    assert setting_changes(saved, same) == []
    changes = setting_changes(saved, TrainConfig(epochs=10))  # today's defaults: refused
    assert [(key, old, new) for key, old, new in changes] == [("box_warmup_epochs", 2, 0)]
    # a run of today's default records its momentum: another one is another run
    today = TrainConfig(epochs=10).with_pinned_defaults().to_dict()
    assert setting_changes(today, TrainConfig(epochs=10)) == []
    assert [key for key, _, _ in setting_changes(today, TrainConfig(epochs=10,
                                                                    box_momentum=0.5))] == [
        "box_momentum"]
