"""MoCo v2 (Chen et al., 2020): momentum key encoder, a queue of negatives, shuffle-BN."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.distributed import broadcast, gather_sizes, gather_without_grad, rank, world_size
from .base import SiameseMethod
from .heads import MoCoProjectionHead
from .losses import info_nce

__all__ = ["MoCo"]

# The initial queue comes from its own generator so that every process starts from the same
# queue whatever its global seed: DDP does not broadcast it (see MoCo.__init__).
_QUEUE_SEED = 0


class MoCo(SiameseMethod):
    """MoCo v2: query encoder, momentum key encoder, and a queue of past keys as negatives.

    The query is view 1, the key view 2 (official, asymmetric); ``symmetric=True`` adds the
    swapped pair, averages both losses and enqueues both views' keys. The queue holds
    ``queue_size`` L2-normalised keys of all processes (``queue``, ``(K, out_dim)``) and the
    next write position (``queue_ptr``); both are registered buffers. Keys are written after
    the loss, in rank order, wrapping around the end of the queue, so any global batch size
    works.

    Shuffle-BN: with several processes the key encoder sees a random permutation of the
    global batch (drawn on rank 0 and broadcast), so its BatchNorm statistics come from other
    images than the query's and cannot leak the positive; the keys are put back in order.
    On one process BN statistics are over the whole batch whatever its order, so nothing is
    done.

    Args:
        backbone: timm model with ``num_classes=0``.
        hidden_dim, out_dim: projector widths (small datasets 512, 128; ImageNet 2048, 128).
        queue_size: number of negatives K (official: 65536).
        temperature: softmax temperature (official: 0.2).
        momentum: key-encoder momentum (official small-dataset: 0.999).
        momentum_schedule: 'constant' (official) or 'cosine' (towards 1, as BYOL).
        shuffle_bn: shuffle the key batch across processes.
        symmetric: symmetrised loss.
    """

    name = "moco"
    sync_batchnorm = False  # shuffle-BN instead

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 512,
        out_dim: int = 128,
        queue_size: int = 4096,
        temperature: float = 0.2,
        momentum: float = 0.999,
        momentum_schedule: str = "constant",
        shuffle_bn: bool = True,
        symmetric: bool = False,
    ) -> None:
        super().__init__(backbone)
        if queue_size < 1 or temperature <= 0:
            raise ValueError("queue_size must be >= 1 and temperature positive")
        self.set_momentum(momentum, momentum_schedule)
        self.temperature = temperature
        self.shuffle_bn = shuffle_bn
        self.symmetric = symmetric
        self.projector = MoCoProjectionHead(self.num_features, hidden_dim, out_dim)
        self.add_momentum_target("backbone")
        self.add_momentum_target("projector")

        generator = torch.Generator().manual_seed(_QUEUE_SEED)
        queue = F.normalize(torch.randn(queue_size, out_dim, generator=generator), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # Every process enqueues the same gathered keys, so the queues never diverge: DDP
        # need not broadcast 32 MB (K=65536) before every forward (broadcast_buffers).
        self._ddp_params_and_buffers_to_ignore = ["queue", "queue_ptr"]

    @property
    def queue_size(self) -> int:
        """K, the number of keys in the queue."""
        return self.queue.shape[0]

    def check_dataset(self, num_samples: int) -> None:
        """Warn when the queue is larger than the dataset (see :meth:`warn_if_queue_exceeds`)."""
        self.warn_if_queue_exceeds(num_samples)

    def warn_if_queue_exceeds(self, num_samples: int) -> bool:
        """Warn if the queue holds more keys than the dataset has images; return whether."""
        if self.queue_size <= num_samples:
            return False
        warnings.warn(
            f"The MoCo queue (K={self.queue_size}) is larger than the dataset ({num_samples} "
            "samples): it keeps older keys of the same images, so a query's own image can be "
            "among its negatives. The official ContrastiveCrop CIFAR recipes run this way on "
            "purpose (K=65536 on 50000 images); lower queue_size to avoid it.",
            stacklevel=2,
        )
        return True

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (already gathered from all processes) at ``queue_ptr``, wrapping.

        A batch larger than the queue keeps only its last K keys, written where the pointer
        would have put them.
        """
        size, count = self.queue_size, keys.shape[0]
        pointer = int(self.queue_ptr)
        if count > size:
            pointer = (pointer + count - size) % size
            keys, count = keys[-size:], size
        index = (pointer + torch.arange(count, device=self.queue.device)) % size
        self.queue[index] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((pointer + count) % size)

    @torch.no_grad()
    def _key_encoder(self, images: Tensor) -> Tensor:
        key = self.projector_momentum(self.encode(images, self.backbone_momentum))
        return F.normalize(key.float(), dim=1)

    @torch.no_grad()
    def keys(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Keys of this process's ``images`` and of the global batch (rank order)."""
        if world_size() == 1:
            keys = self._key_encoder(images)
            return keys, keys
        count = images.shape[0]
        sizes = gather_sizes(count, images.device)
        offset = sum(sizes[: rank()])
        if not self.shuffle_bn:
            keys = self._key_encoder(images)
            return keys, gather_without_grad(keys, sizes)
        all_images = gather_without_grad(images, sizes)
        # Every rank draws (keeping the RNG streams in step); rank 0's draw wins.
        permutation = broadcast(torch.randperm(all_images.shape[0], device=images.device))
        # This rank encodes the images at positions offset.. of the permuted global batch.
        shuffled_keys = self._key_encoder(all_images[permutation[offset:offset + count]])
        gathered = gather_without_grad(shuffled_keys, sizes)  # row j: key of image perm[j]
        all_keys = torch.empty_like(gathered)
        all_keys[permutation] = gathered
        return all_keys[offset:offset + count], all_keys

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        """InfoNCE of the queries against their keys and the queue; then enqueue the keys."""
        first, second = self.two_views(views)
        queue = self.queue.clone()  # the loss's snapshot: enqueue() writes in place
        query = self.projector(self.encode(first))
        key, all_keys = self.keys(second)
        loss, logits = info_nce(query, key, queue, self.temperature)
        new_keys = [all_keys]
        if self.symmetric:
            key_first, all_keys_first = self.keys(first)
            loss_swapped, logits_swapped = info_nce(
                self.projector(self.encode(second)), key_first, queue, self.temperature)
            loss = (loss + loss_swapped) / 2
            logits = torch.cat([logits, logits_swapped])
            new_keys.append(all_keys_first)
        self.enqueue(torch.cat(new_keys))
        cosines = logits * self.temperature
        return {
            "loss": loss,
            "pos_sim": cosines[:, 0].mean(),
            "neg_sim": cosines[:, 1:].mean(),
            "acc": (logits.argmax(dim=1) == 0).float().mean(),
        }
