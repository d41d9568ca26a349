"""Harvested boxes: crop geometry on both view paths, the heatmap bank's pasting and moving
average, sharding, checkpoints and ``--localizer harvest`` end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch.utils.data import DataLoader

import timm_ccrop  # noqa: F401  (registers the crop modes and architectures)
from timm_ccrop.cli import main
from timm_ccrop.config import TrainConfig
from timm_ccrop.crop.augment import BatchedViews, resized_crop
from timm_ccrop.crop.boxes import paired_iou
from timm_ccrop.crop.views import ViewRecipe, multi_view_transform
from timm_ccrop.data import BoxedDataset
from timm_ccrop.data.synthetic import SyntheticObjects
from timm_ccrop.localize import (
    Harvester,
    HarvestLocalizer,
    HeatmapBank,
    create_localizer,
    paste_maps,
)
from timm_ccrop.runs import read_checkpoint

from .distributed import spawn_launcher

R = 16  # bank resolution of these tests


def coordinate_image(height: int, width: int) -> np.ndarray:
    """uint8 RGB whose red channel is the column and green the row: every pixel says where
    it came from."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = np.arange(width)[None, :]
    image[..., 1] = np.arange(height)[:, None]
    return image


# ------------------------------------------------------------------ geometry: pasting


def test_a_maps_peak_lands_where_the_crop_took_it_from() -> None:
    peak = torch.zeros(1, 4, 4)
    peak[0, 0, 0] = 1.0  # the view's top-left cell
    crop = torch.tensor([[0.5, 0.25, 1.0, 0.75, 0.0]])  # right half, middle rows
    values, coverage = paste_maps(peak, crop, R)
    assert coverage[0, 4:12, 8:].eq(1).all() and coverage.sum() == 8 * 8  # only the crop
    cell = divmod(int((values * coverage)[0].argmax()), R)
    assert cell == (4, 8)  # the crop's top-left bank cell
    flipped = crop.clone()
    flipped[0, 4] = 1.0  # the same crop, mirrored view: its left column is the crop's right
    values, coverage = paste_maps(peak, flipped, R)
    assert divmod(int((values * coverage)[0].argmax()), R) == (4, 15)


def test_partly_covered_cells_get_their_share() -> None:
    maps = torch.ones(1, 4, 4)
    values, coverage = paste_maps(maps, torch.tensor([[0.1, 0.2, 0.43, 0.61, 0.0]]), R)
    assert coverage.sum() / R**2 == pytest.approx(0.33 * 0.41, rel=1e-5)  # the crop's area
    assert coverage.max() == 1 and 0 < coverage[coverage < 1].max() < 1
    assert torch.allclose(values, torch.ones_like(values))


def test_a_uniform_map_pasted_through_a_crop_is_its_indicator() -> None:
    """A whole-image crop of a map that is a smooth ramp gives the ramp back."""
    ramp = torch.linspace(0, 1, 8)[None, None, :].expand(1, 8, 8)
    values, coverage = paste_maps(ramp, torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]]), R)
    assert coverage.eq(1).all()
    assert torch.all(values[0, :, 1:] >= values[0, :, :-1])  # increasing left to right
    values, _ = paste_maps(ramp, torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]]), R)
    assert torch.all(values[0, :, 1:] <= values[0, :, :-1])  # the flip undone: reversed


# ------------------------------------------------------- geometry: both view paths


def crop_of(view: torch.Tensor, image: np.ndarray) -> tuple[float, ...]:
    """The crop box a view of a coordinate image shows (nearest upsampling shows every
    pixel of the crop): the first and last column and row it holds."""
    height, width = image.shape[:2]
    columns, rows = view[0], view[1]
    return (float(columns.min()) / width, float(rows.min()) / height,
            (float(columns.max()) + 1) / width, (float(rows.max()) + 1) / height)


PLAIN = ViewRecipe(size=64, color_jitter_prob=0.0, grayscale_prob=0.0, hflip=0.5,
                   interpolation="nearest", mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)


