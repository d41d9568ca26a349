"""Linear probes: one ``nn.Linear`` trained on a frozen backbone's features.

Two modes share one epoch loop (:func:`_fit_head`) and differ only in where an epoch's
batches of features come from:

* ``fast`` (:func:`linear_probe_features`): features computed once without
  augmentation, batched in the order of :class:`~timm_ccrop.data.EpochPermutationSampler`.
* ``paper`` (:func:`linear_probe_images`): images through the frozen backbone (eval mode)
  every epoch, with the recipe's RandomResizedCrop + flip augmentation; under Accelerate
  the head is trained data-parallel (DDP), the backbone is not wrapped.

Both use the recipe's optimiser, schedule, batch order and seeded initialisation, so with
``augment=False`` the paper mode computes what the fast mode does (up to float rounding).
The reported accuracy is always the one of the FINAL epoch's head; the test split never
chooses anything.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data import BoxedDataset, EpochPermutationSampler, split_sample
from ..models.backbones import unwrap_model
from ..utils.progress import progress_bar
from .features import fits_on, sum_over_processes
from .knn import topk_accuracy
from .recipes import ProbeRecipe, is_augmenting
from .splits import dataset_targets

__all__ = ["EvalSets", "LinearProbeResult", "ProbeSettings", "linear_probe_features",
           "linear_probe_images"]

#: Named ``(features, labels)`` the final head is scored on (``'test'``, ``'val'``).
EvalSets = dict[str, tuple[torch.Tensor, torch.Tensor]]
#: An epoch's ``(features, labels)`` batches, given the epoch number (1-based).
EpochBatches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class LinearProbeResult:
    """A trained probe: the head (on the CPU), final-epoch accuracies, per-epoch history.

    ``accuracy[name]`` holds ``top1``/``top5`` (%) of the final head on each evaluated
    set (e.g. ``'test'``, ``'val'``). ``history`` has one row per epoch: mean train loss,
    lr, and the val top-1 when a ``'val'`` set was given (never the test accuracy).
    """

    head: nn.Linear
    accuracy: dict[str, dict[str, float]]
    history: list[dict[str, float]]
    recipe: ProbeRecipe
    mode: str
    augment: bool
    seconds: float = 0.0
    skipped: int = 0


@dataclass
class ProbeSettings:
    """What a probe's training needs besides its batches: the recipe, the sets the final
    head is scored on, the seed of the head's initialisation and of the batch order, the
    device, Accelerate (None: one process) and whether a progress bar is shown."""

    recipe: ProbeRecipe
    num_classes: int
    eval_sets: EvalSets
    seed: int
    device: torch.device
    accelerator: Any = None
    progress: bool = False

    @property
    def processes(self) -> int:
        """Number of processes the global batch is split over."""
        return self.accelerator.num_processes if self.accelerator is not None else 1

    @property
    def shows_progress(self) -> bool:
        """Progress bars only on the main process."""
        main = self.accelerator is None or self.accelerator.is_main_process
        return self.progress and main


def _new_head(num_features: int, num_classes: int, recipe: ProbeRecipe, seed: int) -> nn.Linear:
    """fc initialised N(0, init_std), bias 0, from its own seeded generator."""
    head = nn.Linear(num_features, num_classes)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        head.weight.normal_(0.0, recipe.init_std, generator=generator)
        head.bias.zero_()
    return head


def _optimiser(head: nn.Module, recipe: ProbeRecipe) -> tuple[torch.optim.Optimizer, Any]:
    optimizer = torch.optim.SGD(head.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, recipe.milestones(), recipe.gamma)
    return optimizer, scheduler


@torch.no_grad()
def _head_accuracy(head: nn.Module, features: torch.Tensor, labels: torch.Tensor,
                   device: torch.device, chunk: int = 8192) -> dict[str, float]:
    scores = [head(features[i:i + chunk].to(device)).float().cpu()
              for i in range(0, len(features), chunk)]
    if not scores:
        return {}
    return topk_accuracy(torch.cat(scores), labels)


def _check_probe_inputs(labels: torch.Tensor, num_classes: int, eval_sets: EvalSets,
                        width: int | None) -> None:
    """Labels usable for training and eval features the head can take (``width``)."""
    if len(labels) == 0:
        raise ValueError("the linear probe needs at least one train sample")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"train labels must lie in [0, {num_classes}); unlabeled samples "
                         "(-1) cannot train a probe")
    for name, (eval_features, eval_labels) in eval_sets.items():
        if eval_features.ndim != 2 or (width is not None and eval_features.shape[1] != width):
            raise ValueError(f"{name} features have shape {tuple(eval_features.shape)} but the "
                             f"probe head takes {width} features: feature size mismatch")
        if len(eval_features) != len(eval_labels):
            raise ValueError(f"{len(eval_features)} {name} features for {len(eval_labels)} "
                             "labels")


def _check_finite(head: nn.Module, epoch: int) -> None:
    if not all(torch.isfinite(p).all() for p in head.parameters()):
        raise RuntimeError(f"the linear probe diverged (non-finite weights) in epoch {epoch}; "
                           "lower --lr")


def _cpu_copy(head: nn.Module) -> nn.Linear:
    copy = nn.Linear(head.in_features, head.out_features)
    copy.load_state_dict({k: v.detach().cpu() for k, v in head.state_dict().items()})
    return copy.eval()


def _fit_head(head: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
              batches: EpochBatches, settings: ProbeSettings, desc: str
              ) -> tuple[nn.Linear, list[dict[str, float]], dict[str, dict[str, float]]]:
    """The one epoch loop of both modes: SGD on ``batches(epoch)``, lr decay per epoch.

    ``head``/``optimizer`` may be wrapped by Accelerate (then the loss is summed over
    processes for the history). Returns the final head (a CPU copy, eval mode), the
    per-epoch history and the final head's accuracy on every eval set.
    """
    accelerator, device = settings.accelerator, settings.device
    inner = accelerator.unwrap_model(head) if accelerator is not None else head
    history: list[dict[str, float]] = []
    epochs = progress_bar(range(1, settings.recipe.epochs + 1), desc,
                          settings.shows_progress)
    for epoch in epochs:
        head.train()
        # summed on the device: no host sync per batch
        loss_sum = torch.zeros((), device=device)
        seen = torch.zeros((), device=device)
        for features, labels in batches(epoch):
            loss = F.cross_entropy(head(features.float()), labels)
            optimizer.zero_grad(set_to_none=True)
            if accelerator is not None:
                accelerator.backward(loss)
            else:
                loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(labels)
            seen += len(labels)
        total_seen = float(sum_over_processes(accelerator, float(seen)))
        row = {"epoch": epoch,
               "loss": float(sum_over_processes(accelerator, float(loss_sum)))
               / max(1.0, total_seen),
               "lr": optimizer.param_groups[0]["lr"]}
        scheduler.step()
        _check_finite(inner, epoch)
        if "val" in settings.eval_sets:
            inner.eval()
            row["val_top1"] = _head_accuracy(inner, *settings.eval_sets["val"],
                                             device).get("top1", 0.0)
        history.append(row)
        epochs.set_postfix(loss=f"{row['loss']:.4f}")
    inner.eval()
    accuracy = {name: _head_accuracy(inner, feats, labs, device)
                for name, (feats, labs) in settings.eval_sets.items()}
    return _cpu_copy(inner), history, accuracy


def linear_probe_features(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    recipe: ProbeRecipe | None = None,
    eval_sets: EvalSets | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> LinearProbeResult:
    """The ``fast`` linear probe: the recipe's SGD on cached features ``(N, D)``.

    Mini-batches follow the paper mode's order (:class:`~timm_ccrop.data.
    EpochPermutationSampler` with ``seed``, last batch partial), the head starts from the
    same seeded N(0, init_std) and the lr decays per epoch at the recipe's milestones, so
    this equals :func:`linear_probe_images` with ``augment=False`` up to float rounding.
    The accuracy of the FINAL epoch's head on every ``eval_sets`` entry is reported.
    """
    if train_features.ndim != 2 or len(train_features) != len(train_labels):
        raise ValueError(f"train features {tuple(train_features.shape)} must be (N, D) with "
                         f"one row per label ({len(train_labels)} labels)")
    settings = ProbeSettings(
        recipe or ProbeRecipe(), num_classes, eval_sets or {}, seed,
        torch.device(device) if device is not None else train_features.device,
        progress=progress)
    _check_probe_inputs(train_labels, num_classes, settings.eval_sets, train_features.shape[1])
    started = time.perf_counter()
    head = _new_head(train_features.shape[1], num_classes, settings.recipe, seed)
    head = head.to(settings.device)
    optimizer, scheduler = _optimiser(head, settings.recipe)
    batches = _feature_batches(train_features, train_labels, settings)
    final, history, accuracy = _fit_head(head, optimizer, scheduler, batches, settings,
                                         "linear probe (fast)")
    return LinearProbeResult(final, accuracy, history, settings.recipe, "fast", False,
                             time.perf_counter() - started)


def _feature_batches(train_features: torch.Tensor, train_labels: torch.Tensor,
                     settings: ProbeSettings) -> EpochBatches:
    """An epoch's batches of cached features, in the paper mode's sample order."""
    device, batch_size = settings.device, settings.recipe.batch_size
    # The feature matrix moves to the device once when it fits easily, else per batch.
    on_device = fits_on(device, train_features.numel() * 4)
    features = train_features.float().to(device) if on_device else train_features.float()
    labels = train_labels.long().to(device)
    sampler = EpochPermutationSampler(len(features), seed=settings.seed)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's permutation, cut into recipe-sized batches (last one partial)."""
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            yield (features[batch.to(features.device)].to(device, non_blocking=True),
                   labels[batch.to(device)])

    return batches


def linear_probe_images(
    backbone: nn.Module,
    train_dataset: Any,
    num_classes: int,
    train_transform: Callable,
    recipe: ProbeRecipe | None = None,
    eval_sets: EvalSets | None = None,
    seed: int = 0,
    accelerator: Any = None,
    num_workers: int = 0,
    progress: bool = False,
) -> LinearProbeResult:
    """The ``paper`` linear probe: images through the frozen backbone every epoch.

    The backbone stays in eval mode under ``no_grad`` (BatchNorm statistics frozen); only
    the head learns. ``train_transform`` is the augmentation (see
    :func:`~timm_ccrop.evaluation.probe_train_transform`); pass the eval transform for a
    probe without augmentation. Every sample's augmentation is seeded from
    ``(seed, epoch, index)``.

    Under Accelerate with N processes, each process takes ``batch_size / N`` samples of
    every global batch (Accelerate's batch sharding; the last partial batch is evened
    out by repeating samples) and the head is wrapped in DDP, so the gradient is the one
    of the global batch. ``eval_sets`` hold features cached with the eval transform
    (the backbone is frozen, so they are the same every epoch); the FINAL epoch's head
    is evaluated on them.
    """
    network = unwrap_model(backbone)
    device = accelerator.device if accelerator is not None else next(network.parameters()).device
    settings = ProbeSettings(recipe or ProbeRecipe(), num_classes, eval_sets or {}, seed,
                             device, accelerator, progress)
    num_features = int(getattr(network, "num_features", 0)) or None
    targets = torch.as_tensor(dataset_targets(train_dataset), dtype=torch.long)
    _check_probe_inputs(targets, num_classes, settings.eval_sets, num_features)
    if settings.recipe.batch_size % settings.processes:
        raise ValueError(f"batch size {settings.recipe.batch_size} is not divisible by "
                         f"{settings.processes} processes; choose a multiple")
    started = time.perf_counter()
    was_training = network.training
    network.to(device).eval()
    trainable = [p for p in network.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        if num_features is None:
            num_features = _measure_width(network, train_dataset, train_transform, device)
            _check_probe_inputs(targets, num_classes, settings.eval_sets, num_features)
        result = _train_on_images(network, train_dataset, train_transform, num_features,
                                  settings, num_workers=num_workers)
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
        network.train(was_training)
    result.seconds = time.perf_counter() - started
    return result


def _measure_width(network: nn.Module, dataset: Any, transform: Callable,
                   device: torch.device) -> int:
    """The feature size of a backbone that does not say it: one image through it."""
    with torch.no_grad():
        sample = transform(split_sample(dataset[0])[0]).unsqueeze(0).to(device)
        return int(network(sample).shape[1])


def _train_on_images(network: nn.Module, train_dataset: Any, train_transform: Callable,
                     num_features: int, settings: ProbeSettings, *, num_workers: int
                     ) -> LinearProbeResult:
    """The paper mode's training (the backbone is already frozen); ``seconds`` is left 0."""
    recipe, device, accelerator = settings.recipe, settings.device, settings.accelerator
    head = _new_head(num_features, settings.num_classes, recipe, settings.seed).to(device)
    optimizer, scheduler = _optimiser(head, recipe)
    indexed = BoxedDataset(train_dataset, train_transform, return_index=True, seed=settings.seed)
    sampler = EpochPermutationSampler(len(indexed), seed=settings.seed)
    loader = DataLoader(indexed, batch_size=recipe.batch_size // settings.processes,
                        sampler=sampler, num_workers=num_workers, drop_last=False,
                        pin_memory=device.type == "cuda")
    autocast: Callable[[], Any] = contextlib.nullcontext
    if accelerator is not None:
        head, optimizer = accelerator.prepare(head, optimizer)
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
        autocast = accelerator.autocast
    skipped = {"first_epoch": 0}

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's augmented images through the frozen backbone (no_grad)."""
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        indexed.set_epoch(epoch)
        before = int(indexed.skipped[0])
        for images, labels, _ in progress_bar(loader, f"epoch {epoch}",
                                              settings.shows_progress):
            with torch.no_grad(), autocast():
                features = network(images.to(device, non_blocking=True))
            yield features, torch.as_tensor(labels).long().to(device)
        if epoch == 1:  # every image is read once in the first epoch
            skipped["first_epoch"] = int(sum_over_processes(
                accelerator, int(indexed.skipped[0]) - before))

    final, history, accuracy = _fit_head(head, optimizer, scheduler, batches, settings,
                                         "linear probe (paper)")
    augment = train_transform is not None and is_augmenting(train_transform)
    return LinearProbeResult(final, accuracy, history, recipe, "paper", augment,
                             skipped=skipped["first_epoch"])
