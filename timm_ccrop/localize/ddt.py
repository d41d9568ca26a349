"""DDT: the dataset's principal feature direction as an object detector.

Deep Descriptor Transforming (Wei et al., 2017/2019): over every location of every
image, the first principal component of the stage's feature vectors separates what the
images have in common (the objects) from the rest. Each location's centred feature
projected on that component is a signed map; its positive region, one 4-connected
component of it, is the object. The component is fitted once per box pass
(:meth:`DDTLocalizer.fit`), then every batch is localized with it.

Options of ``create_localizer("ddt", ...)``: ``stage`` (default -1), ``pick``
(``largest`` as DDT, or ``peak``), ``upsample`` (threshold a bilinearly upsampled map),
``dilate`` (remove the last downsampling stride for a finer map), ``max_locations``
(feature vectors per batch entering the statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .components import component_mask, mask_boxes
from .hooks import FeatureHook
from .localizers import Localizer, register_localizer
from .sources import MapSource, stride_removed

__all__ = ["DDTLocalizer", "PositiveRule", "hooked_features"]

#: Rows of the uniform sample kept to orient the component (times channels, floats).
_SIGN_SAMPLE_FLOATS = 2 ** 22


def hooked_features(network: nn.Module, images: torch.Tensor, source: MapSource
                    ) -> torch.Tensor:
    """The NCHW float32 feature map of ``source.stage`` (stride removed if
    ``source.dilate``); eval mode and grad mode are the caller's."""
    with contextlib.ExitStack() as stack:
        if source.dilate:
            stack.enter_context(stride_removed(network, source.stage))
        hook = stack.enter_context(FeatureHook(network, source.stage))
        network(images)
        return hook.feature_map.float()


