"""Pooled features of a whole dataset from a frozen backbone, and where they fit.

Under Accelerate every process extracts its shard; the rows are gathered and put back
in sample-index order, so the features are the same whatever the number of processes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import BoxedDataset
from ..models.backbones import eval_mode, unwrap_model
from ..utils.distributed import gather_rows
from ..utils.progress import progress_bar

__all__ = ["extract_features", "fits_on", "sum_over_processes"]


def extract_features(
    model: nn.Module,
    dataset: Any,
    transform: Any,
    batch_size: int = 256,
    num_workers: int = 0,
    accelerator: Any = None,
    progress: bool = True,
    desc: str = "features",
    counters: dict[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and targets of a whole dataset, by sample index.

    Eval mode and ``no_grad``. Under Accelerate every process handles its shard and the
    ``(index, feature)`` rows are gathered and put back in index order, so the result
    equals a single-process pass whatever the sharding. Every process gets the result.

    Unreadable images are replaced by the next readable sample (see
    :class:`~timm_ccrop.data.BoxedDataset`); if ``counters`` is given, the number of
    such samples (summed over processes) is added to ``counters['skipped']``.
    """
    indexed = BoxedDataset(dataset, transform, return_index=True)
    loader = DataLoader(indexed, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    network = unwrap_model(accelerator.unwrap_model(model) if accelerator else model)
    device = next(network.parameters()).device
    autocast = contextlib.nullcontext
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
        device, autocast = accelerator.device, accelerator.autocast
    show = progress and (accelerator is None or accelerator.is_main_process)
    rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    with eval_mode(network), torch.no_grad():
        for images, targets, indices in progress_bar(loader, desc, show):
            with autocast():
                features = network(images.to(device, non_blocking=True))
            rows.append((indices.to(device), features.float(), torch.as_tensor(targets).to(device)))
    indices, features, targets = (torch.cat(column) for column in zip(*rows, strict=True))
    indices, features, targets = gather_rows(accelerator, indices.long(), features, targets.long())
    ordered = torch.zeros(len(indexed), features.shape[1])
    ordered_targets = torch.full((len(indexed),), -1, dtype=torch.long)
    ordered[indices.cpu()] = features.cpu()
    ordered_targets[indices.cpu()] = targets.cpu()
    if counters is not None:
        counters["skipped"] = counters.get("skipped", 0) + sum_over_processes(
            accelerator, int(indexed.skipped[0]))
    return ordered, ordered_targets


def sum_over_processes(accelerator: Any, value: float) -> float | int:
    """``value`` summed over Accelerate's processes (an int stays an int); every process
    must call it. Without an accelerator (or with one process) it is ``value``."""
    if accelerator is None or accelerator.num_processes == 1:
        return value
    total = accelerator.reduce(torch.tensor([float(value)], device=accelerator.device), "sum")
    result = float(total.item())
    return int(result) if isinstance(value, int) else result


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether ``nbytes`` fit comfortably (half the free memory) on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= free // 2
    return device.type == "cpu" or nbytes <= 2 * 1024**3