@pytest.mark.parametrize("crop_mode", ["ccrop", "rcrop"])
def test_loader_geometry_matches_the_pixels_cropped(crop_mode: str) -> None:
    image = coordinate_image(48, 40)
    transform = multi_view_transform([PLAIN, PLAIN], crop_mode=crop_mode, geometry=True)
    for seed in range(20):
        random.seed(seed)
        torch.manual_seed(seed)
        views, geometry = transform((Image.fromarray(image), (0.1, 0.2, 0.6, 0.7)
                                     if crop_mode == "ccrop" else None))
        assert geometry.shape == (2, 5)
        for view, row in zip(views, geometry, strict=True):
            columns = view[0]
            assert bool(columns[0, -1] > columns[0, 0]) == (not bool(row[4])), (seed, row)
            got = torch.tensor(crop_of(view, image))
            assert torch.allclose(row[:4], got, atol=1e-6), (seed, row, got)


def test_loader_geometry_leaves_the_views_and_random_streams_unchanged() -> None:
    image = Image.fromarray(coordinate_image(40, 36))
    for crop_mode in ("ccrop", "rcrop", "simccrop"):
        plain = multi_view_transform("cifar", crop_mode=crop_mode)
        recording = multi_view_transform("cifar", crop_mode=crop_mode, geometry=True)
        random.seed(3)
        torch.manual_seed(3)
        expected = plain((image, None))
        after_plain = (random.random(), float(torch.rand(1)))
        random.seed(3)
        torch.manual_seed(3)
        got, _ = recording((image, None))
        assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True)), crop_mode
        assert (random.random(), float(torch.rand(1))) == after_plain


def test_boxed_dataset_collates_the_geometry_beside_the_views() -> None:
    dataset = SyntheticObjects(num_samples=6, image_size=32, seed=0)
    boxed = BoxedDataset(dataset, multi_view_transform("cifar", geometry=True), seed=1)
    views, targets, indices, geometry = next(iter(DataLoader(boxed, batch_size=3)))
    assert len(views) == 2 and views[0].shape == (3, 3, 32, 32)
    assert geometry.shape == (3, 2, 5) and indices.tolist() == [0, 1, 2]
    assert ((geometry[..., 2] > geometry[..., 0]) & (geometry[..., 3] > geometry[..., 1])).all()
    plain = BoxedDataset(dataset, multi_view_transform("cifar"), seed=1)
    views_plain, *_ = next(iter(DataLoader(plain, batch_size=3)))
    assert all(torch.equal(a, b) for a, b in zip(views, views_plain, strict=True))


def test_device_geometry_matches_the_pixels_cropped_and_keeps_the_views() -> None:
    image = torch.from_numpy(coordinate_image(32, 32)).permute(2, 0, 1)[None].repeat(8, 1, 1, 1)
    recipe = ViewRecipe(size=32, color_jitter_prob=0.0, grayscale_prob=0.0, hflip=0.5,
                        mean=(0.0, 0.0, 0.0), std=(1.0,) * 3)
    views = BatchedViews([recipe, recipe], "ccrop")
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.7]]).repeat(8, 1)
    expected = views(image, boxes, generator=torch.Generator().manual_seed(0))
    got, geometry = views(image, boxes, generator=torch.Generator().manual_seed(0),
                          return_geometry=True)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert geometry.shape == (8, 2, 5) and geometry[..., 4].sum() > 0
    for v in range(2):
        for b in range(8):
            x0, y0, x1, y1, flip = geometry[b, v].tolist()
            top, left = round(y0 * 32), round(x0 * 32)
            h, w = round((y1 - y0) * 32), round((x1 - x0) * 32)
            crop = resized_crop(image[b:b + 1].float(), torch.tensor([top]), torch.tensor([left]),
                                torch.tensor([h]), torch.tensor([w]), 32) / 255
            if flip:
                crop = crop.flip(-1)
            assert torch.allclose(crop[0], got[v][b], atol=1e-5), (b, v)


