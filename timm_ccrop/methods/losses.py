"""The Siamese losses as reusable units (like ``lightly.loss``), usable outside our trainer.

- :func:`nt_xent_loss` (SimCLR's InfoNCE over the two views of a batch, with the negatives
  of every process) and :func:`info_nce` (MoCo: queries against keys and a queue);
- :func:`normalized_mse` (BYOL) and :func:`negative_cosine` (SimSiam), each with the
  target detached.

Contrastive logits are computed in float32 under any autocast (see :func:`full_precision`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils.distributed import gather_sizes, gather_with_grad, rank

__all__ = ["full_precision", "info_nce", "negative_cosine", "normalized_mse", "nt_xent_loss"]


def full_precision(device: torch.device) -> torch.autocast:
    """Autocast off: contrastive logits need fp32 (bf16 keeps ~3 digits of a cosine, and a
    temperature of 0.2 multiplies that error by 5). Inputs must be cast with ``.float()``."""
    return torch.autocast(device_type=device.type, enabled=False)


def nt_xent_loss(
    z1: Tensor, z2: Tensor, temperature: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """NT-Xent of this process's anchors against the embeddings of every process.

    The anchors are the local ``2n`` embeddings; the candidates are the ``2N`` embeddings
    of all processes (gathered with gradient); each anchor's positive is the other view of
    its image, every other candidate except itself is a negative. The loss is the mean over
    the local anchors. Under DDP's gradient averaging (equal batches per process) that is
    exactly the gradient of the single-process loss over the global batch.

    Args:
        z1, z2: ``(n, d)`` embeddings of the two views (any scale: L2-normalised here).
        temperature: softmax temperature.

    Returns:
        The loss and detached logs: ``pos_sim``, ``neg_sim`` (mean cosine similarities) and
        ``acc`` (fraction of anchors whose nearest candidate is the positive).
    """
    with full_precision(z1.device):
        return _nt_xent(F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1),
                        temperature)


def _nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, dict[str, Tensor]]:
    n = z1.shape[0]
    sizes = gather_sizes(n, z1.device)
    total, offset = sum(sizes), sum(sizes[: rank()])
    candidates = torch.cat([gather_with_grad(z1, sizes), gather_with_grad(z2, sizes)])
    anchors = torch.cat([z1, z2])
    similarity = anchors @ candidates.T  # (2n, 2N) cosines

    # Global indices of the local anchors in the candidate set, and of their positives.
    local = torch.arange(n, device=z1.device) + offset
    self_index = torch.cat([local, local + total])
    positive_index = torch.cat([local + total, local])
    rows = torch.arange(2 * n, device=z1.device)
    self_mask = torch.zeros_like(similarity, dtype=torch.bool)
    self_mask[rows, self_index] = True

    logits = (similarity / temperature).masked_fill(self_mask, float("-inf"))
    loss = F.cross_entropy(logits, positive_index)

    with torch.no_grad():
        positive_sim = similarity[rows, positive_index]
        negative_mask = ~self_mask
        negative_mask[rows, positive_index] = False
        logs = {
            "pos_sim": positive_sim.mean(),
            "neg_sim": similarity[negative_mask].mean(),
            "acc": (logits.argmax(dim=1) == positive_index).float().mean(),
        }
    return loss, logs


def info_nce(query: Tensor, key: Tensor, negatives: Tensor, temperature: float
             ) -> tuple[Tensor, Tensor]:
    """MoCo's InfoNCE: each query against its own key (the positive) and ``negatives``.

    Args:
        query: ``(n, d)`` queries (any scale: L2-normalised here).
        key: ``(n, d)`` L2-normalised keys (no gradient expected).
        negatives: ``(K, d)`` L2-normalised negatives (MoCo's queue).
        temperature: softmax temperature.

    Returns:
        The loss and the detached logits ``(n, 1 + K)`` (column 0 is the positive).
    """
    with full_precision(query.device):
        query = F.normalize(query.float(), dim=1)
        positive = (query * key).sum(dim=1, keepdim=True)
        negative = query @ negatives.T
        logits = torch.cat([positive, negative], dim=1) / temperature
    labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, labels), logits.detach()


def normalized_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``; ``z`` is detached."""
    cosine = F.cosine_similarity(prediction.float(), target.detach().float(), dim=1)
    return (2.0 - 2.0 * cosine).mean()


def negative_cosine(prediction: Tensor, target: Tensor) -> Tensor:
    """``-cos(p, stopgrad(z))``, batch mean."""
    return -F.cosine_similarity(prediction.float(), target.detach().float(), dim=1).mean()
