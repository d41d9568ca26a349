"""One command that checks a GPU (issue 24): the CUDA paths of the paper's ImageNet recipe,
piece by piece, in at most 8 minutes, with a Markdown + JSON report.

    python scripts/device_check.py --out docs/device-check           # on a GPU machine
    python scripts/device_check.py --out /tmp/dc --device cpu --tiny  # what the tests run
    python scripts/device_check.py --out DIR --only step_ratio,memory # some checks again

The checks, in order (each one a function below, each result ``passed``, ``failed``,
``warning`` or ``skipped`` with the reason):

1. ``train``: every method (SimCLR, MoCo, BYOL, SimSiam) in fp32, bf16 and fp16 through
   :func:`timm_ccrop.train.train` for a few dozen steps with a box pass of the default
   localizer after epochs 1 and 2; then a resume from the epoch-1 checkpoint into a new
   folder. The losses must be finite; the resumed run must end bit-identical to the
   uninterrupted one on CPU (on CUDA the runs use deterministic kernels and a difference
   is a warning, with its size).
2. ``channels_last`` and ``compile``: one backbone trained with each option.
3. ``step_ratio``: images/s of the full step (uint8 batch from pinned memory, views made
   on the device by :class:`~timm_ccrop.crop.augment.BatchedViews`, forward, backward,
   optimiser) against the model-bound step on pre-made views. Goal >= 0.8 on a GPU.
4. ``box_pass``: :func:`timm_ccrop.localize.localize_loader` with the default localizer
   and with ``paper`` against a plain no-grad forward over the same batches.
5. ``loader``: a folder of JPEGs through the trainer's loader
   (:func:`timm_ccrop.train.setup.build_data`, ContrastiveCrop, PIL in the workers), the
   same with ``--augment-on device``, and timm's RandomResizedCrop pipeline (two views
   per image): images/s alone, and the share of a training loop's time spent waiting for
   the next batch (the GPU waits for data when it is large).
6. ``memory``: peak GPU memory of a training step per method at the paper's per-GPU batch
   (the ImageNet recipes' 256 over 8 GPUs: 32) on resnet50 at 224 px.

The exit code is 1 when any check failed, else 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import accelerate
import timm
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader

import timm_ccrop
from timm_ccrop.config import TrainConfig, load_recipe
from timm_ccrop.crop.augment import BatchedViews
from timm_ccrop.crop.views import view_preset
from timm_ccrop.data import SyntheticObjects
from timm_ccrop.localize import (
    DEFAULT_LOCALIZER,
    DEFAULT_LOCALIZER_OPTIONS,
    create_localizer,
    eval_transform,
    localize_loader,
)
from timm_ccrop.methods import build_method
from timm_ccrop.models.backbones import create_backbone, eval_mode
from timm_ccrop.runs import RunFolder, read_checkpoint, read_metrics
from timm_ccrop.train import train
from timm_ccrop.train.epoch import device_augmenter
from timm_ccrop.train.setup import build_data, build_optimizer

METHODS = ("simclr", "moco", "byol", "simsiam")
PRECISIONS = ("fp32", "bf16", "fp16")
#: TrainConfig's name of each precision.
MIXED = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
#: The ImageNet recipes' global batch (zoo/recipes/imagenet-*) over the paper's 8 GPUs.
PAPER_GPUS = 8
STEP_GOAL = 0.8  # full step / model-bound step, on a GPU (issue 24)
BUDGET_S = 480  # the whole check on one GPU (issue 24)
WAIT_LIMIT = 0.05  # a loop waiting for data longer than this share: the GPU waits


@dataclass
class Settings:
    """Sizes of every check: the GPU's (default) or the test suite's (``--tiny``)."""

    device: torch.device
    out: Path  # the report
    tiny: bool
    work: Path = Path("unset")  # scratch: run folders and JPEGs (a temporary folder)
    train_model: str = "resnet18_cifar"
    train_data: str = "synthetic:num_samples=512,image_size=32"
    train_stage: int = -1
    train_batch: int = 64
    model: str = "resnet50"  # the recipe's backbone for steps, box pass, loader, memory
    size: int = 224
    batch: int = 32  # per GPU: the recipes' 256 / 8
    steps: int = 20
    images: int = 1024  # box pass and JPEG folder
    jpeg_size: tuple[int, int] = (500, 375)  # about ImageNet's typical photo
    workers: int = field(default_factory=lambda: min(16, os.cpu_count() or 1))
    methods: tuple[str, ...] = METHODS
    precisions: tuple[str, ...] = PRECISIONS

    @classmethod
    def tiny_cpu(cls, device: torch.device, out: Path) -> Settings:
        """Tiny settings: seconds on one CPU core, the same code paths."""
        return cls(device, out, True, train_model="test_resnet",
                   train_data="synthetic:num_samples=64,image_size=32", train_stage=-3,
                   train_batch=16, model="test_resnet", size=128, batch=8, steps=2,
                   images=16, jpeg_size=(80, 60), workers=0)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The recipe's bf16 on a GPU; fp32 on a CPU (tiny models gain nothing there)."""
        return torch.bfloat16 if self.cuda else None


