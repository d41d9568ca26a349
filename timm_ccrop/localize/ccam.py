"""Contrastive CAM: Grad-CAM of the SSL method's own contrastive score (ContraCAM).

ContraCAM (Mo et al., NeurIPS 2021) explains a self-supervised model without labels:
the score of an image is how well its embedding picks out itself among other images
(an InfoNCE log-probability); the gradient of that score with respect to the stage's
feature map, averaged over space and kept where positive, weighs the channels; the
weighted sum of channels, ReLU'd, is the map. Here the gradient goes through the global
average pooling and the method's projector only (the backbone runs once under no_grad):
a leaf copy of the hooked map is the only thing differentiated.

ContraCAM takes the negatives from the image's batch, which makes an image's box depend
on how the box pass batches and shards the data. Here the negatives are a fixed bank of
embeddings fitted once per pass (:meth:`ContrastiveCAMLocalizer.fit`): the ``bank_size``
distinct embeddings of the dataset with the smallest value of a seeded random projection,
the same rows whatever the sharding, batch size or order. An image's box then depends on
the image alone.

Options of ``create_localizer("ccam", ...)``: ``stage`` (default -1), ``temperature``
(of the score, default 0.2), ``bank_size`` (negatives, default 512), ``dilate``
(ContraCAM's ``expand_res``: remove the last downsampling stride), and the component box
rule's ``rule`` (mean), ``level`` (1.0), ``pick`` (peak), ``upsample`` (1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.backbones import eval_mode
from .ddt import hooked_features
from .heatmaps import normalise_maps
from .localizers import Localizer, MapSource, component_rule, register_localizer

__all__ = ["ContrastiveCAMLocalizer", "contrastive_cam", "embed"]

#: Bank rows this close to an image's own embedding (cosine) are the image itself.
_SELF_COSINE = 1 - 1e-6
#: Seed of the projection whose smallest values pick the bank's rows.
_BANK_SEED = 0


def embed(features: torch.Tensor, head: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z (B, D), finite (B,))``: ``normalize(head(GAP(features)))`` in float32 (``head``
    None: the pooled feature) and which images have finite features (their ``z`` is
    computed from zeros: use it only where ``finite``). Differentiable in ``features``."""
    finite = torch.isfinite(features).flatten(1).all(dim=1)
    clean = torch.where(finite[:, None, None, None], features.float(),
                        torch.zeros((), device=features.device))
    with torch.autocast(features.device.type, enabled=False):
        pooled = clean.mean(dim=(2, 3))
        z = F.normalize(pooled if head is None else head(pooled), dim=1)
    return z, finite


def contrastive_cam(features: torch.Tensor, head: nn.Module | None, bank: torch.Tensor,
                    temperature: float = 0.2) -> torch.Tensor:
    """ContraCAM maps ``(B, h, w)`` (ReLU'd, not normalised) of feature maps ``(B, C, h, w)``.

    ``z = normalize(head(GAP(features)))`` (:func:`embed`); image ``i``'s score is the
    log-softmax of its positive ``z_i . z_i^d / temperature`` (``z^d`` detached) against
    ``z_i . bank^T / temperature`` (``bank`` ``(K, D)``, L2-normalised negatives; rows
    that are the image's own embedding are left out). Each image's map depends on it and
    the bank only, not on its batch. Channel weights are the positive part of the score
    gradient's spatial mean. For a stage other than the last, GAP + projector stand in for
    the rest of the backbone: an approximation. The gradient is taken with
    ``torch.autograd.grad``, so no parameter's ``.grad`` changes. Images with non-finite
    features, or no negative left, get a NaN map.
    """
    with torch.enable_grad(), torch.autocast(features.device.type, enabled=False):
        leaf = features.detach().float().requires_grad_(True)
        z, finite = embed(leaf, head)
        bank = bank.to(device=z.device, dtype=z.dtype)
        positive = (z * z.detach()).sum(dim=1, keepdim=True) / temperature
        cosine = z @ bank.T
        itself = cosine.detach() > _SELF_COSINE
        negatives = (cosine / temperature).masked_fill(itself, float("-inf"))
        score = torch.cat([positive, negatives], dim=1).log_softmax(dim=1)[:, 0]
        (grad,) = torch.autograd.grad(score.sum(), leaf)
    weights = grad.mean(dim=(2, 3)).clamp_min(0)
    cams = torch.relu(torch.einsum("bc,bchw->bhw", weights, leaf.detach()))
    usable = finite & (~itself).any(dim=1)
    return cams.masked_fill(~usable[:, None, None], float("nan"))