@dataclass
class PositiveRule:
    """DDT's box rule: the cells above zero, one 4-connected component of them
    (``pick``), boxed; ``upsample``: on a bilinearly upsampled map (factor)."""

    pick: str = "largest"
    upsample: int = 1

    def boxes(self, maps: torch.Tensor, image_size: tuple[int, int], network: nn.Module
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(boxes (B, 4), empty (B,))`` of signed maps ``(B, h, w)``."""
        maps = maps.float()
        if self.upsample > 1:
            size = (maps.shape[1] * self.upsample, maps.shape[2] * self.upsample)
            maps = F.interpolate(maps[:, None], size=size, mode="bilinear",
                                 align_corners=False)[:, 0]
        return mask_boxes(component_mask(maps, maps > 0, self.pick))


def _reduce(accelerator: Any, tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (every rank must fit the same component)."""
    if accelerator is not None and accelerator.num_processes > 1:
        return accelerator.reduce(tensor, "sum")
    return tensor


@dataclass
class DDTLocalizer(Localizer):
    """DDT: project every location on the dataset's first principal component, box the
    positive region. :meth:`fit` must run before :meth:`boxes`."""

    max_locations: int = 4096
    mean: torch.Tensor | None = None  # (C,) float32, set by fit
    direction: torch.Tensor | None = None  # (C,) oriented: the object side is positive

    needs_fit = True
    uses_reduction = False

    def fit(self, network: nn.Module, batches: Callable[[], Iterator[torch.Tensor]],
            accelerator: Any = None) -> None:
        """Mean and first principal component of the stage's feature vectors over every
        location of ``batches()``, oriented so that the larger absolute extreme of the
        projections is positive (DDT's object side: a minority far from the mean).

        Under several processes the sums are reduced and the extremes gathered, so every
        rank fits the same direction.
        """
        generator = torch.Generator().manual_seed(0)  # same subsample on every call
        total = square = sample = keys = None
        count = 0
        for images in batches():
            features = hooked_features(network, images, self.source)
            vectors = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
            vectors = vectors[torch.isfinite(vectors).all(dim=1)]  # NaN would poison all
            if len(vectors) > self.max_locations:  # the C x C product costs N C^2
                chosen = torch.randperm(len(vectors), generator=generator)[:self.max_locations]
                vectors = vectors[chosen.to(vectors.device)]
            with torch.autocast(vectors.device.type, enabled=False):
                wide = vectors.double()
                total = wide.sum(dim=0) + (0 if total is None else total)
                square = wide.T @ wide + (0 if square is None else square)
            count += len(vectors)
            sample, keys = _bottom_k(sample, keys, vectors, generator)
        if total is None or square is None or sample is None or keys is None:
            raise RuntimeError("DDT's fit saw no batch: the loader is empty")
        counted = _reduce(accelerator, torch.tensor(float(count), dtype=torch.float64,
                                                    device=total.device))
        if counted.item() < 2:
            raise RuntimeError("DDT's fit needs at least two finite feature vectors")
        with torch.autocast(total.device.type, enabled=False):
            mean = _reduce(accelerator, total) / counted
            covariance = _reduce(accelerator, square) / counted - torch.outer(mean, mean)
            direction = torch.linalg.eigh(covariance).eigenvectors[:, -1]
        # eigh's sign is arbitrary: fix it from the data, the same on every rank.
        direction = direction * direction[direction.abs().argmax()].sign()
        self.mean, self.direction = mean.float(), direction.float()
        projections = (sample - self.mean) @ self.direction
        extremes = torch.stack([projections.max(), -projections.min()])[None]
        if accelerator is not None and accelerator.num_processes > 1:
            extremes = accelerator.gather(extremes)
        high, low = extremes.amax(dim=0)
        if low > high:
            self.direction = -self.direction

    def projection(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The signed map ``(B, h, w)``: each location's centred feature on the component."""
        if self.mean is None or self.direction is None:
            raise RuntimeError("the ddt localizer is not fitted: call fit(network, batches) "
                               "over the dataset before boxes (the box pass does this)")
        features = hooked_features(network, images, self.source)
        mean = self.mean.to(features.device)
        direction = self.direction.to(features.device)
        return torch.einsum("bchw,c->bhw", features - mean[:, None, None], direction)

    def maps(self, network: nn.Module, images: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The signed projections the rule reads (non-finite cells zeroed) and the
        degenerate mask (a non-finite map); :meth:`boxes` boxes their positive region."""
        maps = self.projection(network, images)
        bad = ~torch.isfinite(maps).flatten(1).all(dim=1)
        return torch.where(torch.isfinite(maps), maps, torch.zeros_like(maps)), bad


def _bottom_k(sample: torch.Tensor | None, keys: torch.Tensor | None,
              vectors: torch.Tensor, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniform sample of every vector seen so far: each gets a random key and the
    smallest keys stay (bounded memory, however large the dataset)."""
    capacity = max(1024, _SIGN_SAMPLE_FLOATS // max(1, vectors.shape[1]))
    new_keys = torch.rand(len(vectors), generator=generator).to(vectors.device)
    if sample is not None and keys is not None:
        vectors, new_keys = torch.cat([sample, vectors]), torch.cat([keys, new_keys])
    if len(new_keys) > capacity:
        kept = new_keys.topk(capacity, largest=False).indices
        vectors, new_keys = vectors[kept], new_keys[kept]
    return vectors, new_keys


def _ddt(options: dict[str, Any]) -> Localizer:
    source = MapSource(stage=int(options.pop("stage", -1)),
                       dilate=bool(options.pop("dilate", False)))
    rule = PositiveRule(pick=options.pop("pick", "largest"),
                        upsample=int(options.pop("upsample", 1)))
    max_locations = int(options.pop("max_locations", 4096))
    if rule.pick not in ("peak", "largest"):
        raise ValueError(f"pick must be 'peak' or 'largest', got {rule.pick!r}")
    if rule.upsample < 1 or max_locations < 1:
        raise ValueError(f"upsample and max_locations must be >= 1, got {rule.upsample}, "
                         f"{max_locations}")
    return DDTLocalizer("ddt", source, rule, max_locations=max_locations)


register_localizer("ddt", _ddt)