@dataclass
class Result:
    """One check's outcome; ``numbers`` are what it measured."""

    name: str
    status: str  # passed, failed, warning, skipped
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------
# Helpers: timing on the device, the recipe's method and step
# --------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings on CUDA need it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(settings: Settings) -> Any:
    """The recipe's autocast on the device (a no-op context in fp32)."""
    dtype = settings.autocast_dtype
    return torch.autocast(settings.device.type, dtype=dtype) if dtype else nullcontext()


def recipe_config(settings: Settings, method: str) -> TrainConfig:
    """The ImageNet recipe of ``method`` (ccrop) with this check's model and size."""
    values = load_recipe(f"imagenet-{method}-ccrop")
    values.update(model=settings.model, image_size=settings.size, output=str(settings.work))
    if settings.tiny:
        values.update(model_kwargs={}, method_kwargs={})
    return TrainConfig.from_dict(values)


def recipe_step(settings: Settings, method_name: str
                ) -> tuple[torch.nn.Module, Callable[[list[torch.Tensor]], float]]:
    """The recipe's method on the device and its training step on given views."""
    config = recipe_config(settings, method_name)
    backbone = create_backbone(config.model, **config.model_kwargs)
    method = build_method(config.method, backbone, **config.method_kwargs).to(settings.device)
    memory_format = torch.channels_last if settings.cuda else torch.contiguous_format
    method = method.to(memory_format=memory_format).train()
    optimizer = build_optimizer(config, method)

    def step(views: list[torch.Tensor]) -> float:
        views = [v.contiguous(memory_format=memory_format) for v in views]
        with autocast(settings):
            loss = method(views)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.on_after_optimizer_step(0.5)
        return float(loss.detach())

    return method, step


def rate(function: Callable[[], Any], calls: int, images: int, device: torch.device) -> float:
    """Images per second of ``calls`` calls of ``function`` (``images`` per call)."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(calls):
        function()
    synchronize(device)
    return calls * images / (time.perf_counter() - started)


def alternate(functions: dict[str, Callable[[], Any]], calls: int, images: int,
              device: torch.device, rounds: int = 3) -> dict[str, float]:
    """Median images/s of each function over ``rounds`` rounds, order flipped each round
    (one warm-up call each first)."""
    for function in functions.values():
        function()
    rates: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(rounds):
        names = list(functions)[::(-1 if round_index % 2 else 1)]
        for name in names:
            rates[name].append(rate(functions[name], calls, images, device))
    return {name: sorted(values)[len(values) // 2] for name, values in rates.items()}


def uint8_images(count: int, side: int) -> torch.Tensor:
    """``[count, 3, side, side]`` uint8 images of the built-in set (objects on clutter)."""
    return SyntheticObjects(num_samples=count, image_size=side, seed=0).images_uint8()


# --------------------------------------------------------------------------------------
# 1-2. Training runs through timm_ccrop.train: methods x precisions, resume, options
# --------------------------------------------------------------------------------------


def train_config(settings: Settings, method: str, precision: str, output: Path,
                 **changes: Any) -> TrainConfig:
    """A short run: 3 epochs, box passes after epochs 1 and 2 (the default localizer)."""
    return TrainConfig(
        model=settings.train_model, data=settings.train_data, image_size=32,
        localizer_kwargs={**DEFAULT_LOCALIZER_OPTIONS, "stage": settings.train_stage},
        batch_size=settings.train_batch, epochs=3,
        box_warmup_epochs=1, loc_interval=1, num_workers=0 if settings.tiny else 2,
        method=method, mixed_precision=MIXED[precision], knn_every=0, pictures=0,
        progress=False, keep_checkpoints=3, output=str(output), **changes)


def finite_losses(output: Path) -> list[float]:
    """The run's per-epoch losses (raises when one is not finite)."""
    losses = [float(row["loss"]) for row in read_metrics(output / "metrics.jsonl")]
    if not losses or not all(torch.isfinite(torch.tensor(losses))):
        raise AssertionError(f"non-finite or missing losses in {output}: {losses}")
    return losses


