"""The weighted kNN classifier and top-k accuracy of class scores.

The kNN classifier is the one of InstDisc / the MoCo and ContrastiveCrop monitors:
cosine similarity of L2-normalised features, the ``k`` nearest train samples vote with
weight ``exp(similarity / T)``. Similarities are computed in chunks of test samples and
of train samples with a running top-k merge, so memory stays bounded for 1.28M train
images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..utils.constants import KNN_K, KNN_TEMPERATURE

__all__ = ["knn_accuracy", "knn_predict", "topk_accuracy"]


def _check_knn_inputs(train_features: torch.Tensor, train_labels: torch.Tensor,
                      test_features: torch.Tensor, num_classes: int, k: int,
                      knn_temperature: float) -> None:
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
    if k < 1 or knn_temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, T={knn_temperature}")
    if int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes:
        raise ValueError(
            f"train labels must lie in [0, {num_classes}); unlabeled samples (-1) can't vote"
        )


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = KNN_K,
    knn_temperature: float = KNN_TEMPERATURE,
    chunk_size: int = 1024,
    train_chunk_size: int = 65536,
) -> torch.Tensor:
    """Class scores ``(N_test, num_classes)`` of a weighted cosine kNN.

    Args:
        train_features, test_features: ``(N, D)`` features (normalised here).
        train_labels: ``(N_train,)`` integer labels in ``[0, num_classes)``.
        k: neighbours (clipped to the train set size).
        knn_temperature: ``T`` of the vote weights ``exp(sim / T)``.
        chunk_size, train_chunk_size: test and train rows per similarity block.
    """
    _check_knn_inputs(train_features, train_labels, test_features, num_classes, k,
                      knn_temperature)
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
        weights = (best_sim / knn_temperature).exp()
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
    k: int = KNN_K,
    knn_temperature: float = KNN_TEMPERATURE,
    topk: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) of :func:`knn_predict`."""
    scores = knn_predict(train_features, train_labels, test_features, num_classes, k,
                         knn_temperature)
    ranked = scores.topk(min(max(topk), num_classes), dim=1).indices.cpu()
    truth = test_labels.long().cpu().unsqueeze(1)
    return {
        f"top{n}": float((ranked[:, :n] == truth).any(dim=1).double().mean() * 100)
        for n in topk
        if n <= num_classes
    }


def topk_accuracy(
    scores: torch.Tensor, labels: torch.Tensor, topk: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracies (%) of class scores ``(N, C)``; ks above ``C`` are left out."""
    num_classes = scores.shape[1]
    wanted = [n for n in topk if n <= num_classes]
    if not wanted or len(scores) == 0:
        return {}
    ranked = scores.topk(max(wanted), dim=1).indices.cpu()
    truth = labels.long().cpu().unsqueeze(1)
    return {f"top{n}": float((ranked[:, :n] == truth).any(dim=1).double().mean() * 100)
            for n in wanted}
