"""Writers of tiny datasets in the exact on-disk formats of the official releases.

Each ``write_*`` function fills a given directory and returns a small record with the
root to put in a spec string (``kind:ROOT``) and what was written (pixels, labels, boxes),
so tests can compare the readers' output exactly. The writers follow the published format
descriptions independently of the readers in :mod:`timm_ccrop.data` (e.g. STL-10 is
written with an explicit column-major flatten), so a reader bug is not mirrored here.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "CifarFixture",
    "STL10Fixture",
    "TinyImageNetFixture",
    "ImageFolderFixture",
    "write_cifar10",
    "write_cifar100",
    "write_stl10",
    "write_tiny_imagenet",
    "write_image_folder",
    "stl10_orientation_image",
    "CIFAR10_CLASSES",
    "STL10_CLASSES",
]

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
STL10_CLASSES = [
    "airplane", "bird", "car", "cat", "deer",
    "dog", "horse", "monkey", "ship", "truck",
]  # fmt: skip


@dataclass
class CifarFixture:
    """What :func:`write_cifar10` / :func:`write_cifar100` wrote.

    ``root`` is the folder to name in the spec; the files are in ``data_dir``.
    ``images[split]`` is uint8 ``(N, 32, 32, 3)`` and ``labels[split]`` a list of ints.
    """

    root: Path
    data_dir: Path
    classes: list[str]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, list[int]] = field(default_factory=dict)


def _dump_py2_style(obj: dict, path: Path, legacy_numpy_names: bool) -> None:
    # Protocol 2 is what Python 2's cPickle wrote for the official files.
    data = pickle.dumps(obj, protocol=2)
    if legacy_numpy_names:
        # The official files name numpy 1's module path; a GLOBAL opcode is a text line,
        # so renaming it keeps the pickle valid.
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    path.write_bytes(data)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072): 1024 red, 1024 green, 1024 blue, each row-major."""
    n = len(images)
    rows = np.empty((n, 3072), dtype=np.uint8)
    for c in range(3):
        rows[:, c * 1024 : (c + 1) * 1024] = images[:, :, :, c].reshape(n, 1024)
    return rows


