"""Tests of :mod:`timm_ccrop.data.boxed`: the box-aware dataset wrapper (with real worker
processes), its sampler, unreadable samples and per-sample seeding (the box table and
converters: tests/test_boxes.py)."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from timm_ccrop import (
    BoxedDataset,
    BoxTable,
    ContrastiveCrop,
    MultiViewTransform,
    multi_view_transform,
)
from timm_ccrop.data import sample_seed, seed_everything

from .helpers import CoordinateImages, crop_centre


class DictDataset:
    """A Hugging Face ``datasets`` split yields dicts like these."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> dict:
        return {"img": Image.new("RGB", (40, 40)), "label": index + 10}


def test_wrapper_returns_views_target_index_for_many_dataset_kinds() -> None:
    views = multi_view_transform("cifar", crop_mode="ccrop")
    for base, target in [
        (DictDataset(), 12),
        ([(Image.new("RGB", (40, 40)), 7)] * 3, 7),
        ([Image.new("RGB", (40, 40))] * 3, -1),
    ]:
        out, label, index = BoxedDataset(base, views)[2]
        assert len(out) == 2 and out[0].shape == (3, 32, 32)
        assert label == target and index == 2
    plain = BoxedDataset(DictDataset(), return_index=False)[1]
    assert len(plain) == 2 and plain[1] == 11


def test_wrapper_rejects_misuse() -> None:
    dataset = CoordinateImages(4)
    dataset.transform = lambda img: img
    with pytest.raises(ValueError, match="already has a transform"):
        BoxedDataset(dataset)
    with pytest.raises(ValueError, match="box table has 3 rows"):
        BoxedDataset(CoordinateImages(4), boxes=BoxTable(3))
    with pytest.raises(KeyError, match="image_key"):
        BoxedDataset([{"pixels": 1}])[0]


def centres(loader: DataLoader) -> list[tuple[int, float, float]]:
    found = []
    for (view,), _, indices in loader:
        for image, index in zip(view.numpy(), indices.tolist(), strict=True):
            x, y = crop_centre(image)
            found.append((index, x, y))
    return found


def inside(found: list, boxes: torch.Tensor, size: int = 64) -> np.ndarray:
    result = []
    for index, x, y in found:
        x0, y0, x1, y1 = (boxes[index] * size).tolist()
        result.append(x0 - 1.5 <= x <= x1 + 1.5 and y0 - 1.5 <= y <= y1 + 1.5)
    return np.array(result)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_box_updates_reach_persistent_workers(context: str) -> None:
    """Warm-up (random crop), switch on, then replace boxes: workers see every change."""
    dataset = CoordinateImages(24)
    table = BoxTable(len(dataset))
    crop = ContrastiveCrop(16, scale=(0.02, 0.05), interpolation="nearest")
    pipeline = MultiViewTransform([transforms.Compose([crop, transforms.PILToTensor()])])
    loader = DataLoader(
        BoxedDataset(dataset, pipeline, table), batch_size=8, num_workers=2,
        persistent_workers=True, multiprocessing_context=context,
    )
    first = torch.tensor([[0.1, 0.1, 0.3, 0.3]] * len(dataset))
    second = torch.tensor([[0.65, 0.6, 0.85, 0.9]] * len(dataset))

    table.update(first)  # written but not active: still the warm-up
    warm_up = inside(centres(loader), first)
    assert len(warm_up) == len(dataset) and warm_up.mean() < 0.5

    table.set_active(True)
    assert inside(centres(loader), first).all()

    table.update(second)
    assert inside(centres(loader), second).all()

    table.update(second, valid=[False] * len(dataset))
    assert inside(centres(loader), second).mean() < 0.5


def test_seeded_views_do_not_depend_on_workers_or_order() -> None:
    """Per-sample seeding: same views with 0 or 2 workers, in any order, per epoch."""
    from timm_ccrop.data import EpochPermutationSampler

    def collect(num_workers: int, epoch: int) -> dict[int, torch.Tensor]:
        dataset = BoxedDataset(CoordinateImages(12), multi_view_transform("cifar"), seed=7)
        dataset.set_epoch(epoch)
        sampler = EpochPermutationSampler(len(dataset), seed=7)
        sampler.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=num_workers)
        return {int(i): views[0][k] for views, _, index in loader
                for k, i in enumerate(index)}

    single, workers = collect(0, 1), collect(2, 1)
    assert all(torch.equal(single[i], workers[i]) for i in single)
    assert not torch.equal(collect(0, 2)[0], single[0])  # a new epoch, new views
    first = EpochPermutationSampler(12, seed=7)
    assert list(first) == list(EpochPermutationSampler(12, seed=7))
    first.set_epoch(1)
    assert list(first) != list(EpochPermutationSampler(12, seed=7))


class FlakyFiles:
    """Samples 1 and 2 are unreadable files, as PIL reports them."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        if index in (1, 2):
            raise OSError(f"image file is truncated (sample {index})")
        return Image.new("RGB", (8, 8), (index * 60, 0, 0)), index


def test_unreadable_samples_are_skipped_with_a_warning_and_counted() -> None:
    dataset = BoxedDataset(FlakyFiles())
    with pytest.warns(UserWarning, match="skipping unreadable sample 1"):
        image, target, index = dataset[1]
    assert (target, index) == (3, 1) and image.getpixel((0, 0))[0] == 180
    assert int(dataset.skipped[0]) == 2
    with pytest.raises(OSError, match="truncated"):
        BoxedDataset(FlakyFiles(), skip_unreadable=False)[2]


class NothingReadable(FlakyFiles):
    """Every sample is an unreadable file."""

    root = "/data/broken"

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        raise OSError(f"cannot identify image file (sample {index})")


def test_a_dataset_without_any_readable_sample_is_one_error_naming_it() -> None:
    dataset = BoxedDataset(FlakyFiles())
    with pytest.warns(UserWarning):
        dataset[1]
    assert dataset.substituted.tolist() == [False, True, False, False]  # 1 got sample 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning per file before the error
        with pytest.raises(ValueError, match=r"no readable image in the dataset "
                           r"NothingReadable at /data/broken: all 4 samples failed"):
            BoxedDataset(NothingReadable())[2]


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_run_seeding_with_set_seed_matches_seed_everything() -> None:
    """The trainer and eval seed runs with accelerate's set_seed; for a run seed it draws
    what seed_everything drew, and seed_everything still takes 63-bit sample seeds."""
    for seed in (0, 7, 2**32 - 1):
        seed_everything(seed)
        before = _draws()
        set_seed(seed)
        assert _draws() == before
    big = sample_seed(7, 3, 2**40)
    assert big >= 2**32
    seed_everything(big)
    first = _draws()
    seed_everything(big)
    assert _draws() == first
