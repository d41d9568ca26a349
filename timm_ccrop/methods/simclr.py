"""SimCLR (Chen et al., 2020) with the NT-Xent loss over the negatives of all processes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import gather_sizes, gather_with_grad, rank
from .base import SiameseMethod, full_precision
from .heads import SimCLRProjectionHead

__all__ = ["SimCLR", "nt_xent_loss"]


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


class SimCLR(SiameseMethod):
    """SimCLR: backbone, MLP projector, NT-Xent over all processes' negatives.

    Both views go through the backbone in one batch (as in the official code), so BatchNorm
    normalises over both views together.

    Args:
        backbone: timm model with ``num_classes=0``.
        hidden_dim, out_dim: projector widths (official small-dataset: 512, 128).
        temperature: NT-Xent temperature (official small-dataset: 0.5).
        base_temperature: when set, the loss is multiplied by ``temperature /
            base_temperature``; the official small-dataset recipe uses 0.07 (a x7.14 loss,
            hence gradient, scale). None: no scaling.
    """

    name = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 512,
        out_dim: int = 128,
        temperature: float = 0.5,
        base_temperature: float | None = None,
    ) -> None:
        super().__init__(backbone)
        if temperature <= 0 or (base_temperature is not None and base_temperature <= 0):
            raise ValueError("temperature and base_temperature must be positive")
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.projector = SimCLRProjectionHead(self.num_features, hidden_dim, out_dim)

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        """NT-Xent loss of the two views (see :func:`nt_xent_loss`)."""
        first, second = self.two_views(views)
        z = self.projector(self.encode(torch.cat([first, second])))
        z1, z2 = z.chunk(2)
        loss, logs = nt_xent_loss(z1, z2, self.temperature)
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        return {"loss": loss, **logs}