def _takes(head: nn.Module | None, channels: int) -> bool:
    """Whether ``head`` takes ``channels`` features: the projector sits on the last stage;
    an earlier stage's map has other channels, and then the pooled feature stands in."""
    first = next((m for m in head.modules() if isinstance(m, nn.Linear)), None) \
        if head is not None else None
    return first is not None and first.in_features == channels


def _smallest_keys(rows: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size`` distinct rows of ``rows`` with the smallest seeded random projection,
    in that order: the same tensor for any order or repetition of the same rows."""
    rows = torch.unique(rows, dim=0)  # sorted lexicographically: ties break the same way
    generator = torch.Generator().manual_seed(_BANK_SEED)
    direction = torch.randn(rows.shape[1], generator=generator, dtype=torch.float64)
    keys = rows.double() @ direction.to(rows.device)
    order = torch.sort(keys, stable=True).indices[:size]
    return rows[order]


def _gather_bank(bank: torch.Tensor, size: int, accelerator: Any) -> torch.Tensor:
    """Every process's bank rows, merged into one (the same on every rank)."""
    if accelerator is None or accelerator.num_processes <= 1:
        return bank
    padded = accelerator.pad_across_processes(bank, dim=0, pad_index=float("nan"))
    rows = accelerator.gather(padded)
    rows = rows[torch.isfinite(rows).all(dim=1)]  # the padding
    return _smallest_keys(rows, size)


@dataclass
class ContrastiveCAMLocalizer(Localizer):
    """Boxes from the contrastive CAM through the attached projector (:meth:`attach`),
    against a bank of negatives fitted over the dataset (:meth:`fit`)."""

    temperature: float = 0.2
    bank_size: int = 512
    bank: torch.Tensor | None = None  # (K, D) float32 L2-normalised negatives, set by fit

    needs_fit = True
    uses_reduction = False

    def _head(self, channels: int) -> nn.Module | None:
        return self.head if _takes(self.head, channels) else None

    def fit(self, network: nn.Module, batches: Callable[[], Iterator[torch.Tensor]],
            accelerator: Any = None) -> None:
        """The bank: of the finite embeddings ``normalize(head(GAP(features)))`` of
        ``batches()``, the ``bank_size`` distinct ones with the smallest seeded random
        projection. Each process keeps its own smallest, then they are gathered and the
        smallest of all kept: the same bank whatever the sharding, batching or order
        (padding duplicates count once)."""
        bank = None
        for images in batches():
            features = hooked_features(network, images, self.source)
            head = self._head(features.shape[1])
            # The projector may hold BatchNorm: its running averages must not move.
            with torch.no_grad(), eval_mode(head) if head is not None \
                    else contextlib.nullcontext():
                z, finite = embed(features, head)
            rows = z[finite] if bank is None else torch.cat([bank, z[finite]])
            bank = _smallest_keys(rows, self.bank_size)
        if bank is None:
            raise RuntimeError("the ccam localizer's fit saw no batch: the loader is empty")
        self.bank = _gather_bank(bank, self.bank_size, accelerator)

    def maps(self, network: nn.Module, images: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised contrastive CAMs the rule reads and the degenerate mask
        (constant or non-finite CAM, no negative in the bank but the image itself)."""
        if self.bank is None:
            raise RuntimeError("the ccam localizer is not fitted: call fit(network, batches) "
                               "over the dataset before boxes (the box pass does this)")
        features = hooked_features(network, images, self.source)
        head = self._head(features.shape[1])
        # Batch statistics of one box batch are not the projector's training statistics.
        with eval_mode(head) if head is not None else contextlib.nullcontext():
            cams = contrastive_cam(features, head, self.bank, self.temperature)
        return normalise_maps(cams)


def _ccam(options: dict[str, Any]) -> Localizer:
    source = MapSource(stage=int(options.pop("stage", -1)),
                       dilate=bool(options.pop("dilate", False)))
    rule = component_rule(options)
    temperature = float(options.pop("temperature", 0.2))
    bank_size = int(options.pop("bank_size", 512))
    if not temperature > 0 or bank_size < 1:
        raise ValueError(f"temperature must be > 0 and bank_size >= 1, got {temperature}, "
                         f"{bank_size}")
    return ContrastiveCAMLocalizer("ccam", source, rule, temperature=temperature,
                                   bank_size=bank_size)


register_localizer("ccam", _ccam)
