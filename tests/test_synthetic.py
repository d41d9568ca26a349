"""Tests for the download-free ``SyntheticObjects`` dataset."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from timm_ccrop.data import shapes
from timm_ccrop.data.synthetic import SHAPE_NAMES, SyntheticObjects
from timm_ccrop.data.synthetic_render import render_images


def _stack(ds, order):
    return {i: np.asarray(ds[i][0]) for i in order}


# --------------------------------------------------------------------------- basic API


def test_item_is_rgb_pil_and_int_target():
    ds = SyntheticObjects(20, image_size=24, num_classes=5)
    img, target = ds[3]
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == (24, 24)
    assert isinstance(target, int) and 0 <= target < 5
    assert target == ds.targets[3]
    assert len(ds) == 20
    assert ds.num_classes == 5
    assert ds.classes == list(SHAPE_NAMES[:5])
    assert ds.has_labels is True
    assert np.array_equal(np.asarray(ds[-1][0]), np.asarray(ds[19][0]))
    with pytest.raises(IndexError):
        ds[20]


def test_sample_id_and_repr():
    ds = SyntheticObjects(20, split="test")
    assert ds.sample_id(12) == "synthetic-test-00012"
    assert SyntheticObjects(5).sample_id(0) == "synthetic-train-00000"
    assert "num_samples=20" in repr(ds)


def test_at_least_ten_distinct_shapes_and_max_classes():
    assert len(SHAPE_NAMES) >= 10
    assert len(set(SHAPE_NAMES)) == len(SHAPE_NAMES)
    ds = SyntheticObjects(2 * len(SHAPE_NAMES), num_classes=len(SHAPE_NAMES))
    assert sorted(set(ds.targets)) == list(range(len(SHAPE_NAMES)))
    ds.images_uint8()  # every shape renders


def test_images_uint8_matches_items_and_gt_boxes():
    ds = SyntheticObjects(40, image_size=16)
    x = ds.images_uint8()
    assert x.dtype == torch.uint8 and x.shape == (40, 3, 16, 16) and x.is_contiguous()
    for i in (0, 7, 39):
        assert np.array_equal(x[i].permute(1, 2, 0).numpy(), np.asarray(ds[i][0]))
        assert np.array_equal(ds.image_array(i), np.asarray(ds[i][0]))
    b = ds.gt_boxes
    assert b.dtype == torch.float32 and b.shape == (40, 4)
    assert ds.gt_boxes is b  # computed once
    assert ds.prerender() is ds


def test_transform_hooks():
    ds = SyntheticObjects(4, transform=lambda im: np.asarray(im).shape,
                          target_transform=lambda t: -1)
    assert ds[0] == ((32, 32, 3), -1)


# --------------------------------------------------------------------------- determinism


def test_same_arguments_give_identical_pixels_boxes_targets():
    a = SyntheticObjects(50, seed=3)
    b = SyntheticObjects(50, seed=3)
    assert torch.equal(a.images_uint8(), b.images_uint8())
    assert torch.equal(a.gt_boxes, b.gt_boxes)
    assert a.targets == b.targets


def test_seed_and_split_change_the_images():
    base = SyntheticObjects(30, seed=0).images_uint8()
    other_seed = SyntheticObjects(30, seed=1).images_uint8()
    other_split = SyntheticObjects(30, seed=0, split="test").images_uint8()
    # every single image differs, not just a few
    assert all(not torch.equal(base[i], other_seed[i]) for i in range(30))
    assert all(not torch.equal(base[i], other_split[i]) for i in range(30))
    assert SyntheticObjects(200, seed=0).targets != SyntheticObjects(200, seed=1).targets


def test_independent_of_access_order_and_of_batching():
    n = 600  # spans several lazily rendered cache chunks
    order = np.random.default_rng(0).permutation(n)
    fwd = _stack(SyntheticObjects(n, seed=5), range(n))
    shuffled = _stack(SyntheticObjects(n, seed=5), order)
    assert all(np.array_equal(fwd[i], shuffled[i]) for i in range(n))
    # rendering one image on its own gives the same pixels as rendering it within a batch
    ds = SyntheticObjects(n, seed=5)
    for i in (0, 255, 256, 599):
        img, _, _ = ds.render([i])
        assert np.array_equal(img[0], fwd[i])
    imgs, _, _ = ds.render([599, 3, 300])
    assert np.array_equal(imgs[1], fwd[3])


def test_prefix_stable_across_num_samples():
    small = SyntheticObjects(37, seed=2)
    big = SyntheticObjects(300, seed=2)
    assert big.targets[:37] == small.targets
    assert torch.equal(big.images_uint8()[:37], small.images_uint8())
    assert torch.equal(big.gt_boxes[:37], small.gt_boxes)


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize("n,c", [(1000, 10), (1003, 10), (50, 16), (7, 3)])
def test_targets_balanced(n, c):
    t = np.asarray(SyntheticObjects(n, num_classes=c).targets)
    counts = np.bincount(t, minlength=c)
    assert counts.max() - counts.min() <= 1
    if n % c == 0:
        assert (counts == n // c).all()
    # not simply i % c: the order is shuffled
    assert not np.array_equal(t, np.arange(n) % c)


# --------------------------------------------------------------------------- boxes


@pytest.mark.parametrize("kwargs", [{}, {"clutter": 0.0}, {"object_scale": (0.2, 0.35),
                                                           "center_bias": -0.5}])
def test_boxes_match_the_pixels_the_object_changed(kwargs):
    """The box is computed from the object mask; here it is checked against the image: pixels
    outside the box must equal the background rendered without the object, and (up to
    pixels with tiny, invisible coverage) the changed pixels span the whole box."""
    W = 32
    n = 150
    ds = SyntheticObjects(n, image_size=W, seed=11, **kwargs)
    idx = np.arange(n)
    with_obj, cov, boxes = ds.render(idx)
    without, cov2, boxes2 = ds.render(idx, draw_object=False)
    assert np.array_equal(cov, cov2) and np.array_equal(boxes, boxes2)
    assert torch.equal(torch.from_numpy(boxes), ds.gt_boxes)
    px = np.rint(boxes * W).astype(int)
    assert np.allclose(boxes * W, px, atol=1e-5)  # pixel-edge convention: k / W
    exact = 0
    for i in range(n):
        x0, y0, x1, y1 = px[i]
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= W
        changed = (with_obj[i] != without[i]).any(axis=-1)
        inside = np.zeros((W, W), bool)
        inside[y0:y1, x0:x1] = True
        assert not changed[~inside].any(), f"image {i}: object pixels outside its box"
        assert changed.any()
        # coverage: zero outside the box, and touching all four box edges (tight box)
        assert not cov[i][~inside].any()
        assert cov[i][y0, x0:x1].any() and cov[i][y1 - 1, x0:x1].any()
        assert cov[i][y0:y1, x0].any() and cov[i][y0:y1, x1 - 1].any()
        ys, xs = np.nonzero(changed)
        got = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert all(abs(g - e) <= 1 for g, e in zip(got, px[i], strict=True)), (i, got, px[i])
        exact += got == tuple(px[i])
    assert exact >= 0.9 * n


def test_objects_fully_inside_and_sizes_follow_object_scale():
    W = 64
    ds = SyntheticObjects(200, image_size=W, object_scale=(0.25, 0.4))
    b = ds.gt_boxes.numpy()
    assert (b >= 0).all() and (b <= 1).all()
    longest = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    # the object's square has side U(0.25, 0.4) * W; the shape fills most of it (>= ~0.55)
    assert longest.max() <= 0.4 + 1 / W
    assert longest.min() >= 0.25 * 0.55


def test_center_bias_moves_objects():
    def mean_offset(bias):
        b = SyntheticObjects(300, center_bias=bias, object_scale=(0.2, 0.3)).gt_boxes
        centre = (b[:, :2] + b[:, 2:]) / 2
        return (centre - 0.5).abs().mean().item()

    assert mean_offset(0.7) < mean_offset(0.0) < mean_offset(-0.7)


@pytest.mark.parametrize("size,scale", [(8, (0.3, 0.55)), (8, (0.05, 0.1)), (32, (1.0, 1.0)),
                                        (50, (0.5, 0.9))])
def test_odd_sizes_render(size, scale):
    ds = SyntheticObjects(20, image_size=size, object_scale=scale)
    x = ds.images_uint8()
    assert x.shape == (20, 3, size, size)
    b = ds.gt_boxes
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()


def test_colour_not_tied_to_class():
    """Mean object colour is about the same for every class (colour is random per sample)."""
    ds = SyntheticObjects(400, num_classes=4, clutter=0.0)
    imgs, cov, _ = ds.render(np.arange(len(ds)))
    t = np.asarray(ds.targets)
    full = cov >= 1.0
    means = np.stack([
        np.stack([imgs[i][full[i]].mean(0) for i in np.flatnonzero(t == c)]).mean(0)
        for c in range(4)
    ])
    assert np.abs(means - means.mean(0)).max() < 25  # out of 255


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "num_samples.*0"),
        ({"num_samples": 2.5}, "num_samples.*2.5"),
        ({"image_size": 7}, "image_size.*7"),
        ({"num_classes": 0}, "num_classes.*0"),
        ({"num_classes": len(SHAPE_NAMES) + 1}, f"\\[1, {len(SHAPE_NAMES)}\\]"),
        ({"split": "val"}, "split.*'val'"),
        ({"object_scale": (0.0, 0.5)}, r"object_scale.*\(0\.0, 0\.5\)"),
        ({"object_scale": (0.6, 0.5)}, r"object_scale.*0\.6"),
        ({"object_scale": (0.5, 1.2)}, r"object_scale.*1\.2"),
        ({"object_scale": 0.5}, "object_scale"),
        ({"clutter": -1.0}, "clutter.*-1.0"),
        ({"center_bias": 1.0}, "center_bias.*1.0"),
        ({"seed": -3}, "seed.*-3"),
        ({"backgrounds": -1}, "backgrounds.*-1"),
        ({"backgrounds": 2.5}, "backgrounds.*2.5"),
        ({"palette": -2}, "palette.*-2"),
        ({"class_colours": 2}, "class_colours.*2"),
    ],
)
def test_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticObjects(**kwargs)


def test_too_many_classes_names_the_limit():
    with pytest.raises(ValueError) as e:
        SyntheticObjects(10, num_classes=99)
    assert str(len(SHAPE_NAMES)) in str(e.value) and "99" in str(e.value)


def test_render_rejects_bad_indices():
    ds = SyntheticObjects(10)
    with pytest.raises(IndexError):
        ds.render([10])
    assert ds.render([])[0].shape == (0, 32, 32, 3)


def test_shared_backgrounds_repeat_and_leave_objects_alone():
    kwargs = dict(object_scale=(0.2, 0.35), center_bias=-0.5)
    own = SyntheticObjects(40, **kwargs)
    shared = SyntheticObjects(40, backgrounds=3, **kwargs)
    # Same objects (geometry, class) as without shared backgrounds; other pixels differ.
    assert torch.equal(own.gt_boxes, shared.gt_boxes) and own.targets == shared.targets
    assert not torch.equal(own.images_uint8(), shared.images_uint8())
    # Without clutter there is no per-image noise: backgrounds are exact copies, at most 3
    # distinct ones, and the test split draws from the same three.
    plain = dict(kwargs, clutter=0.0, backgrounds=3)
    train_bg = SyntheticObjects(40, **plain).render(range(40), draw_object=False)[0]
    test_bg = SyntheticObjects(40, split="test", **plain).render(range(40), draw_object=False)[0]
    distinct = {b.tobytes() for b in train_bg}
    assert len(distinct) == 3 and {b.tobytes() for b in test_bg} <= distinct
    # With clutter, two images on the same background differ by sensor noise only.
    cluttered = SyntheticObjects(40, backgrounds=1, **kwargs).render(range(2), draw_object=False)[0]
    diff = np.abs(cluttered[0].astype(float) - cluttered[1].astype(float))
    assert 0 < diff.mean() < 0.035 * 255 * 2
    # Without shared backgrounds the pixels are exactly what they always were.
    again = SyntheticObjects(40, backgrounds=0, **kwargs)
    assert torch.equal(again.images_uint8(), own.images_uint8())


def test_palette_fixes_object_colours_and_nothing_else():
    kwargs = dict(clutter=0.0, object_scale=(0.3, 0.4))
    free_img, free_cov, free_boxes = SyntheticObjects(30, **kwargs).render(range(30))
    img, cov, boxes = SyntheticObjects(30, palette=1, **kwargs).render(range(30))
    np.testing.assert_array_equal(boxes, free_boxes)
    background = cov == 0
    np.testing.assert_array_equal(img[background], free_img[background])
    # Shading scales all channels alike: with one palette colour, every fully covered pixel
    # of every image points the same way in RGB (up to rounding), unlike free colours.
    def directions(images, coverage):
        rgb = images[coverage == 1].astype(float) + 1.0
        return rgb / np.linalg.norm(rgb, axis=1, keepdims=True)
    assert directions(img, cov).std(axis=0).max() < 0.02
    assert directions(free_img, free_cov).std(axis=0).max() > 0.1


def test_class_colours_tie_the_colour_to_the_class():
    kwargs = dict(clutter=0.0, object_scale=(0.3, 0.4), num_classes=4)
    ds = SyntheticObjects(40, class_colours=True, **kwargs)
    img, cov, boxes = ds.render(range(40))
    np.testing.assert_array_equal(boxes, SyntheticObjects(40, **kwargs).render(range(40))[2])
    mean_direction = []
    for k in range(4):
        rgb = img[np.asarray(ds.targets) == k][cov[np.asarray(ds.targets) == k] == 1]
        rgb = rgb.astype(float) + 1.0
        unit = rgb / np.linalg.norm(rgb, axis=1, keepdims=True)
        assert unit.std(axis=0).max() < 0.02  # one colour per class (shading aside)
        mean_direction.append(unit.mean(axis=0))
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(mean_direction)
            for b in mean_direction[i + 1:]]
    assert min(gaps) > 0.2  # and the classes' colours are far apart


def test_shapes_module_defines_every_class_inside_its_square():
    assert shapes.SHAPE_NAMES == SHAPE_NAMES == tuple(name for name, _ in shapes.SHAPES)
    grid = np.linspace(-1.2, 1.2, 97)
    u, v = np.meshgrid(grid, grid)
    outside = np.maximum(np.abs(u), np.abs(v)) >= 1.0
    for name, mask_of in shapes.SHAPES:
        mask = mask_of(u, v)
        assert mask.shape == u.shape and mask.dtype == bool, name
        assert mask.any() and not mask[outside].any(), name


def test_render_images_takes_any_render_settings():
    """Rendering reads only the RenderSettings fields, so a plain namespace renders the
    same pixels as the dataset."""
    ds = SyntheticObjects(num_samples=12, image_size=24, seed=4, backgrounds=2, palette=3)
    fields = ("image_size", "num_classes", "seed", "split_id", "object_scale", "clutter",
              "center_bias", "backgrounds", "palette", "class_colours", "targets_array")
    settings = SimpleNamespace(**{name: getattr(ds, name) for name in fields})
    idx = np.array([0, 3, 11])
    for got, want in zip(render_images(settings, idx), ds.render(idx), strict=True):
        np.testing.assert_array_equal(got, want)
    images, coverage, boxes = render_images(settings, np.array([], dtype=np.int64))
    assert images.shape == (0, 24, 24, 3) and coverage.shape == (0, 24, 24)
    assert boxes.shape == (0, 4)
