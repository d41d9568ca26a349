"""One home for datasets: the kinds and their readers, the built-in synthetic set, and the
box-carrying wrapper and sampler.

Modules: :mod:`.kinds` (the registry of dataset kinds), :mod:`.specs` (spec strings),
:mod:`.build` (spec to dataset), :mod:`.base` (the reader interface), one reader per
on-disk format (:mod:`.cifar`, :mod:`.stl10`, :mod:`.tiny_imagenet`, :mod:`.folder`), the
generated set (:mod:`.synthetic`, :mod:`.shapes`, :mod:`.synthetic_render`) and
:mod:`.boxed` (the box-aware wrapper and sampler).
"""

from .base import ImageDatasetBase, LabeledImageDataset
from .boxed import (
    BoxedDataset,
    EpochPermutationSampler,
    sample_seed,
    seed_everything,
    split_sample,
)
from .build import (
    GENERATORS,
    build_dataset,
    default_eval_split,
    default_train_split,
    split_names,
    stored_image_size,
)
from .cifar import CIFAR_URL, CifarDataset, UnsafePickleError, load_cifar_pickle
from .folder import FolderDataset
from .kinds import DATASET_KINDS, DatasetKind, dataset_kind, kind_names
from .scenes import PhotoScenes
from .shapes import SHAPE_NAMES
from .specs import KINDS, DatasetSpec, parse_data_spec
from .stl10 import STL10_URL, STL10Dataset
from .synthetic import SyntheticObjects
from .tiny_imagenet import TINY_IMAGENET_SIZE, TINY_IMAGENET_URL, TinyImageNetDataset

__all__ = [
    "CIFAR_URL",
    "DATASET_KINDS",
    "GENERATORS",
    "KINDS",
    "SHAPE_NAMES",
    "STL10_URL",
    "TINY_IMAGENET_SIZE",
    "TINY_IMAGENET_URL",
    "BoxedDataset",
    "CifarDataset",
    "DatasetKind",
    "DatasetSpec",
    "EpochPermutationSampler",
    "FolderDataset",
    "ImageDatasetBase",
    "LabeledImageDataset",
    "PhotoScenes",
    "STL10Dataset",
    "SyntheticObjects",
    "TinyImageNetDataset",
    "UnsafePickleError",
    "build_dataset",
    "stored_image_size",
    "dataset_kind",
    "default_eval_split",
    "default_train_split",
    "kind_names",
    "load_cifar_pickle",
    "parse_data_spec",
    "sample_seed",
    "seed_everything",
    "split_names",
    "split_sample",
]
