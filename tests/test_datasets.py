"""Tests of timm_ccrop.data: spec parsing and the readers on format-exact fixtures."""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from timm_ccrop.crop.views import VIEW_PRESETS
from timm_ccrop.data import (
    KINDS,
    DatasetSpec,
    LabeledImageDataset,
    UnsafePickleError,
    build_dataset,
    dataset_kind,
    default_eval_split,
    default_train_split,
    kind_names,
    load_cifar_pickle,
    parse_data_spec,
    split_names,
)
from timm_ccrop.data.base import check_split, open_rgb
from timm_ccrop.data.build import BUILDERS, GENERATORS, READERS, registry_problems
from timm_ccrop.data.kinds import DATASET_KINDS

try:  # tests/ is a package (tests/__init__.py)
    from . import fixtures as fx_mod
except ImportError:  # pragma: no cover - run as loose files: tests/ itself is on sys.path
    import fixtures as fx_mod


def check_common(ds, n: int, num_classes: int) -> None:
    """The LabeledImageDataset contract every reader must honour."""
    assert isinstance(ds, LabeledImageDataset)
    assert len(ds) == n == len(ds.targets)
    assert ds.num_classes == num_classes == len(ds.classes)
    assert all(isinstance(t, int) for t in ds.targets)
    img, target = ds[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    assert type(target) is int and target == ds.targets[0]
    assert isinstance(ds.sample_id(0), str) and ds.sample_id(0)
    assert len({ds.sample_id(i) for i in range(n)}) == n
    assert isinstance(ds.has_labels, bool)
    if ds.gt_boxes is not None:
        assert ds.gt_boxes.dtype == torch.float32 and ds.gt_boxes.shape == (n, 4)
        assert float(ds.gt_boxes.min()) >= 0.0 and float(ds.gt_boxes.max()) <= 1.0
    with pytest.raises(IndexError):
        ds[n]


# ---------------------------------------------------------------------------- specs


@pytest.mark.parametrize("kind", ["cifar10", "cifar100", "stl10", "tiny-imagenet", "folder"])
def test_parse_path_specs(kind, tmp_path):
    spec = parse_data_spec(f"{kind}:{tmp_path}/data")
    assert spec == DatasetSpec(kind=kind, path=tmp_path / "data", options={})
    assert parse_data_spec(str(spec)) == spec


def test_parse_spec_details():
    assert parse_data_spec(" CIFAR10:~/x ").path == Path("~/x").expanduser()
    # Only the first colon separates the kind, so Windows drive letters survive.
    assert parse_data_spec("folder:C:/data/imgs").path == Path("C:/data/imgs")
    assert parse_data_spec("synthetic") == DatasetSpec("synthetic", None, {})
    spec = parse_data_spec("synthetic:num_samples=2000, image_size=32,seed=0,scale=0.5,name=a")
    assert spec.path is None
    assert spec.options == {
        "num_samples": 2000, "image_size": 32, "seed": 0, "scale": 0.5, "name": "a"
    }  # fmt: skip
    assert type(spec.options["num_samples"]) is int and type(spec.options["scale"]) is float
    assert parse_data_spec(str(spec)) == spec
    # A range is lo:hi; a value with a colon that is not all numbers stays a string.
    spec = parse_data_spec("synthetic:object_scale=0.2:0.35,center_bias=-0.5,tag=a:b")
    assert spec.options == {"object_scale": (0.2, 0.35), "center_bias": -0.5, "tag": "a:b"}
    assert str(spec) == "synthetic:object_scale=0.2:0.35,center_bias=-0.5,tag=a:b"
    assert parse_data_spec(str(spec)) == spec


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("imagenet:/data", "'imagenet'"),
        ("/data/cifar", "'/data/cifar'"),
        ("", "''"),
        ("cifar10", "'cifar10'"),
        ("cifar10:", "'cifar10:'"),
        ("stl10:   ", "'stl10:   '"),
        ("synthetic:num_samples", "'num_samples'"),
        ("synthetic:num_samples=", "'num_samples='"),
        ("synthetic:=3", "'=3'"),
        ("synthetic:seed=1,,", "''"),
        ("synthetic:seed=1,seed=2", "'seed'"),
    ],
)
def test_parse_bad_specs(spec, bad):
    with pytest.raises(ValueError) as err:
        parse_data_spec(spec)
    msg = str(err.value)
    assert bad in msg
    if "twice" not in msg:
        assert "cifar10:PATH" in msg and "tiny-imagenet:PATH" in msg and "synthetic" in msg


