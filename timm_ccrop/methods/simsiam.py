"""SimSiam (Chen & He, 2021): projector, predictor, stop-gradient; no negatives, no target."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import SiameseMethod
from .heads import SimSiamPredictionHead, SimSiamProjectionHead
from .losses import negative_cosine

__all__ = ["SimSiam"]


class SimSiam(SiameseMethod):
    """SimSiam: loss ``(D(p1, z2) + D(p2, z1)) / 2`` with ``D = -cos`` and z stop-gradient.

    Args:
        backbone: timm model with ``num_classes=0``.
        hidden_dim, out_dim: projector widths, 3 layers (official small-dataset: 512, 512;
            ImageNet 2048, 2048).
        pred_hidden_dim: predictor bottleneck (official small-dataset: 128; ImageNet 512).
        fixed_predictor_lr: the predictor's groups from :meth:`parameter_groups` carry
            ``fixed_lr=True``: the trainer keeps their learning rate at the base value
            while the rest follows the schedule (official).
    """

    name = "simsiam"

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 512,
        out_dim: int = 512,
        pred_hidden_dim: int = 128,
        fixed_predictor_lr: bool = True,
    ) -> None:
        super().__init__(backbone)
        self.fixed_predictor_lr = fixed_predictor_lr
        self.fixed_lr_modules = ("predictor",) if fixed_predictor_lr else ()
        self.projector = SimSiamProjectionHead(self.num_features, hidden_dim, out_dim)
        self.predictor = SimSiamPredictionHead(out_dim, pred_hidden_dim, out_dim)

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        """Symmetric negative cosine between each view's prediction and the other's projection."""
        first, second = self.two_views(views)
        z1 = self.projector(self.encode(first))
        z2 = self.projector(self.encode(second))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
        with torch.no_grad():
            z = F.normalize(z1.float(), dim=1)
            logs = {
                "pos_sim": -loss.detach(),  # mean cos(p, z) over both pairs
                "z_std": z.std(dim=0).mean(),  # ~1/sqrt(out_dim) healthy, 0 collapsed
            }
        return {"loss": loss, **logs}
