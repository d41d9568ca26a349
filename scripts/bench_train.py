"""Training-step throughput of the timm-ccrop methods against official-style steps, and the
share of training time spent in box passes.

(1) Step throughput, images/s (each image counted once: batch size per step), for SimCLR,
    MoCo v2, BYOL and SimSiam. Candidate: our training step, i.e. the method module from
    :func:`timm_ccrop.methods.build_method` (hyper-parameters of the ``cifar10-*-ccrop``
    recipes) on ``timm.create_model('resnet18_cifar', num_classes=0)``, SGD over
    ``method.parameter_groups``, the trainer's per-step work (finite-loss check, zero_grad,
    backward, step, LR scheduler step, ``on_after_optimizer_step``, loss to float).
    Baseline: a single-file re-implementation, written below, of the OFFICIAL ContrastiveCrop
    training step as REFERENCE.md section 3 describes it, structured as the official repo
    structures it: plain ``nn.Module`` models around an encoder whose ``fc`` is replaced by
    the method's MLP head, the method's own loss module, ``SGD(model.parameters(), lr 0.5,
    momentum 0.9, wd 1e-4)`` (wd on everything), ``loss.item()``, fp32. The encoder is the
    same timm ``resnet18_cifar`` (3x3 stride-1 stem, no max-pool: the official CIFAR
    ResNet-18 layout), so only the method code differs. Nothing is imported from the
    official repo.

    - SimCLR: both views in one batch; head Linear(512,512)-ReLU-Linear(512,128); NT-Xent on
      the full 2N x 2N similarity with boolean masks, T 0.5, loss x T / 0.07; negatives
      gathered (with gradient) only when a process group exists.
    - MoCo v2: separate query/key encoders (key: copied, frozen), head
      Linear(512,512)-ReLU-Linear(512,128), queue a ``(128, 65536)`` buffer, m 0.999 updated
      per parameter at the start of forward, T 0.2, einsum logits, shuffle-BN and
      ``concat_all_gather`` only when distributed, CrossEntropyLoss.
    - BYOL: online and target encoders (target built separately, NOT frozen and run WITHOUT
      ``no_grad`` as in the official code: the target forward records an autograd graph that
      is never used), projector Linear(512,512)-BN-ReLU-Linear(512,128), predictor
      Linear(128,512)-BN-ReLU-Linear(512,128), m 0.996 per-parameter update at the start of
      forward, loss ``-2 (cos(p1, z2) + cos(p2, z1))``.
    - SimSiam: one encoder, projector 512-512-512 (3 Linear, BN, last BN not affine, the
      last Linear's bias frozen), predictor 512-128-512, loss ``-0.5 (cos(p1,z2)+cos(p2,z1))``,
      predictor in its own (fixed-lr) parameter group.

    Inputs: random tensors, two views of ``batch x 3 x 32 x 32``, made once (no data loading).
    One warm-up step per implementation, then ``--rounds`` rounds; in every round and for
    every method the baseline and the candidate each run ``--steps`` steps, back to back,
    the order flipped each round. Table: median and min-max img/s over rounds, the median of
    the per-round ratios (candidate / baseline, > 1 = ours faster), and a noise-floor row
    (the official-style step against a second instance of itself). On the CPU a last column
    gives the same ratio by process CPU time instead of wall time: on a machine shared with
    other jobs it is far less noisy (preempted time does not count; memory-bandwidth and
    cache contention still do). Use an even ``--rounds`` so that both orders weigh the same.
    Target on CPU: >= 1.0x.

(2) ``--gpu``: the same on CUDA, ours with bf16 autocast (forward) and channels_last model
    and inputs, against the fp32 official-style step (cudnn.benchmark on for both, as the
    official scripts set it). Target >= 1.5x. Not run by the author (no GPU here); on a GPU
    use more steps per round, e.g. ``--gpu --steps 50 --warmup 10`` (the defaults in this
    mode) to get past the launch-and-sync noise of single steps.

(3) Box-pass share of training time: a short ContrastiveCrop pretraining through
    :func:`timm_ccrop.train.train` (synthetic data ``synthetic:num_samples=512,
    image_size=32``, 5 epochs, so boxes are recomputed after epochs 1-4, kNN monitor and
    pictures off) and its ``metrics.jsonl``: (a) box-pass seconds / (training-epoch seconds
    + box-pass seconds) of that run; (b) the paper's 500-epoch schedule with 4 passes,
    extrapolated from the same run: ``4 * mean pass / (500 * mean epoch + 4 * mean pass)``
    (one pass is a no-grad forward over the dataset, an epoch a training pass over it, so
    the ratio, not the dataset size, matters). ``--skip-share`` skips it.

(4) ``--harvest``: the training step with harvested boxes on (``--localizer harvest``: the
    forward hook on the last stage, the channel reduction, the gather and the heat-map bank
    update of every step, :class:`timm_ccrop.localize.Harvester`) against the same step
    with it off, and a noise-floor row (off against a second instance of off). Our SimCLR
    step as in (1), the model ``--harvest-model`` (default ``resnet_mini_cifar``, the
    model of the harvest study; the bank update is a fixed cost per image, so the smaller
    the model the larger its share), a bank of ``--harvest-samples`` images (default
    50000, CIFAR's size) and random sample indices per step. Target: on within the noise
    floor of off. The box pass disappears from the schedule with harvesting, so (3) does
    not apply to it.

Timings on a shared CPU are noisy: read the noise-floor row before any ratio.

    python scripts/bench_train.py                          # batch 256, 5 rounds, 1 step
    python scripts/bench_train.py --batch-size 64          # the quick variant
    python scripts/bench_train.py --methods simclr --rounds 3 --skip-share
    python scripts/bench_train.py --gpu                    # CUDA: bf16 + channels_last
    python scripts/bench_train.py --harvest --batch-size 128 --rounds 10 --steps 4
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

import timm_ccrop.models.cifar  # noqa: F401  (registers resnet18_cifar)
from timm_ccrop.config import TrainConfig, load_recipe
from timm_ccrop.localize import Harvester, create_localizer
from timm_ccrop.methods import build_method
from timm_ccrop.runs import read_metrics

METHODS = ("simclr", "moco", "byol", "simsiam")
MODEL = "resnet18_cifar"
LR, MOMENTUM, WEIGHT_DECAY = 0.5, 0.9, 1e-4  # official small-dataset SGD


# --------------------------------------------------------------------------------------
# The official-style implementations (REFERENCE.md section 3; the official repo's layout)
# --------------------------------------------------------------------------------------


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def concat_all_gather(tensor: Tensor) -> Tensor:
    """All processes' ``tensor`` concatenated on dim 0 (no gradient), as official MoCo."""
    parts = [torch.ones_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor, async_op=False)
    return torch.cat(parts, dim=0)