def test_split_helpers():
    assert split_names("cifar10") == ("train", "test")
    assert "train+unlabeled" in split_names("stl10")
    assert split_names("stl10:/x") == split_names(parse_data_spec("stl10:/x"))
    assert {k: default_eval_split(k) for k in ("cifar10", "cifar100", "stl10")} == dict.fromkeys(
        ("cifar10", "cifar100", "stl10"), "test"
    )
    assert default_eval_split("tiny-imagenet") == "val"
    assert default_eval_split("folder") == "val"
    assert default_eval_split("synthetic") == "test"
    assert default_train_split("stl10") == "train+unlabeled"
    assert default_train_split("cifar10") == "train"
    assert len(split_names("synthetic")) >= 1
    with pytest.raises(ValueError, match="nope"):
        split_names("nope")


# ---------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("protocol", [None, 5])
def test_cifar10(tmp_path, protocol):
    fx = fx_mod.write_cifar10(tmp_path, n_train=12, n_test=7, protocol=protocol)
    for split in ("train", "test"):
        ds = build_dataset(f"cifar10:{tmp_path}", split)
        check_common(ds, len(fx.labels[split]), 10)
        assert ds.classes == fx.classes
        assert ds.targets == fx.labels[split]
        assert ds.has_labels and ds.gt_boxes is None
        assert ds.sample_id(3) == f"{split}/3"
        for i in range(len(ds)):
            img, target = ds[i]
            assert img.size == (32, 32)
            np.testing.assert_array_equal(np.asarray(img), fx.images[split][i])
            assert target == fx.labels[split][i]


def test_transforms_are_applied_when_set(tmp_path):
    fx = fx_mod.write_cifar10(tmp_path, n_train=5, n_test=1)
    ds = build_dataset(f"cifar10:{tmp_path}")
    assert ds.transform is None and ds.target_transform is None
    ds.transform = lambda img: np.asarray(img).sum()
    ds.target_transform = lambda t: t + 100
    value, target = ds[2]
    assert value == fx.images["train"][2].sum() and target == fx.labels["train"][2] + 100


def test_cifar10_layout_follows_format_doc(tmp_path):
    # Format doc: first 1024 bytes red, row-major, so the first 32 are red of row 0.
    fx_mod.write_cifar10(tmp_path, n_train=5, n_test=1, nested=False)
    with open(tmp_path / "data_batch_1", "rb") as f:
        raw = pickle.load(f)[b"data"][0]  # trusted fixture: plain pickle is fine here
    img = np.asarray(build_dataset(f"cifar10:{tmp_path}")[0][0])
    for ch, r, c in [(0, 0, 1), (1, 5, 30), (2, 31, 0), (0, 17, 9)]:
        assert img[r, c, ch] == raw[ch * 1024 + r * 32 + c]


def test_cifar100(tmp_path):
    fx = fx_mod.write_cifar100(tmp_path, n_train=9, n_test=4)
    ds = build_dataset(f"cifar100:{tmp_path}", "train")
    check_common(ds, 9, 100)
    assert ds.classes == fx.classes and ds.targets == fx.labels["train"]
    np.testing.assert_array_equal(np.asarray(ds[8][0]), fx.images["train"][8])
    test = build_dataset(f"cifar100:{tmp_path / 'cifar-100-python'}", "test")
    assert test.targets == fx.labels["test"]


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    fx = fx_mod.write_cifar10(tmp_path, n_train=5, n_test=2)
    bad = fx.data_dir / "test_batch"
    bad.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refusing to load (posix|nt|os)\.system"):
        build_dataset(f"cifar10:{tmp_path}", "test")
    with pytest.raises(pickle.UnpicklingError, match="test_batch"):
        load_cifar_pickle(bad)
    assert not marker.exists()

    # Arbitrary builtins are refused as well, e.g. eval.
    class EvalReduce:
        def __reduce__(self):
            return (eval, ("1+1",))

    bad.write_bytes(pickle.dumps(EvalReduce(), protocol=4))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_cifar_pickle(bad)


