"""Box-aware dataset wrapper: any map-style dataset to ``(views, target, index)``.

timm's datasets call ``transform(img)`` and timm's ``fast_collate`` keeps only
``(image, target)``, so no transform from the factory ever sees a box by itself. The
wrapper below loads the sample, looks its box up in a shared :class:`BoxTable` by index
and hands ``(image, box)`` to the transform when the transform can use it.

It works with a plain ``DataLoader`` (``return_index=True``: ``(views, target, index)``,
the index being what the localization pass and the trainer need) and with timm's
``create_loader`` (``return_index=False``: ``(image, target)``; ``create_loader`` sets
``dataset.transform`` itself from ``train_crop_mode='ccrop'``).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..crop.boxes import BoxTable
from ..crop.views import apply_transform

__all__ = ["BoxedDataset", "EpochPermutationSampler", "sample_seed", "seed_everything",
           "split_sample"]

_IMAGE_KEYS = ("image", "img", "pixel_values")
_LABEL_KEYS = ("label", "labels", "fine_label", "target")


def _pick_key(item: dict, key: str | None, candidates: Sequence[str], what: str) -> str | None:
    if key is not None:
        if key not in item:
            raise KeyError(f"{what} key {key!r} not in sample keys {sorted(item)}")
        return key
    return next((k for k in candidates if k in item), None)


def split_sample(
    item: Any, image_key: str | None = None, label_key: str | None = None
) -> tuple[Any, int]:
    """``(image, target)`` from a dataset item: a tuple, a dict (Hugging Face) or an image.

    Items without a label get target -1.
    """
    if isinstance(item, dict):
        img_key = _pick_key(item, image_key, _IMAGE_KEYS, "image")
        if img_key is None:
            raise KeyError(
                f"no image in sample keys {sorted(item)}; pass image_key= to BoxedDataset"
            )
        lbl_key = _pick_key(item, label_key, _LABEL_KEYS, "label")
        return item[img_key], int(item[lbl_key]) if lbl_key is not None else -1
    if isinstance(item, (tuple, list)):
        if len(item) >= 2:
            return item[0], int(item[1])
        return item[0], -1
    return item, -1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample in one epoch (stable across processes and runs)."""
    mixed = (int(seed) * 1_000_003 + int(epoch)) * 1_000_003 + int(index)
    return mixed % (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (the ones transforms use).

    Run-level seeding uses ``accelerate.utils.set_seed``; this stays for the per-sample
    seeds of :func:`sample_seed`, which are 63-bit (``set_seed`` hands them to
    ``np.random.seed``, which rejects seeds of 2**32 and up) and are set once per sample in
    DataLoader workers, where ``set_seed``'s accelerator seeding is not wanted.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EpochPermutationSampler(Sampler[int]):
    """A random order of ``range(num_samples)`` that depends only on ``(seed, epoch)``.

    Every process draws the same order (Accelerate then shards the batches), and a
    resumed run sees the same order as an uninterrupted one.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 0))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


class BoxedDataset(Dataset):
    """Wrap a map-style dataset so each sample is cropped with its own box.

    Args:
        dataset: torchvision CIFAR/STL10/ImageFolder, timm's ImageDataset, a Hugging Face
            ``datasets`` split, or any dataset of ``(image, target)``. Its own transform
            must be None: the wrapper applies ``transform``.
        transform: a pipeline or :class:`~timm_ccrop.crop.views.MultiViewTransform`. Box-aware
            pipelines (ContrastiveCrop first) get the sample's box.
        boxes: the shared box table (one row per sample), or None for no boxes.
        return_index: ``(out, target, index)`` if True, ``(out, target)`` for timm's
            ``create_loader`` / ``fast_collate``. A transform that records each view's
            crop and flip (``multi_view_transform(..., geometry=True)``) adds a fourth
            item, its ``[V, 5]`` geometry, to ``(out, target, index)``.
        image_key, label_key: keys of dict samples (default: 'image'/'img', 'label').
        skip_unreadable: replace a sample whose image cannot be read (corrupt or truncated
            file) by the next readable one, with a warning; :attr:`skipped` counts them
            across workers and :attr:`substituted` flags the indices that got a stand-in.
            A dataset with no readable sample at all is a ValueError naming it. If
            False, the error propagates.
        seed: if given, every sample's augmentation is seeded from ``(seed, epoch,
            index)`` (Python, numpy and torch RNGs, about 10 us), so views do not depend
            on the number of workers, their persistence, the sharding or a resume.
            Call :meth:`set_epoch` each epoch; it reaches running workers (shared memory).
    """

    def __init__(
        self,
        dataset: Any,
        transform: Callable | None = None,
        boxes: BoxTable | None = None,
        return_index: bool = True,
        image_key: str | None = None,
        label_key: str | None = None,
        seed: int | None = None,
        skip_unreadable: bool = True,
    ) -> None:
        if getattr(dataset, "transform", None) is not None:
            raise ValueError(
                f"{type(dataset).__name__} already has a transform; build it with "
                "transform=None and pass the transform to BoxedDataset instead, so the "
                "crop can see each sample's box"
            )
        if boxes is not None and len(boxes) != len(dataset):
            raise ValueError(
                f"box table has {len(boxes)} rows but the dataset has {len(dataset)} samples; "
                "make one with BoxTable(len(dataset))"
            )
        self.dataset = dataset
        self.transform = transform
        self.boxes = boxes
        self.return_index = return_index
        self.image_key = image_key
        self.label_key = label_key
        self.seed = seed
        self.skip_unreadable = skip_unreadable
        self.epoch = torch.zeros(1, dtype=torch.long).share_memory_()
        self.skipped = torch.zeros(1, dtype=torch.long).share_memory_()
        # per sample: loaded a stand-in because its own image was unreadable (shared, so
        # the flags written by loader workers reach the process that reads them)
        self.substituted = torch.zeros(len(dataset), dtype=torch.bool).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the augmentation (with ``seed``), in every worker."""
        self.epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple:
        if self.seed is not None:
            seed_everything(sample_seed(self.seed, int(self.epoch[0]), index))
        img, target = self._load(index)
        box = self.boxes.get(index) if self.boxes is not None else None
        out = apply_transform(self.transform, img, box)
        if getattr(self.transform, "records_geometry", False):
            # (views, geometry [V, 5]): the geometry travels as a fourth item, so the
            # collated batch carries a [B, V, 5] tensor beside the views
            out, geometry = out
            return (out, target, index, geometry) if self.return_index else (out, target)
        return (out, target, index) if self.return_index else (out, target)

    def _load(self, index: int) -> tuple[Any, int]:
        """The sample at ``index``, or the next readable one in its place.

        The index stays the requested one, so the box pass and training see the same
        stand-in image for it and every index still gets a box; :attr:`substituted` marks
        it, so the box pass does not record the stand-in's box as this image's.
        """
        failures: list[tuple[int, BaseException]] = []
        for attempt in range(len(self.dataset)):
            position = (index + attempt) % len(self.dataset)
            try:
                img, target = split_sample(self.dataset[position], self.image_key,
                                           self.label_key)
            except (OSError, SyntaxError, ValueError) as err:  # PIL's unreadable-file errors
                if not self.skip_unreadable:
                    raise
                failures.append((position, err))
                continue
            # warned only once a stand-in is found: a dataset with no readable image
            # at all is one error below, not a warning per file first
            for failed, err in failures:
                self.skipped += 1
                warnings.warn(f"skipping unreadable sample {failed} "
                              f"({type(err).__name__}: {err})", stacklevel=2)
            if failures:
                self.substituted[index] = True
            return img, target
        raise ValueError(self._nothing_readable(failures))

    def _nothing_readable(self, failures: Sequence[tuple[int, BaseException]]) -> str:
        """The one-line error for a dataset whose every sample failed to load."""
        root = getattr(self.dataset, "root", None)
        where = (f"{type(self.dataset).__name__} at {root}" if root is not None
                 else type(self.dataset).__name__)
        detail = ""
        if failures:
            position, err = failures[0]
            detail = f"; sample {position}: {type(err).__name__}: {err}"
        return (f"no readable image in the dataset {where}: all {len(self.dataset)} samples "
                f"failed to load{detail}; check that the files are valid images")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dataset={type(self.dataset).__name__}[{len(self)}], "
            f"boxes={self.boxes!r}, return_index={self.return_index})"
        )
