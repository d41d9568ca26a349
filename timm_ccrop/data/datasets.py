"""Dataset specs and readers of the standard on-disk image dataset formats.

A dataset is named by a *spec string* ``KIND:PATH`` (or ``synthetic[:key=value,...]``):

============================  ====================================================
``cifar10:PATH``              CIFAR-10 python pickles (``cifar-10-batches-py``)
``cifar100:PATH``             CIFAR-100 python pickles (``cifar-100-python``)
``stl10:PATH``                STL-10 binary files (``stl10_binary``)
``tiny-imagenet:PATH``        Tiny-ImageNet-200 (``tiny-imagenet-200``)
``folder:PATH``               any ImageFolder tree, optionally with train/val/test
``synthetic[:k=v,...]``       the built-in generated dataset (:mod:`timm_ccrop.synthetic`)
============================  ====================================================

:func:`build_dataset` turns a spec and a split name into a map-style dataset that yields
``(PIL.Image in mode RGB, int target)``; ``target`` is ``-1`` for unlabeled samples. Every
dataset has ``classes``, ``num_classes``, ``targets``, ``gt_boxes``, ``has_labels`` and
``sample_id(index)`` (see :class:`LabeledImageDataset`).

The readers are our own rather than torchvision's because torchvision's CIFAR/STL classes
verify MD5 sums of the official archives even with ``download=False``, which rules out
small test fixtures and re-packed copies. Nothing here downloads anything: a missing
dataset raises :class:`FileNotFoundError` that says where to get it and where to put it.

Boxes in ``gt_boxes`` use the project convention of :mod:`timm_ccrop.boxes`: normalised
``(x0, y0, x1, y1)`` with pixel-edge coordinates.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import (
    IMG_EXTENSIONS,
    find_classes,
    has_file_allowed_extension,
    make_dataset,
)

__all__ = [
    "KINDS",
    "CIFAR_URL",
    "STL10_URL",
    "TINY_IMAGENET_URL",
    "TINY_IMAGENET_SIZE",
    "DatasetSpec",
    "LabeledImageDataset",
    "ImageDatasetBase",
    "CifarDataset",
    "STL10Dataset",
    "TinyImageNetDataset",
    "FolderDataset",
    "UnsafePickleError",
    "parse_data_spec",
    "build_dataset",
    "split_names",
    "default_train_split",
    "default_eval_split",
    "load_cifar_pickle",
]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
STL10_URL = "https://cs.stanford.edu/~acoates/stl10/"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

#: Dataset kinds accepted in a spec string, in the order they are listed in messages.
KINDS: tuple[str, ...] = ("cifar10", "cifar100", "stl10", "tiny-imagenet", "folder", "synthetic")

_PATH_KINDS = frozenset(KINDS) - {"synthetic"}

_SPEC_FORMS = (
    "cifar10:PATH, cifar100:PATH, stl10:PATH, tiny-imagenet:PATH, folder:PATH, "
    "synthetic or synthetic:key=value,... (e.g. synthetic:num_samples=2000,image_size=32,seed=0; "
    "a range is lo:hi, e.g. object_scale=0.2:0.35)"
)

_SPLITS: dict[str, tuple[str, ...]] = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": ("train", "test", "unlabeled", "train+unlabeled"),
    # "test" is an alias of "val": the official Tiny-ImageNet test split has no labels.
    "tiny-imagenet": ("train", "val", "test"),
    "folder": ("train", "val", "test"),
}

_EVAL_SPLITS = {
    "cifar10": "test",
    "cifar100": "test",
    "stl10": "test",
    "tiny-imagenet": "val",
    "folder": "val",
    "synthetic": "test",
}

_NO_DOWNLOAD_NOTE = "timm-ccrop never downloads datasets"


# --------------------------------------------------------------------------------------
# Spec strings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec: ``kind``, ``path`` (``None`` for ``synthetic``) and options.

    ``options`` holds the ``key=value`` pairs of a ``synthetic`` spec with values already
    converted to ``int``/``float`` where they parse as such (strings otherwise).
    ``str(spec)`` gives back a spec string that :func:`parse_data_spec` accepts.
    """

    kind: str
    path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.path is not None:
            return f"{self.kind}:{self.path}"
        if self.options:
            return self.kind + ":" + ",".join(f"{k}={_format_value(v)}"
                                              for k, v in self.options.items())
        return self.kind


