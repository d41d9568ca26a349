"""CIFAR-10 / CIFAR-100 from the official "python version" pickles.

The pickles are read with a restricted unpickler (:func:`load_cifar_pickle`) that can only
rebuild numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..crop.transforms import to_rgb
from .base import ImageDatasetBase, check_split, require_files, resolve_root
from .kinds import dataset_kind

__all__ = ["CIFAR_URL", "CifarDataset", "UnsafePickleError", "load_cifar_pickle"]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not needed to rebuild CIFAR's dicts of arrays."""


def _numpy_pickle_globals() -> dict[str, Any]:
    """numpy's own array/scalar rebuilders, taken from what numpy itself pickles to, so the
    table below holds the functions of the installed numpy whichever of ``numpy.core``
    (numpy 1) or ``numpy._core`` (numpy 2) it lives in, and nothing is imported by name."""
    array = np.zeros(1)
    return {
        "_reconstruct": array.__reduce__()[0],
        "scalar": np.float64(0).__reduce__()[0],
        "_frombuffer": array.__reduce_ex__(5)[0],
    }


def _safe_globals() -> dict[tuple[str, str], Any]:
    """Exactly what CIFAR pickles (Python 2 originals and Python 3 re-pickles) reference:
    numpy array/dtype/scalar reconstruction and the codec Python 3 uses for bytes at
    protocol < 3. Nothing here can call into the OS or import arbitrary code."""
    rebuild = _numpy_pickle_globals()
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
        ("builtins", "bytearray"): bytearray,
        ("__builtin__", "bytearray"): bytearray,
    }
    for package in ("numpy.core", "numpy._core"):  # files name either; both resolve here
        table[(f"{package}.multiarray", "_reconstruct")] = rebuild["_reconstruct"]
        table[(f"{package}.multiarray", "scalar")] = rebuild["scalar"]
        table[(f"{package}.numeric", "_frombuffer")] = rebuild["_frombuffer"]
    return table


_SAFE_GLOBALS = _safe_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        """The object of a safe global; UnsafePickleError for anything else."""
        found = _SAFE_GLOBALS.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"refusing to load {module}.{name} from {self._source}: CIFAR files may only "
                "contain numpy arrays, lists, dicts, numbers and strings. The file is not an "
                f"official CIFAR pickle or has been modified; re-extract it from {CIFAR_URL}."
            )
        return found


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
        split = check_split(kind, split)
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
        root = resolve_root(path, subdir)
        super().__init__(root, split)
        name = dataset_kind(kind).display_name
        layout = (
            f"{path}/{subdir}/{{{', '.join([*files, meta_name])}}} "
            f"(or the files directly in {path})"
        )
        require_files(root, path, [*files, meta_name], f"{name} {split} split", layout,
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
        return to_rgb(Image.fromarray(self.data[index]))
