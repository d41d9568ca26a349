"""The entry point from a spec string to a dataset: :func:`build_dataset`, and the split
names a kind accepts (read from the one registry, :mod:`timm_ccrop.data.kinds`).

Each kind of the registry names its reader (``DatasetKind.reader``) and its view preset
(``DatasetKind.views``); the reader table here is derived from it, and
:func:`registry_problems` checks both against the classes imported here and
:data:`~timm_ccrop.crop.views.VIEW_PRESETS` when this module is imported.

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
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..crop.views import VIEW_PRESETS, ViewRecipe
from .base import LabeledImageDataset
from .cifar import CifarDataset
from .folder import FolderDataset
from .kinds import DATASET_KINDS, DatasetKind, dataset_kind
from .scenes import PhotoScenes
from .specs import SPEC_FORMS, DatasetSpec, kind_of, parse_data_spec
from .stl10 import STL10Dataset
from .synthetic import SyntheticObjects
from .tiny_imagenet import TinyImageNetDataset

__all__ = ["BUILDERS", "GENERATORS", "READERS", "build_dataset", "default_eval_split",
           "default_train_split", "reader_name", "registry_problems", "split_names",
           "stored_image_size"]


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


def _reader(cls: type) -> Callable[[DatasetSpec, str], LabeledImageDataset]:
    """A builder for a reader class that takes ``(path, split)`` (and ``kind`` when it
    reads several kinds, as :class:`CifarDataset` does)."""
    takes_kind = "kind" in inspect.signature(cls).parameters

    def build(spec: DatasetSpec, split: str) -> LabeledImageDataset:
        """Read ``split`` from the spec's path."""
        assert spec.path is not None
        if takes_kind:
            return cls(spec.path, split, kind=spec.kind)
        return cls(spec.path, split)
    return build


def reader_name(cls: type) -> str:
    """How a kind names its reader: ``module.Class`` inside :mod:`timm_ccrop.data`."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


#: Every reader and generator class, by the name a kind gives it (``DatasetKind.reader``).
READERS: dict[str, type] = {reader_name(cls): cls for cls in (
    CifarDataset, STL10Dataset, TinyImageNetDataset, FolderDataset, SyntheticObjects, PhotoScenes,
)}


def registry_problems(kinds: Iterable[DatasetKind], readers: Mapping[str, type],
                      presets: Mapping[str, Sequence[ViewRecipe]]) -> list[str]:
    """What is missing between the registry of kinds, the readers and the view presets.

    A kind that names a reader not in ``readers``, a generated kind without a generator
    (or one without a ``DEFAULT_IMAGE_SIZE``), a reader no kind names, a kind whose images
    have one size but no view preset, a preset not in ``presets`` or one whose size is not
    the kind's: one line each (empty when they agree).
    """
    problems, named = [], set()
    for kind in kinds:
        if kind.reader is not None:
            named.add(kind.reader)
            if kind.reader not in readers:
                problems.append(f"dataset kind {kind.name!r} names reader {kind.reader!r}, "
                                f"which is not among the readers: {', '.join(readers)}")
            elif not kind.needs_path and not hasattr(readers[kind.reader], "DEFAULT_IMAGE_SIZE"):
                problems.append(f"generator {kind.reader!r} of dataset kind {kind.name!r} has "
                                "no DEFAULT_IMAGE_SIZE")
        elif not kind.needs_path:
            problems.append(f"generated dataset kind {kind.name!r} names no generator")
        size = kind.stored_size or kind.official_size
        if kind.views is None:
            if size is not None:
                problems.append(f"dataset kind {kind.name!r} has {size}px images but names no "
                                "view preset")
        elif kind.views not in presets:
            problems.append(f"dataset kind {kind.name!r} names view preset {kind.views!r}, "
                            f"which is not among the presets: {', '.join(presets)}")
        elif size is not None and any(r.size != size for r in presets[kind.views]):
            problems.append(f"view preset {kind.views!r} of dataset kind {kind.name!r} is not "
                            f"{size}px, the kind's image size")
    problems += [f"reader {name!r} is named by no dataset kind" for name in readers
                 if name not in named]
    return problems


_PROBLEMS = registry_problems(DATASET_KINDS.values(), READERS, VIEW_PRESETS)
if _PROBLEMS:
    raise RuntimeError("the dataset kinds (timm_ccrop/data/kinds.py) disagree with their "
                       "readers or view presets:\n  " + "\n  ".join(_PROBLEMS))

#: The generated kinds' dataset classes (their ``DEFAULT_IMAGE_SIZE`` is the stored size
#: when a spec gives no ``image_size``), from the registry.
GENERATORS: dict[str, type] = {
    kind.name: READERS[kind.reader] for kind in DATASET_KINDS.values()
    if kind.reader is not None and not kind.needs_path
}

#: How each readable kind of the registry is built, from the registry.
BUILDERS: dict[str, Callable[[DatasetSpec, str], LabeledImageDataset]] = {
    kind.name: (_reader if kind.needs_path else _generated)(READERS[kind.reader])
    for kind in DATASET_KINDS.values() if kind.reader is not None
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