def _convert_number(text: str) -> int | float | str:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _convert_value(text: str) -> int | float | str | tuple[int | float, ...]:
    """Turn an option value into int or float when it is one, and ``lo:hi`` (numbers joined
    by ``:``) into a tuple, which is how a range such as ``object_scale=0.2:0.35`` is
    written; anything else stays a string."""
    if ":" in text:
        parts = [_convert_number(part.strip()) for part in text.split(":")]
        if all(isinstance(part, (int, float)) for part in parts):
            return tuple(parts)  # type: ignore[arg-type]
        return text
    return _convert_number(text)


def _format_value(value: Any) -> str:
    """Inverse of :func:`_convert_value`, so a parsed spec prints as it was written."""
    if isinstance(value, tuple):
        return ":".join(str(part) for part in value)
    return str(value)


def parse_data_spec(spec: str) -> DatasetSpec:
    """Parse a dataset spec string such as ``cifar10:/data/cifar`` or ``synthetic:seed=1``.

    Args:
        spec: ``KIND:PATH`` for ``cifar10``, ``cifar100``, ``stl10``, ``tiny-imagenet`` and
            ``folder``; ``synthetic`` or ``synthetic:key=value,key=value`` for the built-in
            dataset. The kind is case-insensitive; ``~`` in a path is expanded.

    Raises:
        ValueError: unknown kind, a missing/empty path, or a malformed/duplicate option;
            the message names the bad value and lists the valid forms.
    """
    if not isinstance(spec, str):
        raise ValueError(f"dataset spec must be a string, got {spec!r}; valid forms: {_SPEC_FORMS}")
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(
            f"unknown dataset kind {kind!r} in spec {spec!r}; valid forms: {_SPEC_FORMS}"
        )
    if kind in _PATH_KINDS:
        path_text = rest.strip()
        if not sep or not path_text:
            raise ValueError(
                f"dataset spec {spec!r} has no path; write {kind}:PATH where PATH is the "
                f"folder the dataset was extracted to. Valid forms: {_SPEC_FORMS}"
            )
        return DatasetSpec(kind=kind, path=Path(path_text).expanduser(), options={})

    options: dict[str, Any] = {}
    rest = rest.strip()
    for item in rest.split(",") if rest else []:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value or not key.isidentifier():
            raise ValueError(
                f"malformed option {item.strip()!r} in dataset spec {spec!r}: options are "
                f"comma-separated key=value pairs. Valid forms: {_SPEC_FORMS}"
            )
        if key in options:
            raise ValueError(f"option {key!r} given twice in dataset spec {spec!r}")
        options[key] = _convert_value(value)
    return DatasetSpec(kind=kind, path=None, options=options)


def _kind_of(kind_or_spec: str | DatasetSpec) -> str:
    if isinstance(kind_or_spec, DatasetSpec):
        return kind_or_spec.kind
    kind = kind_or_spec.strip().lower()
    if kind not in KINDS:
        # Also accept a full spec string, so callers can pass what the user typed.
        kind = parse_data_spec(kind_or_spec).kind
    return kind


def split_names(kind: str | DatasetSpec) -> tuple[str, ...]:
    """The split names :func:`build_dataset` accepts for a dataset kind (or spec).

    For ``tiny-imagenet``, ``test`` is an alias of ``val``. For ``folder``, which of
    ``train``/``val``/``test`` exist depends on the tree on disk (see :class:`FolderDataset`).
    For ``synthetic`` the names come from :mod:`timm_ccrop.synthetic` when it declares them.
    """
    kind = _kind_of(kind)
    if kind == "synthetic":
        try:
            synthetic = importlib.import_module("timm_ccrop.data.synthetic")
        except ImportError:
            return ("train", "test")
        cls = getattr(synthetic, "SyntheticObjects", None)
        for attr in ("SPLITS", "splits", "split_names"):
            names = getattr(cls, attr, None)
            if isinstance(names, Sequence) and not isinstance(names, str):
                return tuple(str(n) for n in names)
        return ("train", "test")
    return _SPLITS[kind]


def default_train_split(kind: str | DatasetSpec) -> str:
    """The split used for self-supervised pretraining: ``train+unlabeled`` for STL-10
    (the paper's 105k images), ``train`` otherwise."""
    return "train+unlabeled" if _kind_of(kind) == "stl10" else "train"


