"""The per-epoch kNN monitor: a frozen-feature kNN on a labelled split of the run's data."""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset, Subset

from ..config import TrainConfig
from ..data import build_dataset, default_eval_split, parse_data_spec
from ..evaluation import extract_features, knn_accuracy, warn_if_single_class
from ..localize import eval_transform

__all__ = ["knn_datasets", "knn_monitor"]


def knn_datasets(config: TrainConfig) -> tuple[Dataset, Dataset] | None:
    """Labelled train and eval splits for the kNN monitor, or None without labels."""
    spec = parse_data_spec(config.eval_data or config.data)
    train_dataset = build_dataset(spec, split="train")
    if not getattr(train_dataset, "has_labels", False):
        return None
    warn_if_single_class(train_dataset, f"the kNN monitor's data {spec}")
    test_dataset = build_dataset(spec, split=default_eval_split(spec))
    if config.knn_max_train and len(train_dataset) > config.knn_max_train:
        # A fixed, seeded subset keeps the monitor cheap and comparable across epochs.
        generator = torch.Generator().manual_seed(config.seed)
        keep = torch.randperm(len(train_dataset), generator=generator)[: config.knn_max_train]
        train_dataset = Subset(train_dataset, keep.tolist())
    return train_dataset, test_dataset


def knn_monitor(config: TrainConfig, accelerator: Accelerator, backbone: Any,
                knn_data: tuple[Dataset, Dataset], size: int) -> dict[str, float]:
    """kNN top-1/top-5 of ``backbone``'s features as ``{'knn_top1': ..., ...}``."""
    train_dataset, test_dataset = knn_data
    transform = eval_transform(size, *config.normalisation())
    kwargs = {"batch_size": max(1, config.batch_size // accelerator.num_processes),
              "num_workers": config.num_workers, "accelerator": accelerator,
              "progress": config.progress}
    train_features, train_labels = extract_features(backbone, train_dataset, transform,
                                                    desc="knn train", **kwargs)
    test_features, test_labels = extract_features(backbone, test_dataset, transform,
                                                  desc="knn test", **kwargs)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    accuracy = knn_accuracy(train_features, train_labels, test_features, test_labels,
                            num_classes, k=config.knn_k, knn_temperature=config.knn_temperature)
    return {f"knn_{key}": value for key, value in accuracy.items()}
