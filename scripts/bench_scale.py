"""The paper's ImageNet recipe on 8 GPUs, piece by piece on this CPU (docs/scale.md).

    OMP_NUM_THREADS=1 python scripts/bench_scale.py            # about 3 minutes on 1 core
    OMP_NUM_THREADS=1 python scripts/bench_scale.py --images 32 --skip-box-pass

Sections (each prints a Markdown table):

A. Loader work per CPU core at 224 px, one process, one thread, over a folder of JPEGs
   (``--jpeg-size``, default 500x375, about ImageNet's typical photo): JPEG decode alone;
   the box pass's loader (decode + squash + normalise); the trainer's PIL path
   (:func:`timm_ccrop.train.setup.build_data`, ContrastiveCrop, two views with colour and
   blur); timm's RandomResizedCrop pipeline twice; the trainer's ``--augment-on device``
   worker (decode + squash to 224 + uint8 tensor); the same with JPEG draft decoding
   (DCT scaling, a possible fix); and :class:`~timm_ccrop.crop.augment.BatchedViews` on this
   CPU per image (on a GPU that part runs on the device).
B. The box pass on resnet50 at 224 px on this CPU: :func:`timm_ccrop.localize.localize_loader`
   with the default localizer and with ``paper`` against a plain no-grad forward over the
   same pre-made batches (rounds alternate; medians).
C. Memory per process of the box table, the one-forward map cache, the harvest bank and the
   median's gathered sample, from the real classes, at 1.28M and 14M images.
D. Multi-process costs: the median over the gathered sample (what every process computes)
   and the harvest bank's fold of one step's rows, timed here.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import timm
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from timm_ccrop.config import TrainConfig
from timm_ccrop.crop.augment import BatchedViews
from timm_ccrop.crop.boxes import BoxTable
from timm_ccrop.crop.views import view_preset
from timm_ccrop.data import SyntheticObjects
from timm_ccrop.data.folder import FolderDataset
from timm_ccrop.localize import (
    DEFAULT_LOCALIZER,
    HeatmapBank,
    create_localizer,
    eval_transform,
    localize_loader,
)
from timm_ccrop.localize.background import BACKGROUND_SAMPLE
from timm_ccrop.localize.boxpass import MAP_CACHE_BYTES
from timm_ccrop.models.backbones import create_backbone, eval_mode
from timm_ccrop.train.setup import build_data

SIZE = 224
DATASETS = {"ImageNet-1k": 1_281_167, "ImageNet-21k (14M)": 14_197_122}


def machine() -> str:
    """The machine, the versions and the date, in one line."""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {cpu}, {os.cpu_count()} logical CPUs (shared with other jobs; load "
            f"average {os.getloadavg()[0]:.2f}); torch {torch.__version__} with "
            f"{torch.get_num_threads()} thread(s), timm {timm.__version__}, Python "
            f"{platform.python_version()}")


def per_image_ms(function: Callable[[int], Any], count: int) -> float:
    """Mean milliseconds of ``function(i)`` over ``i < count`` (throughput's measure)."""
    started = time.perf_counter()
    for index in range(count):
        function(index)
    return (time.perf_counter() - started) * 1e3 / count


def alternating_ms(functions: dict[str, Callable[[int], Any]], count: int, rounds: int
                   ) -> dict[str, float]:
    """Median over ``rounds`` of each function's mean per image, the order flipped every
    round so that a busy moment of the shared machine hits every row alike."""
    for function in functions.values():
        function(0)  # warm-up (page cache, first allocations)
    results: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(rounds):
        for name in list(functions)[::(-1 if round_index % 2 else 1)]:
            results[name].append(per_image_ms(functions[name], count))
    return {name: statistics.median(values) for name, values in results.items()}


# --------------------------------------------------------------------------------------
# A. Loader work per core
# --------------------------------------------------------------------------------------


def write_jpegs(folder: Path, count: int, size: tuple[int, int]) -> Path:
    """``count`` JPEGs (quality 90) of the built-in objects at ``size``, two classes."""
    dataset = SyntheticObjects(num_samples=count, image_size=max(size) // 2, seed=3)
    for index in range(count):
        image = dataset[index][0].resize(size, Image.BILINEAR)
        (folder / f"c{index % 2}").mkdir(parents=True, exist_ok=True)
        image.save(folder / f"c{index % 2}" / f"{index:05d}.jpg", quality=90)
    return folder


def trainer_dataset(folder: Path, augment_on: str) -> Any:
    """The trainer's own training set over the folder (boxes on), as ``build_data`` makes it."""
    config = TrainConfig(data=f"folder:{folder}", views="imagenet", image_size=SIZE,
                         batch_size=2, num_workers=0, augment_on=augment_on, output="unused")
    data = build_data(config, SimpleNamespace(num_processes=1, device=torch.device("cpu")))
    data.boxes.update(torch.tensor([[0.2, 0.15, 0.7, 0.8]]).expand(len(data.boxes), 4))
    data.boxes.set_active(True)
    data.train_set.set_epoch(1)
    return data.train_set


def timm_two_views() -> Callable[[Image.Image], list[torch.Tensor]]:
    """timm's RandomResizedCrop training pipeline with the imagenet preset's settings."""
    recipe = view_preset("imagenet")[0]
    transform = timm.data.create_transform(
        SIZE, is_training=True, train_crop_mode="rrc", scale=recipe.scale,
        color_jitter=recipe.color_jitter, color_jitter_prob=recipe.color_jitter_prob,
        grayscale_prob=recipe.grayscale_prob, gaussian_blur_prob=recipe.gaussian_blur_prob,
        interpolation="bilinear")
    return lambda image: [transform(image), transform(image)]


def draft_squash(path: Path) -> torch.Tensor:
    """Decode at the smallest DCT scale still >= 224 px, then squash (the fix to test)."""
    with Image.open(path) as image:
        image.draft("RGB", (SIZE, SIZE))
        return pil_to_tensor(image.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))


def batched_views(batch: int = 16) -> Callable[[int], Any]:
    """BatchedViews (two imagenet views) on this CPU, one call per ``batch`` images: call
    it for every index (its mean over a multiple of ``batch`` is a per-image cost)."""
    views = BatchedViews.from_preset("imagenet", "ccrop", size=SIZE)
    images = SyntheticObjects(num_samples=batch, image_size=SIZE, seed=4).images_uint8()
    boxes = torch.tensor([[0.2, 0.15, 0.7, 0.8]]).expand(batch, 4)
    generator = torch.Generator().manual_seed(0)
    sliced = [(images[i:i + 1], boxes[i:i + 1]) for i in range(batch)]
    whole = {"made": None}

    def call(index: int) -> Any:
        if index % batch == 0:  # one batched call, its cost spread over the batch
            whole["made"] = views(images, boxes, None, generator)
        return sliced[index % batch]

    return call


def loader_rows(folder: Path, count: int, rounds: int) -> dict[str, float]:
    """Milliseconds per image of every piece of loader work, measured side by side."""
    files = FolderDataset(folder)
    boxed_pil, boxed_device = trainer_dataset(folder, "loader"), trainer_dataset(folder, "device")
    box_pass = eval_transform(SIZE)
    timm_views = timm_two_views()
    batched = batched_views()
    return alternating_ms({
        "JPEG decode alone (PIL)": files.load_image,
        "box pass loader: decode + squash + normalise":
            lambda i: box_pass(files.load_image(i)),
        "PIL path (trainer): decode + 2 ContrastiveCrop views + colour + blur":
            boxed_pil.__getitem__,
        "timm RandomResizedCrop pipeline x 2 views: decode + views":
            lambda i: timm_views(files.load_image(i)),
        "device path worker (trainer): decode + squash to 224 + uint8":
            boxed_device.__getitem__,
        "device path worker with JPEG draft decoding (proposed)":
            lambda i: draft_squash(files.files[i]),
        "BatchedViews on this CPU (the device's part), per image": batched,
    }, count, rounds)


def print_loader(rows: dict[str, float], demands: dict[str, float],
                 jpeg_size: tuple[int, int]) -> None:
    print(f"\n### A. Loader work per CPU core at 224 px, JPEGs {jpeg_size[0]}x{jpeg_size[1]}\n")
    head = " | ".join(f"cores per GPU at {rate:.0f} img/s ({name})"
                      for name, rate in demands.items())
    print(f"| work per image | ms (mean; median of rounds) | img/s per core | {head} |")
    print("|---|---|---|" + "---|" * len(demands))
    for name, ms in rows.items():
        cores = " | ".join(f"{rate * ms / 1e3:.1f}" for rate in demands.values())
        print(f"| {name} | {ms:.2f} | {1e3 / ms:.0f} | {cores} |")


# --------------------------------------------------------------------------------------
# B. Box pass vs plain forward (resnet50, 224 px)
# --------------------------------------------------------------------------------------


def box_pass_rows(count: int, batch: int, rounds: int) -> dict[str, list[float]]:
    """Seconds of a plain forward, a default-localizer pass and a paper pass over the same
    pre-made batches, per round (order flipped every round)."""
    backbone = create_backbone("resnet50").eval()
    transform = eval_transform(SIZE)
    dataset = SyntheticObjects(num_samples=count, image_size=SIZE, seed=5)
    images = torch.stack([transform(dataset[i][0]) for i in range(count)])
    indices = torch.arange(count)
    batches = [(images[i:i + batch], indices[i:i + batch], indices[i:i + batch])
               for i in range(0, count, batch)]

    def forward() -> None:
        with eval_mode(backbone), torch.no_grad():
            for x, _, _ in batches:
                backbone(x)

    def boxes(name: str) -> Callable[[], Any]:
        return lambda: localize_loader(backbone, batches, count, (SIZE, SIZE),
                                       localizer=create_localizer(name), progress=False)

    calls = {"forward": forward, DEFAULT_LOCALIZER: boxes(DEFAULT_LOCALIZER),
             "paper": boxes("paper")}
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(rounds):
        for name in list(calls)[::(-1 if round_index % 2 else 1)]:
            started = time.perf_counter()
            calls[name]()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def print_box_pass(seconds: dict[str, list[float]], count: int) -> None:
    print(f"\n### B. Box pass vs plain forward, resnet50, 224 px, {count} images\n")
    print("| pass | s per pass (median, min-max) | ms per image | / plain forward "
          "(median of per-round ratios) |")
    print("|---|---|---|---|")
    for name, values in seconds.items():
        ratios = [v / f for v, f in zip(values, seconds["forward"], strict=True)]
        print(f"| {name} | {statistics.median(values):.2f} ({min(values):.2f}-"
              f"{max(values):.2f}) | {statistics.median(values) / count * 1e3:.0f} | "
              f"{statistics.median(ratios):.2f}x |")


# --------------------------------------------------------------------------------------
# C-D. Memory per process, and the multi-process costs
# --------------------------------------------------------------------------------------


def map_side() -> tuple[int, int]:
    """The default localizer's map on resnet50 at 224 px (its last stride removed)."""
    backbone = create_backbone("resnet50").eval()
    return create_localizer(DEFAULT_LOCALIZER).map_size(backbone, (SIZE, SIZE))


def print_memory(side: tuple[int, int]) -> None:
    table, bank = BoxTable(1000), HeatmapBank(1000)
    table_bytes = sum(t.numel() * t.element_size() for t in (table.boxes, table.valid)) / 1000
    map_bytes = side[0] * side[1] * 4
    print(f"\n### C. Memory per process (default localizer's map {side[0]}x{side[1]})\n")
    print("| what | bytes per image | "
          + " | ".join(f"{name}, 1 / 8 / 64 processes" for name in DATASETS) + " |")
    print("|---|---|" + "---|" * len(DATASETS))
    rows = [("box table (shared memory, whole set in every process)", table_bytes, False),
            ("harvest bank (--localizer harvest; a full replica per process)",
             bank.bytes_per_sample, False),
            ("box pass map cache (the process's shard, CPU)", map_bytes, True),
            ("box pass gathered rows (index, box, flag; every process)", 32, False)]
    for name, per_image, sharded in rows:
        cells = []
        for images in DATASETS.values():
            sizes = [per_image * (-(-images // p) if sharded else images) / 2**20
                     for p in (1, 8, 64)]
            cells.append(" / ".join(_mib(s) for s in sizes))
        print(f"| {name} | {per_image:.0f} | " + " | ".join(cells) + " |")
    sample = [BACKGROUND_SAMPLE * p * map_bytes / 2**20 for p in (1, 8, 64)]
    print(f"| median sample gathered on every process ({BACKGROUND_SAMPLE} maps per process) "
          f"| - | {' / '.join(_mib(s) for s in sample)} (any dataset size) | |")
    print(f"\nThe one-forward map cache is capped at {MAP_CACHE_BYTES / 2**30:.0f} GiB per "
          "process (above it: two forwards).")


def _mib(value: float) -> str:
    return f"{value / 1024:.1f} GiB" if value >= 1024 else f"{value:.0f} MiB"


def print_collectives(side: tuple[int, int]) -> None:
    """Time what every process computes on the gathered rows."""
    print("\n### D. What every process computes on gathered rows (this CPU)\n")
    print("| work | rows | seconds |")
    print("|---|---|---|")
    for processes in (1, 8, 64):
        rows = BACKGROUND_SAMPLE * processes
        maps = torch.rand(rows, side[0] * side[1])
        started = time.perf_counter()
        maps.quantile(0.5, dim=0) if rows <= 16_000_000 // side[0] else maps.median(dim=0)
        print(f"| median map over the gathered sample, {processes} processes | {rows} | "
              f"{time.perf_counter() - started:.2f} |")
    bank = HeatmapBank(20_000)
    for global_batch in (256, 4096):
        maps = torch.rand(global_batch, 2, 7, 7)
        geometry = torch.tensor([0.1, 0.1, 0.8, 0.9, 0.0]).expand(global_batch, 2, 5)
        indices = torch.randperm(20_000)[:global_batch]
        bank.accumulate(maps, indices, geometry)
        started = time.perf_counter()
        bank.accumulate(maps, indices, geometry)
        print(f"| harvest bank fold of one step's rows (global batch {global_batch}, 2 views, "
              f"7x7 maps) | {global_batch} | {time.perf_counter() - started:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48,
                        help="JPEGs timed in A (a multiple of 16)")
    parser.add_argument("--jpeg-sizes", nargs="+", default=["500x375", "1000x750"],
                        help="JPEG sizes WxH of A")
    parser.add_argument("--loader-rounds", type=int, default=3, help="alternating rounds in A")
    parser.add_argument("--box-images", type=int, default=16, help="images of the pass in B")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds in B")
    parser.add_argument("--skip-box-pass", action="store_true")
    parser.add_argument("--gpu-rates", type=float, nargs=3, default=(1039.0, 1558.0, 779.0),
                        help="img/s one GPU trains with SimCLR/SimSiam, MoCo v2, BYOL; default "
                        "from NVIDIA's published DGX A100 ResNet-50 figure, see docs/scale.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine())
    demands = dict(zip(("SimCLR/SimSiam", "MoCo v2", "BYOL"), args.gpu_rates, strict=True))
    for text in args.jpeg_sizes:
        jpeg_size = tuple(int(v) for v in text.split("x"))
        with tempfile.TemporaryDirectory() as temporary:
            folder = write_jpegs(Path(temporary), args.images, jpeg_size)
            print_loader(loader_rows(folder, args.images, args.loader_rounds), demands,
                         jpeg_size)
    if not args.skip_box_pass:
        print_box_pass(box_pass_rows(args.box_images, 8, args.rounds), args.box_images)
    side = map_side()
    print_memory(side)
    print_collectives(side)


if __name__ == "__main__":
    main()