def test_cifar_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(f"cifar10:{tmp_path / 'nowhere'}")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg and "data_batch_1" in msg

    fx = fx_mod.write_cifar10(tmp_path, n_train=5, n_test=2)
    (fx.data_dir / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match=str(fx.data_dir / "data_batch_4")):
        build_dataset(f"cifar10:{tmp_path}", "train")
    assert len(build_dataset(f"cifar10:{tmp_path}", "test")) == 2  # test files still fine
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        build_dataset(f"cifar100:{tmp_path}")


def test_unknown_split_errors(tmp_path):
    fx_mod.write_cifar10(tmp_path, n_train=5, n_test=1)
    with pytest.raises(ValueError, match=r"'val'.*train, test"):
        build_dataset(f"cifar10:{tmp_path}", "val")
    with pytest.raises(ValueError, match="train\\+unlabeled"):
        build_dataset(f"stl10:{tmp_path}", "valid")
    with pytest.raises(ValueError, match="train, val, test"):
        build_dataset(f"tiny-imagenet:{tmp_path}", "unlabeled")


# ---------------------------------------------------------------------------- STL-10


def test_stl10_splits_and_pixels(tmp_path):
    fx = fx_mod.write_stl10(tmp_path, n_train=3, n_test=2, n_unlabeled=4)
    for split in ("train", "test", "unlabeled"):
        ds = build_dataset(f"stl10:{tmp_path}", split)
        check_common(ds, len(fx.labels[split]), 10)
        assert ds.classes == fx.classes and ds.gt_boxes is None
        assert ds.targets == fx.labels[split]
        assert ds.has_labels == (split != "unlabeled")
        for i in range(len(ds)):
            img, target = ds[i]
            assert img.size == (96, 96)
            np.testing.assert_array_equal(np.asarray(img), fx.images[split][i])
            assert target == fx.labels[split][i]


def test_stl10_orientation(tmp_path):
    fx_mod.write_stl10(tmp_path, n_train=1, n_test=0, n_unlabeled=0, nested=False)
    img = np.asarray(build_dataset(f"stl10:{tmp_path}", "train")[0][0])
    assert tuple(img[10, 10]) == (255, 255, 0)  # top-left: red + green
    assert tuple(img[10, 80]) == (0, 255, 0)  # top-right: green
    assert tuple(img[80, 10]) == (255, 0, 0)  # bottom-left: red
    assert tuple(img[80, 80]) == (0, 0, 0)  # bottom-right: black


def test_stl10_train_plus_unlabeled(tmp_path):
    fx = fx_mod.write_stl10(tmp_path, n_train=3, n_test=1, n_unlabeled=4)
    ds = build_dataset(f"stl10:{tmp_path}", "train+unlabeled")
    check_common(ds, 7, 10)
    assert ds.targets == fx.labels["train"] + [-1] * 4
    assert not ds.has_labels
    expected = np.concatenate([fx.images["train"], fx.images["unlabeled"]])
    for i in (0, 2, 3, 6):
        img, target = ds[i]
        np.testing.assert_array_equal(np.asarray(img), expected[i])
        assert target == ds.targets[i]
    assert ds[-1][1] == -1
    # Memory maps are not pickled (a spawned DataLoader worker reopens them).
    clone = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 96 * 96 * 3
    np.testing.assert_array_equal(np.asarray(clone[5][0]), expected[5])


def test_stl10_missing_and_corrupt(tmp_path):
    fx = fx_mod.write_stl10(tmp_path, n_train=2, n_test=1, n_unlabeled=1)
    (fx.data_dir / "unlabeled_X.bin").unlink()
    assert len(build_dataset(f"stl10:{tmp_path}", "train")) == 2
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(f"stl10:{tmp_path}", "train+unlabeled")
    msg = str(err.value)
    assert str(fx.data_dir / "unlabeled_X.bin") in msg
    assert "https://cs.stanford.edu/~acoates/stl10/" in msg
    with open(fx.data_dir / "test_X.bin", "ab") as f:
        f.write(b"\0" * 7)
    with pytest.raises(ValueError, match="test_X.bin"):
        build_dataset(f"stl10:{tmp_path}", "test")


# ---------------------------------------------------------------------------- Tiny-ImageNet


