"""The ``ddt`` and ``ccam`` localizers: exact boxes on stub maps, degenerate cases, real
backbones (CNN and ViT) and the dataset pass."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from timm_ccrop.crop.boxes import validate_boxes
from timm_ccrop.data import SyntheticObjects
from timm_ccrop.localize import LOCALIZERS, create_localizer, localize_dataset
from timm_ccrop.localize.ccam import ContrastiveCAMLocalizer, contrastive_cam
from timm_ccrop.localize.ddt import DDTLocalizer
from timm_ccrop.models.backbones import create_backbone

STRIDE = 4
SIZE = 32  # 8x8 maps
WHOLE = torch.tensor([0.0, 0.0, 1.0, 1.0])


class StubNet(nn.Module):
    """Its stage's map is the input average-pooled by ``STRIDE``: the test sets the map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stage = nn.AvgPool2d(STRIDE)
        self.scale = nn.Parameter(torch.ones(channels))
        self.feature_info = [{"module": "stage", "num_chs": channels, "reduction": STRIDE}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.stage(x) * self.scale[:, None, None]).mean(dim=(2, 3))


def cell_mask(cells: tuple[int, int, int, int]) -> torch.Tensor:
    """Pixel mask ``(SIZE, SIZE)`` of the cells ``(x0, y0, x1, y1)`` (end exclusive)."""
    x0, y0, x1, y1 = cells
    mask = torch.zeros(SIZE, SIZE)
    mask[y0 * STRIDE:y1 * STRIDE, x0 * STRIDE:x1 * STRIDE] = 1.0
    return mask


