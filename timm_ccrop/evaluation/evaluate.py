"""Evaluation of frozen backbones: feature extraction, weighted kNN and linear probes.

The kNN classifier is the one of InstDisc / the MoCo and ContrastiveCrop monitors:
cosine similarity of L2-normalised features, the ``k`` nearest train samples vote with
weight ``exp(similarity / T)``. Similarities are computed in chunks of test samples and
of train samples with a running top-k merge, so memory stays bounded for 1.28M train
images.

The linear probe trains one ``nn.Linear`` on the frozen features with the official
recipe (``zoo/probes/*.yaml``, see :class:`ProbeRecipe`), in two modes:

* ``paper`` (:func:`linear_probe_images`): images through the frozen backbone (eval mode)
  every epoch, with the recipe's RandomResizedCrop + flip augmentation; under Accelerate
  the head is trained data-parallel (DDP), the backbone is not wrapped.
* ``fast`` (:func:`linear_probe_features`): the same optimiser, schedule, batch order and
  initialisation on features computed once without augmentation; with ``augment=False``
  the paper mode computes the same thing (up to float rounding).

The reported accuracy is always the one of the FINAL epoch; the test split is never
used to choose anything. :func:`split_validation` carves a seeded validation split from
the train split for choosing hyper-parameters. :func:`run_evaluation` does the whole job
behind ``timm-ccrop eval`` and writes ``eval.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..backbones import eval_mode, sha256_file, state_dict_sha256, unwrap_model
from ..distributed import gather_rows
from ..runs import list_checkpoints, read_checkpoint

__all__ = [
    "PROTOCOLS",
    "LINEAR_MODES",
    "BackboneSource",
    "EvalConfig",
    "LinearProbeResult",
    "ProbeRecipe",
    "extract_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe_features",
    "linear_probe_images",
    "list_probe_recipes",
    "load_backbone",
    "load_probe_recipe",
    "probe_train_transform",
    "resolve_backbone_source",
    "run_evaluation",
    "split_validation",
    "state_dict_sha256",
    "summary_lines",
    "topk_accuracy",
]

#: Values of ``--protocol``.
PROTOCOLS = ("knn", "linear", "both")
#: Values of ``--linear-mode``.
LINEAR_MODES = ("fast", "paper")
#: Version of the eval.json layout.
EVAL_FORMAT = 1


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
    train_chunk_size: int = 65536,
) -> torch.Tensor:
    """Class scores ``(N_test, num_classes)`` of a weighted cosine kNN.

    Args:
        train_features, test_features: ``(N, D)`` features (normalised here).
        train_labels: ``(N_train,)`` integer labels in ``[0, num_classes)``.
        k: neighbours (clipped to the train set size).
        temperature: ``T`` of the vote weights ``exp(sim / T)``.
        chunk_size, train_chunk_size: test and train rows per similarity block.
    """
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError("features must be 2-D (N, D)")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"feature sizes differ: train {train_features.shape[1]}, test {test_features.shape[1]}"
        )
    if len(train_features) != len(train_labels) or len(train_features) == 0:
        raise ValueError(
            f"{len(train_features)} train features for {len(train_labels)} labels; "
            "need the same non-zero number"
        )
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, T={temperature}")
    if int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes:
        raise ValueError(
            f"train labels must lie in [0, {num_classes}); unlabeled samples (-1) can't vote"
        )
    k = min(k, len(train_features))
    train = F.normalize(train_features.float(), dim=1)
    labels = train_labels.long().to(train.device)
    scores = []
    for start in range(0, len(test_features), chunk_size):
        query = F.normalize(test_features[start:start + chunk_size].float().to(train.device), dim=1)
        best_sim = torch.full((len(query), 0), float("-inf"), device=train.device)
        best_idx = torch.zeros((len(query), 0), dtype=torch.long, device=train.device)
        for offset in range(0, len(train), train_chunk_size):
            block = query @ train[offset:offset + train_chunk_size].T
            sims = torch.cat([best_sim, block], dim=1)
            idx = torch.cat(
                [best_idx, torch.arange(offset, offset + block.shape[1],
                                        device=train.device).expand(len(query), -1)], dim=1)
            best_sim, order = sims.topk(min(k, sims.shape[1]), dim=1)
            best_idx = idx.gather(1, order)
        weights = (best_sim / temperature).exp()
        votes = torch.zeros(len(query), num_classes, device=train.device)
        votes.scatter_add_(1, labels[best_idx], weights)
        scores.append(votes)
    return torch.cat(scores) if scores else torch.zeros(0, num_classes)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    topk: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) of :func:`knn_predict`."""
    scores = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    ranked = scores.topk(min(max(topk), num_classes), dim=1).indices.cpu()
    truth = test_labels.long().cpu().unsqueeze(1)
    return {
        f"top{n}": float((ranked[:, :n] == truth).any(dim=1).double().mean() * 100)
        for n in topk
        if n <= num_classes
    }


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
    from ..data import BoxedDataset

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
        for images, targets, indices in tqdm(loader, desc=desc, disable=not show, leave=False):
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
        counters["skipped"] = counters.get("skipped", 0) + _sum_over_processes(
            accelerator, int(indexed.skipped[0]))
    return ordered, ordered_targets