def edge_box(box: tuple[int, int, int, int]) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0 / 64, y0 / 64, (x1 + 1) / 64, (y1 + 1) / 64]


def test_tiny_imagenet_train(tmp_path):
    fx = fx_mod.write_tiny_imagenet(tmp_path, n_classes=3, n_per_class=3, n_val=4)
    ds = build_dataset(f"tiny-imagenet:{tmp_path}", "train")
    check_common(ds, 9, 3)
    assert ds.classes == fx.wnids  # sorted, although wnids.txt is not
    assert ds.class_names == [fx.names[w].split(",")[0] for w in fx.wnids]
    assert ds.has_labels and ds.gt_boxes is not None
    for i in range(len(ds)):
        name = ds.sample_id(i)
        wnid, box = fx.train[name]
        assert ds.targets[i] == fx.wnids.index(wnid)
        np.testing.assert_allclose(ds.gt_boxes[i].tolist(), edge_box(box), atol=1e-7)
    whole = [i for i in range(len(ds)) if fx.train[ds.sample_id(i)][1] == (0, 0, 63, 63)]
    assert ds.gt_boxes[whole[0]].tolist() == [0.0, 0.0, 1.0, 1.0]
    # The grayscale JPEG comes back as RGB of the right size.
    img, _ = ds[0]
    assert img.mode == "RGB" and img.size == (64, 64)


@pytest.mark.parametrize("split", ["val", "test"])
def test_tiny_imagenet_val(tmp_path, split):
    fx = fx_mod.write_tiny_imagenet(tmp_path, n_classes=3, n_per_class=1, n_val=5)
    ds = build_dataset(f"tiny-imagenet:{fx.data_dir}", split)
    check_common(ds, 5, 3)
    assert ds.split == "val"
    assert [ds.sample_id(i) for i in range(5)] == sorted(fx.val)
    for i in range(5):
        wnid, box = fx.val[ds.sample_id(i)]
        assert ds.targets[i] == fx.wnids.index(wnid) == ds[i][1]
        np.testing.assert_allclose(ds.gt_boxes[i].tolist(), edge_box(box), atol=1e-7)


def test_tiny_imagenet_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(f"tiny-imagenet:{tmp_path / 'absent'}")
    assert str(tmp_path / "absent") in str(err.value)
    assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in str(err.value)

    fx = fx_mod.write_tiny_imagenet(tmp_path, n_classes=2, n_per_class=1, n_val=2)
    (fx.data_dir / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match="val_1.JPEG"):
        build_dataset(f"tiny-imagenet:{tmp_path}", "val")
    (fx.data_dir / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        build_dataset(f"tiny-imagenet:{tmp_path}", "val")
    boxes = fx.data_dir / "train" / fx.wnids[1] / f"{fx.wnids[1]}_boxes.txt"
    boxes.unlink()
    with pytest.warns(UserWarning, match="_boxes.txt"):
        ds = build_dataset(f"tiny-imagenet:{tmp_path}", "train")
    assert ds.gt_boxes is None and len(ds) == 2


# ---------------------------------------------------------------------------- ImageFolder


def test_folder_single_split(tmp_path):
    fx = fx_mod.write_image_folder(tmp_path, ("dog", "cat", "emu"), n_per_class=2)
    ds = build_dataset(f"folder:{tmp_path}")
    check_common(ds, 6, 3)
    assert ds.classes == ["cat", "dog", "emu"] and ds.gt_boxes is None and ds.has_labels
    for i, (rel, target, pixels) in enumerate(fx.samples["train"]):
        assert ds.sample_id(i) == rel
        img, t = ds[i]
        assert img.size == (20, 12) and t == target == ds.targets[i]
        np.testing.assert_array_equal(np.asarray(img), pixels)
    with pytest.raises(ValueError, match="no train/ subfolder"):
        build_dataset(f"folder:{tmp_path}", "val")


def test_folder_with_splits(tmp_path):
    fx = fx_mod.write_image_folder(tmp_path, ("a", "b"), n_per_class=2, with_splits=True)
    train = build_dataset(f"folder:{tmp_path}", "train")
    val = build_dataset(f"folder:{tmp_path}", "val")
    check_common(val, 4, 2)
    assert train.targets == [s[1] for s in fx.samples["train"]]
    assert [val.sample_id(i) for i in range(4)] == [s[0] for s in fx.samples["val"]]
    np.testing.assert_array_equal(np.asarray(val[3][0]), fx.samples["val"][3][2])
    # With only val/ on disk, "test" is served from it too.
    assert build_dataset(f"folder:{tmp_path}", "test").sample_id(0) == val.sample_id(0)


def test_folder_eval_split_with_class_subset(tmp_path):
    fx_mod.write_image_folder(tmp_path / "train", ("a", "b", "c"), n_per_class=1)
    fx_mod.write_image_folder(tmp_path / "test", ("c",), n_per_class=2, ext=".jpg")
    ds = build_dataset(f"folder:{tmp_path}", "test")
    assert ds.classes == ["a", "b", "c"] and ds.targets == [2, 2]
    (tmp_path / "test" / "zebra").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "zebra" / "z.png")
    with pytest.raises(ValueError, match="zebra"):
        build_dataset(f"folder:{tmp_path}", "val")