class OfficialResNet(nn.Module):
    """The official ResNet's interface: ``forward(x) = fc(pool(features(x)))``, ``fc`` a
    ``Linear(512, num_classes)`` that the method scripts replace or wrap in place.

    The feature extractor is timm ``resnet18_cifar`` (the official CIFAR layout), so the
    baseline and the candidate share the backbone code and differ only in the method code.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = timm.create_model(MODEL, num_classes=0)
        self.fc = nn.Linear(self.body.num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x))


class OfficialNTXent(nn.Module):
    """Official NT-Xent: full ``2N x 2N`` logits over all processes' features, boolean
    masks for the positives and the self-contrast, loss scaled by ``T / base_T``."""

    def __init__(self, temperature: float = 0.5, base_temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature
        self.base_temperature = base_temperature

    @staticmethod
    def _gather(z: Tensor) -> Tensor:
        if not _distributed():
            return z
        from torch.distributed.nn.functional import all_gather  # differentiable gather

        return torch.cat(all_gather(z))

    def forward(self, feat1: Tensor, feat2: Tensor) -> Tensor:
        feat1, feat2 = self._gather(feat1), self._gather(feat2)
        n = feat1.shape[0]
        features = F.normalize(torch.cat([feat1, feat2], dim=0), dim=1)
        logits = torch.matmul(features, features.T) / self.temperature
        logits_max, _ = torch.max(logits, dim=1, keepdim=True)
        logits = logits - logits_max.detach()
        device = features.device
        neg_mask = ~torch.eye(2 * n, dtype=torch.bool, device=device)
        pos_mask = torch.zeros((2 * n, 2 * n), dtype=torch.bool, device=device)
        eye = torch.eye(n, dtype=torch.bool, device=device)
        pos_mask[:n, n:] = eye
        pos_mask[n:, :n] = eye
        exp_logits = torch.exp(logits)[neg_mask].view(2 * n, -1)
        log_prob = logits[pos_mask] - torch.log(exp_logits.sum(1))
        return -(self.temperature / self.base_temperature) * log_prob.mean()


class OfficialMoCo(nn.Module):
    """MoCo v2 as the official code: query/key encoders, a ``(dim, K)`` queue buffer."""

    def __init__(self, dim: int = 128, K: int = 65536, m: float = 0.999, T: float = 0.2) -> None:
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q, self.encoder_k = OfficialResNet(dim), OfficialResNet(dim)
        for encoder in (self.encoder_q, self.encoder_k):  # mlp=True
            dim_mlp = encoder.fc.weight.shape[1]
            encoder.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), encoder.fc)
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(),
                                    strict=True):
            param_k.data.copy_(param_q.data)
            param_k.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(),
                                    strict=True):
            param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: Tensor) -> None:
        if _distributed():
            keys = concat_all_gather(keys)
        batch_size = keys.shape[0]
        ptr = int(self.queue_ptr)
        assert self.K % batch_size == 0  # as the official code
        self.queue[:, ptr:ptr + batch_size] = keys.T
        self.queue_ptr[0] = (ptr + batch_size) % self.K

    @torch.no_grad()
    def _batch_shuffle_ddp(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch_size_this = x.shape[0]
        x_gather = concat_all_gather(x)
        num_gpus = x_gather.shape[0] // batch_size_this
        idx_shuffle = torch.randperm(x_gather.shape[0], device=x.device)
        dist.broadcast(idx_shuffle, src=0)
        idx_unshuffle = torch.argsort(idx_shuffle)
        idx_this = idx_shuffle.view(num_gpus, -1)[dist.get_rank()]
        return x_gather[idx_this], idx_unshuffle

    @torch.no_grad()
    def _batch_unshuffle_ddp(self, x: Tensor, idx_unshuffle: Tensor) -> Tensor:
        batch_size_this = x.shape[0]
        x_gather = concat_all_gather(x)
        num_gpus = x_gather.shape[0] // batch_size_this
        return x_gather[idx_unshuffle.view(num_gpus, -1)[dist.get_rank()]]

    def forward(self, im_q: Tensor, im_k: Tensor) -> tuple[Tensor, Tensor]:
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            if _distributed():
                im_k, idx_unshuffle = self._batch_shuffle_ddp(im_k)
            k = F.normalize(self.encoder_k(im_k), dim=1)
            if _distributed():
                k = self._batch_unshuffle_ddp(k, idx_unshuffle)
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())
        logits = torch.cat([l_pos, l_neg], dim=1)
        logits /= self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._dequeue_and_enqueue(k)
        return logits, labels


class OfficialBYOL(nn.Module):
    """BYOL as the official code: the target encoder is built separately, is not frozen,
    and its forward is not under ``no_grad`` (only its outputs are detached)."""

    def __init__(self, dim: int = 512, pred_dim: int = 128, m: float = 0.996) -> None:
        super().__init__()
        self.m = m
        self.encoder_q, self.encoder_k = OfficialResNet(dim), OfficialResNet(dim)
        for encoder in (self.encoder_q, self.encoder_k):
            encoder.fc = nn.Sequential(encoder.fc, nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                                       nn.Linear(dim, pred_dim))
        self.predictor = nn.Sequential(nn.Linear(pred_dim, dim), nn.BatchNorm1d(dim),
                                       nn.ReLU(inplace=True), nn.Linear(dim, pred_dim))

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(),
                                    strict=True):
            param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        with torch.no_grad():
            self._momentum_update_key_encoder()
        p1 = self.predictor(self.encoder_q(x1))
        z2 = self.encoder_k(x2)
        p2 = self.predictor(self.encoder_q(x2))
        z1 = self.encoder_k(x1)
        return p1, p2, z1.detach(), z2.detach()


class OfficialSimSiam(nn.Module):
    """SimSiam as the official code: 3-layer projector wrapped around the encoder's fc."""

    def __init__(self, dim: int = 512, pred_dim: int = 128) -> None:
        super().__init__()
        self.encoder = OfficialResNet(dim)  # timm's zero_init_last = zero_init_residual
        prev_dim = self.encoder.fc.weight.shape[1]
        self.encoder.fc = nn.Sequential(
            nn.Linear(prev_dim, prev_dim, bias=False), nn.BatchNorm1d(prev_dim),
            nn.ReLU(inplace=True),
            nn.Linear(prev_dim, prev_dim, bias=False), nn.BatchNorm1d(prev_dim),
            nn.ReLU(inplace=True),
            self.encoder.fc, nn.BatchNorm1d(dim, affine=False))
        self.encoder.fc[6].bias.requires_grad = False
        self.predictor = nn.Sequential(nn.Linear(dim, pred_dim, bias=False),
                                       nn.BatchNorm1d(pred_dim), nn.ReLU(inplace=True),
                                       nn.Linear(pred_dim, dim))

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z1, z2 = self.encoder(x1), self.encoder(x2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return p1, p2, z1.detach(), z2.detach()


def official_sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def build_official(name: str, device: torch.device) -> Callable[[Tensor, Tensor], float]:
    """The official training step of ``name`` (one iteration of its ``train()`` loop)."""
    if name == "simclr":
        model = OfficialResNet(128)
        dim_mlp = model.fc.weight.shape[1]
        model.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), model.fc)
        model.to(device).train()
        criterion = OfficialNTXent(0.5, 0.07).to(device)
        optimizer = official_sgd(model.parameters())

        def loss_of(x1: Tensor, x2: Tensor) -> Tensor:
            bsz = x1.shape[0]
            features = model(torch.cat([x1, x2], dim=0))
            f1, f2 = torch.split(features, [bsz, bsz], dim=0)
            return criterion(f1, f2)
    elif name == "moco":
        model = OfficialMoCo(dim=128, K=65536, m=0.999, T=0.2).to(device).train()
        criterion = nn.CrossEntropyLoss().to(device)
        optimizer = official_sgd(model.parameters())

        def loss_of(x1: Tensor, x2: Tensor) -> Tensor:
            output, target = model(im_q=x1, im_k=x2)
            return criterion(output, target)
    elif name == "byol":
        model = OfficialBYOL(dim=512, pred_dim=128, m=0.996).to(device).train()
        criterion = nn.CosineSimilarity(dim=1).to(device)
        optimizer = official_sgd(model.parameters())

        def loss_of(x1: Tensor, x2: Tensor) -> Tensor:
            p1, p2, z1, z2 = model(x1=x1, x2=x2)
            return -2 * (criterion(p1, z2).mean() + criterion(p2, z1).mean())
    elif name == "simsiam":
        model = OfficialSimSiam(dim=512, pred_dim=128).to(device).train()
        criterion = nn.CosineSimilarity(dim=1).to(device)
        optimizer = official_sgd([
            {"params": model.encoder.parameters(), "fix_lr": False},
            {"params": model.predictor.parameters(), "fix_lr": True},
        ])

        def loss_of(x1: Tensor, x2: Tensor) -> Tensor:
            p1, p2, z1, z2 = model(x1=x1, x2=x2)
            return -0.5 * (criterion(p1, z2).mean() + criterion(p2, z1).mean())
    else:
        raise ValueError(name)

    def step(x1: Tensor, x2: Tensor) -> float:
        loss = loss_of(x1, x2)
        value = loss.item()  # the official AverageMeter update
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return value

    return step