def _sum_over_processes(accelerator: Any, value: float) -> float | int:
    if accelerator is None or accelerator.num_processes == 1:
        return value
    total = accelerator.reduce(torch.tensor([float(value)], device=accelerator.device), "sum")
    result = float(total.item())
    return int(result) if isinstance(value, int) else result


def topk_accuracy(
    scores: torch.Tensor, labels: torch.Tensor, topk: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracies (%) of class scores ``(N, C)``; ks above ``C`` are left out."""
    num_classes = scores.shape[1]
    wanted = [n for n in topk if n <= num_classes]
    if not wanted or len(scores) == 0:
        return {}
    ranked = scores.topk(max(wanted), dim=1).indices.cpu()
    truth = labels.long().cpu().unsqueeze(1)
    return {f"top{n}": float((ranked[:, :n] == truth).any(dim=1).double().mean() * 100)
            for n in wanted}


# --------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------

def _probe_dirs() -> list[Any]:
    """The folder of probe recipes shipped with the package (``timm_ccrop.zoo``)."""
    installed = resources.files("timm_ccrop.zoo") / "probes"
    return [installed] if installed.is_dir() else []


@dataclass
class ProbeRecipe:
    """Settings of a linear probe (``zoo/probes/NAME.yaml``); defaults: ``small``.

    ``decay_at`` are fractions of ``epochs`` where the lr is multiplied by ``gamma``
    (``(0.6, 0.8)`` of 100 epochs: epochs 60 and 80), so ``--epochs`` keeps the shape of
    the schedule. ``train_scale``/``hflip`` are the paper mode's augmentation.
    ``test_crop_pct``: the eval transform's crop fraction (1.0: the whole image; None:
    the model's pretrained_cfg).
    """

    name: str = "small"
    description: str = ""
    epochs: int = 100
    batch_size: int = 512
    lr: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    decay_at: tuple[float, ...] = (0.6, 0.8)
    gamma: float = 0.1
    init_std: float = 0.01
    train_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    test_crop_pct: float | None = 1.0

    def __post_init__(self) -> None:
        self.decay_at = tuple(float(f) for f in self.decay_at)
        self.train_scale = tuple(float(s) for s in self.train_scale)  # type: ignore[assignment]
        problems = []
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            problems.append(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            problems.append(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if any(not 0 < f < 1 for f in self.decay_at):
            problems.append(f"decay_at must be fractions in (0, 1), got {list(self.decay_at)}")
        if not 0 < self.gamma <= 1:
            problems.append(f"gamma must be in (0, 1], got {self.gamma}")
        if not self.init_std >= 0:
            problems.append(f"init_std must be >= 0, got {self.init_std}")
        if len(self.train_scale) != 2 or not 0 < self.train_scale[0] <= self.train_scale[1] <= 1:
            problems.append(f"train_scale must be (lo, hi) with 0 < lo <= hi <= 1, got "
                            f"{list(self.train_scale)}")
        if not 0 <= self.hflip <= 1:
            problems.append(f"hflip must be in [0, 1], got {self.hflip}")
        if self.test_crop_pct is not None and not 0 < self.test_crop_pct <= 1:
            problems.append(f"test_crop_pct must be in (0, 1] or null, got {self.test_crop_pct}")
        if problems:
            raise ValueError(f"invalid probe recipe {self.name!r}: " + "; ".join(problems))

    def milestones(self) -> list[int]:
        """Epochs after which the lr decays (``MultiStepLR`` milestones)."""
        steps = {round(f * self.epochs) for f in self.decay_at}
        return sorted(s for s in steps if 0 < s < self.epochs)

    def replace(self, **changes: Any) -> ProbeRecipe:
        """A copy with ``changes`` (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["decay_at"] = list(self.decay_at)
        values["train_scale"] = list(self.train_scale)
        values["milestones"] = self.milestones()
        return values


def list_probe_recipes() -> list[str]:
    """Names of the probe recipes shipped in ``zoo/probes``."""
    return sorted({p.name[:-5] for d in _probe_dirs() for p in d.iterdir()
                   if p.name.endswith(".yaml")})


def load_probe_recipe(name_or_path: str) -> ProbeRecipe:
    """A probe recipe by name (``zoo/probes/NAME.yaml``) or path to a YAML file."""
    import yaml

    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"probe recipe {path} does not exist")
        text, name = path.read_text(), path.stem
    else:
        resource = next((d / f"{name_or_path}.yaml" for d in _probe_dirs()
                         if (d / f"{name_or_path}.yaml").is_file()), None)
        if resource is None:
            raise FileNotFoundError(
                f"probe recipe {name_or_path!r} not found; shipped: "
                f"{', '.join(list_probe_recipes())}, or give a path to a YAML file"
            )
        text, name = resource.read_text(), name_or_path
    values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise ValueError(f"probe recipe {name_or_path} must be a mapping, got {type(values)}")
    known = {f.name for f in dataclasses.fields(ProbeRecipe)} - {"name"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in probe recipe {name_or_path}; known keys: "
                         f"{sorted(known)}")
    return ProbeRecipe(name=name, **values)


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


def _check_probe_inputs(labels: torch.Tensor, num_classes: int,
                        eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
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


def linear_probe_features(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    recipe: ProbeRecipe | None = None,
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
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
    from ..data import EpochPermutationSampler

    recipe = recipe or ProbeRecipe()
    eval_sets = eval_sets or {}
    if train_features.ndim != 2 or len(train_features) != len(train_labels):
        raise ValueError(f"train features {tuple(train_features.shape)} must be (N, D) with "
                         f"one row per label ({len(train_labels)} labels)")
    _check_probe_inputs(train_labels, num_classes, eval_sets, train_features.shape[1])
    device = torch.device(device) if device is not None else train_features.device
    started = time.perf_counter()
    head = _new_head(train_features.shape[1], num_classes, recipe, seed).to(device)
    optimizer, scheduler = _optimiser(head, recipe)
    # The feature matrix moves to the device once when it fits easily, else per batch.
    on_device = _fits_on(device, train_features.numel() * 4)
    features = train_features.float().to(device) if on_device else train_features.float()
    labels = train_labels.long().to(device)
    sampler = EpochPermutationSampler(len(features), seed=seed)
    history: list[dict[str, float]] = []
    bar = tqdm(range(1, recipe.epochs + 1), desc="linear probe (fast)", disable=not progress,
               leave=False)
    for epoch in bar:
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)
        loss_sum, seen = 0.0, 0
        head.train()
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start:start + recipe.batch_size]
            x = features[batch.to(features.device)].to(device, non_blocking=True)
            y = labels[batch.to(device)]
            loss = F.cross_entropy(head(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(batch)
            seen += len(batch)
        row = {"epoch": epoch, "loss": loss_sum / seen, "lr": optimizer.param_groups[0]["lr"]}
        scheduler.step()
        _check_finite(head, epoch)
        if "val" in eval_sets:
            head.eval()
            row["val_top1"] = _head_accuracy(head, *eval_sets["val"], device).get("top1", 0.0)
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
    head.eval()
    accuracy = {name: _head_accuracy(head, feats, labs, device)
                for name, (feats, labs) in eval_sets.items()}
    return LinearProbeResult(head.cpu(), accuracy, history, recipe, "fast", False,
                             time.perf_counter() - started)


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether ``nbytes`` fit comfortably (half the free memory) on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= free // 2
    return device.type == "cpu" or nbytes <= 2 * 1024**3


def probe_train_transform(size: int, mean: Sequence[float], std: Sequence[float],
                          recipe: ProbeRecipe, interpolation: str = "bilinear") -> Any:
    """The paper mode's train augmentation: RandomResizedCrop(size) + flip, normalise."""
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=tuple(recipe.train_scale),
                                     interpolation=InterpolationMode(interpolation)),
        transforms.RandomHorizontalFlip(recipe.hflip),
        transforms.ToTensor(),
        transforms.Normalize(tuple(mean), tuple(std)),
    ])