# ----------------------------------------------------------------- the moving average


def test_the_bank_is_the_coverage_weighted_moving_average() -> None:
    bank = HeatmapBank(3, resolution=4, rate=0.5, norm="minmax")  # maps land as they are
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0])
    left = torch.tensor([0.0, 0.0, 0.5, 1.0, 0.0])
    first = torch.zeros(2, 4)
    first[:, 3] = 1.0  # raw map: high on the right column
    second = torch.zeros(2, 4)
    second[:, 0] = 1.0  # then high on the left
    indices = torch.tensor([2])
    bank.accumulate(first[None, None], indices, whole[None, None])
    maps, unseen = bank.heatmaps()
    assert unseen.tolist() == [True, True, False]
    # one view: its own map exactly (the start-up bias divided out), weight 0.5 everywhere
    assert torch.allclose(maps[2], paste_maps(first[None], whole[None], 4)[0][0], atol=1e-3)
    assert torch.allclose(bank.weight[2].float(), torch.full((4, 4), 0.5))
    bank.accumulate(second[None, None], indices, left[None, None])
    maps, _ = bank.heatmaps()
    pasted = paste_maps(second[None], left[None], 4)[0][0]
    # covered cells: (0.5 * 0.5 * old + 0.5 * new) / 0.75; uncovered: unchanged
    expected = (0.25 * paste_maps(first[None], whole[None], 4)[0][0] + 0.5 * pasted) / 0.75
    assert torch.allclose(maps[2, :, :2], expected[:, :2], atol=2e-3)
    assert torch.allclose(maps[2, :, 2:], paste_maps(first[None], whole[None], 4)[0][0][:, 2:],
                          atol=1e-3)
    assert torch.allclose(bank.weight[2, :, :2].float(), torch.full((4, 2), 0.75))
    assert torch.allclose(bank.weight[2, :, 2:].float(), torch.full((4, 2), 0.5))


def test_uncovered_cells_never_decay_and_degenerate_maps_change_nothing() -> None:
    bank = HeatmapBank(1, resolution=8, rate=0.3, norm="minmax")
    peak = torch.zeros(1, 1, 4, 4)
    peak[0, 0, 1, 1] = 1.0
    bank.accumulate(peak, torch.tensor([0]), torch.tensor([[[0.0, 0.0, 1.0, 1.0, 0.0]]]))
    before = bank.mean.clone()
    for _ in range(20):  # crops that never see the left half
        bank.accumulate(torch.rand(1, 1, 4, 4), torch.tensor([0]),
                        torch.tensor([[[0.5, 0.0, 1.0, 1.0, 0.0]]]))
    assert torch.equal(bank.mean[0, :, :4], before[0, :, :4])
    state = bank.state_dict()
    bank.accumulate(torch.full((1, 1, 4, 4), 3.0), torch.tensor([0]),  # constant: degenerate
                    torch.tensor([[[0.0, 0.0, 1.0, 1.0, 0.0]]]))
    assert torch.equal(bank.mean, state["mean"]) and torch.equal(bank.weight, state["weight"])


def test_batch_norm_keeps_a_background_crop_low_next_to_the_object() -> None:
    """``batch``: one scale for the step, so a crop that sees little stays low; ``minmax``
    gives every crop a full-range map; ``mean`` scales each map by its own mean."""
    maps = torch.stack([torch.full((4, 4), 4.0), torch.full((4, 4), 1.0)])
    maps[:, 0, 0] += 1.0  # not constant
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]).repeat(2, 1, 1)
    levels = {}
    for norm in ("batch", "mean", "minmax"):
        bank = HeatmapBank(2, 4, rate=1.0, norm=norm)
        bank.accumulate(maps[:, None], torch.tensor([0, 1]), whole)
        levels[norm] = bank.heatmaps()[0].mean(dim=(1, 2))
    assert levels["batch"][0] > 3 * levels["batch"][1]  # the strong map stays stronger
    assert torch.allclose(levels["mean"][0], levels["mean"][1], atol=1e-2)
    assert torch.allclose(levels["minmax"][0], levels["minmax"][1], atol=1e-2)
    bank = HeatmapBank(1, 4, norm="batch")  # a map of zeros has no scale: nothing changes
    bank.accumulate(torch.zeros(1, 1, 4, 4), torch.tensor([0]), whole[:1])
    assert bank.heatmaps()[1].all()