def test_folder_empty_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        build_dataset(f"folder:{tmp_path / 'nothing_here'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        build_dataset(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "empty" / "cls").mkdir()
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="empty"):
        build_dataset(f"folder:{tmp_path / 'empty'}")


# ---------------------------------------------------------------------------- synthetic

HAS_SYNTHETIC = importlib.util.find_spec("timm_ccrop.data.synthetic") is not None


@pytest.mark.skipif(not HAS_SYNTHETIC, reason="timm_ccrop/synthetic.py not written yet")
def test_synthetic_via_spec():
    ds = build_dataset("synthetic:num_samples=12,image_size=32,seed=3", "train")
    assert len(ds) == 12 == len(ds.targets)
    img, target = ds[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
    assert target == ds.targets[0] and 0 <= target < ds.num_classes == len(ds.classes)
    assert isinstance(ds.sample_id(0), str)
    assert ds.has_labels
    if ds.gt_boxes is not None:
        assert ds.gt_boxes.shape == (12, 4)
    again = build_dataset(parse_data_spec("synthetic:num_samples=12,image_size=32,seed=3"))
    np.testing.assert_array_equal(np.asarray(again[5][0]), np.asarray(ds[5][0]))
    evaluation = build_dataset("synthetic:num_samples=6", default_eval_split("synthetic"))
    assert len(evaluation) == 6
    with pytest.raises(ValueError, match="bogus"):
        build_dataset("synthetic:bogus=1")
    small = build_dataset("synthetic:num_samples=6,object_scale=0.2:0.3", "train")
    assert small.object_scale == (0.2, 0.3)
    with pytest.raises(ValueError, match="object_scale"):
        build_dataset("synthetic:num_samples=6,object_scale=0.2:0.3:0.4", "train")


# ---------------------------------------------------------------------------- seams


def test_kinds_and_splits_come_from_the_registry():
    """The readers, the spec parser and the split helpers read one registry."""
    assert kind_names(readable=True) == KINDS
    assert set(BUILDERS) == set(KINDS)
    for kind in KINDS:
        entry = dataset_kind(kind)
        assert split_names(kind) == entry.splits
        assert default_eval_split(kind) == entry.eval_split in entry.splits
        assert default_train_split(kind) == entry.train_split in entry.splits
    with pytest.raises(ValueError, match="unknown dataset kind 'imagenet'"):
        parse_data_spec("imagenet:/data/imagenet")  # registered, but there is no reader


def test_each_kind_names_its_reader_and_view_preset():
    """The reader and generator tables are the registry's; every fixed size has a preset."""
    assert registry_problems(DATASET_KINDS.values(), READERS, VIEW_PRESETS) == []
    assert set(GENERATORS) == {kind.name for kind in DATASET_KINDS.values()
                               if kind.readable and not kind.needs_path}
    assert all(BUILDERS[kind.name] for kind in DATASET_KINDS.values() if kind.readable)
    assert {name: dataset_kind(name).views for name in KINDS + ("imagenet",)} == {
        "cifar10": "cifar", "cifar100": "cifar", "stl10": "stl10",
        "tiny-imagenet": "tiny-imagenet", "imagenet": "imagenet", "folder": None,
        "synthetic": None, "scenes": None}


@pytest.mark.parametrize("change, message", [
    ({"reader": "cifar.Cifar10"}, "names reader 'cifar.Cifar10', which is not among"),
    ({"views": None}, "has 32px images but names no view preset"),
    ({"views": "cifar10"}, "names view preset 'cifar10', which is not among the presets"),
    ({"views": "stl10"}, "view preset 'stl10' of dataset kind 'new' is not 32px"),
    ({"reader": None, "needs_path": False}, "generated dataset kind 'new' names no generator"),
    ({"reader": "folder.FolderDataset", "needs_path": False}, "has no DEFAULT_IMAGE_SIZE"),
])
def test_a_kind_without_its_reader_or_preset_is_caught(change, message):
    new = replace(dataset_kind("cifar10"), name="new", **change)
    problems = registry_problems([*DATASET_KINDS.values(), new], READERS, VIEW_PRESETS)
    assert len(problems) == 1 and re.search(message, problems[0]), problems


def test_a_reader_no_kind_names_is_caught():
    readers = {**READERS, "mine.MyReader": object}
    assert registry_problems(DATASET_KINDS.values(), readers, VIEW_PRESETS) == [
        "reader 'mine.MyReader' is named by no dataset kind"]


def test_check_split_names_the_valid_splits():
    assert check_split("tiny-imagenet", "test") == "test"
    with pytest.raises(ValueError, match="train, test, unlabeled, train\\+unlabeled"):
        check_split("stl10", "val")


def test_open_rgb_gives_an_in_memory_rgb_image(tmp_path):
    path = tmp_path / "rgb.png"
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    Image.fromarray(pixels).save(path)
    img = open_rgb(path)
    path.unlink()  # the image must not depend on the file any more
    assert type(img) is Image.Image and img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), pixels)
    fx_mod.write_png16(path)
    assert np.asarray(open_rgb(path)).max() == 128