def linear_probe_images(
    backbone: nn.Module,
    train_dataset: Any,
    num_classes: int,
    train_transform: Callable,
    recipe: ProbeRecipe | None = None,
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    seed: int = 0,
    accelerator: Any = None,
    num_workers: int = 0,
    progress: bool = False,
) -> LinearProbeResult:
    """The ``paper`` linear probe: images through the frozen backbone every epoch.

    The backbone stays in eval mode under ``no_grad`` (BatchNorm statistics frozen); only
    the head learns. ``train_transform`` is the augmentation (see
    :func:`probe_train_transform`); pass the eval transform for a probe without
    augmentation. Every sample's augmentation is seeded from ``(seed, epoch, index)``.

    Under Accelerate with N processes, each process takes ``batch_size / N`` samples of
    every global batch (Accelerate's batch sharding; the last partial batch is evened
    out by repeating samples) and the head is wrapped in DDP, so the gradient is the one
    of the global batch. ``eval_sets`` hold features cached with the eval transform
    (the backbone is frozen, so they are the same every epoch); the FINAL epoch's head
    is evaluated on them.
    """

    recipe = recipe or ProbeRecipe()
    eval_sets = eval_sets or {}
    network = unwrap_model(backbone)
    num_features = int(getattr(network, "num_features", 0)) or None
    targets = torch.as_tensor(_targets_of(train_dataset), dtype=torch.long)
    _check_probe_inputs(targets, num_classes, eval_sets, num_features)
    processes = accelerator.num_processes if accelerator is not None else 1
    if recipe.batch_size % processes:
        raise ValueError(f"batch size {recipe.batch_size} is not divisible by {processes} "
                         "processes; choose a multiple")
    started = time.perf_counter()
    device = accelerator.device if accelerator is not None else next(network.parameters()).device
    was_training = network.training
    network.to(device).eval()
    trainable = [p for p in network.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        return _train_probe_on_images(network, train_dataset, targets, num_classes,
                                      train_transform, recipe, eval_sets, seed, accelerator,
                                      num_workers, progress, device, num_features, processes,
                                      started)
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
        network.train(was_training)


def _train_probe_on_images(network: nn.Module, train_dataset: Any, targets: torch.Tensor,
                           num_classes: int, train_transform: Callable, recipe: ProbeRecipe,
                           eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]], seed: int,
                           accelerator: Any, num_workers: int, progress: bool,
                           device: torch.device, num_features: int | None, processes: int,
                           started: float) -> LinearProbeResult:
    from ..data import BoxedDataset, EpochPermutationSampler

    if num_features is None:
        with torch.no_grad():
            sample = train_transform(_first_image(train_dataset)).unsqueeze(0).to(device)
            num_features = int(network(sample).shape[1])
        _check_probe_inputs(targets, num_classes, eval_sets, num_features)
    head = _new_head(num_features, num_classes, recipe, seed).to(device)
    optimizer, scheduler = _optimiser(head, recipe)

    indexed = BoxedDataset(train_dataset, train_transform, return_index=True, seed=seed)
    sampler = EpochPermutationSampler(len(indexed), seed=seed)
    loader = DataLoader(indexed, batch_size=recipe.batch_size // processes, sampler=sampler,
                        num_workers=num_workers, drop_last=False,
                        pin_memory=device.type == "cuda")
    autocast: Callable[[], Any] = contextlib.nullcontext
    if accelerator is not None:
        head, optimizer = accelerator.prepare(head, optimizer)
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
        autocast = accelerator.autocast
    show = progress and (accelerator is None or accelerator.is_main_process)
    history: list[dict[str, float]] = []
    skipped = 0
    epochs = tqdm(range(1, recipe.epochs + 1), desc="linear probe (paper)", disable=not show,
                  leave=False)
    for epoch in epochs:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        indexed.set_epoch(epoch)
        head.train()
        loss_sum = torch.zeros((), device=device)
        seen = torch.zeros((), device=device)
        before = int(indexed.skipped[0])
        for images, labels, _ in tqdm(loader, desc=f"epoch {epoch}", disable=not show,
                                      leave=False):
            images = images.to(device, non_blocking=True)
            labels = torch.as_tensor(labels).long().to(device)
            with torch.no_grad(), autocast():
                features = network(images)
            loss = F.cross_entropy(head(features.float()), labels)
            optimizer.zero_grad(set_to_none=True)
            if accelerator is not None:
                accelerator.backward(loss)
            else:
                loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(labels)
            seen += len(labels)
        if epoch == 1:
            skipped = int(_sum_over_processes(accelerator, int(indexed.skipped[0]) - before))
        row = {"epoch": epoch,
               "loss": float(_sum_over_processes(accelerator, float(loss_sum))
                             / max(1.0, float(_sum_over_processes(accelerator, float(seen))))),
               "lr": optimizer.param_groups[0]["lr"]}
        scheduler.step()
        inner = accelerator.unwrap_model(head) if accelerator is not None else head
        _check_finite(inner, epoch)
        if "val" in eval_sets:
            inner.eval()
            row["val_top1"] = _head_accuracy(inner, *eval_sets["val"], device).get("top1", 0.0)
        history.append(row)
        epochs.set_postfix(loss=f"{row['loss']:.4f}")
    inner = accelerator.unwrap_model(head) if accelerator is not None else head
    inner.eval()
    accuracy = {name: _head_accuracy(inner, feats, labs, device)
                for name, (feats, labs) in eval_sets.items()}
    augment = train_transform is not None and _is_augmenting(train_transform)
    result = LinearProbeResult(_cpu_copy(inner), accuracy, history, recipe, "paper", augment,
                               time.perf_counter() - started, skipped)
    return result


