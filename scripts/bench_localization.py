"""Cost of the localization: box extraction and the whole box pass, against baselines.

(a) Box extraction alone, from channel-reduced maps ``(N, h, w)`` to boxes: the
    vectorised :func:`timm_ccrop.localize.heatmap_boxes` against the official per-image
    loop (written below as the official ``update_box`` does it), at 32 px (4x4 maps,
    N = 512, CIFAR-like) and 224 px (7x7 maps, N = 256, ImageNet-like). Target: >= 20x
    faster at 32 px. A noise-floor row times the official loop against itself.
(b) The whole localization pass (:func:`timm_ccrop.localize.localize_dataset`) against a
    plain ``no_grad`` forward of the same backbone over the same loader (``BoxedDataset`` +
    ``eval_transform``, same batch size and workers), so only the hook, heatmap and box
    work differ. Synthetic dataset, test-size backbone. Target: <= 1.10x.

Baseline and candidate alternate within every round (order flipped each round); the
table gives the median and min-max over rounds and the median of per-round ratios.

    python scripts/bench_localization.py                 # full run (a few minutes)
    python scripts/bench_localization.py --rounds 3 --quick   # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader

from timm_ccrop.config import TrainConfig
from timm_ccrop.crop.boxes import from_official
from timm_ccrop.data import BoxedDataset, build_dataset
from timm_ccrop.data.synthetic import SyntheticObjects
from timm_ccrop.localize import (
    boxpass,
    create_localizer,
    eval_transform,
    heatmap_boxes,
    localize_dataset,
)
from timm_ccrop.localize.boxpass import MAP_CACHE_BYTES
from timm_ccrop.models.backbones import create_backbone

THRESHOLD = 0.1


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------


def official_boxes(maps: torch.Tensor, threshold: float, image_size: tuple[int, int]):
    """The official box extraction: batch normalise + upsample, then one image at a time.

    As ``update_box`` of the official code does it, from the channel sum on: flatten,
    subtract the min, divide by the max, bilinear upsampling to the image size for the
    whole batch, then a Python loop over images with a ``nonzero`` per axis and a tensor
    per image. Boxes are ``(h_min, w_min, h_max, w_max)`` (last index / size).
    """
    count, map_h, map_w = maps.shape
    flat = maps.reshape(count, -1)
    flat = flat - flat.min(1, keepdim=True)[0]
    flat = flat / flat.max(1, keepdim=True)[0]
    upsampled = F.interpolate(flat.view(count, 1, map_h, map_w), size=image_size,
                              mode="bilinear")
    height, width = image_size
    boxes = []
    for hmap in upsampled:
        hmap = hmap.squeeze(0)
        rows = (hmap.max(1)[0] > threshold).int()
        cols = (hmap.max(0)[0] > threshold).int()
        h_min, h_max = torch.nonzero(rows).view(-1)[[0, -1]] / height
        w_min, w_max = torch.nonzero(cols).view(-1)[[0, -1]] / width
        boxes.append(torch.tensor([h_min, w_min, h_max, w_max]))
    return torch.stack(boxes, dim=0)


def plain_pass(model: torch.nn.Module, dataset, image_size: int, batch_size: int,
               num_workers: int) -> int:
    """A no-grad forward over the loader ``localize_dataset`` builds; nothing else."""
    indexed = BoxedDataset(dataset, eval_transform((image_size, image_size)), return_index=True)
    loader = DataLoader(indexed, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    seen = 0
    with torch.no_grad():
        for images, _, _ in loader:
            model(images)
            seen += len(images)
    model.train(was_training)
    return seen


def localizer_pass(model: torch.nn.Module, dataset, image_size: int, localizer: Any,
                   batch_size: int, num_workers: int) -> int:
    result = localize_dataset(model, dataset, image_size, batch_size=batch_size,
                              num_workers=num_workers, progress=False, localizer=localizer)
    return len(result.boxes)


def localizer_pass_with_cache(model: torch.nn.Module, dataset, image_size: int, localizer: Any,
                              batch_size: int, workers: int, cache_bytes: int) -> None:
    """:func:`localizer_pass` with the box pass's map cache set to ``cache_bytes`` (0: the
    fit takes a forward of its own)."""
    saved = boxpass.MAP_CACHE_BYTES
    boxpass.MAP_CACHE_BYTES = cache_bytes
    try:
        localizer_pass(model, dataset, image_size, localizer, batch_size, workers)
    finally:
        boxpass.MAP_CACHE_BYTES = saved


def localization_pass(model: torch.nn.Module, dataset, image_size: int, stage: int,
                      batch_size: int, num_workers: int) -> int:
    union = create_localizer("union", threshold=THRESHOLD, stage=stage)
    result = localize_dataset(model, dataset, image_size, localizer=union,
                              batch_size=batch_size, num_workers=num_workers, progress=False)
    return len(result.boxes)


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def heatmap_batch(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Channel sums as post-ReLU backbones give them: a blob somewhere, plus clutter."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(),
                            indexing="ij")
    centres = torch.rand(count, 2, 1, 1, generator=generator) * (size - 1)
    spread = 0.5 + torch.rand(count, 1, 1, generator=generator) * size / 3
    blob = torch.exp(-((ys - centres[:, 0]) ** 2 + (xs - centres[:, 1]) ** 2) / (2 * spread**2))
    clutter = torch.rand(count, size, size, generator=generator)
    return 40.0 * blob + 8.0 * clutter  # strictly positive, never constant


def check_same_boxes(maps: torch.Tensor, image_size: tuple[int, int]) -> None:
    """The two extractions must agree before their speed is compared."""
    ours = heatmap_boxes(maps, THRESHOLD, image_size)
    theirs = from_official(official_boxes(maps, THRESHOLD, image_size), image_size)
    if not torch.allclose(ours, theirs, atol=1e-6):
        worst = (ours - theirs).abs().max().item()
        raise SystemExit(f"heatmap_boxes disagrees with the official loop (max diff {worst})")


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    baseline: Callable[[], object]
    candidate: Callable[[], object]
    per: int  # images per call, for the per-image column
    target: str = ""  # ">= 20x faster" (speed-up) or "<= 1.10x" (candidate/baseline)
    base_calls: int = 1
    cand_calls: int = 1
    base_ms: list[float] | None = None
    cand_ms: list[float] | None = None
    ratios: list[float] | None = None


def ms_per_call(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e3


def calibrate(row: Row, budget_s: float) -> None:
    """Warm both up once, then pick call counts so one measurement takes ~budget_s."""
    row.base_calls = max(1, int(budget_s * 1e3 / max(ms_per_call(row.baseline, 1), 1e-3)))
    row.cand_calls = max(1, int(budget_s * 1e3 / max(ms_per_call(row.candidate, 1), 1e-3)))


def run_rounds(rows: list[Row], rounds: int) -> None:
    for row in rows:
        row.base_ms, row.cand_ms, row.ratios = [], [], []
    for round_index in range(rounds):
        for row in rows:
            pair = [("b", row.baseline, row.base_calls), ("c", row.candidate, row.cand_calls)]
            if round_index % 2:
                pair.reverse()
            measured = {key: ms_per_call(function, calls) for key, function, calls in pair}
            row.base_ms.append(measured["b"])
            row.cand_ms.append(measured["c"])
            row.ratios.append(measured["c"] / measured["b"])


def describe(values: list[float], per: int) -> str:
    median = statistics.median(values)
    return (f"{median:.2f} ({min(values):.2f}-{max(values):.2f}) "
            f"[{median / per * 1e3:.1f} us/img]")


def print_table(rows: list[Row], title: str) -> None:
    print(f"\n### {title}\n")
    print("| row | baseline ms/call (median, min-max) [per image] "
          "| candidate ms/call (median, min-max) [per image] | candidate/baseline (median) "
          "| speed-up | target |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        ratio = statistics.median(row.ratios)
        print(f"| {row.name} | {describe(row.base_ms, row.per)} | "
              f"{describe(row.cand_ms, row.per)} | {ratio:.3f}x | {1 / ratio:.1f}x | "
              f"{row.target}{verdict(row.target, ratio)} |")


def verdict(target: str, ratio: float) -> str:
    """' (met)' / ' (MISSED)' for the two target forms used here; '' otherwise."""
    numbers = [float(word.rstrip("x")) for word in target.split()
               if word.rstrip("x").replace(".", "", 1).isdigit()]
    if not numbers:
        return ""
    if target.startswith(">="):
        return " (met)" if 1 / ratio >= numbers[0] else " (MISSED)"
    if target.startswith("<="):
        return " (met)" if ratio <= numbers[0] else " (MISSED)"
    return ""


def machine_header(args: argparse.Namespace) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{datetime.date.today()}, {cpu}, {os.cpu_count()} logical CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} thread(s)), "
            f"timm {timm.__version__}, Python {platform.python_version()}, "
            f"{args.rounds} rounds (order flipped every round), DataLoader workers "
            f"{args.workers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds (>= 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers in (b)")
    parser.add_argument("--images", type=int, default=512, help="dataset size in (b)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size in (b)")
    parser.add_argument("--budget", type=float, default=0.3,
                        help="target seconds per measurement in (a)")
    parser.add_argument("--quick", action="store_true", help="(a) only, for a fast look")
    parser.add_argument("--model", default="resnet_mini_cifar", help="backbone of (c)")
    parser.add_argument("--image-size", type=int, default=32, help="image size of (c)")
    parser.add_argument("--data", default=None,
                        help="dataset spec of (c) (default: synthetic at --image-size)")
    parser.add_argument("--two-forwards", action="store_true",
                        help="(c): also time each background-subtracting localizer with a "
                        "forward for its fit and one for its boxes (the pass before "
                        "issue 21)")
    parser.add_argument("--sections", nargs="+", default=["a", "b", "c"],
                        choices=["a", "b", "c"], help="which tables to measure")
    parser.add_argument("--localizers", nargs="+",
                        default=["paper", "union", "peak:{}",
                                 TrainConfig().localizer + ":" + json.dumps(
                                     TrainConfig().resolved_localizer_kwargs()),
                                 "ddt:{dilate: true}", "ccam:{dilate: true}"],
                        help="NAME or NAME:{yaml options} for (c)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(machine_header(args))

    # (a) box extraction alone
    extraction = []
    for size, map_size, count in ((32, 4, 512), (224, 7, 256)):
        maps = heatmap_batch(count, map_size, seed=size)
        check_same_boxes(maps, (size, size))
        extraction.append(Row(
            f"box extraction, {size} px ({map_size}x{map_size} maps, N={count}): official "
            "loop vs heatmap_boxes",
            lambda m=maps, s=size: official_boxes(m, THRESHOLD, (s, s)),
            lambda m=maps, s=size: heatmap_boxes(m, THRESHOLD, (s, s)),
            per=count, target=">= 20x faster" if size == 32 else "",
        ))
    noise_maps = heatmap_batch(512, 4, seed=32)
    extraction.append(Row(
        "noise floor: official loop vs itself, 32 px (N=512)",
        lambda: official_boxes(noise_maps, THRESHOLD, (32, 32)),
        lambda: official_boxes(noise_maps, THRESHOLD, (32, 32)),
        per=512, target="~1.00x",
    ))
    if "a" in args.sections:
        for row in extraction:
            calibrate(row, args.budget)
        run_rounds(extraction, args.rounds)
        print_table(extraction, "(a) box extraction from channel-reduced maps (ms per batch)")
    if args.quick:
        return

    # (b) the whole pass vs a plain forward over the same loader
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=0).eval()
    passes = []
    for size, stage in ((32, -3), (64, -2)):
        dataset = SyntheticObjects(num_samples=args.images, image_size=size).prerender()
        module = model.feature_info[stage]["module"]
        passes.append(Row(
            f"box pass, test_resnet, {size} px, stage {stage} ({module}, 4x4 maps), "
            f"N={args.images}, batch {args.batch_size}: plain forward vs localize_dataset",
            lambda d=dataset, s=size: plain_pass(model, d, s, args.batch_size, args.workers),
            lambda d=dataset, s=size, st=stage: localization_pass(
                model, d, s, st, args.batch_size, args.workers),
            per=args.images, target="<= 1.10x",
        ))
    noise_data = SyntheticObjects(num_samples=args.images, image_size=32).prerender()
    passes.append(Row(
        f"noise floor: plain forward vs itself, 32 px, N={args.images}",
        lambda: plain_pass(model, noise_data, 32, args.batch_size, args.workers),
        lambda: plain_pass(model, noise_data, 32, args.batch_size, args.workers),
        per=args.images, target="~1.00x",
    ))
    if "b" in args.sections:
        for row in passes:
            row.baseline()  # warm-up (first-use costs: transforms, allocator)
            row.candidate()
        run_rounds(passes, args.rounds)
        print_table(passes, "(b) whole localization pass vs a plain no-grad forward "
                            "(ms per pass over the dataset)")
    if "c" not in args.sections:
        return

    # (c) each localizer's pass on a backbone (default: the benchmark's resnet_mini_cifar at
    # 32 px), with the plain forward against itself as the noise floor
    size, where = args.image_size, f"{args.model}, {args.image_size} px, N={args.images}"
    bench = create_backbone(args.model, seed=0).eval()
    spec = args.data or f"synthetic:image_size={size}"
    data = build_dataset(f"{spec}{',' if ':' in spec else ':'}num_samples={args.images}")

    def plain() -> None:
        plain_pass(bench, data, size, args.batch_size, args.workers)

    rows = [Row(f"noise floor: plain forward vs itself, {where}", plain, plain,
                per=args.images, target="~1.00x")]
    for text in args.localizers:
        name, _, options = text.partition(":")
        localizer = create_localizer(name, **(yaml.safe_load(options) or {}))
        variants = [("", MAP_CACHE_BYTES)]
        if args.two_forwards and localizer.fits_from_maps:
            variants.append((" (two forwards)", 0))
        for label, cache in variants:
            rows.append(Row(
                f"{localizer.describe()}{label}, {where}, batch {args.batch_size}: plain "
                "forward vs localize_dataset", plain,
                lambda loc=localizer, c=cache: localizer_pass_with_cache(
                    bench, data, size, loc, args.batch_size, args.workers, c),
                per=args.images, target="<= 1.5x (issue 21)"))
    for row in rows:
        row.baseline()
        row.candidate()
    run_rounds(rows, args.rounds)
    print_table(rows, "(c) localizers: whole pass vs a plain no-grad forward "
                      "(ms per pass over the dataset)")


if __name__ == "__main__":
    main()