def default_eval_split(kind: str | DatasetSpec) -> str:
    """The labelled held-out split used for evaluation: ``test`` for CIFAR, STL-10 and
    synthetic, ``val`` for Tiny-ImageNet and folder trees."""
    return _EVAL_SPLITS[_kind_of(kind)]


def _check_split(kind: str, split: str, valid: Sequence[str]) -> str:
    if not isinstance(split, str) or split not in valid:
        raise ValueError(f"unknown split {split!r} for {kind}; valid splits: {', '.join(valid)}")
    return split


# --------------------------------------------------------------------------------------
# Common dataset interface
# --------------------------------------------------------------------------------------


@runtime_checkable
class LabeledImageDataset(Protocol):
    """What every dataset returned by :func:`build_dataset` provides.

    ``dataset[i]`` is ``(PIL.Image in mode RGB, int target)`` with ``target == -1`` for an
    unlabeled sample. ``targets[i]`` is the same target without loading the image.
    ``gt_boxes`` is ``None`` or a float32 tensor ``[N, 4]`` of normalised pixel-edge
    ``(x0, y0, x1, y1)`` boxes. ``has_labels`` is true only when *every* sample is labelled
    (so a linear probe or kNN can use the split as is).
    """

    classes: list[str]
    targets: Sequence[int]
    gt_boxes: torch.Tensor | None

    @property
    def num_classes(self) -> int: ...

    @property
    def has_labels(self) -> bool: ...

    def sample_id(self, index: int) -> str: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Image.Image, int]: ...


class ImageDatasetBase(Dataset):
    """Shared implementation of :class:`LabeledImageDataset` for the readers here.

    Subclasses fill ``classes``, ``targets`` and ``gt_boxes`` in ``__init__`` and implement
    :meth:`load_image`; indices are checked here so every reader raises ``IndexError``
    the same way (which also makes plain ``for x in dataset`` iteration terminate).

    ``transform`` / ``target_transform`` (``None`` by default, so items are ``(PIL image,
    int)``) are applied in ``__getitem__`` when set: timm's ``create_loader`` assigns
    ``dataset.transform``, and :class:`~timm_ccrop.data.BoxedDataset` requires it be ``None``.
    """

    kind: str = ""

    def __init__(self, root: Path | None, split: str) -> None:
        self.root = root
        self.split = split
        self.classes: list[str] = []
        self.targets: list[int] = []
        self.gt_boxes: torch.Tensor | None = None
        self.transform: Callable[[Image.Image], Any] | None = None
        self.target_transform: Callable[[int], Any] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``); unlabeled splits still report them."""
        return len(self.classes)

    @property
    def has_labels(self) -> bool:
        """True when every sample has a label (no ``-1`` targets) and there are samples."""
        return len(self.targets) > 0 and min(self.targets) >= 0

    def __len__(self) -> int:
        return len(self.targets)

    def _index(self, index: int) -> int:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {self!r}")
        return index

    def load_image(self, index: int) -> Image.Image:
        """Return sample ``index`` (already range-checked) as an RGB PIL image."""
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """A stable identifier of sample ``index``: ``"<split>/<index>"`` unless the
        format has file names."""
        return f"{self.split}/{self._index(index)}"

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = self._index(index)
        img: Any = self.load_image(index)
        target: Any = self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"num_samples={len(self)}, num_classes={self.num_classes})"
        )


def _missing(
    what: str, missing: Path, layout: str, source: str, path: Path, extra: str = ""
) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found: {missing} is missing.{extra} Expected layout: {layout}. "
        f"Get the dataset from {source} and extract it at {path} ({_NO_DOWNLOAD_NOTE})."
    )


def _require_files(
    root: Path, path: Path, files: Sequence[str], what: str, layout: str, source: str
) -> None:
    """Raise the helpful FileNotFoundError for the first of ``files`` missing in ``root``."""
    for fname in files:
        if not (root / fname).is_file():
            missing = path if not path.is_dir() else root / fname
            raise _missing(what, missing, layout, source, path)


def _resolve_root(path: Path, subdir: str) -> Path:
    """The official archives extract to a named folder; accept PATH or PATH/<that folder>."""
    nested = path / subdir
    return nested if nested.is_dir() else path


# --------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not needed to rebuild CIFAR's dicts of arrays."""


