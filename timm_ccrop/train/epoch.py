"""One training epoch, and the stop signals it checks between steps."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator

from ..config import TrainConfig
from ..crop.augment import BatchedViews
from ..crop.boxes import BoxTable
from ..data import sample_seed
from ..localize import Harvester
from ..utils.distributed import any_process
from ..utils.progress import progress_bar

__all__ = ["EpochResult", "device_augmenter", "stop_signals", "train_one_epoch"]

#: ``augment(images, indices) -> (views, geometry)``: ``geometry`` ``[B, V, 5]`` or None.
Augment = Callable[[torch.Tensor, torch.Tensor], tuple[list[torch.Tensor], torch.Tensor | None]]


@contextmanager
def stop_signals() -> Iterator[dict[str, str | None]]:
    """Turn SIGTERM/SIGINT into a flag the loop checks at step boundaries."""
    flag: dict[str, str | None] = {"signal": None}

    def handler(signum: int, frame: Any) -> None:
        flag["signal"] = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Outside the main thread signals stay with the caller.
        with suppress(ValueError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def device_augmenter(views: BatchedViews, boxes: BoxTable, accelerator: Accelerator,
                     config: TrainConfig, epoch: int, geometry: bool | None = None) -> Augment:
    """Views of a uint8 batch made on the device, with the boxes of this epoch, and each
    view's crop geometry when ``geometry`` (default: when the run harvests its boxes)."""
    device = accelerator.device
    generator = torch.Generator(device).manual_seed(
        sample_seed(config.seed, epoch, 2**41 + accelerator.process_index))
    table_boxes = boxes.boxes.to(device)
    table_valid = (boxes.valid & boxes.is_active).to(device)
    geometry = config.harvests_boxes() if geometry is None else geometry

    def augment(images: torch.Tensor, indices: torch.Tensor
                ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        indices = indices.to(device)
        made = views(images.to(device, non_blocking=True), table_boxes[indices],
                     table_valid[indices], generator, return_geometry=geometry)
        return made if geometry else (made, None)

    return augment


@dataclass
class EpochResult:
    """What an epoch reports: its mean loss, last lr, time, and why it stopped early."""

    loss: float
    lr: float
    train_seconds: float
    stopped: str | None = None  # 'nan' (non-finite loss) or 'signal' (SIGTERM/SIGINT)

    def record(self) -> dict[str, float]:
        return {"loss": self.loss, "lr": self.lr, "train_seconds": self.train_seconds}


def train_one_epoch(
    config: TrainConfig, accelerator: Accelerator, method: Any, optimizer: torch.optim.Optimizer,
    scheduler: Any, loader: Any, epoch: int, steps_per_epoch: int,
    stop: dict[str, str | None], augment: Augment | None = None,
    harvest: Harvester | None = None,
) -> EpochResult:
    """Train ``method`` (as prepared by Accelerate) over one pass of ``loader``.

    With ``harvest`` (entered by the caller, so its hook sees every training forward),
    each step's maps are folded into the harvest bank with the batch's crop geometry.

    Every rank stops at the same step when any rank sees a non-finite loss (before the
    step is taken) or a stop signal (after it).
    """
    inner = accelerator.unwrap_model(method)
    method.train()
    total_steps = config.epochs * steps_per_epoch
    loss_sum, steps = 0.0, 0
    started = time.perf_counter()
    bar = progress_bar(loader, f"epoch {epoch}/{config.epochs}",
                       config.progress and accelerator.is_main_process)

    def result(stopped: str | None = None) -> EpochResult:
        return EpochResult(loss_sum / max(1, steps), optimizer.param_groups[0]["lr"],
                           time.perf_counter() - started, stopped)

    for batch in bar:
        views, _, indices = batch[:3]
        geometry = batch[3] if len(batch) > 3 else None  # [B, V, 5] when recorded
        if augment is not None:
            views, geometry = augment(views, indices)
        if config.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with accelerator.autocast():
            loss = method(views)["loss"]
        if any_process(accelerator, not bool(torch.isfinite(loss.detach()))):
            return result("nan")
        if harvest is not None:  # the maps this forward just made: no extra pass
            harvest.step(indices, geometry)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if config.grad_clip:
            accelerator.clip_grad_norm_(method.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        inner.on_after_optimizer_step(((epoch - 1) * steps_per_epoch + steps + 1)
                                      / max(1, total_steps))
        loss_value = float(loss.detach())  # one host sync per step, shared below
        loss_sum += loss_value
        steps += 1
        if config.log_with:  # the trackers' per-step curves (main process only)
            accelerator.log({"train/loss": loss_value,
                             "train/lr": optimizer.param_groups[0]["lr"]},
                            step=(epoch - 1) * steps_per_epoch + steps)
        rate = steps * config.batch_size / max(1e-9, time.perf_counter() - started)
        bar.set_postfix(loss=f"{loss_sum / steps:.4f}",
                        lr=f"{optimizer.param_groups[0]['lr']:.4g}", img_s=f"{rate:.1f}")
        if any_process(accelerator, stop["signal"] is not None):
            return result("signal")
    return result()
