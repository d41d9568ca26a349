"""SimCLR (Chen et al., 2020) with the NT-Xent loss over the negatives of all processes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import SiameseMethod
from .heads import SimCLRProjectionHead
from .losses import nt_xent_loss

__all__ = ["SimCLR"]


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