# --------------------------------------------------------------------------------------
# Ours: the method module and the trainer's per-step work
# --------------------------------------------------------------------------------------


def build_ours(name: str, device: torch.device, gpu: bool, model: str | None = None,
               harvest_samples: int | None = None) -> Callable[[Tensor, Tensor], float]:
    """Our training step of ``name``, as ``timm_ccrop.train.epoch.train_one_epoch`` runs it
    (``model`` overrides the recipe's; ``harvest_samples``: with harvesting into a bank of
    that many images, as ``--localizer harvest`` trains)."""
    recipe = load_recipe(f"cifar10-{name}-ccrop")
    config = TrainConfig.from_dict({**recipe, "channels_last": gpu,
                                    "mixed_precision": "bf16" if gpu else "no",
                                    **({"model": model} if model else {})})
    backbone = timm.create_model(config.model, num_classes=0, **config.model_kwargs)
    method = build_method(name, backbone, **config.method_kwargs).to(device)
    if config.channels_last:
        method = method.to(memory_format=torch.channels_last)
    method.train()
    groups = method.parameter_groups(config.weight_decay, config.exclude_norm_bias)
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda step: 1.0 for _ in optimizer.param_groups])
    total_steps = 10_000
    state = {"steps": 0}
    harvest, harvest_batch = harvester(method, harvest_samples)
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if gpu
        else contextlib.nullcontext
    )

    def step(x1: Tensor, x2: Tensor) -> float:
        views = [x1, x2]
        if config.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with autocast():
            outputs = method(views)
        loss = outputs["loss"]
        if not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(f"{name}: non-finite loss")
        if harvest is not None:
            harvest.step(*harvest_batch(x1.shape[0]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        state["steps"] += 1
        method.on_after_optimizer_step(min(1.0, state["steps"] / total_steps))
        return float(loss.detach())

    return step


def harvester(method: nn.Module, samples: int | None
              ) -> tuple[Harvester | None, Callable[[int], tuple[Tensor, Tensor]]]:
    """A harvester capturing ``method``'s backbone for good (the trainer holds it for an
    epoch), and a source of per-step ``(indices, geometry)``: random images of the bank,
    random crops with random flips."""
    if samples is None:
        return None, lambda batch: (torch.empty(0), torch.empty(0))
    localizer = create_localizer("harvest")
    harvest = Harvester(localizer.make_bank(samples), localizer)
    _KEEP_OPEN.append(harvest.capturing(method.backbone))
    _KEEP_OPEN[-1].__enter__()
    generator = torch.Generator().manual_seed(1)

    def batch_of(size: int) -> tuple[Tensor, Tensor]:
        indices = torch.randperm(samples, generator=generator)[:size]
        low = torch.rand(size, 2, 2, generator=generator) * 0.5
        flips = (torch.rand(size, 2, 1, generator=generator) < 0.5).float()
        return indices, torch.cat([low, low + 0.5, flips], dim=-1)

    return harvest, batch_of


_KEEP_OPEN: list = []  # the benchmark's capture contexts stay open until the process ends


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def timed(step: Callable[[Tensor, Tensor], float], views: tuple[Tensor, Tensor], steps: int,
          device: torch.device) -> tuple[float, float]:
    """Images/s over ``steps`` steps (batch size per step): by wall clock and by this
    process's CPU time (all its threads; the latter ignores time lost to other jobs)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step(*views)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    images = steps * views[0].shape[0]
    return (images / (time.perf_counter() - start),
            images / max(1e-9, time.process_time() - cpu_start))


def describe(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_header(args: argparse.Namespace, device: torch.device) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if device.type == "cuda":
        where = f"GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        where = f"CPU {cpu_name()}, {os.cpu_count()} logical cores"
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average at start " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{now}; {where}; torch {torch.__version__}, timm {timm.__version__}, "
            f"Python {platform.python_version()}; torch threads {torch.get_num_threads()}"
            f"{load}")


def alternate_rounds(rows: list[tuple[str, Callable, Callable]], views: tuple[Tensor, Tensor],
                     args: argparse.Namespace, device: torch.device, started: float
                     ) -> tuple[dict[str, tuple[list, list, list]], dict[str, list[float]]]:
    """``args.rounds`` rounds; in each, every row's baseline and candidate run
    ``args.steps`` steps back to back, the order flipped every round. Returns per row the
    img/s of both and the per-round ratios, and the ratios by process CPU time."""
    results = {name: ([], [], []) for name, _, _ in rows}
    cpu_ratios: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    for round_index in range(args.rounds):
        for name, baseline, candidate in rows:
            pair = [("b", baseline), ("c", candidate)]
            if round_index % 2:
                pair.reverse()
            measured = {key: timed(step, views, args.steps, device) for key, step in pair}
            base, cand, ratios = results[name]
            base.append(measured["b"][0])
            cand.append(measured["c"][0])
            ratios.append(measured["c"][0] / measured["b"][0])
            cpu_ratios[name].append(measured["c"][1] / measured["b"][1])
        print(f"# round {round_index + 1}/{args.rounds} done at "
              f"{time.perf_counter() - started:.0f} s: "
              + ", ".join(f"{n} {r[2][-1]:.3f}x" for n, r in results.items()),
              file=sys.stderr, flush=True)
    return results, cpu_ratios


def bench_harvest(args: argparse.Namespace, device: torch.device) -> None:
    """(4): the step with harvesting on against off, and off against off."""
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, 3, 32, 32)
    views = tuple(torch.randn(shape, generator=generator).to(device) for _ in range(2))
    torch.manual_seed(0)
    model, samples = args.harvest_model, args.harvest_samples
    rows = [("simclr, harvest on vs off", build_ours("simclr", device, args.gpu, model),
             build_ours("simclr", device, args.gpu, model, samples)),
            ("noise floor: off vs off", build_ours("simclr", device, args.gpu, model),
             build_ours("simclr", device, args.gpu, model))]
    started = time.perf_counter()
    for _, baseline, candidate in rows:
        for _ in range(args.warmup):
            baseline(*views)
            candidate(*views)
    results, cpu_ratios = alternate_rounds(rows, views, args, device, started)
    print(f"## Training step with harvested boxes, our SimCLR on {model}, "
          f"{'CUDA bf16' if args.gpu else 'CPU fp32'}\n")
    print(f"{machine_header(args, device)}\n")
    print(f"Batch size {args.batch_size}, 2 views of 3x32x32 random tensors; bank of "
          f"{samples} images at 16x16 (float16, {2 * 16 * 16 * 2 * samples / 2**20:.0f} MiB); "
          f"{args.rounds} alternating rounds of {args.steps} step(s) each, {args.warmup} "
          "warm-up step(s); ratio = on / off (> 1: on faster), median of per-round "
          "ratios.\n")
    cpu_column = not args.gpu
    print("| row | off img/s (median, min-max) | on img/s (median, min-max) | ratio (median, "
          "min-max per round) |" + (" ratio by process CPU time (median, min-max) |"
                                    if cpu_column else ""))
    print("|---|---|---|---|" + ("---|" if cpu_column else ""))
    for name, (base, cand, ratios) in results.items():
        extra = ""
        if cpu_column:
            by_cpu = cpu_ratios[name]
            extra = (f" {statistics.median(by_cpu):.3f}x ({min(by_cpu):.3f}-{max(by_cpu):.3f})"
                     " |")
        print(f"| {name} | {describe(base)} | {describe(cand)} | {statistics.median(ratios):.3f}x "
              f"({min(ratios):.3f}-{max(ratios):.3f}) |" + extra)
    print()


def bench_steps(args: argparse.Namespace, device: torch.device) -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, 3, 32, 32)
    views = tuple(torch.randn(shape, generator=generator).to(device) for _ in range(2))
    torch.manual_seed(0)

    rows: list[tuple[str, Callable, Callable]] = []
    for name in args.methods:
        rows.append((name, build_official(name, device), build_ours(name, device, args.gpu)))
    if args.noise_method:
        rows.append((f"noise floor: official {args.noise_method} vs itself",
                     build_official(args.noise_method, device),
                     build_official(args.noise_method, device)))

    started = time.perf_counter()
    for _, baseline, candidate in rows:  # warm-up: allocator, kernels, queue pointers
        for _ in range(args.warmup):
            baseline(*views)
            candidate(*views)
    print(f"# warm-up ({args.warmup} step(s) each): {time.perf_counter() - started:.0f} s",
          file=sys.stderr, flush=True)

    results, cpu_ratios = alternate_rounds(rows, views, args, device, started)

    target = 1.5 if args.gpu else 1.0
    mode = ("CUDA, ours bf16 autocast + channels_last vs official-style fp32" if args.gpu
            else "CPU, both fp32")
    reduced = (" (REDUCED from the default 256 to keep the run short; see the docstring)"
               if args.batch_size < 256 else "")
    print(f"## Training-step throughput, {MODEL}, {mode}\n")
    print(f"{machine_header(args, device)}\n")
    print(f"Batch size {args.batch_size}{reduced}, 2 views of 3x32x32 random tensors; "
          f"{args.rounds} alternating rounds of {args.steps} step(s) per implementation, "
          f"{args.warmup} warm-up step(s); img/s counts each image once (batch / step time); "
          f"ratio = timm-ccrop / official-style, median of per-round ratios.\n")
    cpu_column = not args.gpu
    print(f"| method | official-style img/s (median, min-max) | timm-ccrop img/s (median, "
          f"min-max) | ratio (median of per-round ratios) | target (>= {target:.1f}x on "
          f"{'GPU' if args.gpu else 'CPU'}) |"
          + (" ratio by process CPU time (median, min-max) |" if cpu_column else ""))
    print("|---|---|---|---|---|" + ("---|" if cpu_column else ""))
    for name, (base, cand, ratios) in results.items():
        ratio = statistics.median(ratios)
        if name.startswith("noise"):
            verdict = f"noise floor (per-round {min(ratios):.3f}-{max(ratios):.3f})"
        else:
            verdict = "met" if ratio >= target else "NOT met"
            verdict += f" (per-round {min(ratios):.3f}-{max(ratios):.3f})"
        extra = ""
        if cpu_column:
            by_cpu = cpu_ratios[name]
            extra = (f" {statistics.median(by_cpu):.3f}x ({min(by_cpu):.3f}-{max(by_cpu):.3f})"
                     " |")
        print(f"| {name} | {describe(base)} | {describe(cand)} | {ratio:.3f}x | {verdict} |"
              + extra)
    print()


# --------------------------------------------------------------------------------------
# Box-pass share of training time
# --------------------------------------------------------------------------------------


def bench_share(args: argparse.Namespace) -> None:
    from timm_ccrop.train import train

    with tempfile.TemporaryDirectory(prefix="bench_train_share_", dir="/tmp") as folder:
        config = TrainConfig(
            data=f"synthetic:num_samples={args.share_samples},image_size=32",
            model=args.share_model, method=args.share_method, crop="ccrop", epochs=5,
            batch_size=args.share_batch_size, num_workers=args.share_workers, knn_every=0,
            pictures=0, progress=False, output=str(Path(folder) / "run"), save_every=5,
            keep_checkpoints=1,
            mixed_precision="bf16" if args.gpu else "no", channels_last=args.gpu,
        )
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            result = train(config)
        wall = time.perf_counter() - started
        records = read_metrics(result.metrics)

    epochs = [r["epoch_seconds"] for r in records]
    passes = [r["box_pass_seconds"] for r in records if "box_pass_seconds" in r]
    mean_epoch, mean_pass = statistics.mean(epochs), statistics.mean(passes)
    short_share = sum(passes) / (sum(epochs) + sum(passes))
    paper_share = 4 * mean_pass / (500 * mean_epoch + 4 * mean_pass)
    print(f"## Box-pass share of training time ({config.model}, {config.method}, "
          f"{args.share_samples} synthetic 32 px images, batch {config.batch_size}, "
          f"{config.num_workers} loader workers, {'CUDA bf16' if args.gpu else 'CPU fp32'})\n")
    print(f"timm_ccrop.train.train(): {len(epochs)} epochs, {len(passes)} box passes (after "
          f"epochs {', '.join(str(r['epoch']) for r in records if 'box_pass_seconds' in r)}), "
          f"wall {wall:.0f} s including setup, checkpoint and export.\n")
    print("| quantity | value |")
    print("|---|---|")
    print(f"| training epoch (epoch_seconds), mean (min-max) | {mean_epoch:.2f} s "
          f"({min(epochs):.2f}-{max(epochs):.2f}) |")
    print(f"| box pass (box_pass_seconds), mean (min-max) | {mean_pass:.2f} s "
          f"({min(passes):.2f}-{max(passes):.2f}) |")
    print(f"| one pass / one epoch | {mean_pass / mean_epoch:.3f} |")
    print(f"| (a) share of this run: sum(pass) / (sum(epoch) + sum(pass)) | "
          f"{100 * short_share:.2f}% ({len(passes)} passes in {len(epochs)} epochs) |")
    print(f"| (b) paper schedule, 500 epochs + 4 passes: 4 pass / (500 epoch + 4 pass) | "
          f"{100 * paper_share:.3f}% |")
    print()
    if any(not math.isfinite(r.get("loss", 0.0)) for r in records):
        print("warning: a non-finite loss in the share run\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (>= 5)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per implementation per round (default 1; 50 with --gpu)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up steps per implementation (default 1; 10 with --gpu)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--noise-method", default="simclr",
                        help="method of the noise-floor row ('' for none)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--gpu", action="store_true",
                        help="CUDA: ours bf16 autocast + channels_last vs official fp32")
    parser.add_argument("--skip-steps", action="store_true", help="only the box-pass share")
    parser.add_argument("--skip-share", action="store_true", help="skip the box-pass share")
    parser.add_argument("--share-model", default=MODEL)
    parser.add_argument("--share-method", default="simclr", choices=METHODS)
    parser.add_argument("--share-samples", type=int, default=512)
    parser.add_argument("--share-batch-size", type=int, default=256)
    parser.add_argument("--share-workers", type=int, default=2)
    parser.add_argument("--harvest", action="store_true",
                        help="only (4): the step with harvested boxes on vs off")
    parser.add_argument("--harvest-model", default="resnet_mini_cifar")
    parser.add_argument("--harvest-samples", type=int, default=50_000,
                        help="images in the harvest bank of (4)")
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 50 if args.gpu else 1
    if args.warmup is None:
        args.warmup = 10 if args.gpu else 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu:
        if not torch.cuda.is_available():
            parser.error("--gpu needs CUDA")
        torch.backends.cudnn.benchmark = True  # as the official scripts
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")

    started = time.perf_counter()
    if args.harvest:
        bench_harvest(args, device)
        args.skip_steps = args.skip_share = True
    if not args.skip_steps:
        bench_steps(args, device)
    if not args.skip_share:
        bench_share(args)
    print(f"total wall time {time.perf_counter() - started:.0f} s "
          f"({(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    main()