def _cpu_copy(head: nn.Module) -> nn.Linear:
    copy = nn.Linear(head.in_features, head.out_features)
    copy.load_state_dict({k: v.detach().cpu() for k, v in head.state_dict().items()})
    return copy.eval()


def _is_augmenting(transform: Any) -> bool:
    from torchvision import transforms

    steps = getattr(transform, "transforms", [transform])
    random = (transforms.RandomResizedCrop, transforms.RandomHorizontalFlip)
    return any(isinstance(step, random) for step in steps)


def _targets_of(dataset: Any) -> list[int]:
    """Labels without loading images where the dataset (or a Subset of it) allows."""
    if isinstance(dataset, torch.utils.data.Subset):
        inner = _targets_of(dataset.dataset)
        return [int(inner[i]) for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _first_image(dataset: Any) -> Any:
    from ..data import split_sample

    return split_sample(dataset[0])[0]


def split_validation(num_samples: int, fraction: float, seed: int = 0
                     ) -> tuple[list[int], list[int]]:
    """Seeded ``(train_indices, val_indices)`` with ``round(fraction * N)`` (>= 1) val
    samples; both sorted. ``fraction == 0`` gives every sample to train."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(range(num_samples)), []
    count = max(1, round(fraction * num_samples))
    if count >= num_samples:
        raise ValueError(f"val fraction {fraction} of {num_samples} train samples leaves no "
                         "sample to train on")
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(int(seed)))
    return sorted(order[count:].tolist()), sorted(order[:count].tolist())


# --------------------------------------------------------------------------------------
# Backbone sources
# --------------------------------------------------------------------------------------

_EXPORT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass
class BackboneSource:
    """Where a backbone comes from, resolved without loading any weights.

    ``kind``: ``'export'`` (a folder with config.json + model.safetensors, also a run's
    ``backbone/``), ``'checkpoint'`` (a run's newest ``checkpoint-epoch*.pt``, or the
    file given) or ``'timm'`` (a name for ``timm.create_model``). ``folder`` is where
    ``eval.json`` goes by default (the run folder or the export folder), ``run_config``
    the run's ``config.yaml`` when there is one.
    """

    text: str
    kind: str
    name: str
    folder: Path | None = None
    weights: Path | None = None
    run_config: dict[str, Any] | None = None
    pretrained: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.text, "kind": self.kind, "name": self.name,
                "folder": str(self.folder) if self.folder else None,
                "weights": str(self.weights) if self.weights else None,
                "pretrained": self.pretrained}


def _export_weights(folder: Path) -> Path | None:
    if not (folder / "config.json").is_file():
        return None
    return next((folder / n for n in _EXPORT_WEIGHTS if (folder / n).is_file()), None)


def _read_run_config(folder: Path) -> dict[str, Any] | None:
    import yaml

    path = folder / "config.yaml"
    if not path.is_file():
        return None
    values = yaml.safe_load(path.read_text()) or {}
    return values if isinstance(values, dict) else None


def _looks_like_path(text: str) -> bool:
    return (os.sep in text or "/" in text or text.startswith((".", "~"))
            or text.endswith((".pt", ".pth", ".safetensors", ".bin")))


def resolve_backbone_source(text: str) -> BackboneSource:
    """Classify ``text`` (run folder, export folder, checkpoint file or timm name).

    Raises FileNotFoundError for a path that does not exist or holds no backbone, and
    ValueError for a name timm does not know; nothing is loaded.
    """
    import timm
    from timm.models import is_model, parse_model_name, split_model_name_tag

    from .. import models  # noqa: F401  (registers resnet*_cifar)

    text = str(text).strip()
    if not text:
        raise ValueError("--backbone is empty; give a run folder, an exported backbone "
                         "folder or a timm model name")
    if text.lower().startswith("local-dir:"):
        folder = Path(text.split(":", 1)[1]).expanduser()
        weights = _export_weights(folder) if folder.is_dir() else None
        if weights is None:
            raise FileNotFoundError(f"backbone folder {folder} does not exist or has no "
                                    f"config.json + {' / '.join(_EXPORT_WEIGHTS)}")
        return BackboneSource(text, "export", f"local-dir:{folder}", folder, weights)
    if text.lower().startswith(("hf-hub:", "hf_hub:")):
        return BackboneSource(text, "timm", text, pretrained=True)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix in (".safetensors", ".bin") and _export_weights(path.parent):
            return BackboneSource(text, "export", f"local-dir:{path.parent}", path.parent,
                                  _export_weights(path.parent))
        if path.suffix in (".pt", ".pth"):
            run_config = _read_run_config(path.parent)
            return BackboneSource(text, "checkpoint", str((run_config or {}).get("model", "")),
                                  path.parent, path, run_config)
        raise FileNotFoundError(
            f"backbone file {path} is neither a training checkpoint (.pt) nor the weights "
            "of an exported backbone folder (config.json + model.safetensors)")
    if path.is_dir():
        weights = _export_weights(path)
        if weights is not None:
            return BackboneSource(text, "export", f"local-dir:{path}", path, weights,
                                  _read_run_config(path.parent))
        exported = _export_weights(path / "backbone")
        if exported is not None:
            return BackboneSource(text, "export", f"local-dir:{path / 'backbone'}", path,
                                  exported, _read_run_config(path))
        checkpoints = list_checkpoints(path)
        if checkpoints:
            run_config = _read_run_config(path)
            return BackboneSource(text, "checkpoint", str((run_config or {}).get("model", "")),
                                  path, checkpoints[0], run_config)
        raise FileNotFoundError(
            f"{path} holds no backbone: expected a run folder (backbone/ with config.json + "
            "model.safetensors, or checkpoint-epoch*.pt) or an exported backbone folder "
            "(config.json + model.safetensors)")
    if _looks_like_path(text):
        raise FileNotFoundError(
            f"backbone {text!r} does not exist (no such file or folder); for a Hub model "
            f"write hf-hub:{text}")
    _, arch = parse_model_name(text)
    base, tag = split_model_name_tag(arch)
    if not is_model(base):
        import difflib

        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"backbone {text!r} is no folder and no timm model name{hint}")
    if tag and arch not in timm.list_pretrained(arch):
        raise ValueError(f"timm has no pretrained weights {arch!r}; known tags: "
                         f"{', '.join(timm.list_pretrained(base + '.*')[:10]) or 'none'}")
    return BackboneSource(text, "timm", arch, pretrained=bool(tag))


def _run_preset(run_config: dict[str, Any] | None) -> dict[str, Any]:
    """input size, mean and std of a run's views preset (as its export would record)."""
    from ..config import TrainConfig

    if not run_config:
        return {}
    try:
        config = TrainConfig.from_dict(run_config)
        mean, std = config.normalisation()
        size = config.resolved_image_size()
    except (ValueError, TypeError, KeyError):
        return {}
    return {"input_size": (3, size, size), "mean": tuple(mean), "std": tuple(std),
            "crop_pct": 1.0, "crop_mode": "center", "interpolation": "bilinear"}


def load_backbone(source: BackboneSource | str, seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """Build the backbone (``num_classes=0``, eval mode) and describe its weights.

    Returns ``(model, info)``: ``info`` has the source, architecture, feature size and a
    sha256 of the weights file (``sha256_of: 'file'``) or of the state dict's bytes
    (``'state_dict'``: checkpoints, Hub/registry weights, random init seeded by ``seed``).
    """
    import timm

    from .. import models  # noqa: F401  (registers resnet*_cifar)

    if not isinstance(source, BackboneSource):
        source = resolve_backbone_source(source)
    info: dict[str, Any] = source.to_dict()
    if source.kind == "checkpoint":
        model, checkpoint = _backbone_from_checkpoint(source, seed)
        info.update(checkpoint)
        info["sha256"], info["sha256_of"] = state_dict_sha256(model.state_dict()), "state_dict"
    else:
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = timm.create_model(source.name, pretrained=source.pretrained,
                                          num_classes=0)
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            hint = (" Without network access put the weights into the Hugging Face cache and "
                    "set HF_HUB_OFFLINE=1." if source.kind == "timm" and source.pretrained
                    else "")
            raise ValueError(f"cannot build backbone {source.text!r} ({type(err).__name__}: "
                             f"{first}).{hint}") from err
        if source.weights is not None:
            info["sha256"], info["sha256_of"] = sha256_file(source.weights), "file"
        else:
            info["sha256"] = state_dict_sha256(model.state_dict())
            info["sha256_of"] = "state_dict"
        info["random_init"] = source.kind == "timm" and not source.pretrained
    cfg = getattr(model, "pretrained_cfg", None) or {}
    info["architecture"] = cfg.get("architecture") or type(model).__name__
    info["num_features"] = int(getattr(model, "num_features", 0)) or None
    info["num_parameters"] = sum(p.numel() for p in model.parameters())
    return model.eval(), info


def _backbone_from_checkpoint(source: BackboneSource, seed: int) -> tuple[nn.Module, dict]:
    import timm

    given = Path(source.text).expanduser()
    # A folder: its newest readable checkpoint (corrupt ones are skipped); a file: that one.
    state, path = read_checkpoint(given if given.is_file() else Path(source.folder or given))
    run_config = source.run_config or state.get("config") or {}
    if not run_config.get("model"):
        raise ValueError(f"checkpoint {path} has no run config (config.yaml next to it, or "
                         "'config' inside) naming the model; export the backbone instead")
    model_state = state.get("model", state)
    prefix = "backbone."
    weights = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"checkpoint {path} has no {prefix}* weights (is it a timm-ccrop "
                         "training checkpoint?)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(run_config["model"], num_classes=0,
                                  **(run_config.get("model_kwargs") or {}))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not fit {run_config['model']!r}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    preset = _run_preset(run_config)
    if preset:
        model.pretrained_cfg = {**(getattr(model, "pretrained_cfg", None) or {}), **preset}
    source.run_config = run_config
    return model, {"checkpoint": str(path), "epoch": state.get("epoch")}


# --------------------------------------------------------------------------------------
# The whole evaluation (timm-ccrop eval)
# --------------------------------------------------------------------------------------


@dataclass
class EvalConfig:
    """Settings of :func:`run_evaluation` (the options of ``timm-ccrop eval``).

    ``None`` means: from the probe recipe (``batch_size``, ``epochs``, ``lr``), from the
    model's pretrained_cfg (``image_size``, ``mean``, ``std``), ``train`` and the
    dataset's eval split (``train_split``, ``test_split``), the run's config
    (``data``: its ``eval_data`` or ``data``), next to the backbone (``output``).
    ``probe_recipe='auto'``: ``imagenet`` for inputs of 128 px and more, else ``small``.
    """

    backbone: str
    data: str | None = None
    protocol: str = "both"
    output: str | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    batch_size: int | None = None
    num_workers: int = 2
    knn_k: int = 200
    knn_t: float = 0.1
    linear_mode: str = "fast"
    probe_recipe: str = "auto"
    epochs: int | None = None
    lr: float | None = None
    augment: bool = True
    val_fraction: float = 0.0
    seed: int = 0
    train_split: str | None = None
    test_split: str | None = None
    mixed_precision: str = "no"
    progress: bool = True

    def validate(self) -> None:
        problems = []
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}, got "
                            f"{self.protocol!r}")
        if self.linear_mode not in LINEAR_MODES:
            problems.append(f"linear mode must be one of {', '.join(LINEAR_MODES)}, got "
                            f"{self.linear_mode!r}")
        if self.knn_k < 1:
            problems.append(f"knn k must be >= 1, got {self.knn_k}")
        if not self.knn_t > 0:
            problems.append(f"knn temperature must be > 0, got {self.knn_t}")
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("batch_size", "epochs", "image_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1, got {value}")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != 3:
                problems.append(f"{name} needs 3 values (R G B), got {list(value)}")
        if self.std is not None and any(s <= 0 for s in self.std):
            problems.append(f"std values must be > 0, got {list(self.std)}")
        if problems:
            raise ValueError("invalid evaluation settings: " + "; ".join(problems))

    @property
    def protocols(self) -> tuple[str, ...]:
        return ("knn", "linear") if self.protocol == "both" else (self.protocol,)