def test_folder_rescales_16bit_png_instead_of_clipping(tmp_path):
    fx_mod.write_image_folder(tmp_path, classes=("cat",), n_per_class=1)
    fx_mod.write_png16(tmp_path / "cat" / "deep.png")
    ds = build_dataset(f"folder:{tmp_path}")
    index = [ds.sample_id(i) for i in range(len(ds))].index("cat/deep.png")
    img, _ = ds[index]
    assert img.mode == "RGB"
    assert np.unique(np.asarray(img)).tolist() == [128]  # convert("RGB") alone gives 255


def test_tiny_imagenet_rescales_16bit_png_instead_of_clipping(tmp_path):
    fx = fx_mod.write_tiny_imagenet(tmp_path, n_val=2)
    fx_mod.write_png16(fx.data_dir / "val" / "images" / "val_0.JPEG", size=(64, 64))
    ds = build_dataset(f"tiny-imagenet:{tmp_path}", "val")
    index = [ds.sample_id(i) for i in range(len(ds))].index("val_0.JPEG")
    img, _ = ds[index]
    assert img.mode == "RGB" and img.size == (64, 64)
    assert np.unique(np.asarray(img)).tolist() == [128]


@pytest.mark.parametrize("package", [b"numpy.core", b"numpy._core"])
def test_unpickler_resolves_both_numpy_module_names(tmp_path, package):
    """The safe-globals table serves numpy 1 and numpy 2 names with the installed numpy."""
    obj = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"n": np.int64(7)}
    data = pickle.dumps(obj, protocol=2)
    for old in (b"numpy._core.", b"numpy.core."):
        data = data.replace(old + b"multiarray\n", package + b".multiarray\n")
    assert package + b".multiarray\n" in data
    path = tmp_path / "batch"
    path.write_bytes(data)
    loaded = load_cifar_pickle(path)
    np.testing.assert_array_equal(loaded[b"data"], obj[b"data"])
    assert loaded[b"n"] == 7


def test_negative_indices_count_from_the_end(tmp_path):
    fx_mod.write_image_folder(tmp_path, n_per_class=2)
    ds = build_dataset(f"folder:{tmp_path}")
    assert ds.sample_id(-1) == ds.sample_id(len(ds) - 1)
    np.testing.assert_array_equal(np.asarray(ds[-1][0]), np.asarray(ds[len(ds) - 1][0]))
