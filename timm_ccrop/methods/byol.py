"""BYOL (Grill et al., 2020): online network with a predictor regresses a momentum target."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import SiameseMethod
from .heads import BYOLPredictionHead, BYOLProjectionHead
from .losses import normalized_mse

__all__ = ["BYOL"]


class BYOL(SiameseMethod):
    """BYOL: online backbone + projector + predictor; target = momentum backbone + projector.

    Loss ``(2 - 2 cos(p1, z2')) + (2 - 2 cos(p2, z1'))``, batch means, ``'`` the target's
    outputs (no gradient): the paper's symmetrised normalised MSE. The official
    ContrastiveCrop code minimises ``-2 (cos(p1, z2') + cos(p2, z1'))``, which differs by
    the constant 4: the same gradient, a loss in [0, 8] instead of [-4, 4].
    Each view passes the networks alone (official), so BN statistics are per view.

    Args:
        backbone: timm model with ``num_classes=0``.
        hidden_dim, out_dim: projector widths (official small-dataset: 512, 128).
        pred_hidden_dim: predictor hidden width (official small-dataset: 512).
        momentum: base target momentum (official: 0.996).
        momentum_schedule: 'constant' (official small-dataset) or 'cosine' (BYOL paper:
            base -> 1 over training, read from ``progress``).
    """

    name = "byol"

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 512,
        out_dim: int = 128,
        pred_hidden_dim: int = 512,
        momentum: float = 0.996,
        momentum_schedule: str = "constant",
    ) -> None:
        super().__init__(backbone)
        self.set_momentum(momentum, momentum_schedule)
        self.projector = BYOLProjectionHead(self.num_features, hidden_dim, out_dim)
        self.predictor = BYOLPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self.add_momentum_target("backbone")
        self.add_momentum_target("projector")

    def _online(self, images: Tensor) -> tuple[Tensor, Tensor]:
        projection = self.projector(self.encode(images))
        return projection, self.predictor(projection)

    @torch.no_grad()
    def _target(self, images: Tensor) -> Tensor:
        return self.projector_momentum(self.encode(images, self.backbone_momentum))

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        """Symmetrised normalised MSE between online predictions and target projections."""
        first, second = self.two_views(views)
        projection1, prediction1 = self._online(first)
        _, prediction2 = self._online(second)
        target1, target2 = self._target(first), self._target(second)
        loss = normalized_mse(prediction1, target2) + normalized_mse(prediction2, target1)
        with torch.no_grad():
            z = F.normalize(projection1.float(), dim=1)
            logs = {
                "pos_sim": 1.0 - loss.detach() / 4.0,  # mean cos(p, z') over both pairs
                "z_std": z.std(dim=0).mean(),  # ~1/sqrt(out_dim) healthy, 0 collapsed
            }
        return {"loss": loss, **logs}