def _labelled_split(spec: Any, split: str, role: str) -> Any:
    from ..data import build_dataset, split_names

    try:
        dataset = build_dataset(spec, split=split)
    except ValueError as err:
        if "split" in str(err):
            raise ValueError(f"{role} split {split!r} of {spec}: {err}. Splits of "
                             f"{spec.kind}: {', '.join(split_names(spec))}") from err
        raise
    if len(dataset) == 0:
        raise ValueError(f"{role} split {split!r} of {spec} is empty")
    has_labels = getattr(dataset, "has_labels", None)
    if has_labels is None:
        targets = getattr(dataset, "targets", None)
        has_labels = targets is not None and min(targets) >= 0
    if not has_labels:
        raise ValueError(
            f"{role} split {split!r} of {spec} has no labels (unlabeled samples have target "
            f"-1); kNN and linear probes need labelled train and test splits. Choose "
            f"labelled splits with --train-split/--test-split (splits of {spec.kind}: "
            f"{', '.join(split_names(spec))})")
    return dataset


def _output_file(config: EvalConfig, source: BackboneSource) -> Path:
    if config.output:
        path = Path(config.output).expanduser()
        return path if path.suffix.lower() == ".json" else path / "eval.json"
    if source.folder is not None:
        return source.folder / "eval.json"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in source.name)
    return Path("runs") / "eval" / safe / "eval.json"


