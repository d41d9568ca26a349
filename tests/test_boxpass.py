"""Tests of :mod:`timm_ccrop.localize.boxpass`: the box pass over a dataset, with the
localizer deciding every setting (its distributed equivalence: test_localize_distributed.py)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from timm_ccrop.crop.boxes import validate_boxes
from timm_ccrop.data import FolderDataset
from timm_ccrop.data.synthetic import SyntheticObjects
from timm_ccrop.localize import (
    LocalizationResult,
    create_localizer,
    default_localizer,
    eval_transform,
    feature_heatmaps,
    heatmap_boxes,
    localization_defaults,
    localize_dataset,
)
from timm_ccrop.models.backbones import create_backbone

WHOLE = torch.tensor([0.0, 0.0, 1.0, 1.0])


@functools.cache
def model(name: str) -> nn.Module:
    """A cached eval-mode timm model (``test_resnet``, ``test_convnext``, ``test_vit``)."""
    torch.manual_seed(0)
    kwargs = {"dynamic_img_size": True} if name == "test_vit" else {}
    return timm.create_model(name, **kwargs).eval()


@pytest.fixture(scope="module")
def synthetic() -> SyntheticObjects:
    return SyntheticObjects(num_samples=20, image_size=64)


def test_localize_dataset_single_process(synthetic):
    network = model("test_resnet")
    result = localize_dataset(network, synthetic, 96, batch_size=8, progress=False,
                              localizer=create_localizer("union"))
    assert isinstance(result, LocalizationResult)
    assert result.boxes.shape == (20, 4) and result.degenerate.shape == (20,)
    assert result.degenerate.dtype == torch.bool
    validate_boxes(result.boxes)
    defaults = localization_defaults(network)
    # The result names the localizer's settings resolved on the model.
    settings = result.settings
    assert (settings.threshold, settings.reduction, settings.stage) == (
        defaults.threshold, defaults.reduction, -1)
    assert set(settings.family_defaults) == {"threshold", "reduction"}
    # No localizer given: the default one (a component rule: no threshold k).
    plain = localize_dataset(network, synthetic, 96, batch_size=8, progress=False)
    assert plain.localizer == default_localizer().describe()
    assert (plain.settings.threshold, plain.settings.stage, plain.settings.finer) == (
        None, -1, True)
    # The family's k given explicitly: the same boxes, no longer marked a family default.
    union = localize_dataset(network, synthetic, 96, batch_size=8, progress=False,
                             localizer=create_localizer("union", threshold=defaults.threshold))
    assert torch.equal(union.boxes, result.boxes)
    assert union.settings.family_defaults == ("reduction",)
    assert {
        "box_pass_seconds", "box_mean_area", "box_degenerate_share", "box_mean_iou",
        "whole_image_mean_iou",
    } <= set(result.stats)  # fmt: skip
    assert 0.0 <= result.stats["box_mean_area"] <= 1.0
    assert result.stats["box_degenerate_share"] == result.degenerate_share
    # Same as the pieces by hand, in sample order.
    transform = eval_transform(96)
    batch = torch.stack([transform(synthetic[i][0]) for i in range(20)])
    maps = feature_heatmaps(network, batch, reduction=defaults.reduction)
    expected, bad = heatmap_boxes(maps, defaults.threshold, (96, 96), return_degenerate=True)
    torch.testing.assert_close(result.boxes, expected, atol=1e-6, rtol=0)
    assert torch.equal(result.degenerate, bad)
    # The batch split does not matter.
    again = localize_dataset(network, synthetic, 96, batch_size=20, progress=False,
                             localizer=create_localizer("union"))
    torch.testing.assert_close(again.boxes, result.boxes, atol=1e-6, rtol=0)
    plain_again = localize_dataset(network, synthetic, 96, batch_size=20, progress=False)
    assert torch.equal(plain_again.boxes, plain.boxes)


def test_localize_dataset_list_of_pil_images():
    rng = np.random.default_rng(0)
    dataset = []
    for label in range(5):
        pixels = rng.integers(0, 40, size=(40, 56, 3), dtype=np.uint8)
        pixels[10:25, 20:40] = 230  # a bright object
        dataset.append((Image.fromarray(pixels), label))
    localizer = create_localizer("union", threshold=0.5, reduction="relu-sum")
    result = localize_dataset(model("test_vit"), dataset, (48, 80), localizer=localizer,
                              batch_size=2, progress=False)
    assert result.boxes.shape == (5, 4) and result.degenerate.shape == (5,)
    validate_boxes(result.boxes)
    assert (result.settings.threshold, result.settings.reduction) == (0.5, "relu-sum")
    assert result.settings.family_defaults == ()
    assert "box_mean_iou" not in result.stats and "box_mean_area" in result.stats


def test_localize_dataset_with_a_localizer_reports_it() -> None:
    dataset = SyntheticObjects(num_samples=12, image_size=32)
    result = localize_dataset(create_backbone("resnet_mini_cifar", seed=0), dataset, 32,
                              batch_size=5, progress=False,
                              localizer=create_localizer("component", dilate=True))
    assert result.boxes.shape == (12, 4) and result.localizer == "component(dilate=True)"
    assert result.settings.finer and result.settings.module == "layer4"
    assert "box_mean_iou" in result.stats


def test_localize_dataset_too_coarse_gives_whole_boxes(synthetic):
    union = create_localizer("union")
    with pytest.warns(UserWarning, match="too coarse"):
        result = localize_dataset(model("test_resnet"), synthetic, 32, progress=False,
                                  localizer=union)
    assert result.degenerate.all() and result.degenerate_share == 1.0
    assert torch.equal(result.boxes, WHOLE.expand(20, 4))
    assert result.mean_area == 1.0
    # A ConvNeXt at 80 px (2x2 map, stride arithmetic says 3x3) warns too.
    with pytest.warns(UserWarning, match="2x2"):
        result = localize_dataset(model("test_convnext"), synthetic, 80, progress=False,
                                  localizer=union)
    assert result.degenerate.all()
    assert torch.equal(result.boxes, WHOLE.expand(20, 4))
    # The default localizer removes the last stride: the same ConvNeXt gives 4x4 maps.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = localize_dataset(model("test_convnext"), synthetic, 80, progress=False)
    assert not result.degenerate.all()
    # ... and a map still below 3x3 after that warns with the localizer's own size.
    with pytest.warns(UserWarning, match=r"keep=0.5, background=auto\) gives 2x2 maps"):
        localize_dataset(model("test_resnet"), synthetic, 32, progress=False)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_localize_dataset_marks_an_unreadable_image_degenerate(synthetic, tmp_path,
                                                               num_workers):
    """The loader hands the next readable image in place of an unreadable one; its row
    must not carry that stand-in's box as valid (the flags reach us from the workers)."""
    folder = tmp_path / "images" / "only"
    folder.mkdir(parents=True)
    for i in range(6):
        synthetic[i][0].save(folder / f"{i:02d}.png")
    data = (folder / "02.png").read_bytes()
    (folder / "02.png").write_bytes(data[: len(data) // 2])  # truncated
    network = model("test_resnet")
    with warnings.catch_warnings():  # the warning is test_boxed's (workers keep theirs)
        warnings.simplefilter("ignore")
        result = localize_dataset(network, FolderDataset(tmp_path / "images"), 96,
                                  batch_size=4, num_workers=num_workers, progress=False,
                                  localizer=create_localizer("union"))
    defaults = localization_defaults(network)
    transform = eval_transform(96)
    batch = torch.stack([transform(synthetic[i][0]) for i in range(6)])
    expected, bad = heatmap_boxes(feature_heatmaps(network, batch, reduction=defaults.reduction),
                                  defaults.threshold, (96, 96), return_degenerate=True)
    assert not bad[3] and not torch.equal(expected[3], WHOLE)  # the stand-in has a real box
    assert result.degenerate[2] and torch.equal(result.boxes[2], WHOLE)
    keep = [0, 1, 3, 4, 5]
    torch.testing.assert_close(result.boxes[keep], expected[keep], atol=1e-5, rtol=0)
    assert torch.equal(result.degenerate[keep], bad[keep])


class _Unreadable:
    """A dataset whose images must never be read."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int):
        raise AssertionError("a localizer that holds its boxes must not read the data")


def test_a_localizer_that_holds_its_boxes_runs_no_pass() -> None:
    """``harvest`` with a bank goes through the same call as every localizer: its boxes
    come from the bank, images the training loader replaced get none."""
    localizer = create_localizer("harvest", resolution=4)
    bank = localizer.make_bank(3)
    bank.mean[:, 3, 3] = 1.0  # every image's running map peaks at the bottom right
    bank.weight[:2] = 1.0  # images 0 and 1 were seen; image 2 never
    localizer.substituted = torch.tensor([False, True, False])
    network = create_backbone("resnet_mini_cifar", seed=0)
    result = localize_dataset(network, _Unreadable(), 32, localizer=localizer,
                              progress=False)
    torch.testing.assert_close(result.boxes[0], torch.tensor([0.75, 0.75, 1.0, 1.0]))
    assert result.degenerate.tolist() == [False, True, True]
    assert torch.equal(result.boxes[1:], WHOLE.expand(2, 4))
    assert result.localizer == localizer.describe()


def test_localizer_settings_are_checked_where_they_are_given():
    with pytest.raises(ValueError, match="threshold"):
        create_localizer("union", threshold=2.0)
    with pytest.raises(ValueError, match="reduction"):
        create_localizer("union", reduction="max")
    with pytest.raises(TypeError):  # no settings beside the localizer any more
        localize_dataset(model("test_resnet"), [], 96, threshold=0.2)  # type: ignore[call-arg]
