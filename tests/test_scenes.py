"""PhotoScenes: objects on crops of real photographs (timm_ccrop.data.scenes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from timm_ccrop.crop.boxes import box_area
from timm_ccrop.data import GENERATORS, PhotoScenes, build_dataset, stored_image_size


def test_images_are_a_pure_function_of_seed_split_and_index() -> None:
    data = PhotoScenes(num_samples=6, image_size=32, seed=3)
    again = PhotoScenes(num_samples=6, image_size=32, seed=3)
    first = np.asarray(data[4][0])
    assert np.array_equal(first, np.asarray(again[4][0]))  # rendered out of order too
    assert np.array_equal(first, data.render(4)[0])
    other = PhotoScenes(num_samples=6, image_size=32, seed=3, split="test")
    assert not np.array_equal(first, np.asarray(other[4][0]))


def test_every_image_has_its_own_background_and_a_tight_box() -> None:
    data = PhotoScenes(num_samples=12, image_size=48, object_scale=(0.3, 0.4), distractors=2)
    images = np.stack([np.asarray(data[i][0], dtype=np.float32) for i in range(12)])
    boxes = data.gt_boxes
    assert boxes.shape == (12, 4) and boxes.dtype == torch.float32
    assert ((boxes[:, 2:] > boxes[:, :2]) & (boxes >= 0).all(1, keepdim=True)).all()
    # the box holds the object: its side is within the scale range (rotation shrinks it)
    sides = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert (sides <= 0.4 + 2 / 48).all() and (sides >= 0.3 * 0.5).all()
    assert (box_area(boxes) < 0.25).all()
    # no two backgrounds alike: the corners differ between every pair of images
    corners = images[:, :6, :6].reshape(12, -1)
    distance = np.abs(corners[:, None] - corners[None]).mean(-1)
    assert (distance[~np.eye(12, dtype=bool)] > 1.0).all()


def test_colour_does_not_give_the_class_away() -> None:
    data = PhotoScenes(num_samples=200, image_size=32, num_classes=2, seed=1)
    boxes = (data.gt_boxes * 32).round().long()
    colours = [[], []]
    for i in range(200):
        x0, y0, x1, y1 = boxes[i].tolist()
        crop = np.asarray(data[i][0], dtype=np.float32)[y0:y1, x0:x1]
        colours[data.targets[i]].append(np.median(crop.reshape(-1, 3), axis=0))
    gap = np.abs(np.mean(colours[0], axis=0) - np.mean(colours[1], axis=0))
    assert (gap < 25).all()  # mean colours of the two classes within 10% of the range


def test_digits_use_other_writers_in_the_test_split() -> None:
    train = PhotoScenes(num_samples=20, image_size=32, objects="digits")
    test = PhotoScenes(num_samples=20, image_size=32, objects="digits", split="test")
    assert train.classes[3] == "digit_3" and len(set(train.targets)) == 10
    assert not np.array_equal(np.asarray(train[0][0]), np.asarray(test[0][0]))


def test_it_is_a_dataset_spec() -> None:
    data = build_dataset("scenes:num_samples=8,image_size=24,object_scale=0.2:0.3,"
                         "backgrounds=calm", split="test")
    assert isinstance(data, PhotoScenes) and data.split == "test"
    assert data.object_scale == (0.2, 0.3) and data.backgrounds == "calm"
    assert stored_image_size("scenes:image_size=24") == 24
    assert stored_image_size("scenes") == PhotoScenes.DEFAULT_IMAGE_SIZE
    assert set(GENERATORS) == {"synthetic", "scenes"}
    with pytest.raises(ValueError, match="unknown scenes option.*valid options"):
        build_dataset("scenes:colour=red")


@pytest.mark.parametrize("options, message", [
    ({"objects": "letters"}, "objects must be one of shapes, digits"),
    ({"backgrounds": "plain"}, "backgrounds must be one of busy, calm, mixed"),
    ({"object_scale": (0.5, 0.2)}, "object_scale must be lo:hi"),
    ({"num_classes": 11, "objects": "digits"}, r"num_classes must be an integer in \[2, 10\]"),
    ({"image_size": 8}, "image_size must be an integer >= 16"),
    ({"distractors": -1}, "distractors must be an integer >= 0"),
    ({"split": "val"}, "split must be 'train' or 'test'"),
])
def test_bad_options_fail_early(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PhotoScenes(**options)


def test_hue_spread_ties_colour_to_the_class_only_as_far_as_asked() -> None:
    def hue_gap(spread: float) -> float:
        data = PhotoScenes(num_samples=60, image_size=32, num_classes=2, seed=2,
                           backgrounds="calm", hue_spread=spread)
        boxes = (data.gt_boxes * 32).round().long()
        means = {0: [], 1: []}
        for i in range(60):
            x0, y0, x1, y1 = boxes[i].tolist()
            crop = np.asarray(data[i][0], dtype=np.float32)[y0:y1, x0:x1].reshape(-1, 3)
            colour = np.median(crop, axis=0)
            means[data.targets[i]].append(colour / max(colour.sum(), 1.0))
        return float(np.abs(np.mean(means[0], 0) - np.mean(means[1], 0)).sum())

    # class 0 is red-ish and class 1 cyan-ish at a narrow spread; any colour at 360
    assert hue_gap(30) > 3 * hue_gap(360)
    assert PhotoScenes(num_samples=2).hue_spread == 360.0
    with pytest.raises(ValueError, match="hue_spread must be a number of degrees"):
        PhotoScenes(hue_spread=400)
