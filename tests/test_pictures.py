"""Tests of :mod:`timm_ccrop.pictures.localization`: the pictures draw the map the
localizer's rule read, and the localizer's box (show-boxes' command line:
test_show_boxes.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import resolve_data_config

from timm_ccrop.crop.boxes import BoxTable
from timm_ccrop.data import build_dataset
from timm_ccrop.localize import ComponentRule, Localizer, create_localizer, default_localizer
from timm_ccrop.models.backbones import create_backbone
from timm_ccrop.pictures import localization as pictures
from timm_ccrop.pictures.drawing import LOCALIZED_BOX_COLOR, heatmap_colors
from timm_ccrop.pictures.localization import localization_picture, render_box_picture

DATA = "synthetic:num_samples=8,image_size=64"
TILE = 64
CORNER_BOX = [0.75, 0.75, 1.0, 1.0]


@dataclass
class CornerLocalizer(Localizer):
    """A stub whose map peaks in the bottom-right 2x2 cells of 8x8, far from where any
    feature map of the model would put it."""

    def maps(self, network, images):
        maps = torch.zeros(len(images), 8, 8)
        maps[:, 6:, 6:] = 1.0
        return maps, torch.zeros(len(images), dtype=torch.bool)

    def map_size(self, network, image_size):
        return 8, 8


def corner_localizer() -> CornerLocalizer:
    return CornerLocalizer("corner", rule=ComponentRule(level=2.0))


def overlay_tile(grid: Image.Image, tile: int, has_captions: bool = True) -> np.ndarray:
    """The heatmap tile of the last row (heatmap_boxes_grid's layout: 4 px gaps, the
    image tile, then the heatmap tile; a 14 px caption line under each row)."""
    pixels = np.asarray(grid.convert("RGB")).astype(int)
    bottom = pixels.shape[0] - 4 - (14 if has_captions else 0) - 4
    return pixels[bottom - tile:bottom, 2 * 4 + tile:2 * 4 + 2 * tile]


def hottest(tile: np.ndarray) -> tuple[float, float]:
    """Centre ``(x, y)`` in [0, 1] of the tile's pixels in the jet colour of 1."""
    hot = (np.abs(tile - heatmap_colors(1.0).astype(int)).sum(axis=-1) <= 30).nonzero()
    assert len(hot[0]), "no pixel of the heatmap's hottest colour"
    return float(hot[1].mean()) / tile.shape[1], float(hot[0].mean()) / tile.shape[0]


def white_box(tile: np.ndarray) -> tuple[float, float, float, float]:
    """Bounds in [0, 1] of the localized box's outline in the tile."""
    ys, xs = (np.abs(tile - np.asarray(LOCALIZED_BOX_COLOR)).sum(axis=-1) == 0).nonzero()
    size = tile.shape[0]
    return xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size


def test_the_picture_draws_the_localizers_map_and_box() -> None:
    images = [Image.new("RGB", (32, 32), (128, 128, 128)) for _ in range(2)]
    model = create_backbone("resnet_mini_cifar", seed=0)
    picture = localization_picture(model, images, None, localizer=corner_localizer(),
                                   views=0, tile=TILE, opacity=1.0)
    torch.testing.assert_close(picture.boxes, torch.tensor([CORNER_BOX, CORNER_BOX]))
    assert picture.map_size == (8, 8) and not picture.degenerate.any()
    tile = overlay_tile(picture.grid, TILE)
    x, y = hottest(tile)
    assert x > 0.75 and y > 0.75  # the overlay peaks in the localizer's corner
    x0, y0, x1, y1 = white_box(tile)
    assert abs(x0 - 0.75) < 0.05 and abs(y0 - 0.75) < 0.05 and x1 > 0.95 and y1 > 0.95