def _write_cifar(
    root: Path,
    *,
    hundred: bool,
    n_train: int,
    n_test: int,
    seed: int,
    nested: bool,
    protocol: int | None,
    legacy_numpy_names: bool,
) -> CifarFixture:
    rng = np.random.default_rng(seed)
    root = Path(root)
    subdir = "cifar-100-python" if hundred else "cifar-10-batches-py"
    data_dir = root / subdir if nested else root
    data_dir.mkdir(parents=True, exist_ok=True)
    n_classes = 100 if hundred else 10
    classes = [f"class_{i:03d}" for i in range(100)] if hundred else list(CIFAR10_CLASSES)
    fx = CifarFixture(root=root, data_dir=data_dir, classes=classes)

    def dump(obj: dict, name: str) -> None:
        if protocol is None:
            _dump_py2_style(obj, data_dir / name, legacy_numpy_names)
        else:
            (data_dir / name).write_bytes(pickle.dumps(obj, protocol=protocol))

    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, n_classes, size=n)]
        fx.images[split], fx.labels[split] = images, labels
        if hundred:
            chunks = [(split, slice(0, n))]
        elif split == "train":
            bounds = np.linspace(0, n, 6).astype(int)
            chunks = [(f"data_batch_{i + 1}", slice(bounds[i], bounds[i + 1])) for i in range(5)]
        else:
            chunks = [("test_batch", slice(0, n))]
        for name, sl in chunks:
            batch = {
                b"batch_label": f"{name} of fixture".encode(),
                b"data": _cifar_rows(images[sl]),
                b"filenames": [f"img_{i:05d}.png".encode() for i in range(sl.start, sl.stop)],
            }
            if hundred:
                batch[b"fine_labels"] = labels[sl]
                batch[b"coarse_labels"] = [t // 5 for t in labels[sl]]
            else:
                batch[b"labels"] = labels[sl]
            dump(batch, name)
    if hundred:
        meta = {
            b"fine_label_names": [c.encode() for c in classes],
            b"coarse_label_names": [f"super_{i:02d}".encode() for i in range(20)],
        }
        dump(meta, "meta")
    else:
        meta = {
            b"num_cases_per_batch": max(1, n_train // 5),
            b"label_names": [c.encode() for c in classes],
            b"num_vis": 3072,
        }
        dump(meta, "batches.meta")
    return fx


def write_cifar10(
    root: Path,
    n_train: int = 20,
    n_test: int = 10,
    seed: int = 0,
    *,
    nested: bool = True,
    protocol: int | None = None,
    legacy_numpy_names: bool = True,
) -> CifarFixture:
    """Write CIFAR-10 python pickles (``data_batch_1..5``, ``test_batch``, ``batches.meta``).

    Args:
        root: folder to write into; the files go to ``root/cifar-10-batches-py`` when
            ``nested`` (like the official archive), else directly into ``root``.
        n_train: train images, spread over the five batches.
        protocol: pickle protocol; ``None`` writes protocol 2 like the Python 2 originals,
            with numpy's module named ``numpy.core.multiarray`` when ``legacy_numpy_names``.
    """
    return _write_cifar(
        Path(root), hundred=False, n_train=n_train, n_test=n_test, seed=seed, nested=nested,
        protocol=protocol, legacy_numpy_names=legacy_numpy_names,
    )  # fmt: skip


def write_cifar100(
    root: Path,
    n_train: int = 20,
    n_test: int = 10,
    seed: int = 0,
    *,
    nested: bool = True,
    protocol: int | None = None,
    legacy_numpy_names: bool = True,
) -> CifarFixture:
    """Write CIFAR-100 python pickles (``train``, ``test``, ``meta``; fine + coarse labels).

    Same arguments as :func:`write_cifar10`; the folder is ``cifar-100-python``.
    """
    return _write_cifar(
        Path(root), hundred=True, n_train=n_train, n_test=n_test, seed=seed, nested=nested,
        protocol=protocol, legacy_numpy_names=legacy_numpy_names,
    )  # fmt: skip


@dataclass
class STL10Fixture:
    """What :func:`write_stl10` wrote: ``images[split]`` uint8 ``(N, 96, 96, 3)`` (row,
    column, RGB) and ``labels[split]`` 0-based ints (``-1`` for ``unlabeled``)."""

    root: Path
    data_dir: Path
    classes: list[str]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, list[int]] = field(default_factory=dict)


def stl10_orientation_image() -> np.ndarray:
    """A 96x96 RGB image whose left half is red and top half is green.

    So top-left is yellow, top-right green, bottom-left red, bottom-right black: a
    transposed or mirrored read shows up as a wrong quadrant colour.
    """
    img = np.zeros((96, 96, 3), dtype=np.uint8)
    img[:, :48, 0] = 255  # left half: red
    img[:48, :, 1] = 255  # top half: green
    return img


def _stl_bytes(images: np.ndarray) -> bytes:
    # Format doc: each image is 3 x 96 x 96 with every channel stored column-major
    # (Fortran order), channels in R, G, B order.
    out = bytearray()
    for img in images:
        for c in range(3):
            out += img[:, :, c].flatten(order="F").tobytes()
    return bytes(out)


def write_stl10(
    root: Path,
    n_train: int = 4,
    n_test: int = 3,
    n_unlabeled: int = 5,
    seed: int = 0,
    *,
    nested: bool = True,
) -> STL10Fixture:
    """Write STL-10 binaries (``{train,test}_{X,y}.bin``, ``unlabeled_X.bin``,
    ``class_names.txt``) into ``root/stl10_binary`` (or ``root`` when not ``nested``).

    The first train image is :func:`stl10_orientation_image`; labels are written 1..10.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    data_dir = root / "stl10_binary" if nested else root
    data_dir.mkdir(parents=True, exist_ok=True)
    fx = STL10Fixture(root=root, data_dir=data_dir, classes=list(STL10_CLASSES))
    (data_dir / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        images = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
        if split == "train" and n:
            images[0] = stl10_orientation_image()
        (data_dir / f"{split}_X.bin").write_bytes(_stl_bytes(images))
        fx.images[split] = images
        if split == "unlabeled":
            fx.labels[split] = [-1] * n
        else:
            labels = [int(v) for v in rng.integers(0, 10, size=n)]
            np.asarray([t + 1 for t in labels], dtype=np.uint8).tofile(data_dir / f"{split}_y.bin")
            fx.labels[split] = labels
    return fx


@dataclass
class TinyImageNetFixture:
    """What :func:`write_tiny_imagenet` wrote.

    ``wnids`` is sorted (the class index order); ``names[wnid]`` the words.txt entry.
    ``train`` / ``val`` map image file name -> ``(wnid, (x0, y0, x1, y1))`` with the box
    in the file's inclusive pixel coordinates.
    """

    root: Path
    data_dir: Path
    wnids: list[str]
    names: dict[str, str]
    train: dict[str, tuple[str, tuple[int, int, int, int]]] = field(default_factory=dict)
    val: dict[str, tuple[str, tuple[int, int, int, int]]] = field(default_factory=dict)


def _random_box(rng: np.random.Generator, size: int = 64) -> tuple[int, int, int, int]:
    x0, y0 = (int(v) for v in rng.integers(0, size // 2, size=2))
    x1, y1 = (int(v) for v in rng.integers(size // 2, size, size=2))
    return x0, y0, x1, y1


def write_tiny_imagenet(
    root: Path,
    n_classes: int = 3,
    n_per_class: int = 3,
    n_val: int = 5,
    seed: int = 0,
    *,
    nested: bool = True,
) -> TinyImageNetFixture:
    """Write a Tiny-ImageNet-200 tree with 64x64 JPEGs into ``root/tiny-imagenet-200``.

    ``wnids.txt`` lists the wnids in a non-sorted order (as the official file does) so a
    reader that indexes classes by file position is caught. The last train box of the
    first class spans the whole image (0 0 63 63). ``test/images`` is written too, without
    labels, like the official archive.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    data_dir = root / "tiny-imagenet-200" if nested else root
    data_dir.mkdir(parents=True, exist_ok=True)
    wnids = sorted(f"n{1000000 + 37 * i:08d}" for i in range(n_classes))
    names = {w: f"thing {i}, other name {i}" for i, w in enumerate(wnids)}
    fx = TinyImageNetFixture(root=root, data_dir=data_dir, wnids=wnids, names=names)
    (data_dir / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")
    words = ["n00000001\tentity"] + [f"{w}\t{names[w]}" for w in wnids]
    (data_dir / "words.txt").write_text("\n".join(words) + "\n")

    def jpeg(path: Path, grayscale: bool = False) -> None:
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
        (img.convert("L") if grayscale else img).save(path, format="JPEG", quality=90)

    for ci, wnid in enumerate(wnids):
        image_dir = data_dir / "train" / wnid / "images"
        image_dir.mkdir(parents=True)
        lines = []
        for j in range(n_per_class):
            name = f"{wnid}_{j}.JPEG"
            # One grayscale JPEG, as in the real data, to exercise the RGB conversion.
            jpeg(image_dir / name, grayscale=(ci == 0 and j == 0))
            box = (0, 0, 63, 63) if (ci == 0 and j == n_per_class - 1) else _random_box(rng)
            fx.train[name] = (wnid, box)
            lines.append(name + "\t" + "\t".join(map(str, box)))
        (data_dir / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(lines) + "\n")

    val_dir = data_dir / "val" / "images"
    val_dir.mkdir(parents=True)
    lines = []
    for i in range(n_val):
        name = f"val_{i}.JPEG"
        jpeg(val_dir / name)
        wnid = wnids[int(rng.integers(0, n_classes))]
        box = _random_box(rng)
        fx.val[name] = (wnid, box)
        lines.append("\t".join([name, wnid, *map(str, box)]))
    (data_dir / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")

    test_dir = data_dir / "test" / "images"
    test_dir.mkdir(parents=True)
    jpeg(test_dir / "test_0.JPEG")
    return fx


@dataclass
class ImageFolderFixture:
    """What :func:`write_image_folder` wrote: ``samples[split]`` is a list of
    ``(path relative to the split folder, class index, uint8 (H, W, 3) pixels)`` in the
    sorted order ImageFolder uses; ``split_dirs[split]`` the folder of each split."""

    root: Path
    classes: list[str]
    split_dirs: dict[str, Path] = field(default_factory=dict)
    samples: dict[str, list[tuple[str, int, np.ndarray]]] = field(default_factory=dict)


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] | list[str] = ("cat", "dog"),
    n_per_class: int = 2,
    with_splits: bool = False,
    *,
    splits: tuple[str, ...] = ("train", "val"),
    size: tuple[int, int] = (20, 12),
    ext: str = ".png",
    seed: int = 0,
) -> ImageFolderFixture:
    """Write an ImageFolder tree ``root/<class>/<image>`` (or ``root/<split>/<class>/...``
    for each of ``splits`` when ``with_splits``).

    Images are ``size = (W, H)`` RGB (non-square so a transposed read is caught), saved
    losslessly as PNG by default. A ``notes.txt`` in each class folder must be ignored.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    classes = sorted(classes)
    fx = ImageFolderFixture(root=root, classes=list(classes))
    for split in splits if with_splits else ("train",):
        split_dir = root / split if with_splits else root
        fx.split_dirs[split] = split_dir
        samples = []
        for ci, cls in enumerate(classes):
            class_dir = split_dir / cls
            class_dir.mkdir(parents=True, exist_ok=True)
            (class_dir / "notes.txt").write_text("not an image\n")
            for j in range(n_per_class):
                pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                name = f"{cls}_{split}_{j}{ext}"
                Image.fromarray(pixels).save(class_dir / name)
                samples.append((f"{cls}/{name}", ci, pixels))
        fx.samples[split] = sorted(samples, key=lambda s: s[0])
    return fx


#: A 16-bit grey level whose 8-bit equivalent is exactly 128 (0x8080 / 257).
PNG16_LEVEL = 0x8080


def write_png16(path: Path, size: tuple[int, int] = (8, 6), level: int = PNG16_LEVEL) -> None:
    """Write a 16-bit grayscale PNG (PIL mode ``I;16``) of one grey ``level`` at ``path``,
    whatever its extension. ``convert("RGB")`` alone clips such an image to white."""
    pixels = np.full((size[1], size[0]), level, dtype=np.uint16)
    Image.fromarray(pixels).save(path, format="PNG")