def state_difference(first: Path, second: Path) -> tuple[float, bool]:
    """Largest absolute difference of the two runs' final weights and boxes, and whether
    they are bit-identical."""
    a, _ = read_checkpoint(first)
    b, _ = read_checkpoint(second)
    pairs = [(a["model"][k], b["model"][k]) for k in a["model"]]
    pairs.append((a["boxes"]["boxes"], b["boxes"]["boxes"]))
    exact = all(torch.equal(x, y) for x, y in pairs)
    worst = max(float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
                for x, y in pairs if x.is_floating_point())
    return worst, exact


def precision_skip(settings: Settings, precision: str) -> str | None:
    """Why ``precision`` cannot be checked on this device (None: it can)."""
    if precision == "fp16" and not settings.cuda:
        return ("Accelerate runs --mixed-precision fp16 on a CPU without autocast or grad "
                "scaler (it would be fp32 again); fp16 + GradScaler needs CUDA")
    if precision == "bf16" and settings.cuda and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16"
    return None


@contextmanager
def deterministic(settings: Settings) -> Iterator[None]:
    """Deterministic kernels on CUDA (for the resume comparison), the usual ones after."""
    if not settings.cuda:
        yield
        return
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)


def check_train_resume(settings: Settings, method: str, precision: str) -> Result:
    """A 3-epoch run, and a resume from its epoch-1 checkpoint: finite losses, box passes
    of the default localizer, the same end state."""
    name = f"train:{method}:{precision}"
    skip = precision_skip(settings, precision)
    if skip:
        return Result(name, "skipped", skip)
    work = settings.work / f"{method}-{precision}"
    with deterministic(settings):
        reference = train(train_config(settings, method, precision, work / "reference"),
                          overwrite=True)
        first = RunFolder(reference.output).checkpoint_path(1)
        resumed = train(train_config(settings, method, precision, work / "resumed"),
                        resume=first, overwrite=True)
    losses = finite_losses(reference.output)
    finite_losses(resumed.output)
    rows = read_metrics(reference.output / "metrics.jsonl")
    passes = [row["box_pass_seconds"] for row in rows if "box_pass_seconds" in row]
    worst, exact = state_difference(reference.checkpoint, resumed.checkpoint)
    numbers = {"losses": losses, "box_pass_seconds": passes, "resume_exact": exact,
               "resume_max_abs_diff": worst,
               "box_mean_area": rows[0].get("box_mean_area")}
    if len(passes) != 2:
        return Result(name, "failed", f"expected 2 box passes, got {len(passes)}", numbers)
    if exact:
        return Result(name, "passed", "losses finite, 2 box passes, resume bit-identical",
                      numbers)
    if settings.cuda:
        return Result(name, "warning", f"resume not bit-identical on CUDA (max abs diff "
                      f"{worst:.3g}) although deterministic kernels were asked for", numbers)
    return Result(name, "failed", f"resume not bit-identical on CPU (max abs diff {worst:.3g})",
                  numbers)


