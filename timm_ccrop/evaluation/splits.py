"""The datasets of an evaluation: labelled train/test splits, the validation carve-out,
and the labels of a dataset read without loading its images."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..data import DatasetSpec, build_dataset, split_names

__all__ = ["dataset_targets", "labelled_split", "split_validation", "warn_if_single_class"]

_LOG = logging.getLogger(__name__)


def split_validation(num_samples: int, fraction: float, seed: int = 0
                     ) -> tuple[list[int], list[int]]:
    """Seeded ``(train_indices, val_indices)`` with ``round(fraction * N)`` (>= 1) val
    samples; both sorted. ``fraction == 0`` gives every sample to train."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(range(num_samples)), []
    count = max(1, round(fraction * num_samples))
    if count >= num_samples:
        raise ValueError(f"val fraction {fraction} of {num_samples} train samples leaves no "
                         "sample to train on")
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(int(seed)))
    return sorted(order[count:].tolist()), sorted(order[:count].tolist())


def labelled_split(spec: DatasetSpec, split: str, role: str) -> Any:
    """Split ``split`` of ``spec``, built (images are not read), non-empty and labelled.

    ``role`` (``'train'``/``'test'``) names the split in the errors, which list the
    dataset's splits: a kNN or a linear probe cannot use unlabeled samples (target -1).
    """
    try:
        dataset = build_dataset(spec, split=split)
    except ValueError as err:
        if "split" in str(err):
            raise ValueError(f"{role} split {split!r} of {spec}: {err}. Splits of "
                             f"{spec.kind}: {', '.join(split_names(spec))}") from err
        raise
    if len(dataset) == 0:
        raise ValueError(f"{role} split {split!r} of {spec} is empty")
    has_labels = getattr(dataset, "has_labels", None)
    if has_labels is None:
        targets = getattr(dataset, "targets", None)
        has_labels = targets is not None and min(targets) >= 0
    if not has_labels:
        raise ValueError(
            f"{role} split {split!r} of {spec} has no labels (unlabeled samples have target "
            f"-1); kNN and linear probes need labelled train and test splits. Choose "
            f"labelled splits with --train-split/--test-split (splits of {spec.kind}: "
            f"{', '.join(split_names(spec))})")
    return dataset


def dataset_targets(dataset: Any) -> list[int]:
    """Labels without loading images where the dataset (or a Subset of it) allows."""
    if isinstance(dataset, torch.utils.data.Subset):
        inner = dataset_targets(dataset.dataset)
        return [int(inner[i]) for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def warn_if_single_class(dataset: Any, what: str) -> bool:
    """Warn (one line) when the labels of ``dataset`` hold a single class: every kNN vote
    and every probe prediction is then right, so top-1 is 100% and means nothing.
    Returns whether it warned. ``what`` names the data in the warning."""
    classes = set(dataset_targets(dataset))
    if len(classes) > 1:
        return False
    _LOG.warning("%s has a single class (%d samples): kNN and linear-probe top-1 are 100%% by "
                 "construction and mean nothing; evaluate on data with two or more classes",
                 what, len(dataset))
    return True