# Exactly what CIFAR pickles (Python 2 originals and Python 3 re-pickles) reference:
# numpy array/dtype/scalar reconstruction and the codec Python 3 uses for bytes at
# protocol < 3. Nothing here can call into the OS or import arbitrary code.
_SAFE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
        ("__builtin__", "bytearray"),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise UnsafePickleError(
                f"refusing to load {module}.{name} from {self._source}: CIFAR files may only "
                "contain numpy arrays, lists, dicts, numbers and strings. The file is not an "
                f"official CIFAR pickle or has been modified; re-extract it from {CIFAR_URL}."
            )
        # numpy 2 moved numpy.core to numpy._core (the old name is a deprecated shim) and
        # numpy 1 lacks numpy._core before 1.26, so try the module name this numpy has.
        candidates = [module]
        if module.startswith("numpy.core."):
            candidates.insert(0, "numpy._core." + module[len("numpy.core.") :])
        elif module.startswith("numpy._core."):
            candidates.append("numpy.core." + module[len("numpy._core.") :])
        elif module == "__builtin__":
            candidates = ["builtins"]
        for candidate in candidates:
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise UnsafePickleError(f"cannot resolve {module}.{name} needed by {self._source}")


def load_cifar_pickle(path: str | os.PathLike[str]) -> dict[Any, Any]:
    """Load one CIFAR python pickle without executing code.

    Only the globals needed to rebuild numpy arrays are resolvable, so a tampered file
    (e.g. one that reduces to ``os.system``) raises :class:`UnsafePickleError` instead of
    running anything. Strings from Python 2 pickles come back as ``bytes``.

    Raises:
        UnsafePickleError: the pickle references anything else.
        ValueError: the file does not hold a dict.
    """
    path = Path(path)
    with path.open("rb") as f:
        obj = _RestrictedUnpickler(f, path).load()
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path} does not hold a dict (got {type(obj).__name__}); not a CIFAR file"
        )
    return obj


def _get(d: dict[Any, Any], key: str, source: Path) -> Any:
    # Official files are Python 2 pickles (bytes keys); Python 3 re-pickles use str keys.
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise ValueError(f"{source} has no {key!r} entry (keys: {sorted(map(str, d))})")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class CifarDataset(ImageDatasetBase):
    """CIFAR-10 / CIFAR-100 from the official "python version" pickles.

    Layout (``PATH`` or ``PATH/cifar-10-batches-py`` resp. ``PATH/cifar-100-python``):
    CIFAR-10 has ``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch`` and
    ``batches.meta``; CIFAR-100 has ``train``, ``test`` and ``meta`` (fine labels are used).
    All images are held as one uint8 array ``(N, 32, 32, 3)`` (150 MB for the train split);
    PIL images are made per item. Splits: ``train``, ``test``.
    """

    def __init__(
        self, path: str | os.PathLike[str], split: str = "train", kind: str = "cifar10"
    ) -> None:
        if kind not in ("cifar10", "cifar100"):
            raise ValueError(f"kind must be 'cifar10' or 'cifar100', got {kind!r}")
        self.kind = kind
        split = _check_split(kind, split, _SPLITS[kind])
        path = Path(path).expanduser()
        if kind == "cifar10":
            subdir, meta_name, label_key, names_key = (
                "cifar-10-batches-py",
                "batches.meta",
                "labels",
                "label_names",
            )
            files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        else:
            subdir, meta_name, label_key, names_key = (
                "cifar-100-python",
                "meta",
                "fine_labels",
                "fine_label_names",
            )
            files = [split]
        root = _resolve_root(path, subdir)
        super().__init__(root, split)
        name = "CIFAR-10" if kind == "cifar10" else "CIFAR-100"
        layout = (
            f"{path}/{subdir}/{{{', '.join([*files, meta_name])}}} "
            f"(or the files directly in {path})"
        )
        _require_files(root, path, [*files, meta_name], f"{name} {split} split", layout,
                       f"{CIFAR_URL} (the 'python version' archive)")

        meta_file = root / meta_name
        self.classes = [_text(n) for n in _get(load_cifar_pickle(meta_file), names_key, meta_file)]
        chunks, labels = [], []
        for fname in files:
            source = root / fname
            batch = load_cifar_pickle(source)
            data = np.asarray(_get(batch, "data", source))
            batch_labels = [int(t) for t in _get(batch, label_key, source)]
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(
                    f"{source}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}"
                )
            if len(batch_labels) != len(data):
                raise ValueError(f"{source}: {len(data)} images but {len(batch_labels)} labels")
            chunks.append(data)
            labels.extend(batch_labels)
        data = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        # Rows are channel-planar (1024 R, 1024 G, 1024 B), each plane row-major 32x32.
        self.data = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        if labels and not 0 <= min(labels) <= max(labels) < len(self.classes):
            raise ValueError(f"{name} labels outside 0..{len(self.classes) - 1} in {root}")
        self.targets = labels

    def load_image(self, index: int) -> Image.Image:
        """Return image ``index`` as a 32x32 RGB PIL image."""
        return Image.fromarray(self.data[index])