def test_the_trainers_picture_draws_the_maps_that_made_the_boxes(tmp_path,
                                                                   monkeypatch) -> None:
    dataset = build_dataset(DATA, split="train")
    table = BoxTable(len(dataset))
    table.update(torch.tensor([CORNER_BOX] * len(dataset)))
    drawn = {}
    grid = pictures.heatmap_boxes_grid

    def recording(images, maps, boxes, *args, **kwargs):
        drawn.update(maps=maps, boxes=boxes)
        return grid(images, maps, boxes, *args, **kwargs)

    monkeypatch.setattr(pictures, "heatmap_boxes_grid", recording)
    model = create_backbone("resnet_mini_cifar", seed=0)
    render_box_picture(model, dataset, table, tmp_path / "boxes.png", image_size=32,
                       localizer=corner_localizer(), count=3)
    assert drawn["maps"].shape == (3, 8, 8)
    assert all(int(m.argmax()) in (54, 55, 62, 63) for m in drawn["maps"])  # 6:, 6:
    assert [list(box) for box in drawn["boxes"]] == [CORNER_BOX] * 3
    # harvest: the bank's running maps, as its rule read them
    harvest = create_localizer("harvest", resolution=4)
    bank = harvest.make_bank(len(dataset))
    bank.mean[:, 0, 3] = 1.0  # top right
    bank.weight[:] = 1.0
    harvest.held_boxes(model)
    render_box_picture(model, dataset, table, tmp_path / "harvest.png", image_size=32,
                       localizer=harvest, count=2)
    assert drawn["maps"].shape == (2, 4, 4)
    assert all(int(m.argmax()) == 3 for m in drawn["maps"])
    assert (tmp_path / "harvest.png").is_file()


def test_the_default_localizers_picture_shows_its_finer_background_free_map() -> None:
    """The default localizer's picture is its own map (stride removed: 8x8 at 32 px, the
    median of the shown images subtracted), not the stage's plain 4x4 map."""
    dataset = build_dataset("synthetic:num_samples=8,image_size=32", split="train")
    images = [dataset[i][0] for i in range(8)]
    model = create_backbone("resnet_mini_cifar", seed=0)
    picture = localization_picture(model, images, dataset.gt_boxes[:8].float(), views=0,
                                   tile=32)
    localizer = default_localizer()
    localizer.check(model)  # background 'auto': the median map for a ResNet
    model.eval()
    config = resolve_data_config({}, model=model)
    transform = pictures.eval_transform(32, config["mean"], config["std"])
    batch = torch.stack([transform(image) for image in images])
    with torch.no_grad():
        localizer.fit(model, lambda: iter([batch]))
        maps, bad = localizer.maps(model, batch)
        boxes, degenerate = localizer.boxes_from_maps(maps, bad, (32, 32), model)
    assert picture.map_size == (8, 8)
    torch.testing.assert_close(picture.maps, maps, atol=1e-5, rtol=0)
    torch.testing.assert_close(picture.boxes, boxes)
    assert torch.equal(picture.degenerate, degenerate)
    assert "stride removed" in picture.summary("mini")


def test_localization_picture_measures_and_draws() -> None:
    """The library function behind show-boxes, without the command line."""
    dataset = build_dataset(DATA, split="train")
    images = [dataset[i][0] for i in range(3)]
    model = timm.create_model("test_resnet", num_classes=0).eval()
    localizer = create_localizer("union", stage=-2)
    picture = localization_picture(model, images, dataset.gt_boxes[:3].float(),
                                   name="test_resnet", localizer=localizer, views=1,
                                   tile=32, source="synthetic [train]")
    assert picture.boxes.shape == (3, 4) and picture.degenerate.shape == (3,)
    assert 0.0 <= picture.mean_iou <= 1.0 and 0.0 <= picture.whole_image_iou <= 1.0
    assert picture.image_size == 64 and picture.grid.width > 3 * 32
    assert picture.summary("test_resnet").startswith(
        "test_resnet: union(stage=-2), stage -2 (layer3), reduction sum (family default)")
    assert picture.settings == localizer.resolve(model)
    without_gt = localization_picture(model, images, None, localizer=localizer, views=0,
                                      tile=32)
    assert without_gt.mean_iou is None
    torch.testing.assert_close(without_gt.boxes, picture.boxes)