def expected_box(cells: tuple[int, int, int, int]) -> torch.Tensor:
    return torch.tensor(cells, dtype=torch.float32) / (SIZE // STRIDE)


CELLS = [(1, 1, 3, 4), (4, 2, 7, 4), (0, 5, 2, 8), (5, 5, 8, 7), (2, 0, 5, 2), (3, 3, 5, 5)]


def square_images(object_colour: tuple[float, ...], background: tuple[float, ...]
                  ) -> torch.Tensor:
    """One square per image (``CELLS``) of one colour on a constant background."""
    images = []
    for cells in CELLS:
        mask = cell_mask(cells)
        colour = torch.tensor(object_colour)[:, None, None]
        ground = torch.tensor(background)[:, None, None]
        images.append(mask * colour + (1 - mask) * ground)
    return torch.stack(images)


def fitted_ddt(network: nn.Module, images: torch.Tensor, **options) -> DDTLocalizer:
    localizer = create_localizer("ddt", **options)
    assert isinstance(localizer, DDTLocalizer)
    with torch.no_grad():
        localizer.fit(network, lambda: iter(images.split(4)))
    return localizer


def test_registered_with_options_checked():
    assert {"ddt", "ccam"} <= set(LOCALIZERS)
    assert create_localizer("ddt").needs_fit and create_localizer("ccam").needs_fit
    assert create_localizer("ccam", level=0.5, temperature=0.1).describe() == \
        "ccam(level=0.5, temperature=0.1)"
    for name, bad in [("ddt", {"pick": "middle"}), ("ddt", {"upsample": 0}),
                      ("ccam", {"rule": "median"}), ("ccam", {"temperature": 0}),
                      ("ccam", {"bank_size": 0}),
                      ("ddt", {"threshold": 0.3}), ("ccam", {"fuse": (1, 2)})]:
        with pytest.raises(ValueError):
            create_localizer(name, **bad)


@pytest.mark.parametrize("colours", [((1.0, 0.9, 0.2), (0.1, 0.2, 0.3)),
                                     ((0.0, 0.1, 0.0), (0.8, 0.7, 0.9))])
def test_ddt_finds_the_squares_exactly(colours):
    images = square_images(*colours)
    network = StubNet(3)
    localizer = fitted_ddt(network, images)
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(network, images, (SIZE, SIZE))
    assert not degenerate.any()
    torch.testing.assert_close(boxes, torch.stack([expected_box(c) for c in CELLS]))
    # Upsampled, the box edges move by less than one cell.
    with torch.no_grad():
        finer, _ = fitted_ddt(network, images, upsample=2).boxes(network, images, (SIZE, SIZE))
    assert (finer - boxes).abs().max() <= 1 / 8 + 1e-6


def test_ddt_largest_component_and_sign_from_the_data():
    # Two squares in one image: the largest is kept, the other dropped.
    images = square_images((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    images[0] = images[0] + cell_mask((6, 0, 7, 1))
    network = StubNet(3)
    localizer = fitted_ddt(network, images)
    with torch.no_grad():
        boxes, _ = localizer.boxes(network, images[:1], (SIZE, SIZE))
    torch.testing.assert_close(boxes[0], expected_box(CELLS[0]))
    assert localizer.direction is not None and localizer.direction.sum() > 0


def test_ddt_degenerate_rows_and_unfitted():
    images = square_images((1.0, 0.5, 0.0), (0.2, 0.2, 0.2))
    network = StubNet(3)
    with pytest.raises(RuntimeError, match="not fitted"):
        create_localizer("ddt").boxes(network, images, (SIZE, SIZE))
    with pytest.raises(RuntimeError, match="no batch"):
        create_localizer("ddt").fit(network, lambda: iter([]))
    localizer = fitted_ddt(network, images)
    batch = images[:3].clone()
    batch[1] = torch.tensor([0.2, 0.2, 0.2])[:, None, None]  # background only: no positive
    batch[2, 0, 0, 0] = float("nan")
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(network, batch, (SIZE, SIZE))
    assert degenerate.tolist() == [False, True, True]
    torch.testing.assert_close(boxes[1:], WHOLE.expand(2, 4))
    torch.testing.assert_close(boxes[0], expected_box(CELLS[0]))


class FakeAccelerator:
    """Two processes that saw the same shard: sums double, gathers repeat."""

    num_processes = 2

    def reduce(self, tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        assert reduction == "sum"
        return tensor * 2

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat([tensor, tensor])

    def pad_across_processes(self, tensor: torch.Tensor, dim: int = 0,
                             pad_index: float = 0) -> torch.Tensor:
        return tensor  # both processes hold as many rows


def test_ddt_fit_reduces_over_processes_and_subsamples():
    images = square_images((1.0, 0.9, 0.2), (0.1, 0.2, 0.3))
    images = images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    network = StubNet(3)
    single = fitted_ddt(network, images)
    shared = create_localizer("ddt")
    with torch.no_grad():
        shared.fit(network, lambda: iter(images.split(4)), FakeAccelerator())
    torch.testing.assert_close(shared.mean, single.mean)
    torch.testing.assert_close(shared.direction, single.direction)
    sampled = fitted_ddt(network, images, max_locations=100)  # of 256 per batch
    assert torch.dot(sampled.direction, single.direction) > 0.99


def ccam_images() -> torch.Tensor:
    """Channel ``i`` holds image ``i``'s square, the last channel its background: the
    score of image ``i`` grows only along its own object channel."""
    count = len(CELLS)
    images = torch.zeros(count, count + 1, SIZE, SIZE)
    for index, cells in enumerate(CELLS):
        mask = cell_mask(cells)
        images[index, index] = mask
        images[index, -1] = 1 - mask
    return images


def fitted_ccam(network: nn.Module, images: torch.Tensor, head: nn.Module | None = None,
                split: int = 4, accelerator: FakeAccelerator | None = None,
                **options) -> ContrastiveCAMLocalizer:
    localizer = create_localizer("ccam", **options)
    assert isinstance(localizer, ContrastiveCAMLocalizer)
    localizer.attach(head)
    with torch.no_grad():
        localizer.fit(network, lambda: iter(images.split(split)), accelerator)
    return localizer


@pytest.mark.parametrize("with_head", [False, True])
def test_ccam_finds_the_squares_exactly_and_leaves_grads(with_head):
    images = ccam_images()
    network = StubNet(images.shape[1])
    head = None
    if with_head:  # an identity projector with BatchNorm: eval mode during the pass
        head = nn.Sequential(nn.Linear(images.shape[1], images.shape[1]),
                             nn.BatchNorm1d(images.shape[1]))
        nn.init.eye_(head[0].weight)
        nn.init.zeros_(head[0].bias)
        head.train()
    localizer = fitted_ccam(network, images, head)
    assert localizer.bank is not None and localizer.bank.shape == (len(CELLS), len(CELLS) + 1)
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(network, images, (SIZE, SIZE))
    assert not degenerate.any()
    torch.testing.assert_close(boxes, torch.stack([expected_box(c) for c in CELLS]))
    modules = [network] + ([head] if head is not None else [])
    assert all(p.grad is None for m in modules for p in m.parameters())
    if head is not None:
        assert head.training and int(head[1].num_batches_tracked) == 0


def test_ccam_degenerate_cases():
    images = ccam_images()
    network = StubNet(images.shape[1])
    with pytest.raises(RuntimeError, match="not fitted"):
        create_localizer("ccam").boxes(network, images, (SIZE, SIZE))
    with pytest.raises(RuntimeError, match="no batch"):
        create_localizer("ccam").fit(network, lambda: iter([]))
    localizer = fitted_ccam(network, images)
    with torch.no_grad():
        batch = images[:3].clone()
        batch[1] = 0.0
        batch[1, -1] = 1.0  # background only: a constant CAM
        batch[2, 0, 0, 0] = float("nan")
        boxes, degenerate = localizer.boxes(network, batch, (SIZE, SIZE))
    assert degenerate.tolist() == [False, True, True]
    torch.testing.assert_close(boxes[0], expected_box(CELLS[0]))
    # A bank of non-finite features only is empty: no negatives, every row degenerate.
    broken = images.clone()
    broken[:, 0, 0, 0] = float("nan")
    empty = fitted_ccam(network, broken)
    assert empty.bank is not None and len(empty.bank) == 0
    with torch.no_grad():
        boxes, degenerate = empty.boxes(network, images[:2], (SIZE, SIZE))
    assert degenerate.all()
    torch.testing.assert_close(boxes, WHOLE.expand(2, 4))
    # A bank of the image itself only: no negative left, degenerate.
    alone = fitted_ccam(network, images[:1])
    with torch.no_grad():
        _, degenerate = alone.boxes(network, images[:2], (SIZE, SIZE))
    assert degenerate.tolist() == [True, False]
    # The map function on its own: non-negative, one map per image.
    bank = F.normalize(torch.randn(6, 5), dim=1)
    cams = contrastive_cam(torch.randn(4, 5, 3, 3), None, bank)
    assert cams.shape == (4, 3, 3) and (cams >= 0).all()


def test_ccam_boxes_do_not_depend_on_the_batch():
    images = ccam_images()
    network = StubNet(images.shape[1])
    localizer = fitted_ccam(network, images)
    with torch.no_grad():
        together, _ = localizer.boxes(network, images, (SIZE, SIZE))
        single, degenerate = localizer.boxes(network, images[:1], (SIZE, SIZE))
        order = torch.tensor([4, 0, 5, 2])
        shuffled, _ = localizer.boxes(network, images[order], (SIZE, SIZE))
    assert not degenerate.any()  # one image works: the bank holds its negatives
    torch.testing.assert_close(single[0], expected_box(CELLS[0]))
    assert torch.equal(single[0], together[0])
    assert torch.equal(shuffled, together[order])


@pytest.mark.parametrize("bank_size", [512, 4])
def test_ccam_bank_is_the_same_for_any_order_batching_and_processes(bank_size):
    images = ccam_images()
    images = images + 0.05 * torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    network = StubNet(images.shape[1])
    reference = fitted_ccam(network, images, bank_size=bank_size).bank
    assert reference is not None and len(reference) == min(bank_size, len(images))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(2))
    for other in (fitted_ccam(network, images[order], bank_size=bank_size, split=2),
                  fitted_ccam(network, images.flip(0), bank_size=bank_size, split=5),
                  # two processes that saw the same shard: duplicates count once
                  fitted_ccam(network, images, bank_size=bank_size,
                              accelerator=FakeAccelerator())):
        assert other.bank is not None and torch.equal(other.bank, reference)
def test_ccam_on_a_cnn_leaves_parameter_grads_none():
    model = create_backbone("resnet_mini_cifar", seed=0)
    head = nn.Linear(model.num_features, 16)
    images = torch.randn(4, 3, SIZE, SIZE)
    model.eval()
    localizer = fitted_ccam(model, images, head, split=2, upsample=2)
    with torch.no_grad():
        boxes, degenerate = localizer.boxes(model, images, (SIZE, SIZE))
    validate_boxes(boxes)
    assert degenerate.shape == (4,)
    assert all(p.grad is None for m in (model, head) for p in m.parameters())


@pytest.mark.parametrize("name", ["ddt", "ccam"])
def test_vit_works(name):
    model = timm.create_model("test_vit", dynamic_img_size=True, num_classes=0).eval()
    images = torch.randn(4, 3, 64, 64)  # 4x4 tokens
    localizer = create_localizer(name)
    with torch.no_grad():
        if localizer.needs_fit:
            localizer.fit(model, lambda: iter(images.split(2)))
        boxes, degenerate = localizer.boxes(model, images, (64, 64))
    validate_boxes(boxes)
    assert boxes.shape == (4, 4) and degenerate.shape == (4,)


@pytest.mark.parametrize("options", [{"name": "ddt"}, {"name": "ddt", "dilate": True},
                                     {"name": "ccam"}])
def test_localize_dataset_end_to_end(options):
    model = create_backbone("resnet_mini_cifar", seed=0)
    dataset = SyntheticObjects(num_samples=12, image_size=32, backgrounds=1)
    localizer = create_localizer(**options)
    result = localize_dataset(model, dataset, 32, batch_size=8, progress=False,
                              localizer=localizer)
    validate_boxes(result.boxes)
    assert result.boxes.shape == (12, 4) and result.degenerate.shape == (12,)
    assert result.localizer == localizer.describe()
    assert 0.0 < result.mean_area <= 1.0
