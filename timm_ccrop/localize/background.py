"""The map every image shares: a dataset's per-pixel median heatmap, and its removal.

Where the images share a background (one scene, a studio backdrop, a watermark), a
network's activation has a part that is the same in every image. The peak of an image's
map can then sit on that shared part rather than on its object, and its box misses the
object entirely. The per-pixel median of the normalised maps over the dataset is that
shared part wherever objects cover a given pixel in fewer than half of the images; the
localizers subtract it (``background='median'``) before the box rule.

Measured on the training split's ground-truth boxes (docs/localization.md, "Background
subtraction"): small off-centre objects on one shared background gain +0.04 to +0.15 IoU
over the plain map, large objects lose nothing.

The median is taken over a seeded uniform sample (reservoir sampling) of at most
:data:`BACKGROUND_SAMPLE` maps per process, gathered across processes, so its memory is
bounded on any dataset and every process gets the same map.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..utils.distributed import first_occurrences, gather_rows
from .heatmaps import normalise_maps

__all__ = ["BACKGROUNDS", "BACKGROUND_SAMPLE", "median_map", "pop_background",
           "subtract_background"]

#: Values of the localizers' ``background`` option (None: keep the maps as they are).
#: 'auto' is the model family's choice (``localize.heatmaps.localization_defaults``): the
#: median map, except for the families where the studies found it removes the object.
BACKGROUNDS = ("median", "auto")
#: Maps kept per process for the median (a uniform sample of the pass; 8 MiB at 16x16).
BACKGROUND_SAMPLE = 8192
_SAMPLE_SEED = 0


def _reservoir(sample: tuple[torch.Tensor, torch.Tensor] | None, seen: int,
               maps: torch.Tensor, indices: torch.Tensor, capacity: int,
               generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    """Add ``(indices, maps)`` rows to a uniform sample of at most ``capacity`` rows."""
    maps, indices = maps.detach().float().cpu(), indices.detach().long().cpu()
    kept = 0 if sample is None else len(sample[0])
    take = min(capacity - kept, len(maps))
    if sample is None:
        sample = (indices[:take].clone(), maps[:take].clone())
    else:
        sample = (torch.cat([sample[0], indices[:take]]), torch.cat([sample[1], maps[:take]]))
    if take < len(maps):
        position = torch.arange(seen + take, seen + len(maps), dtype=torch.float64)
        slots = (torch.rand(len(position), generator=generator, dtype=torch.float64)
                 * (position + 1)).long()
        chosen = slots < capacity
        for row, slot in zip(torch.arange(take, len(maps))[chosen].tolist(),
                             slots[chosen].tolist(), strict=True):
            sample[0][slot], sample[1][slot] = indices[row], maps[row]  # later rows win
    return sample, seen + len(maps)


def _gather_unique(indices: torch.Tensor, maps: torch.Tensor, accelerator: Any
                   ) -> torch.Tensor:
    """Every process's sampled maps, each sample index once (sharding pads with copies)."""
    if accelerator is not None:
        indices, maps = indices.to(accelerator.device), maps.to(accelerator.device)
    indices, maps = (t.cpu() for t in gather_rows(accelerator, indices, maps))
    return maps[first_occurrences(indices)]


def median_map(batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
               accelerator: Any = None, capacity: int = BACKGROUND_SAMPLE) -> torch.Tensor:
    """The per-pixel median ``(h, w)`` of normalised maps over a dataset.

    ``batches`` yields maps ``(B, h, w)``, or ``(maps, sample_indices)`` where a sharded
    loader may repeat samples: each sample index then counts once. A seeded uniform
    sample of at most ``capacity`` maps per process is kept; under several processes
    (``accelerator``) the samples are gathered, so every process returns the same median
    (the single-process one wherever every map fits in the sample).

    Raises:
        ValueError: no maps, or maps of different sizes.
    """
    generator = torch.Generator().manual_seed(_SAMPLE_SEED)
    sample, seen = None, 0
    for batch in batches:
        maps, indices = batch if isinstance(batch, tuple) else (
            batch, torch.arange(seen, seen + len(batch)))
        if sample is not None and maps.shape[1:] != sample[1].shape[1:]:
            raise ValueError(f"maps of different sizes: {tuple(sample[1].shape[1:])} and "
                             f"{tuple(maps.shape[1:])}; resize the images to one size")
        sample, seen = _reservoir(sample, seen, maps, indices, capacity, generator)
    if sample is None:
        raise ValueError("no maps to take the median of: the dataset is empty")
    return _gather_unique(*sample, accelerator).quantile(0.5, dim=0)


def subtract_background(maps: torch.Tensor, background: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``maps - background`` clipped at 0 and normalised again; also the mask of maps with
    nothing left above the background (their boxes fall back to the whole image)."""
    residual = (maps.float() - background.to(maps.device, torch.float32)).clamp_min(0)
    return normalise_maps(residual)


def pop_background(options: dict[str, Any]) -> str | None:
    """Pop a localizer's ``background`` option from ``options`` and check it."""
    background = options.pop("background", None)
    if background is not None and background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)} (or unset), "
                         f"got {background!r}")
    return background