def test_a_repeated_index_is_folded_once_and_order_across_rows_does_not_matter() -> None:
    maps = torch.rand(5, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    geometry = torch.tensor([0.1, 0.0, 0.9, 0.8, 1.0]).repeat(5, 2, 1)
    indices = torch.tensor([3, 1, 4, 0, 2])
    one, other = HeatmapBank(5, 8), HeatmapBank(5, 8)
    one.accumulate(maps, indices, geometry)
    order = torch.tensor([4, 2, 0, 3, 1])
    other.accumulate(maps[order], indices[order], geometry[order])
    assert torch.equal(one.mean, other.mean) and torch.equal(one.weight, other.weight)
    padded = HeatmapBank(5, 8)  # a padding sampler repeats rows: the first one counts
    padded.accumulate(torch.cat([maps, maps[:2]]), torch.cat([indices, indices[:2]]),
                      torch.cat([geometry, geometry[:2]]))
    assert torch.equal(one.mean, padded.mean)


def view_heat(crop: tuple[float, float, float, float], target: tuple[float, ...],
              cells: int = 4) -> torch.Tensor:
    """A view's ``cells x cells`` map of an object: the share of each cell it fills (plus a
    flat background)."""
    x0, y0, x1, y1 = crop
    edges = torch.arange(cells + 1) / cells
    xs, ys = x0 + edges * (x1 - x0), y0 + edges * (y1 - y0)
    inside_x = (torch.minimum(xs[1:], torch.tensor(target[2]))
                - torch.maximum(xs[:-1], torch.tensor(target[0]))).clamp_min(0)
    inside_y = (torch.minimum(ys[1:], torch.tensor(target[3]))
                - torch.maximum(ys[:-1], torch.tensor(target[1]))).clamp_min(0)
    area = (x1 - x0) * (y1 - y0) / cells**2
    return inside_y[:, None] * inside_x[None] / area + 0.05


def test_many_crops_localize_finer_than_one_map() -> None:
    """Random crops of an object, each seen as a 4x4 map: the bank's box (the default
    rule) overlaps the object more than the box of the one 4x4 map of the whole image
    (an object across the 4x4 grid's lines: one map can only box whole cells)."""
    target = (0.3, 0.55, 0.55, 0.8)
    localizer = create_localizer("harvest")
    whole = HeatmapBank(1, resolution=R)
    whole.accumulate(view_heat((0.0, 0.0, 1.0, 1.0), target)[None, None], torch.tensor([0]),
                     torch.tensor([[[0.0, 0.0, 1.0, 1.0, 0.0]]]))
    one_map_iou = float(paired_iou(whole.boxes(localizer)[0], torch.tensor([target])))
    bank = HeatmapBank(1, resolution=R)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        size, x, y = torch.rand(3, generator=generator).tolist()
        size = 0.45 + 0.55 * size
        crop = (x * (1 - size), y * (1 - size), x * (1 - size) + size, y * (1 - size) + size)
        flip = float(torch.rand(1, generator=generator) < 0.5)
        heat = view_heat(crop, target)
        bank.accumulate((heat.flip(-1) if flip else heat)[None, None], torch.tensor([0]),
                        torch.tensor([[[*crop, flip]]]))
    boxes, degenerate = bank.boxes(localizer)
    assert not degenerate.any()
    assert float(paired_iou(boxes, torch.tensor([target]))) > one_map_iou + 0.02
    unseen_boxes, unseen = HeatmapBank(2, R).boxes(localizer)
    assert unseen.all() and torch.equal(unseen_boxes, torch.tensor([[0.0, 0, 1, 1]] * 2))


def test_bank_state_round_trips_and_rejects_another_datasets() -> None:
    bank = HeatmapBank(4, 8)
    bank.accumulate(torch.rand(4, 2, 4, 4), torch.arange(4),
                    torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]).repeat(4, 2, 1))
    copy = HeatmapBank(4, 8)
    copy.load_state_dict(bank.state_dict())
    assert torch.equal(copy.mean, bank.mean) and torch.equal(copy.weight, bank.weight)
    with pytest.raises(ValueError, match="same dataset and the same harvest resolution"):
        HeatmapBank(5, 8).load_state_dict(bank.state_dict())