# --------------------------------------------------------------------------------------
# STL-10
# --------------------------------------------------------------------------------------

_STL_SIZE = 96
_STL_BYTES = 3 * _STL_SIZE * _STL_SIZE


class STL10Dataset(ImageDatasetBase):
    """STL-10 from the official binary files.

    Layout: ``PATH/stl10_binary/`` (or ``PATH``) with ``train_X.bin``, ``train_y.bin``,
    ``test_X.bin``, ``test_y.bin``, ``unlabeled_X.bin`` and ``class_names.txt``. An X file
    is uint8 ``(N, 3, 96, 96)`` with each channel stored column-major; a y file holds one
    uint8 label 1..10 per image (stored 0-based here).

    Splits: ``train`` (5k), ``test`` (8k), ``unlabeled`` (100k, targets ``-1``) and
    ``train+unlabeled`` (the 105k images ContrastiveCrop pretrains on; train first).
    X files are memory-mapped (opened lazily in each process and dropped when pickled), so
    the 2.6 GB unlabeled file is never read into RAM nor copied to DataLoader workers.
    """

    kind = "stl10"

    def __init__(self, path: str | os.PathLike[str], split: str = "train") -> None:
        split = _check_split(self.kind, split, _SPLITS[self.kind])
        path = Path(path).expanduser()
        root = _resolve_root(path, "stl10_binary")
        super().__init__(root, split)
        parts = {"train+unlabeled": ["train", "unlabeled"]}.get(split, [split])
        needed = ["class_names.txt"]
        for part in parts:
            needed += [f"{part}_X.bin"] + ([] if part == "unlabeled" else [f"{part}_y.bin"])
        layout = f"{path}/stl10_binary/{{{', '.join(needed)}}} (or the files directly in {path})"
        _require_files(root, path, needed, f"STL-10 {split} split", layout,
                       f"{STL10_URL} (the binary archive stl10_binary.tar.gz)")

        names = (root / "class_names.txt").read_text(encoding="utf-8").splitlines()
        self.classes = [n.strip() for n in names if n.strip()]
        # (X file, number of images, first global index) for each part, in order.
        self._parts: list[tuple[Path, int, int]] = []
        targets: list[int] = []
        for part in parts:
            x_file = root / f"{part}_X.bin"
            size = x_file.stat().st_size
            if size % _STL_BYTES:
                raise ValueError(
                    f"{x_file} has {size} bytes, not a multiple of one 3x96x96 "
                    f"image ({_STL_BYTES} bytes); the file is truncated or corrupt"
                )
            n = size // _STL_BYTES
            if part == "unlabeled":
                part_targets = [-1] * n
            else:
                y_file = root / f"{part}_y.bin"
                y = np.fromfile(y_file, dtype=np.uint8)
                if len(y) != n:
                    raise ValueError(f"{y_file} has {len(y)} labels but {x_file} has {n} images")
                if n and not 1 <= int(y.min()) <= int(y.max()) <= len(self.classes):
                    raise ValueError(f"{y_file}: labels must be 1..{len(self.classes)}")
                part_targets = (y.astype(np.int64) - 1).tolist()
            self._parts.append((x_file, n, len(targets)))
            targets.extend(part_targets)
        self.targets = targets
        self._maps: list[np.ndarray | None] = [None] * len(self._parts)

    def _array(self, part: int) -> np.ndarray:
        arr = self._maps[part]
        if arr is None:
            x_file, n, _ = self._parts[part]
            arr = np.memmap(x_file, dtype=np.uint8, mode="r", shape=(n, 3, _STL_SIZE, _STL_SIZE))
            self._maps[part] = arr
        return arr

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # Pickling a memmap would copy the whole file into the pickle (spawned workers).
        state["_maps"] = [None] * len(self._parts)
        return state

    def load_image(self, index: int) -> Image.Image:
        """Return image ``index`` as a 96x96 RGB PIL image."""
        part = 0
        while part + 1 < len(self._parts) and index >= self._parts[part + 1][2]:
            part += 1
        x = self._array(part)[index - self._parts[part][2]]
        # Stored (channel, column, row): column-major per channel, hence the swap.
        return Image.fromarray(np.ascontiguousarray(x.transpose(2, 1, 0)))