def _versions() -> dict[str, str]:
    import accelerate
    import timm

    from .. import __version__

    return {"timm_ccrop": __version__, "timm": timm.__version__, "torch": torch.__version__,
            "accelerate": accelerate.__version__, "python": platform.python_version()}


def run_evaluation(config: EvalConfig, accelerator: Any = None) -> dict[str, Any]:
    """Evaluate a frozen backbone with kNN and/or a linear probe; write ``eval.json``.

    Everything that can be checked without heavy work is checked first (settings,
    backbone source, data spec, that the splits exist and are labelled, the probe
    recipe, the output folder). Returns the report that is written (by the main
    process) to ``eval.json``; its ``output`` key says where.
    """
    from accelerate import Accelerator
    from timm.data import create_transform, resolve_model_data_config

    from ..data import default_eval_split, parse_data_spec, seed_everything

    started = time.perf_counter()
    config.validate()
    source = resolve_backbone_source(config.backbone)
    data_text = config.data
    if data_text is None and source.run_config:
        data_text = source.run_config.get("eval_data") or source.run_config.get("data")
    if not data_text:
        raise ValueError("give --data (a dataset spec such as cifar10:PATH); only a run "
                         "folder with a config.yaml names its own dataset")
    spec = parse_data_spec(data_text)
    train_split = config.train_split or "train"
    test_split = config.test_split or default_eval_split(spec)
    train_dataset = _labelled_split(spec, train_split, "train")
    test_dataset = _labelled_split(spec, test_split, "test")
    train_idx, val_idx = split_validation(len(train_dataset), config.val_fraction, config.seed)
    recipe = None
    if "linear" in config.protocols:
        # 'auto' needs the input size; an explicit name/path is checked now.
        recipe = None if config.probe_recipe == "auto" else load_probe_recipe(
            config.probe_recipe)
    output = _output_file(config, source)
    if accelerator is None:
        from accelerate.utils import DataLoaderConfiguration

        accelerator = Accelerator(mixed_precision=config.mixed_precision,
                                  dataloader_config=DataLoaderConfiguration(
                                      use_seedable_sampler=False))
    is_main = accelerator.is_main_process
    if is_main:
        output.parent.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)

    model, backbone_info = load_backbone(source, seed=config.seed)
    data_config = resolve_model_data_config(model)
    size = int(config.image_size or data_config["input_size"][-1])
    if recipe is None:
        recipe = load_probe_recipe("imagenet" if size >= 128 else "small")
    recipe = recipe.replace(epochs=config.epochs, lr=config.lr, batch_size=config.batch_size)
    if ("linear" in config.protocols and config.linear_mode == "paper"
            and recipe.batch_size % accelerator.num_processes):
        raise ValueError(f"batch size {recipe.batch_size} is not divisible by "
                         f"{accelerator.num_processes} processes; choose a multiple")
    mean = tuple(config.mean or data_config["mean"])
    std = tuple(config.std or data_config["std"])
    crop_pct = recipe.test_crop_pct if recipe.test_crop_pct is not None else \
        data_config.get("crop_pct", 1.0)
    interpolation = data_config.get("interpolation", "bilinear")
    test_transform = create_transform(size, is_training=False, crop_pct=crop_pct,
                                      crop_mode=data_config.get("crop_mode", "center"),
                                      interpolation=interpolation, mean=mean, std=std)
    model.to(accelerator.device)
    num_classes = max(
        int(getattr(train_dataset, "num_classes", 0) or 0),
        max(_targets_of(train_dataset)) + 1, max(_targets_of(test_dataset)) + 1,
    )
    processes = accelerator.num_processes
    per_process = max(1, recipe.batch_size // processes)
    extract = dict(batch_size=per_process, num_workers=config.num_workers,
                   accelerator=accelerator, progress=config.progress)
    timings: dict[str, float] = {}
    skipped = {"train": 0, "test": 0}

    def timed(name: str, function: Callable[[], Any]) -> Any:
        begin = time.perf_counter()
        value = function()
        timings[name] = round(time.perf_counter() - begin, 3)
        return value

    counters_test: dict[str, int] = {}
    test_features, test_labels = timed("features_test_s", lambda: extract_features(
        model, test_dataset, test_transform, desc="features test", counters=counters_test,
        **extract))
    skipped["test"] = counters_test.get("skipped", 0)
    need_train_features = "knn" in config.protocols or config.linear_mode == "fast"
    train_features = train_labels = val_features = val_labels = None
    counters_train: dict[str, int] = {}
    if need_train_features:
        all_features, all_labels = timed("features_train_s", lambda: extract_features(
            model, train_dataset, test_transform, desc="features train",
            counters=counters_train, **extract))
        skipped["train"] = counters_train.get("skipped", 0)
        train_features, train_labels = all_features[train_idx], all_labels[train_idx]
        if val_idx:
            val_features, val_labels = all_features[val_idx], all_labels[val_idx]
    elif val_idx:
        val_subset = torch.utils.data.Subset(train_dataset, val_idx)
        val_features, val_labels = timed("features_val_s", lambda: extract_features(
            model, val_subset, test_transform, desc="features val", counters=counters_train,
            **extract))
        skipped["train"] = counters_train.get("skipped", 0)
    eval_sets = {"test": (test_features, test_labels)}
    if val_features is not None:
        eval_sets["val"] = (val_features, val_labels)

    report: dict[str, Any] = {
        "format": EVAL_FORMAT,
        "protocols": list(config.protocols),
        "backbone": backbone_info,
        "data": {
            "spec": str(spec), "train_split": train_split, "test_split": test_split,
            "num_classes": num_classes, "num_train": len(train_idx),
            "num_val": len(val_idx), "num_test": len(test_dataset),
            "val_fraction": config.val_fraction,
            "val_seed": config.seed if val_idx else None,
        },
        "input": {"image_size": size, "mean": list(mean), "std": list(std),
                  "crop_pct": crop_pct, "interpolation": interpolation},
        "settings": dataclasses.asdict(config),
        "seed": config.seed,
        "processes": processes,
        "device": str(accelerator.device),
        "mixed_precision": str(accelerator.mixed_precision),
    }

    if "knn" in config.protocols and is_main:
        def knn() -> dict[str, Any]:
            assert train_features is not None and train_labels is not None
            device = accelerator.device
            # the search runs where the bank is; normalising it needs a second copy
            fits = _fits_on(device, 2 * train_features.numel() * 4)
            bank = train_features.to(device) if fits else train_features
            result: dict[str, Any] = {"k": config.knn_k, "temperature": config.knn_t,
                                      "k_used": min(config.knn_k, len(bank))}
            for name, (features, labels) in eval_sets.items():
                result[name] = knn_accuracy(bank, train_labels, features, labels, num_classes,
                                            k=config.knn_k, temperature=config.knn_t)
            return result

        report["knn"] = timed("knn_s", knn)
        report["knn"]["seconds"] = timings["knn_s"]

    if "linear" in config.protocols:
        if config.linear_mode == "fast":
            probe = None
            if is_main:
                assert train_features is not None and train_labels is not None
                probe = timed("linear_s", lambda: linear_probe_features(
                    train_features, train_labels, num_classes, recipe, eval_sets,
                    seed=config.seed, device=accelerator.device, progress=config.progress))
        else:
            train_subset = (torch.utils.data.Subset(train_dataset, train_idx) if val_idx
                            else train_dataset)
            train_transform = (probe_train_transform(size, mean, std, recipe, interpolation)
                               if config.augment else test_transform)
            probe = timed("linear_s", lambda: linear_probe_images(
                model, train_subset, num_classes, train_transform, recipe, eval_sets,
                seed=config.seed, accelerator=accelerator, num_workers=config.num_workers,
                progress=config.progress))
            # The full train pass already counted every unreadable train image; else the
            # val pass counted the val part and the probe's first epoch the rest.
            skipped["train"] = (max(skipped["train"], probe.skipped) if need_train_features
                                else skipped["train"] + probe.skipped)
        if probe is not None:
            report["linear"] = {
                "mode": probe.mode,
                "augment": probe.augment,
                "recipe": recipe.to_dict(),
                "reported_epoch": recipe.epochs,
                "selection": "final epoch; the test split never chooses anything",
                **{name: acc for name, acc in probe.accuracy.items()},
                "history": probe.history,
                "seconds": round(probe.seconds, 3),
            }

    timings["total_s"] = round(time.perf_counter() - started, 3)
    report["skipped_unreadable"] = skipped
    report["timings"] = timings
    report["versions"] = _versions()
    report["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["output"] = str(output.resolve())
    if is_main:
        _write_json(output, report)
    accelerator.wait_for_everyone()
    return report


def _write_json(path: Path, values: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(values, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Human-readable lines of a report (printed by ``timm-ccrop eval``)."""
    def fmt(acc: dict[str, float] | None) -> str:
        if not acc:
            return "n/a"
        return ", ".join(f"{k} {v:.2f}" for k, v in acc.items())

    data = report["data"]
    lines = [f"backbone {report['backbone']['source']} ({report['backbone']['architecture']}, "
             f"{report['backbone']['num_features']} features, sha256 "
             f"{report['backbone']['sha256'][:12]}) on {data['spec']} "
             f"[{data['train_split']} {data['num_train']} -> {data['test_split']} "
             f"{data['num_test']}" + (f", val {data['num_val']}" if data["num_val"] else "")
             + "]"]
    if "knn" in report:
        knn = report["knn"]
        lines.append(f"kNN (k={knn['k']}, T={knn['temperature']}): test {fmt(knn['test'])}"
                     + (f"; val {fmt(knn['val'])}" if "val" in knn else ""))
    if "linear" in report:
        linear = report["linear"]
        lines.append(f"linear probe ({linear['mode']}, {linear['recipe']['epochs']} epochs, "
                     f"final epoch): test {fmt(linear['test'])}"
                     + (f"; val {fmt(linear['val'])}" if "val" in linear else ""))
    skipped = report["skipped_unreadable"]
    if skipped["train"] or skipped["test"]:
        lines.append(f"skipped unreadable images: train {skipped['train']}, test "
                     f"{skipped['test']}")
    lines.append(f"wrote {Path(report['output']).resolve()}")
    return lines
