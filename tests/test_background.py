"""Background subtraction: the dataset's per-pixel median map and the localizers' option."""

from __future__ import annotations

import pytest
import torch

from timm_ccrop.localize import create_localizer
from timm_ccrop.localize.background import median_map, subtract_background


def _maps(count: int, seed: int = 0) -> torch.Tensor:
    """8x8 maps: a hot spot every image shares at (1, 6), one object cell elsewhere."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.zeros(count, 8, 8)
    maps[:, 1, 6] = 1.0  # the shared background
    cells = torch.randint(0, 64, (count,), generator=generator)
    cells = torch.where(cells == 14, torch.full_like(cells, 40), cells)  # never on (1, 6)
    maps.view(count, -1)[torch.arange(count), cells] = 0.8  # each image's object
    return maps


def test_the_median_map_is_what_every_image_shares() -> None:
    maps = _maps(200)
    background = median_map(iter(maps.split(32)))
    assert background.shape == (8, 8)
    assert background[1, 6] == 1.0 and background.sum() == 1.0  # objects are not in it
    # a bounded sample of the maps gives the same answer, and the same on every call
    sampled = median_map(iter(maps.split(32)), capacity=50)
    assert torch.equal(sampled, background)
    assert torch.equal(median_map(iter(maps.split(7)), capacity=50),
                       median_map(iter(maps.split(7)), capacity=50))


def test_bad_maps_fail_early() -> None:
    with pytest.raises(ValueError, match="empty"):
        median_map(iter([]))
    with pytest.raises(ValueError, match="different sizes"):
        median_map(iter([torch.zeros(2, 8, 8), torch.zeros(2, 4, 4)]))


def test_subtracting_it_leaves_the_objects() -> None:
    maps = _maps(4)
    residual, empty = subtract_background(maps, median_map(iter([_maps(200)])))
    assert not empty.any()
    assert (residual.flatten(1).argmax(dim=1) == maps.clone().index_put_(
        (torch.arange(4), torch.tensor(1), torch.tensor(6)), torch.tensor(0.0)
    ).flatten(1).argmax(dim=1)).all()
    _, nothing_left = subtract_background(torch.ones(2, 8, 8), torch.ones(8, 8))
    assert nothing_left.all()  # degenerate: the box falls back to the whole image


class _GivenMaps:
    """A map source whose 'images' are their own maps (no network needed)."""

    def maps(self, network: object, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images, torch.zeros(len(images), dtype=torch.bool)


def test_the_peak_localizer_finds_the_object_once_the_background_is_removed() -> None:
    data = _maps(64)
    plain = create_localizer("component", rule="max", level=0.9)
    plain.source = _GivenMaps()
    boxes, _ = plain.boxes(None, data[:8], (8, 8))
    assert torch.allclose(boxes[:, :2], torch.tensor([6 / 8, 1 / 8]))  # all on the background
    contrast = create_localizer("component", rule="max", level=0.9, background="median")
    contrast.source = _GivenMaps()
    assert contrast.needs_fit
    with pytest.raises(RuntimeError, match="fit"):
        contrast.boxes(None, data[:8], (8, 8))
    contrast.fit(None, lambda: iter(data.split(16)))
    boxes, degenerate = contrast.boxes(None, data[:8], (8, 8))
    objects = data[:8].clone()
    objects[:, 1, 6] = 0
    cells = objects.flatten(1).argmax(dim=1)
    expected = torch.stack([cells % 8 / 8, cells // 8 / 8], dim=1)
    assert not degenerate.any() and torch.allclose(boxes[:, :2], expected)


def test_the_option_is_checked_and_described() -> None:
    assert create_localizer("peak", background="median").describe() == (
        "peak(background=median)")
    assert not create_localizer("peak").needs_fit
    with pytest.raises(ValueError, match="background must be one of median"):
        create_localizer("peak", background="mean")
    with pytest.raises(ValueError, match="does not take background"):
        create_localizer("paper", background="median")


def test_samples_a_sharded_loader_repeats_count_once() -> None:
    # 3 images: values 0, 1, 5 at every pixel; a padded shard repeats the last one twice
    maps = torch.tensor([0.0, 1.0, 5.0])[:, None, None].expand(3, 2, 2)
    once = median_map(iter([(maps, torch.arange(3))]))
    padded = median_map(iter([(maps, torch.arange(3)), (maps[2:].repeat(2, 1, 1),
                                                        torch.tensor([2, 2]))]))
    assert torch.equal(once, padded) and once[0, 0] == 1.0
    assert median_map(iter([torch.cat([maps, maps[2:].repeat(2, 1, 1)])]))[0, 0] == 5.0


def test_one_forward_gives_the_boxes_of_a_separate_fit(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    import timm

    from timm_ccrop.data import build_dataset
    from timm_ccrop.localize import boxpass, localize_dataset

    torch.manual_seed(0)
    model = timm.create_model("resnet_mini_cifar", num_classes=0)
    data = build_dataset("synthetic:num_samples=48,image_size=32,backgrounds=1")
    forwards = []
    model.register_forward_hook(lambda module, args, out: forwards.append(len(args[0])))

    def boxes_with(cache_bytes: int) -> torch.Tensor:
        monkeypatch.setattr(boxpass, "MAP_CACHE_BYTES", cache_bytes)
        forwards.clear()
        result = localize_dataset(model, data, 32, batch_size=16, progress=False,
                                  localizer=create_localizer("peak", background="median"))
        return torch.cat([result.boxes, result.degenerate[:, None].float()], dim=1)

    one = boxes_with(boxpass.MAP_CACHE_BYTES)
    images_one = sum(forwards)
    two = boxes_with(0)  # the maps do not fit: a forward for the fit, one for the boxes
    assert torch.equal(one, two)
    assert sum(forwards) - images_one == 48  # one forward of the dataset saved
    assert images_one <= 48 + 2  # the dataset once (+ the one-image size probes)