# --------------------------------------------------------------------------------------
# Tiny-ImageNet
# --------------------------------------------------------------------------------------

#: Tiny-ImageNet images are all 64x64; box files are in pixels of that size.
TINY_IMAGENET_SIZE = 64


def _is_image(name: str) -> bool:
    return has_file_allowed_extension(name, IMG_EXTENSIONS)


def _tiny_box(values: Sequence[str], where: str) -> list[float]:
    """Inclusive pixel box -> normalised pixel-edge box (see timm_ccrop.boxes)."""
    try:
        x0, y0, x1, y1 = (int(float(v)) for v in values)
    except ValueError as err:
        raise ValueError(f"bad box {list(values)} at {where}") from err
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box {x0, y0, x1, y1} at {where} has its max corner before its min")
    s = float(TINY_IMAGENET_SIZE)
    box = [x0 / s, y0 / s, (x1 + 1) / s, (y1 + 1) / s]
    return [min(max(v, 0.0), 1.0) for v in box]


class TinyImageNetDataset(ImageDatasetBase):
    """Tiny-ImageNet-200 (64x64 JPEGs, 200 classes) with its ground-truth boxes.

    Layout: ``PATH/tiny-imagenet-200/`` (or ``PATH``) with ``wnids.txt``, optional
    ``words.txt``, ``train/<wnid>/images/*.JPEG`` with ``train/<wnid>/<wnid>_boxes.txt``,
    and ``val/images/*.JPEG`` with ``val/val_annotations.txt``.

    Class index = position of the wnid in the *sorted* wnids (as ImageFolder on ``train``
    would give). ``classes`` are the wnids; ``class_names`` the readable names from
    ``words.txt`` (first synonym; the wnid when absent). Splits: ``train``, ``val``, and
    ``test`` as an alias of ``val`` because the official test images have no labels.
    ``gt_boxes`` come from the box files; if any is missing, ``gt_boxes`` is ``None`` and a
    warning names the file.
    """

    kind = "tiny-imagenet"

    def __init__(self, path: str | os.PathLike[str], split: str = "train") -> None:
        split = _check_split(self.kind, split, _SPLITS[self.kind])
        path = Path(path).expanduser()
        root = _resolve_root(path, "tiny-imagenet-200")
        split = "val" if split == "test" else split
        super().__init__(root, split)
        layout = (
            f"{path}/tiny-imagenet-200/ (or {path} itself) holding wnids.txt, "
            "train/<wnid>/images/*.JPEG, train/<wnid>/<wnid>_boxes.txt, "
            "val/images/*.JPEG and val/val_annotations.txt"
        )

        def missing(p: Path) -> FileNotFoundError:
            return _missing(
                f"Tiny-ImageNet {split} split",
                path if not path.is_dir() else p,
                layout,
                TINY_IMAGENET_URL,
                path,
            )

        wnids_file = root / "wnids.txt"
        if not wnids_file.is_file():
            raise missing(wnids_file)
        wnids = sorted({w.strip() for w in wnids_file.read_text().splitlines() if w.strip()})
        self.classes = wnids
        self.class_to_idx = {w: i for i, w in enumerate(wnids)}
        self.class_names = self._readable_names(root / "words.txt", wnids)

        files: list[Path] = []
        targets: list[int] = []
        boxes: dict[str, list[float]] = {}
        boxes_complete = True
        if split == "train":
            for wnid in wnids:
                image_dir = root / "train" / wnid / "images"
                if not image_dir.is_dir():
                    raise missing(image_dir)
                names = sorted(e.name for e in os.scandir(image_dir) if _is_image(e.name))
                files += [image_dir / n for n in names]
                targets += [self.class_to_idx[wnid]] * len(names)
                box_file = root / "train" / wnid / f"{wnid}_boxes.txt"
                if not box_file.is_file():
                    warnings.warn(
                        f"Tiny-ImageNet box file {box_file} is missing; gt_boxes will be None",
                        stacklevel=2,
                    )
                    boxes_complete = False
                    continue
                for lineno, line in enumerate(box_file.read_text().splitlines(), 1):
                    cols = line.split()
                    if not cols:
                        continue
                    if len(cols) != 5:
                        raise ValueError(
                            f"{box_file}:{lineno}: expected 'file x0 y0 x1 y1', got {line!r}"
                        )
                    boxes[cols[0]] = _tiny_box(cols[1:], f"{box_file}:{lineno}")
        else:
            image_dir = root / "val" / "images"
            ann_file = root / "val" / "val_annotations.txt"
            for p in (image_dir, ann_file):
                if not (p.is_dir() if p is image_dir else p.is_file()):
                    raise missing(p)
            on_disk = {e.name for e in os.scandir(image_dir)}
            rows = []
            for lineno, line in enumerate(ann_file.read_text().splitlines(), 1):
                cols = line.strip().split("\t")
                if not cols[0]:
                    continue
                if len(cols) != 6:
                    raise ValueError(
                        f"{ann_file}:{lineno}: expected 6 tab-separated columns "
                        f"(file, wnid, x0, y0, x1, y1), got {line!r}"
                    )
                if cols[1] not in self.class_to_idx:
                    raise ValueError(
                        f"{ann_file}:{lineno}: wnid {cols[1]!r} is not in {wnids_file}"
                    )
                if cols[0] not in on_disk:
                    raise missing(image_dir / cols[0])
                rows.append(cols)
            # Sorted by file name so the order does not depend on the annotation file.
            for cols in sorted(rows, key=lambda c: c[0]):
                files.append(image_dir / cols[0])
                targets.append(self.class_to_idx[cols[1]])
                boxes[cols[0]] = _tiny_box(cols[2:], f"{ann_file} ({cols[0]})")

        self.files = files
        self.targets = targets
        if boxes_complete:
            absent = [f.name for f in files if f.name not in boxes]
            if absent:
                warnings.warn(
                    f"{len(absent)} Tiny-ImageNet {split} images have no box (e.g. "
                    f"{absent[0]}); gt_boxes will be None",
                    stacklevel=2,
                )
            else:
                self.gt_boxes = torch.tensor(
                    [boxes[f.name] for f in files], dtype=torch.float32
                ).reshape(-1, 4)

    @staticmethod
    def _readable_names(words_file: Path, wnids: list[str]) -> list[str]:
        if not words_file.is_file():
            return list(wnids)
        wanted = set(wnids)
        names: dict[str, str] = {}
        for line in words_file.read_text(encoding="utf-8").splitlines():
            wnid, _, words = line.partition("\t")
            if wnid in wanted:
                names[wnid] = words.split(",")[0].strip() or wnid
        return [names.get(w, w) for w in wnids]

    def sample_id(self, index: int) -> str:
        """The image file name (unique across Tiny-ImageNet)."""
        return self.files[self._index(index)].name

    def load_image(self, index: int) -> Image.Image:
        """Open image ``index`` as RGB (a few Tiny-ImageNet JPEGs are grayscale)."""
        with Image.open(self.files[index]) as img:
            return img.convert("RGB")