def check_option(settings: Settings, option: str) -> Result:
    """Train SimCLR with ``channels_last`` or ``compile`` on; compare its first loss with
    the same run without it (same data and seed: only the kernels differ)."""
    if option == "compile" and not settings.cuda:
        return Result(option, "skipped", "torch.compile on a CPU builds C++ kernels for "
                      "minutes; the compile branch of the trainer is tested on CPU with the "
                      "eager backend (tests/test_cuda_paths.py)")
    precision = "bf16" if settings.cuda else "fp32"
    work = settings.work / option
    plain = train(train_config(settings, "simclr", precision, work / "plain"), overwrite=True)
    tried = train(train_config(settings, "simclr", precision, work / option, **{option: True}),
                  overwrite=True)
    base, other = finite_losses(plain.output), finite_losses(tried.output)
    gap = abs(other[0] - base[0]) / max(abs(base[0]), 1e-12)
    numbers = {"losses": other, "losses_without": base, "first_loss_relative_gap": gap}
    seconds = [row["train_seconds"] for row in read_metrics(tried.output / "metrics.jsonl")]
    numbers["epoch_train_seconds"] = seconds
    if gap > 0.05:
        return Result(option, "failed", f"first epoch's loss differs by {gap:.1%} from the run "
                      "without it", numbers)
    return Result(option, "passed", f"losses finite; first epoch's loss within {gap:.2%} of "
                  "the run without it", numbers)


# --------------------------------------------------------------------------------------
# 3. Full step (views made on the device) vs model-bound step
# --------------------------------------------------------------------------------------


