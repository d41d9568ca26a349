"""MLP heads of the Siamese methods: one configurable block, one small subclass per paper.

Default sizes are the official ContrastiveCrop small-dataset ones (ResNet-18, 512
features); the ImageNet recipes pass 2048-wide layers. A Linear followed by BatchNorm has
no bias: BN's shift makes it redundant (the official SimSiam freezes that bias instead).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "BYOLPredictionHead",
    "BYOLProjectionHead",
    "MoCoProjectionHead",
    "ProjectionHead",
    "SimCLRProjectionHead",
    "SimSiamPredictionHead",
    "SimSiamProjectionHead",
]


class ProjectionHead(nn.Sequential):
    """``num_layers`` Linear layers; ReLU (and BN if ``batch_norm``) between them.

    Args:
        in_dim: input width (the backbone's pooled features).
        hidden_dim: width of every hidden layer.
        out_dim: output width.
        num_layers: number of Linear layers (>= 1).
        batch_norm: BatchNorm1d after every hidden Linear.
        last_bn: BatchNorm1d after the output Linear too.
        last_bn_affine: whether that last BatchNorm has a learnable scale and shift.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_bn: bool = False,
        last_bn_affine: bool = True,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim, bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
        super().__init__(*layers)
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:  # typed override of Sequential.forward
        """Map ``(B, in_dim)`` features to ``(B, out_dim)``."""
        return super().forward(x)


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR (official ContrastiveCrop): Linear-ReLU-Linear, no BN; 512-512-128."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=False)


class MoCoProjectionHead(ProjectionHead):
    """MoCo v2: Linear-ReLU-Linear, no BN; 512-512-128 (ImageNet 2048-2048-128)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=False)


class BYOLProjectionHead(ProjectionHead):
    """BYOL projector: Linear-BN-ReLU-Linear; 512-512-128 (paper: 4096-256)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True)


class BYOLPredictionHead(ProjectionHead):
    """BYOL predictor: Linear-BN-ReLU-Linear; 128-512-128."""

    def __init__(self, in_dim: int = 128, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True)


class SimSiamProjectionHead(ProjectionHead):
    """SimSiam projector: 3 Linear layers with BN, the last BN without affine; 512-512-512."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 512) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=3, batch_norm=True,
                         last_bn=True, last_bn_affine=False)


class SimSiamPredictionHead(ProjectionHead):
    """SimSiam predictor, a bottleneck: Linear-BN-ReLU-Linear; 512-128-512."""

    def __init__(self, in_dim: int = 512, hidden_dim: int = 128, out_dim: int = 512) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True)