# --------------------------------------------------------------------------------------
# ImageFolder trees
# --------------------------------------------------------------------------------------


class FolderDataset(ImageDatasetBase):
    """Any ImageFolder tree: ``<root>/<class>/<image>`` (files with torchvision's
    ``IMG_EXTENSIONS``; anything else is ignored).

    If ``PATH/train`` is a folder, the split picks ``PATH/<split>``; ``val`` and ``test``
    stand in for each other when only one of them exists. Class indices always come from
    the train folder (sorted class folder names) so they agree across splits; an eval
    split may have a subset of the classes. Without ``PATH/train``, ``PATH`` itself is the
    ``train`` split and other splits raise ``ValueError``. ``sample_id`` is the path
    relative to the split folder.
    """

    kind = "folder"

    def __init__(self, path: str | os.PathLike[str], split: str = "train") -> None:
        split = _check_split(self.kind, split, _SPLITS[self.kind])
        path = Path(path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"image folder not found: {path} is missing. Expected layout: {path}/<class>/"
                f"<image> or {path}/{{train,val,test}}/<class>/<image> ({_NO_DOWNLOAD_NOTE})."
            )
        train_dir = path / "train"
        if train_dir.is_dir():
            split_dir = path / split
            if not split_dir.is_dir() and split in ("val", "test"):
                other = path / ("test" if split == "val" else "val")
                split_dir = other if other.is_dir() else split_dir
            if not split_dir.is_dir():
                present = [s for s in _SPLITS["folder"] if (path / s).is_dir()]
                raise ValueError(
                    f"split {split!r} not found: {path / split} does not exist; "
                    f"splits present in {path}: {', '.join(present)}"
                )
        else:
            if split != "train":
                raise ValueError(
                    f"{path} has no train/ subfolder, so it is a single 'train' split and has "
                    f"no {split!r} split; put the splits in {path}/train, {path}/val (or "
                    f"{path}/test) to evaluate on a held-out folder"
                )
            split_dir = train_dir = path
        super().__init__(split_dir, split)

        self.classes, self.class_to_idx = self._find_classes(train_dir)
        if split_dir != train_dir:
            split_classes, _ = self._find_classes(split_dir)
            unknown = sorted(set(split_classes) - set(self.class_to_idx))
            if unknown:
                raise ValueError(
                    f"{split_dir} has class folders not in {train_dir}: {', '.join(unknown[:10])}"
                )
            class_to_idx = {c: self.class_to_idx[c] for c in split_classes}
        else:
            class_to_idx = self.class_to_idx
        try:
            samples = make_dataset(str(split_dir), class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as err:
            # torchvision raises this for class folders without any image file.
            raise ValueError(f"empty image folder dataset at {split_dir}: {err}") from err
        if not samples:
            raise ValueError(f"empty image folder dataset: no images in {split_dir}")
        self.files = [Path(p) for p, _ in samples]
        self.targets = [t for _, t in samples]

    @staticmethod
    def _find_classes(directory: Path) -> tuple[list[str], dict[str, int]]:
        try:
            return find_classes(str(directory))
        except FileNotFoundError as err:
            raise ValueError(
                f"empty image folder dataset: no class folders in {directory} (expected "
                f"{directory}/<class>/<image>)"
            ) from err

    def sample_id(self, index: int) -> str:
        """The image path relative to the split folder, with ``/`` separators."""
        assert self.root is not None
        return self.files[self._index(index)].relative_to(self.root).as_posix()

    def load_image(self, index: int) -> Image.Image:
        """Open image ``index`` and convert it to RGB."""
        with Image.open(self.files[index]) as img:
            return img.convert("RGB")


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def _build_synthetic(spec: DatasetSpec, split: str) -> LabeledImageDataset:
    # Imported lazily: the generator is optional for the file readers and pulls in more.
    from .synthetic import SyntheticObjects

    if "split" in spec.options:
        raise ValueError(f"give the split to build_dataset, not as an option of {str(spec)!r}")
    params = inspect.signature(SyntheticObjects).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in spec.options if k not in params and not takes_any]
    if unknown:
        valid = ", ".join(k for k in params if k != "split")
        raise ValueError(
            f"unknown synthetic option(s) {', '.join(unknown)} in {str(spec)!r}; "
            f"valid options: {valid}"
        )
    return SyntheticObjects(**spec.options, split=split)


