"""The few collectives the package needs, each a no-op on a single process.

Two kinds: the methods' collectives on plain ``torch.distributed``, and the
Accelerate-based ones of the trainer, the box pass and feature extraction
(:func:`gather_rows`, :func:`any_process`).

Plain ``torch.distributed`` (not Accelerate): the methods run inside whatever process group
the trainer set up, and ``accelerator.gather`` carries no gradient, which SimCLR's
negatives need. Per-process batches may differ in size (a last batch without
``drop_last``): gathers pad to the largest batch and drop the padding again.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "any_process",
    "broadcast",
    "first_occurrences",
    "gather_rows",
    "gather_sizes",
    "gather_with_grad",
    "gather_without_grad",
    "ignored_precision",
    "rank",
    "world_size",
]


def world_size() -> int:
    """Number of processes in the default group; 1 without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """Rank of this process in the default group; 0 without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def gather_sizes(local_size: int, device: torch.device) -> list[int]:
    """Every process's ``local_size``, in rank order."""
    if world_size() == 1:
        return [local_size]
    size = torch.tensor([local_size], device=device, dtype=torch.long)
    sizes = [torch.empty_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _pad_rows(tensor: Tensor, rows: int) -> Tensor:
    if tensor.shape[0] == rows:
        return tensor.contiguous()
    padding = tensor.new_zeros((rows - tensor.shape[0], *tensor.shape[1:]))
    return torch.cat([tensor, padding])


def gather_with_grad(tensor: Tensor, sizes: list[int] | None = None) -> Tensor:
    """Concatenate every process's ``tensor`` along dim 0, in rank order, keeping autograd.

    The backward pass sums, over all processes, the gradients that reach each process's
    slice (``torch.distributed.nn.functional.all_gather``; works under gloo and NCCL).
    Pass ``sizes`` (from :func:`gather_sizes`) to save a collective.
    """
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather  # imports torch.distributed.nn

    sizes = sizes if sizes is not None else gather_sizes(tensor.shape[0], tensor.device)
    parts = all_gather(_pad_rows(tensor, max(sizes)))
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


@torch.no_grad()
def gather_without_grad(tensor: Tensor, sizes: list[int] | None = None) -> Tensor:
    """Concatenate every process's ``tensor`` along dim 0, in rank order (no autograd)."""
    if world_size() == 1:
        return tensor.detach()
    sizes = sizes if sizes is not None else gather_sizes(tensor.shape[0], tensor.device)
    padded = _pad_rows(tensor.detach(), max(sizes))
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


@torch.no_grad()
def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Rank ``src``'s ``tensor`` on every process (in place; returned for chaining)."""
    if world_size() > 1:
        dist.broadcast(tensor, src=src)
    return tensor


def gather_rows(accelerator: Any, *tensors: Tensor) -> list[Tensor]:
    """Gather per-process rows of different lengths (padded, then trimmed by index).

    The first tensor must hold sample indices (>= 0): padding is marked -1 there, so the
    result keeps exactly the real rows of every process, whatever the sharding.
    """
    if accelerator is None or accelerator.num_processes == 1:
        return list(tensors)
    padded = [accelerator.pad_across_processes(t, dim=0, pad_index=-1) for t in tensors]
    gathered = [accelerator.gather(t) for t in padded]
    keep = gathered[0] >= 0
    return [t[keep] for t in gathered]


def first_occurrences(indices: Tensor) -> Tensor:
    """Positions (ascending) of the first row of every distinct sample index: a padded
    sampler or Accelerate's even batches repeat some samples, which must count once."""
    order = torch.argsort(indices, stable=True)
    ordered = indices[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return order[first].sort().values


def any_process(accelerator: Any, local: bool) -> bool:
    """True on every rank if any rank says True (so all ranks stop at the same step)."""
    if accelerator is None or accelerator.num_processes == 1:
        return local
    flag = torch.tensor([1.0 if local else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def ignored_precision(accelerator: Any) -> str | None:
    """Why the accelerator's mixed precision does nothing here, None when it works:
    Accelerate runs ``fp16`` on the CPU in fp32 without a word (it has no CPU fp16
    autocast), so a user comparing speeds or memory would be misled."""
    if str(accelerator.mixed_precision) == "fp16" and accelerator.device.type == "cpu":
        return ("mixed_precision fp16 has no effect on the CPU (Accelerate runs fp32 there): "
                "use bf16 for CPU autocast, or 'no'")
    return None