def test_bank_memory_per_sample() -> None:
    assert HeatmapBank(1).bytes_per_sample == 1024  # 16 x 16 x 2 planes x float16
    assert HeatmapBank(1, resolution=8).bytes_per_sample == 256


@pytest.mark.parametrize(("options", "message"), [
    ({"resolution": 1}, "harvest resolution must be an integer >= 2"),
    ({"rate": 0.0}, r"harvest rate must be in \(0, 1\]"),
    ({"rate": 1.5}, r"harvest rate must be in \(0, 1\]"),
    ({"dilate": True}, "does not take dilate"),
    ({"reduction": "max"}, "reduction must be one of"),
    ({"rule": "median"}, "rule must be one of"),
    ({"norm": "max"}, "harvest norm must be one of batch, mean, minmax"),
])
def test_bad_harvest_options_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_localizer("harvest", **options)


def test_harvest_localizer_takes_the_default_rule_and_its_overrides() -> None:
    localizer = create_localizer("harvest")
    assert isinstance(localizer, HarvestLocalizer)
    assert localizer.rule == create_localizer("peak").rule  # the default localizer's rule
    assert not localizer.source.dilate  # the training forward's own map
    tuned = create_localizer("harvest", level=1.5, resolution=8, rate=0.5)
    assert (tuned.rule.level, tuned.resolution, tuned.rate) == (1.5, 8, 0.5)
    assert tuned.make_bank(3).mean.shape == (3, 8, 8)


def test_harvest_can_subtract_the_banks_median_map() -> None:
    # every image's map is hot at a shared spot (row 0, column 7) and at its own object
    count, size = 12, 8
    raw = torch.zeros(count, 1, size, size)
    raw[:, 0, 0, 7] = 1.0
    objects = torch.arange(count) % 4 + 3  # object cells on the diagonal, away from (0, 7)
    raw[torch.arange(count), 0, objects, objects] = 0.9
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]).expand(count, 1, 5)
    plain = create_localizer("harvest", rule="max", level=0.8, resolution=size)
    bank = plain.make_bank(count + 1)  # one image never seen
    bank.accumulate(raw, torch.arange(count), whole)
    boxes, _ = bank.boxes(plain)
    assert torch.allclose(boxes[:count, :2], torch.tensor([7 / size, 0.0]))  # the shared spot
    median = create_localizer("harvest", rule="max", level=0.8, resolution=size,
                              background="median")
    boxes, degenerate = bank.boxes(median)
    corner = (objects / size).float()
    assert torch.allclose(boxes[:count, :2], torch.stack([corner, corner], dim=1))
    assert degenerate.tolist() == [False] * count + [True]  # unseen: the whole image
    assert "background=median" in median.describe()


def test_bank_lives_in_shared_memory() -> None:
    bank = HeatmapBank(3)
    assert bank.mean.is_shared() and bank.weight.is_shared()


# -------------------------------------------------------------- capture in training