def check_step_ratio(settings: Settings) -> Result:
    """SimCLR on the recipe's model: uint8 batch -> device views -> step, against the step
    on views made once."""
    _, step = recipe_step(settings, "simclr")
    views = BatchedViews.from_preset("imagenet", "ccrop", size=settings.size).to(settings.device)
    images = uint8_images(settings.batch, settings.size + settings.size // 7)
    images = images.pin_memory() if settings.cuda else images
    boxes = torch.tensor([[0.2, 0.15, 0.7, 0.8]], device=settings.device)
    boxes = boxes.expand(settings.batch, 4)
    generator = torch.Generator(settings.device).manual_seed(0)

    def made() -> list[torch.Tensor]:
        return views(images.to(settings.device, non_blocking=True), boxes, None, generator)

    premade = made()
    rates = alternate({"full": lambda: step(made()), "model_bound": lambda: step(premade)},
                      settings.steps, settings.batch, settings.device)
    ratio = rates["full"] / rates["model_bound"]
    numbers = {"full_images_per_s": rates["full"], "model_bound_images_per_s":
               rates["model_bound"], "ratio": ratio, "goal": STEP_GOAL,
               "model": settings.model, "batch": settings.batch, "size": settings.size}
    detail = f"full / model-bound = {ratio:.2f} (goal >= {STEP_GOAL} on a GPU)"
    if not settings.cuda:
        return Result("step_ratio", "passed", detail + "; on a CPU the goal does not apply",
                      numbers)
    return Result("step_ratio", "passed" if ratio >= STEP_GOAL else "warning", detail, numbers)


# --------------------------------------------------------------------------------------
# 4. Box pass vs a plain no-grad forward
# --------------------------------------------------------------------------------------


def eval_batches(settings: Settings) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The box pass's inputs, made once on the device: ``(images, targets, indices)``."""
    transform = eval_transform(settings.size)
    dataset = SyntheticObjects(num_samples=settings.images, image_size=settings.size, seed=1)
    images = torch.stack([transform(dataset[i][0]) for i in range(len(dataset))])
    indices = torch.arange(len(images))
    step = settings.batch * 4
    return [(images[i:i + step].to(settings.device), indices[i:i + step],
             indices[i:i + step]) for i in range(0, len(images), step)]


def check_box_pass(settings: Settings) -> Result:
    """Seconds of a box pass per localizer against a plain forward of the same batches."""
    backbone = create_backbone(settings.model).to(settings.device)
    batches = eval_batches(settings)
    size = (settings.size, settings.size)

    def forward() -> None:
        with eval_mode(backbone), torch.no_grad(), autocast(settings):
            for images, _, _ in batches:
                backbone(images)

    def boxes(name: str) -> Callable[[], Any]:
        def run() -> Any:
            localizer = create_localizer(name)
            with autocast(settings):
                return localize_loader(backbone, batches, settings.images, size,
                                       localizer=localizer, progress=False)
        return run

    rates = alternate({"forward": forward, DEFAULT_LOCALIZER: boxes(DEFAULT_LOCALIZER),
                       "paper": boxes("paper")}, 1, settings.images, settings.device)
    numbers = {f"{name}_images_per_s": value for name, value in rates.items()}
    for name in (DEFAULT_LOCALIZER, "paper"):
        numbers[f"{name}_over_forward"] = rates["forward"] / rates[name]
    detail = (f"pass / plain forward: {DEFAULT_LOCALIZER} (default) "
              f"{numbers[DEFAULT_LOCALIZER + '_over_forward']:.2f}x, paper "
              f"{numbers['paper_over_forward']:.2f}x ({settings.model}, {settings.size} px)")
    return Result("box_pass", "passed", detail, numbers)


# --------------------------------------------------------------------------------------
# 5. A folder of JPEGs through the loaders
# --------------------------------------------------------------------------------------


def write_jpegs(settings: Settings, folder: Path) -> Path:
    """``settings.images`` JPEGs of the built-in set at ``jpeg_size``, quality 90, in two
    class folders."""
    width, height = settings.jpeg_size
    dataset = SyntheticObjects(num_samples=settings.images, image_size=max(width, height) // 2,
                               seed=2)
    for index in range(len(dataset)):
        image = dataset[index][0].resize((width, height), Image.BILINEAR)
        target = folder / f"class{index % 2}"
        target.mkdir(parents=True, exist_ok=True)
        image.save(target / f"{index:06d}.jpg", quality=90)
    return folder


class TwoViews:
    """timm's RandomResizedCrop training pipeline, twice per image (picklable)."""

    def __init__(self, size: int) -> None:
        recipe = view_preset("imagenet")[0]
        self.transform = timm.data.create_transform(
            size, is_training=True, train_crop_mode="rrc", scale=recipe.scale,
            color_jitter=recipe.color_jitter, color_jitter_prob=recipe.color_jitter_prob,
            grayscale_prob=recipe.grayscale_prob,
            gaussian_blur_prob=recipe.gaussian_blur_prob, interpolation="bilinear")

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        return [self.transform(image), self.transform(image)]


#: ``augment(batch) -> views on the device`` (None: the loader made the views).
Augment = Callable[[list[Any]], list[torch.Tensor]] | None


def project_loader(settings: Settings, folder: Path, augment_on: str
                   ) -> tuple[DataLoader, Augment]:
    """The trainer's own loader (:func:`build_data`) over the folder, boxes switched on, and
    for ``augment_on='device'`` the trainer's own :func:`device_augmenter`."""
    config = TrainConfig(data=f"folder:{folder}", views="imagenet", image_size=settings.size,
                         batch_size=settings.batch, num_workers=settings.workers,
                         augment_on=augment_on, output=str(settings.work))
    # the two attributes build_data and device_augmenter read of an Accelerator
    stand_in = SimpleNamespace(num_processes=1, process_index=0, device=settings.device)
    data = build_data(config, stand_in)
    data.boxes.update(torch.tensor([[0.2, 0.15, 0.7, 0.8]]).expand(len(data.boxes), 4))
    data.boxes.set_active(True)
    data.train_set.set_epoch(1)
    if data.device_views is None:
        return data.loader, None
    augment = device_augmenter(data.device_views, data.boxes, stand_in, config, epoch=1)
    return data.loader, lambda batch: augment(batch[0], batch[2])[0]


def timm_loader(settings: Settings, folder: Path) -> DataLoader:
    """timm's ImageDataset with its RandomResizedCrop pipeline (two views per image)."""
    dataset = timm.data.ImageDataset(str(folder), transform=TwoViews(settings.size))
    return DataLoader(dataset, batch_size=settings.batch, shuffle=True, drop_last=True,
                      num_workers=settings.workers, pin_memory=settings.cuda,
                      persistent_workers=settings.workers > 0)


def loop_with_waits(loader: DataLoader, augment: Augment, settings: Settings,
                    step: Callable[[list[torch.Tensor]], float] | None) -> tuple[float, float]:
    """One pass of ``loader`` (views made on the device by ``augment`` if given), with the
    training step when given: ``(images/s, share of the time spent waiting for the next
    batch)``."""
    waited, count = 0.0, 0
    started = time.perf_counter()
    iterator = iter(loader)
    while True:
        asked = time.perf_counter()
        batch = next(iterator, None)
        waited += time.perf_counter() - asked
        if batch is None:
            break
        made = augment(batch) if augment else batch[0]
        made = [v.to(settings.device, non_blocking=True) for v in made]
        if step is not None:
            step(made)
        synchronize(settings.device)
        count += len(made[0])
    total = time.perf_counter() - started
    return count / total, waited / total


def check_loader(settings: Settings) -> Result:
    """images/s of each loader alone, and the waiting share when it feeds the step."""
    with tempfile.TemporaryDirectory(dir=settings.work) as temporary:
        folder = write_jpegs(settings, Path(temporary) / "jpegs")
        _, step = recipe_step(settings, "simclr")
        loaders = {"ccrop_pil": project_loader(settings, folder, "loader"),
                   "ccrop_device": project_loader(settings, folder, "device"),
                   "timm_rrc": (timm_loader(settings, folder), None)}
        numbers: dict[str, Any] = {"workers": settings.workers, "jpeg_size":
                                   list(settings.jpeg_size), "images": settings.images}
        for name, (loader, augment) in loaders.items():
            loop_with_waits(loader, augment, settings, None)  # warm-up: workers, page cache
            alone, _ = loop_with_waits(loader, augment, settings, None)
            fed, waiting = loop_with_waits(loader, augment, settings, step)
            numbers[name] = {"images_per_s": alone, "with_step_images_per_s": fed,
                             "wait_share": waiting}
    waits = {name: numbers[name]["wait_share"] for name in loaders}
    detail = ", ".join(f"{name} {numbers[name]['images_per_s']:.0f} img/s (waits "
                       f"{share:.0%})" for name, share in waits.items())
    status = "passed"
    if settings.cuda and waits["ccrop_pil"] > WAIT_LIMIT:
        status = "warning"
        detail += f"; the GPU waits for the PIL loader with {settings.workers} workers"
    return Result("loader", status, detail, numbers)


# --------------------------------------------------------------------------------------
# 6. Peak GPU memory per method
# --------------------------------------------------------------------------------------


def check_memory(settings: Settings) -> Result:
    """Peak memory of three training steps per method (recipe heads, bf16, channels_last)."""
    numbers: dict[str, Any] = {"model": settings.model, "batch_per_gpu": settings.batch,
                               "size": settings.size}
    for method_name in settings.methods:
        if settings.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(settings.device)
        method, step = recipe_step(settings, method_name)
        batch = [torch.randn(settings.batch, 3, settings.size, settings.size,
                             device=settings.device) for _ in range(2)]
        losses = [step(batch) for _ in range(3)]
        if not all(math.isfinite(value) for value in losses):
            return Result("memory", "failed", f"{method_name}: non-finite loss {losses}", numbers)
        if settings.cuda:
            numbers[method_name] = torch.cuda.max_memory_allocated(settings.device) / 2**30
        del method, step, batch
    if not settings.cuda:
        return Result("memory", "skipped", "peak memory is counted by CUDA's allocator only; "
                      "the steps ran with finite losses", numbers)
    detail = ", ".join(f"{m} {numbers[m]:.1f} GiB" for m in settings.methods)
    return Result("memory", "passed", f"peak per process: {detail}", numbers)


# --------------------------------------------------------------------------------------
# The run: checks in order, each one isolated; the report
# --------------------------------------------------------------------------------------


def planned_checks(settings: Settings) -> list[tuple[str, Callable[[], Result]]]:
    """``(name, call)`` of every check, in the order they run."""
    checks: list[tuple[str, Callable[[], Result]]] = [
        (f"train:{method}:{precision}",
         lambda m=method, p=precision: check_train_resume(settings, m, p))
        for method in settings.methods for precision in settings.precisions]
    checks += [("channels_last", lambda: check_option(settings, "channels_last")),
               ("compile", lambda: check_option(settings, "compile")),
               ("step_ratio", lambda: check_step_ratio(settings)),
               ("box_pass", lambda: check_box_pass(settings)),
               ("loader", lambda: check_loader(settings)),
               ("memory", lambda: check_memory(settings))]
    return checks


def run_check(name: str, call: Callable[[], Result]) -> Result:
    """Run one check; an exception makes it ``failed`` with its last line."""
    started = time.perf_counter()
    try:
        result = call()
    except Exception as err:  # a check must never hide the others
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        result = Result(name, "failed", last, {"traceback": traceback.format_exc()})
    result.seconds = time.perf_counter() - started
    print(f"[{result.status:>7}] {name} ({result.seconds:.1f} s): {result.detail}", flush=True)
    return result


def selected(name: str, only: list[str] | None) -> bool:
    """Whether ``name`` is asked for (``--only train`` picks every ``train:*``)."""
    return not only or any(name == want or name.startswith(want + ":") for want in only)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"CPU: {model}, {os.cpu_count()} logical CPUs"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(settings: Settings, argv: list[str]) -> dict[str, Any]:
    """What the report names: device, versions, date, command."""
    return {"device": device_name(settings.device), "device_type": settings.device.type,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if settings.cuda else None,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "accelerate": accelerate.__version__, "timm_ccrop": timm_ccrop.__version__,
            "python": platform.python_version(), "commit": git_commit(),
            "command": "python scripts/device_check.py " + " ".join(argv),
            "tiny": settings.tiny, "workers": settings.workers}


def markdown(env: dict[str, Any], results: list[Result], seconds: float) -> str:
    """The report as Markdown: header, one row per check, the numbers."""
    lines = ["# Device check", "",
             f"{env['date_utc']} UTC, {env['device']}; torch {env['torch']} (CUDA "
             f"{env['cuda']}, cuDNN {env['cudnn']}), torchvision {env['torchvision']}, timm "
             f"{env['timm']}, accelerate {env['accelerate']}, timm_ccrop {env['timm_ccrop']}, "
             f"Python {env['python']}, commit {env['commit']}.", "",
             f"`{env['command']}`: {seconds:.0f} s in all.", "",
             "| check | status | seconds | detail |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.detail} |" for r in results]
    lines += ["", "## Numbers", ""]
    for r in results:
        shown = {k: v for k, v in r.numbers.items() if k != "traceback"}
        if shown:
            lines.append(f"- **{r.name}**: `{json.dumps(shown, default=str)}`")
    return "\n".join(lines) + "\n"


def write_report(out: Path, env: dict[str, Any], results: list[Result], seconds: float) -> None:
    """``device-check.json`` and ``device-check.md`` in ``out``."""
    record = {"environment": env, "seconds": seconds, "checks": [asdict(r) for r in results]}
    (out / "device-check.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    (out / "device-check.md").write_text(markdown(env, results, seconds))


def parse(argv: list[str]) -> tuple[Settings, list[str] | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda or cpu (default: cuda when there is one)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and data (tests)")
    parser.add_argument("--only", help="comma-separated checks (train, train:moco, loader...)")
    parser.add_argument("--workers", type=int, help="loader workers (default: min(16, cores))")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = (Settings.tiny_cpu(device, args.out) if args.tiny
                else Settings(device, args.out, False))
    if args.workers is not None:
        settings.workers = args.workers
    return settings, args.only.split(",") if args.only else None


def main(argv: list[str] | None = None) -> int:
    """Run the checks, write the report; 1 when a check failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    settings, only = parse(argv)
    if settings.device.type == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"  # the trainer's Accelerator stays on the CPU
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="device-check-") as work:
        settings.work = Path(work)
        results = [run_check(name, call) for name, call in planned_checks(settings)
                   if selected(name, only)]
    seconds = time.perf_counter() - started
    if seconds > BUDGET_S and not settings.tiny:
        print(f"warning: {seconds:.0f} s, over the {BUDGET_S} s budget of issue 24")
    write_report(settings.out, environment(settings, argv), results, seconds)
    failed = [r.name for r in results if r.status == "failed"]
    print(f"report: {settings.out / 'device-check.md'}; "
          f"{'FAILED: ' + ', '.join(failed) if failed else 'no check failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
