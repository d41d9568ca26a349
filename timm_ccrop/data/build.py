"""The entry point from a spec string to a dataset: :func:`build_dataset`, and the split
names a kind accepts (read from the one registry, :mod:`timm_ccrop.data.kinds`).

A dataset is named by a *spec string* ``KIND:PATH`` (or ``synthetic[:key=value,...]``):

============================  ====================================================
``cifar10:PATH``              CIFAR-10 python pickles (``cifar-10-batches-py``)
``cifar100:PATH``             CIFAR-100 python pickles (``cifar-100-python``)
``stl10:PATH``                STL-10 binary files (``stl10_binary``)
``tiny-imagenet:PATH``        Tiny-ImageNet-200 (``tiny-imagenet-200``)
``folder:PATH``               any ImageFolder tree, optionally with train/val/test
``synthetic[:k=v,...]``       the built-in generated dataset (:mod:`timm_ccrop.data.synthetic`)
``scenes[:k=v,...]``          objects on real photographs (:mod:`timm_ccrop.data.scenes`)
============================  ====================================================

:func:`build_dataset` turns a spec and a split name into a map-style dataset that yields
``(PIL.Image in mode RGB, int target)``; ``target`` is ``-1`` for unlabeled samples. Every
dataset has ``classes``, ``num_classes``, ``targets``, ``gt_boxes``, ``has_labels`` and
``sample_id(index)`` (see :class:`~timm_ccrop.data.base.LabeledImageDataset`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from .base import LabeledImageDataset
from .cifar import CifarDataset
from .folder import FolderDataset
from .kinds import dataset_kind
from .scenes import PhotoScenes
from .specs import SPEC_FORMS, DatasetSpec, kind_of, parse_data_spec
from .stl10 import STL10Dataset
from .synthetic import SyntheticObjects
from .tiny_imagenet import TinyImageNetDataset

__all__ = ["GENERATORS", "build_dataset", "default_eval_split", "default_train_split",
           "split_names", "stored_image_size"]


def split_names(kind: str | DatasetSpec) -> tuple[str, ...]:
    """The split names :func:`build_dataset` accepts for a dataset kind (or spec).

    For ``tiny-imagenet``, ``test`` is an alias of ``val``. For ``folder``, which of
    ``train``/``val``/``test`` exist depends on the tree on disk (see :class:`FolderDataset`).
    """
    return dataset_kind(kind_of(kind)).splits


def default_train_split(kind: str | DatasetSpec) -> str:
    """The split used for self-supervised pretraining: ``train+unlabeled`` for STL-10
    (the paper's 105k images), ``train`` otherwise."""
    return dataset_kind(kind_of(kind)).train_split


def default_eval_split(kind: str | DatasetSpec) -> str:
    """The labelled held-out split used for evaluation: ``test`` for CIFAR, STL-10 and
    synthetic, ``val`` for Tiny-ImageNet and folder trees."""
    return dataset_kind(kind_of(kind)).eval_split


def _generated(cls: type) -> Callable[[DatasetSpec, str], LabeledImageDataset]:
    """A builder for a generated kind: the spec's options are ``cls``'s keyword arguments."""
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def build(spec: DatasetSpec, split: str) -> LabeledImageDataset:
        """Generate ``split`` with the spec's options, checked against ``cls``'s."""
        if "split" in spec.options:
            raise ValueError(f"give the split to build_dataset, not as an option of "
                             f"{str(spec)!r}")
        unknown = [k for k in spec.options if k not in params and not takes_any]
        if unknown:
            valid = ", ".join(k for k in params if k != "split")
            raise ValueError(f"unknown {spec.kind} option(s) {', '.join(unknown)} in "
                             f"{str(spec)!r}; valid options: {valid}")
        return cls(**spec.options, split=split)
    return build


def _build_cifar(spec: DatasetSpec, split: str) -> LabeledImageDataset:
    assert spec.path is not None
    return CifarDataset(spec.path, split, kind=spec.kind)


def _reader(cls: type) -> Callable[[DatasetSpec, str], LabeledImageDataset]:
    """A builder for a reader class that takes ``(path, split)``."""
    def build(spec: DatasetSpec, split: str) -> LabeledImageDataset:
        """Read ``split`` from the spec's path."""
        assert spec.path is not None
        return cls(spec.path, split)
    return build


#: The generated kinds' dataset classes (their ``DEFAULT_IMAGE_SIZE`` is the stored size
#: when a spec gives no ``image_size``).
GENERATORS: dict[str, type] = {"synthetic": SyntheticObjects, "scenes": PhotoScenes}

#: How each readable kind of the registry is built (a test checks that they match).
BUILDERS: dict[str, Callable[[DatasetSpec, str], LabeledImageDataset]] = {
    "cifar10": _build_cifar,
    "cifar100": _build_cifar,
    "stl10": _reader(STL10Dataset),
    "tiny-imagenet": _reader(TinyImageNetDataset),
    "folder": _reader(FolderDataset),
    **{kind: _generated(cls) for kind, cls in GENERATORS.items()},
}


def stored_image_size(spec: str | DatasetSpec) -> int | None:
    """The side every image of ``spec`` is stored at, None where sizes vary."""
    if not isinstance(spec, DatasetSpec):
        spec = parse_data_spec(spec)
    if spec.kind in GENERATORS:
        return int(spec.options.get("image_size", GENERATORS[spec.kind].DEFAULT_IMAGE_SIZE))
    return dataset_kind(spec.kind).stored_size


def build_dataset(spec: str | DatasetSpec, split: str = "train") -> LabeledImageDataset:
    """Build the dataset named by ``spec`` for ``split``.

    Args:
        spec: a spec string (see :func:`parse_data_spec`) or a parsed :class:`DatasetSpec`.
        split: one of :func:`split_names` of the kind, e.g. ``train``, ``test``, ``val``,
            ``unlabeled``, ``train+unlabeled``.

    Returns:
        A map-style dataset yielding ``(RGB PIL image, int target)`` with the attributes of
        :class:`~timm_ccrop.data.base.LabeledImageDataset`.

    Raises:
        ValueError: bad spec, unknown split, or an empty/corrupt dataset.
        FileNotFoundError: the dataset files are not at PATH (the message names the file,
            the expected layout and where to download the dataset).
    """
    if not isinstance(spec, DatasetSpec):
        spec = parse_data_spec(spec)
    build = BUILDERS.get(spec.kind)
    if build is None:
        raise ValueError(f"unknown dataset kind {spec.kind!r}; valid forms: {SPEC_FORMS}")
    return build(spec, split)
