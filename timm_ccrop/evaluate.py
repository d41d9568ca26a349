"""Evaluation of frozen backbones: feature extraction and weighted kNN.

The kNN classifier is the one of InstDisc / the MoCo and ContrastiveCrop monitors:
cosine similarity of L2-normalised features, the ``k`` nearest train samples vote with
weight ``exp(similarity / T)``. Similarities are computed in chunks of test samples and
of train samples with a running top-k merge, so memory stays bounded for 1.28M train
images.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

__all__ = ["extract_features", "knn_accuracy", "knn_predict"]


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
    train_chunk_size: int = 65536,
) -> torch.Tensor:
    """Class scores ``(N_test, num_classes)`` of a weighted cosine kNN.

    Args:
        train_features, test_features: ``(N, D)`` features (normalised here).
        train_labels: ``(N_train,)`` integer labels in ``[0, num_classes)``.
        k: neighbours (clipped to the train set size).
        temperature: ``T`` of the vote weights ``exp(sim / T)``.
        chunk_size, train_chunk_size: test and train rows per similarity block.
    """
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError("features must be 2-D (N, D)")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"feature sizes differ: train {train_features.shape[1]}, test {test_features.shape[1]}"
        )
    if len(train_features) != len(train_labels) or len(train_features) == 0:
        raise ValueError(
            f"{len(train_features)} train features for {len(train_labels)} labels; "
            "need the same non-zero number"
        )
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, T={temperature}")
    if int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes:
        raise ValueError(
            f"train labels must lie in [0, {num_classes}); unlabeled samples (-1) can't vote"
        )
    k = min(k, len(train_features))
    train = F.normalize(train_features.float(), dim=1)
    labels = train_labels.long().to(train.device)
    scores = []
    for start in range(0, len(test_features), chunk_size):
        query = F.normalize(test_features[start:start + chunk_size].float().to(train.device), dim=1)
        best_sim = torch.full((len(query), 0), float("-inf"), device=train.device)
        best_idx = torch.zeros((len(query), 0), dtype=torch.long, device=train.device)
        for offset in range(0, len(train), train_chunk_size):
            block = query @ train[offset:offset + train_chunk_size].T
            sims = torch.cat([best_sim, block], dim=1)
            idx = torch.cat(
                [best_idx, torch.arange(offset, offset + block.shape[1],
                                        device=train.device).expand(len(query), -1)], dim=1)
            best_sim, order = sims.topk(min(k, sims.shape[1]), dim=1)
            best_idx = idx.gather(1, order)
        weights = (best_sim / temperature).exp()
        votes = torch.zeros(len(query), num_classes, device=train.device)
        votes.scatter_add_(1, labels[best_idx], weights)
        scores.append(votes)
    return torch.cat(scores) if scores else torch.zeros(0, num_classes)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    topk: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) of :func:`knn_predict`."""
    scores = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    ranked = scores.topk(min(max(topk), num_classes), dim=1).indices.cpu()
    truth = test_labels.long().cpu().unsqueeze(1)
    return {
        f"top{n}": float((ranked[:, :n] == truth).any(dim=1).float().mean() * 100)
        for n in topk
        if n <= num_classes
    }


def extract_features(
    model: nn.Module,
    dataset: Any,
    transform: Any,
    batch_size: int = 256,
    num_workers: int = 0,
    accelerator: Any = None,
    progress: bool = True,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and targets of a whole dataset, by sample index.

    Eval mode and ``no_grad``. Under Accelerate every process handles its shard and the
    ``(index, feature)`` rows are gathered and put back in index order, so the result
    equals a single-process pass whatever the sharding.
    """
    from .data import BoxedDataset
    from .localize import _eval_mode, _gather_rows, unwrap_model

    indexed = BoxedDataset(dataset, transform, return_index=True)
    loader = DataLoader(indexed, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    network = unwrap_model(accelerator.unwrap_model(model) if accelerator else model)
    device = next(network.parameters()).device
    autocast = contextlib.nullcontext
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
        device, autocast = accelerator.device, accelerator.autocast
    show = progress and (accelerator is None or accelerator.is_main_process)
    rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    with _eval_mode(network), torch.no_grad():
        for images, targets, indices in tqdm(loader, desc=desc, disable=not show, leave=False):
            with autocast():
                features = network(images.to(device, non_blocking=True))
            rows.append((indices.to(device), features.float(), torch.as_tensor(targets).to(device)))
    indices, features, targets = (torch.cat(column) for column in zip(*rows, strict=True))
    indices, features, targets = _gather_rows(accelerator, indices.long(), features, targets.long())
    ordered = torch.zeros(len(indexed), features.shape[1])
    ordered_targets = torch.full((len(indexed),), -1, dtype=torch.long)
    ordered[indices.cpu()] = features.cpu()
    ordered_targets[indices.cpu()] = targets.cpu()
    return ordered, ordered_targets
