"""'ccrop' inside timm's transform factory: both entry points, nothing else changed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import timm
import timm.data
import timm.data.transforms_factory as timm_factory
import torch
from PIL import Image

import timm_ccrop
from timm_ccrop import BoxedDataset, BoxTable, ContrastiveCrop, SimCCrop
from timm_ccrop.crop.factory import parse_crop_mode

from .helpers import CoordinateImages, crop_centre

TIMM_CASES = [
    {"is_training": True},
    {"is_training": True, "train_crop_mode": "rrc", "scale": (0.2, 1.0)},
    {"is_training": True, "train_crop_mode": "rkrc"},
    {"is_training": True, "train_crop_mode": "rkrr"},
    {"is_training": True, "separate": True},
    {"is_training": True, "use_prefetcher": True, "interpolation": "random"},
    {"is_training": True, "auto_augment": "rand-m9-mstd0.5", "re_prob": 0.25},
    {"is_training": True, "color_jitter_prob": 0.8, "grayscale_prob": 0.2,
     "gaussian_blur_prob": 0.5},
    {"is_training": True, "no_aug": True},
    {"is_training": False, "crop_pct": 0.9},
]


@pytest.fixture
def unregistered():
    """timm's factory without the package's wrapper, restored afterwards."""
    timm_ccrop.unregister_timm_crop_mode()
    yield
    timm_ccrop.register_timm_crop_mode()


def build_and_run(kwargs: dict, image: Image.Image) -> tuple[str, list]:
    transform = timm.data.create_transform(48, **kwargs)
    random.seed(0)
    np.random.seed(0)  # timm's RandAugment draws from numpy
    torch.manual_seed(0)
    stages = transform if isinstance(transform, tuple) else (transform,)
    outputs, value = [], image
    for stage in stages:
        value = stage(value)
        outputs.append(np.asarray(value))
    return repr(transform), outputs


@pytest.mark.parametrize("kwargs", TIMM_CASES, ids=lambda kw: "-".join(map(str, kw.values())))
def test_other_modes_are_exactly_timms(kwargs: dict, request: pytest.FixtureRequest) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 50, 3), np.uint8))
    assert timm_ccrop.is_registered()
    with_package = build_and_run(kwargs, image)
    request.getfixturevalue("unregistered")
    assert not timm_ccrop.is_registered()
    without_package = build_and_run(kwargs, image)
    assert with_package[0] == without_package[0]
    assert all(
        np.array_equal(a, b) for a, b in zip(with_package[1], without_package[1], strict=True)
    )


def test_registration_is_idempotent() -> None:
    wrapper = timm_factory.transforms_imagenet_train
    timm_ccrop.register_timm_crop_mode()
    timm_ccrop.register_timm_crop_mode()
    assert timm_factory.transforms_imagenet_train is wrapper


def test_ccrop_replaces_only_the_crop_of_the_rrc_pipeline() -> None:
    kwargs = {"is_training": True, "scale": (0.2, 1.0), "color_jitter_prob": 0.8,
              "grayscale_prob": 0.2, "gaussian_blur_prob": 0.5, "interpolation": "bicubic"}
    rrc = timm.data.create_transform(32, train_crop_mode="rrc", **kwargs)
    ccrop = timm.data.create_transform(32, train_crop_mode="ccrop-a0.1", **kwargs)
    assert isinstance(ccrop.transforms[0], ContrastiveCrop)
    assert ccrop.transforms[0].alpha == 0.1
    assert ccrop.transforms[0].scale == rrc.transforms[0].scale
    assert ccrop.transforms[0].interpolation == rrc.transforms[0].interpolation
    assert repr(ccrop.transforms[1:]) == repr(rrc.transforms[1:])
    simccrop = timm.data.create_transform(32, train_crop_mode="simccrop", **kwargs)
    assert type(simccrop.transforms[0]) is SimCCrop and simccrop.transforms[0].alpha == 0.1


def test_separate_and_prefetcher_pipelines_keep_their_shape() -> None:
    first, second, final = timm.data.create_transform(
        32, is_training=True, train_crop_mode="ccrop", separate=True
    )
    assert isinstance(first.transforms[0], ContrastiveCrop)
    prefetch = timm.data.create_transform(
        32, is_training=True, train_crop_mode="ccrop", use_prefetcher=True
    )
    out = prefetch((Image.new("RGB", (40, 40)), (0.1, 0.1, 0.5, 0.5)))
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)


def test_package_create_transform_has_no_global_side_effect(unregistered: None) -> None:
    transform = timm_ccrop.create_transform(32, is_training=True, train_crop_mode="ccrop",
                                            ccrop_alpha=0.3)
    assert transform.transforms[0].alpha == 0.3
    assert not timm_ccrop.is_registered()
    with pytest.raises(AssertionError):  # timm itself still refuses the mode
        timm.data.create_transform(32, is_training=True, train_crop_mode="ccrop")


def test_eval_pipelines_ignore_the_train_crop_mode() -> None:
    ours = timm_ccrop.create_transform(32, is_training=False, train_crop_mode="ccrop")
    assert repr(ours) == repr(timm.data.create_transform(32, is_training=False))


def test_data_config_of_a_model_builds_a_ccrop_pipeline() -> None:
    model = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**config, is_training=True, train_crop_mode="ccrop")
    out = transform((Image.new("RGB", (200, 180)), (0.2, 0.2, 0.7, 0.7)))
    assert out.shape == config["input_size"]
    assert isinstance(transform.transforms[0], ContrastiveCrop)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: parse_crop_mode("ccrop-b0.1"), "ccrop-a<alpha>"),
        (lambda: parse_crop_mode("ccrop-afoo"), "not a number"),
        (lambda: parse_crop_mode("ccrop-a0"), "alpha must be > 0"),
        (lambda: timm_ccrop.create_transform(32, is_training=True, train_crop_mode="rrc",
                                             ccrop_alpha=0.2), "only applies"),
        (lambda: timm_ccrop.create_transform(32, is_training=True, train_crop_mode="ccrop-a0.1",
                                             ccrop_alpha=0.2), "alpha given twice"),
        (lambda: timm.data.create_transform(32, is_training=True, train_crop_mode="ccrop",
                                            naflex=True), "naflex"),
    ],
)
def test_bad_modes_fail_clearly(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_a_changed_timm_pipeline_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    timm_ccrop.unregister_timm_crop_mode()
    try:
        monkeypatch.setattr(timm_factory, "transforms_imagenet_train", lambda size, mode: None)
        with pytest.raises(RuntimeError, match="train_crop_mode"):
            timm_ccrop.register_timm_crop_mode()
    finally:
        monkeypatch.undo()
        timm_ccrop.register_timm_crop_mode()
    from timm_ccrop.crop.factory import _swap_crop

    with pytest.raises(RuntimeError, match="changed the pipeline"):
        _swap_crop(timm.data.create_transform(32, is_training=True, train_crop_mode="rkrc"),
                   "ccrop", None)


def test_create_loader_crops_land_inside_each_samples_box() -> None:
    """Through timm's create_loader: even samples' boxes left-top, odd ones right-bottom."""
    dataset = CoordinateImages(32)
    table = BoxTable(len(dataset))
    boxes = torch.tensor([[0.1, 0.1, 0.35, 0.35] if i % 2 == 0 else [0.6, 0.55, 0.9, 0.85]
                          for i in range(len(dataset))])
    table.update(boxes)
    table.set_active(True)
    loader = timm.data.create_loader(
        BoxedDataset(dataset, boxes=table, return_index=False),
        input_size=(3, 32, 32), batch_size=8, is_training=True, train_crop_mode="ccrop",
        scale=(0.02, 0.05), hflip=0.0, color_jitter=0.0, interpolation="nearest",
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_workers=0, device=torch.device("cpu"),
    )
    assert isinstance(loader.dataset.transform.transforms[0], ContrastiveCrop)
    seen = 0
    for _ in range(3):
        for images, targets in loader:
            views = (images * 255).round().to(torch.uint8).numpy()
            for view, index in zip(views, targets.tolist(), strict=True):
                x, y = crop_centre(view)
                x0, y0, x1, y1 = (boxes[index] * 64).tolist()
                assert x0 - 1.5 <= x <= x1 + 1.5 and y0 - 1.5 <= y <= y1 + 1.5, (index, x, y)
                seen += 1
    assert seen == 3 * len(dataset)