def build_dataset(spec: str | DatasetSpec, split: str = "train") -> LabeledImageDataset:
    """Build the dataset named by ``spec`` for ``split``.

    Args:
        spec: a spec string (see :func:`parse_data_spec`) or a parsed :class:`DatasetSpec`.
        split: one of :func:`split_names` of the kind, e.g. ``train``, ``test``, ``val``,
            ``unlabeled``, ``train+unlabeled``.

    Returns:
        A map-style dataset yielding ``(RGB PIL image, int target)`` with the attributes of
        :class:`LabeledImageDataset`.

    Raises:
        ValueError: bad spec, unknown split, or an empty/corrupt dataset.
        FileNotFoundError: the dataset files are not at PATH (the message names the file,
            the expected layout and where to download the dataset).
    """
    if not isinstance(spec, DatasetSpec):
        spec = parse_data_spec(spec)
    if spec.kind == "synthetic":
        return _build_synthetic(spec, split)
    assert spec.path is not None
    if spec.kind in ("cifar10", "cifar100"):
        return CifarDataset(spec.path, split, kind=spec.kind)
    if spec.kind == "stl10":
        return STL10Dataset(spec.path, split)
    if spec.kind == "tiny-imagenet":
        return TinyImageNetDataset(spec.path, split)
    if spec.kind == "folder":
        return FolderDataset(spec.path, split)
    raise ValueError(f"unknown dataset kind {spec.kind!r}; valid forms: {_SPEC_FORMS}")