def test_capture_reads_both_views_of_a_training_forward() -> None:
    from timm_ccrop.methods import build_method
    from timm_ccrop.models.backbones import create_backbone

    torch.manual_seed(0)
    method = build_method("simclr", create_backbone("resnet_mini_cifar"))
    localizer = create_localizer("harvest", resolution=8)
    harvest = Harvester(localizer.make_bank(10), localizer)
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    geometry = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]).repeat(4, 2, 1)
    with harvest.capturing(method.backbone):
        method(views)["loss"].backward()  # one call of 2B images: view 0 rows, then view 1
        harvest.step(torch.tensor([0, 1, 2, 3]), geometry)
    maps, unseen = harvest.bank.heatmaps()
    assert unseen.tolist() == [False] * 4 + [True] * 6
    assert all(p.grad is not None for p in method.backbone.parameters() if p.requires_grad)
    method(views)  # outside the block: nothing captured
    assert harvest.capture is None
    byol = build_method("byol", create_backbone("resnet_mini_cifar"))
    with harvest.capturing(byol.backbone):  # two online calls; the target's are not seen
        byol(views)
        maps = harvest.capture.take()
    assert maps.shape == (8, 4, 4)


# ---------------------------------------------------------------------- two processes


def two_process_accumulate(out_dir: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    rank = accelerator.process_index
    maps, indices, geometry = sharded_rows()
    bank = HeatmapBank(12, 8)
    mine = slice(0, 5) if rank == 0 else slice(5, 11)  # uneven shards
    for step in range(2):
        bank.accumulate(maps[step, mine], indices[step, mine], geometry[step, mine],
                        accelerator)
    torch.save(bank.state_dict(), Path(out_dir) / f"bank{rank}.pt")
    accelerator.wait_for_everyone()


def sharded_rows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    maps = torch.rand(2, 11, 2, 4, 4, generator=generator)
    indices = torch.stack([torch.randperm(12, generator=generator)[:11] for _ in range(2)])
    low = torch.rand(2, 11, 2, 2, generator=generator) * 0.5
    geometry = torch.cat([low, low + 0.5, (torch.rand(2, 11, 2, 1, generator=generator)
                                           > 0.5).float()], dim=-1)
    return maps, indices, geometry


@pytest.mark.distributed
def test_two_processes_end_with_the_single_process_bank(tmp_path: Path) -> None:
    spawn_launcher(two_process_accumulate, args=(str(tmp_path),), num_processes=2)
    maps, indices, geometry = sharded_rows()
    single = HeatmapBank(12, 8)
    for step in range(2):
        single.accumulate(maps[step], indices[step], geometry[step])
    for rank in range(2):
        state = torch.load(tmp_path / f"bank{rank}.pt", weights_only=True)
        assert torch.equal(state["mean"], single.mean), rank
        assert torch.equal(state["weight"], single.weight), rank


# ------------------------------------------------------------------- the trainer


TINY = ["--model", "resnet_tiny_cifar", "--data",
        "synthetic:num_samples=64,image_size=32,object_scale=0.3:0.5", "--batch-size", "16",
        "--num-workers", "0", "--knn-every", "0", "--pictures", "0", "--progress", "false",
        "--localizer", "harvest", "--box-warmup-epochs", "null"]  # harvest needs a warm-up


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_harvest_schedule_reads_boxes_every_epoch_after_the_warm_up() -> None:
    config = TrainConfig(epochs=10, localizer="harvest", box_warmup_epochs=None)
    assert config.resolved_schedule() == (2, 1)
    assert [e for e in range(1, 11) if config.box_update_due(e)] == list(range(2, 10))
    assert TrainConfig(epochs=10, localizer="harvest", loc_interval=3,
                       box_warmup_epochs=1).resolved_schedule() == (1, 3)
    # other localizers: every fifth of training
    assert TrainConfig(epochs=10, box_warmup_epochs=None).resolved_schedule() == (2, 2)
    assert not TrainConfig(localizer="harvest", crop="rcrop").harvests_boxes()


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_pretrain_with_harvest_gives_boxes_without_a_box_pass(tmp_path: Path,
                                                              augment_on: str) -> None:
    assert main(["pretrain", *TINY, "--epochs", "3", "--augment-on", augment_on,
                 "--output", str(tmp_path)]) == 0
    rows = records(tmp_path)
    # 3 epochs: warm-up 1, then boxes after every epoch but the last
    assert [("box_mean_iou" in r) for r in rows] == [True, True, False]
    state, _ = read_checkpoint(tmp_path)
    assert state["harvest"]["mean"].shape == (64, R, R)
    assert not (state["harvest"]["weight"].flatten(1).amax(1) == 0).any()  # all images seen
    assert state["boxes"]["valid"].any()
    assert rows[1]["box_pass_seconds"] < 1.0


@pytest.mark.slow
def test_harvest_boxes_beat_the_whole_image_on_synthetic_objects(tmp_path: Path) -> None:
    """resnet_mini_cifar, a few epochs on large synthetic objects: the harvested boxes
    overlap the ground truth more than the whole image does."""
    assert main(["pretrain", "--model", "resnet_mini_cifar", "--data",
                 "synthetic:num_samples=512,image_size=32,object_scale=0.3:0.55,"
                 "backgrounds=1,class_colours=1", "--batch-size", "64", "--epochs", "4",
                 "--num-workers", "0", "--knn-every", "0", "--pictures", "0",
                 "--progress", "false", "--localizer", "harvest", "--box-warmup-epochs",
                 "null", "--augment-on", "device", "--output", str(tmp_path)]) == 0
    passes = [r for r in records(tmp_path) if "box_mean_iou" in r]
    assert passes and all(r["box_mean_iou"] > r["whole_image_mean_iou"] for r in passes)
    assert all(r["box_degenerate_share"] < 0.5 for r in passes)


def final_state(folder: Path) -> dict:
    state, _ = read_checkpoint(folder)
    return state


@pytest.mark.slow
def test_harvest_resume_ends_bit_identical(tmp_path: Path) -> None:
    args = ["pretrain", *TINY, "--epochs", "4", "--augment-on", "device",
            "--keep-checkpoints", "4"]
    assert main([*args, "--output", str(tmp_path / "reference")]) == 0
    assert main([*args, "--output", str(tmp_path / "resumed")]) == 0
    # as if killed in epoch 3: only the epoch-2 state is left to resume from
    folder = tmp_path / "resumed"
    for late in ("checkpoint-epoch0003.pt", "checkpoint-epoch0004.pt"):
        (folder / late).unlink(missing_ok=True)
    assert main([*args, "--output", str(folder), "--resume", "auto"]) == 0
    expected, got = final_state(tmp_path / "reference"), final_state(folder)
    assert got["epoch"] == expected["epoch"] == 4
    for key in ("mean", "weight"):
        assert torch.equal(got["harvest"][key], expected["harvest"][key])
    assert torch.equal(got["boxes"]["boxes"], expected["boxes"]["boxes"])
    for key, tensor in expected["model"].items():
        assert torch.equal(got["model"][key], tensor), key


def test_resuming_a_run_without_a_bank_into_harvest_is_one_error(tmp_path: Path,
                                                                 capsys) -> None:
    base = [arg for arg in TINY if arg not in ("--localizer", "harvest")]
    assert main(["pretrain", *base, "--epochs", "1", "--output", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["pretrain", *TINY, "--epochs", "1", "--output", str(tmp_path),
                 "--resume", "auto"]) == 2
    # a resume continues the same run: another localizer is refused before the bank is
    # read (issue 23; the bank's own check stays for checkpoints without a config)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "localizer=" in err and "harvest" in err


def test_harvest_settles_background_auto_per_family_like_peak() -> None:
    """'auto' used to mean the median map for harvest whatever the model (it was never
    settled); it follows the family-defaults table now, as for the default localizer."""
    localizer = create_localizer("harvest", background="auto")
    assert localizer.background == "median" and localizer.background_option == "auto"
    localizer.check(timm.create_model("test_efficientnet", num_classes=0))
    assert localizer.background is None  # EfficientNet's family default: no median map
    localizer.check(timm.create_model("test_resnet", num_classes=0))
    assert localizer.background == "median"
    assert create_localizer("harvest").background is None  # unset: no background
