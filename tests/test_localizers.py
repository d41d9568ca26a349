"""Pluggable localizers: registry, component rules, finer maps, config and CLI wiring."""

from __future__ import annotations

import pytest
import timm
import torch

from timm_ccrop.config import TrainConfig
from timm_ccrop.data import SyntheticObjects
from timm_ccrop.localize import (
    FeatureHook,
    create_localizer,
    heatmap_boxes,
    localize_dataset,
    reduce_channels,
)
from timm_ccrop.localize.components import (
    component_mask,
    label_components,
    mask_boxes,
    threshold_maps,
)
from timm_ccrop.localize.localizers import stride_removed
from timm_ccrop.models.backbones import create_backbone


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
    config = TrainConfig(localizer="component", localizer_kwargs={"pick": "largest"}, stage=-2)
    localizer = config.build_localizer()
    assert localizer.describe() == "component(pick=largest, stage=-2)"
    with pytest.raises(ValueError, match="'paper' does not take threshold"):
        TrainConfig(localizer="paper", threshold=0.3).validate()
    TrainConfig(crop="rcrop", localizer="paper", threshold=0.3).validate()  # no box pass


def test_localize_dataset_with_a_localizer_reports_it() -> None:
    dataset = SyntheticObjects(num_samples=12, image_size=32)
    result = localize_dataset(create_backbone("resnet_mini_cifar", seed=0), dataset, 32,
                              batch_size=5, progress=False,
                              localizer=create_localizer("component", dilate=True))
    assert result.boxes.shape == (12, 4) and result.localizer == "component(dilate=True)"
    assert "box_mean_iou" in result.stats
    with pytest.raises(ValueError, match="inside the localizer"):
        localize_dataset(create_backbone("resnet_mini_cifar"), dataset, 32, threshold=0.2,
                         progress=False, localizer=create_localizer("component"))


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
