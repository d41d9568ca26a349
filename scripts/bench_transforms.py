"""Microseconds per image: timm's 'rrc' pipeline vs the 'ccrop' pipeline.

Rows: parameter sampling alone, the crop alone (sample + crop + resize) and the full
SSL view (crop, flip, colour jitter p 0.8, grayscale p 0.2, [blur p 0.5 at 224], to
tensor, normalise), at 32 px (CIFAR-sized input) and 224 px (a 500 x 375 input). Also an
official-style sampler (Beta drawn through torch.distributions on every call) and the
baseline timed against itself, which shows the noise floor of this machine.

Baseline and candidate alternate within every round (order flipped each round); the
table gives the median and min-max over rounds and the median of per-round ratios.

    python scripts/bench_transforms.py            # full run (about 2 minutes)
    python scripts/bench_transforms.py --rounds 3 --calls 300   # quick look
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import timm
import timm.data
import torch
from PIL import Image
from timm.data.transforms import RandomResizedCropAndInterpolation

import timm_ccrop
from timm_ccrop import Box, contrastive_crop_params

BOX = Box(0.2, 0.15, 0.7, 0.8)


def official_style_params(img: Image.Image, scale, ratio, box, alpha: float):
    """The official sampler's cost profile: torch.distributions.Beta on every call."""
    width, height = img.size
    area = height * width
    beta = torch.distributions.beta.Beta(alpha, alpha)
    for _ in range(10):
        target_area = random.uniform(*scale) * area
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            h0, w0, h1, w1 = box.y0, box.x0, box.y1, box.x1
            ch0 = min(max(int(height * h0) - h // 2, 0), height - h)
            ch1 = min(max(int(height * h1) - h // 2, 0), height - h)
            cw0 = min(max(int(width * w0) - w // 2, 0), width - w)
            cw1 = min(max(int(width * w1) - w // 2, 0), width - w)
            i = ch0 + int((ch1 - ch0) * beta.sample())
            j = cw0 + int((cw1 - cw0) * beta.sample())
            return i, j, h, w
    return 0, 0, height, width


def per_call_us(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e6


def ssl_kwargs(size: int) -> dict:
    return {
        "is_training": True,
        "scale": (0.2, 1.0),
        "color_jitter": (0.4, 0.4, 0.4, 0.1),
        "color_jitter_prob": 0.8,
        "grayscale_prob": 0.2,
        "gaussian_blur_prob": 0.5 if size >= 224 else 0.0,
        "interpolation": "bilinear",
    }


def build_rows(size: int, image: Image.Image) -> list[tuple[str, Callable, Callable]]:
    scale, ratio = (0.2, 1.0), (3 / 4, 4 / 3)
    rrc = RandomResizedCropAndInterpolation(size, scale=scale, ratio=ratio)
    ccrop = timm_ccrop.ContrastiveCrop(size, scale=scale, ratio=ratio, alpha=0.6)
    rrc_view = timm.data.create_transform(size, train_crop_mode="rrc", **ssl_kwargs(size))
    ccrop_view = timm.data.create_transform(size, train_crop_mode="ccrop", **ssl_kwargs(size))
    height, width = image.height, image.width
    pair = (image, BOX)
    return [
        (f"sampling only, {size}px",
         lambda: RandomResizedCropAndInterpolation.get_params(image, scale, ratio),
         lambda: contrastive_crop_params(height, width, BOX, scale, ratio, 0.6)),
        (f"crop alone, {size}px", lambda: rrc(image), lambda: ccrop(pair)),
        (f"full SSL view, {size}px", lambda: rrc_view(image), lambda: ccrop_view(pair)),
        (f"official-style sampler (torch.distributions), {size}px",
         lambda: RandomResizedCropAndInterpolation.get_params(image, scale, ratio),
         lambda: official_style_params(image, scale, ratio, BOX, 0.6)),
        (f"noise floor: rrc crop vs itself, {size}px", lambda: rrc(image), lambda: rrc(image)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds (>= 7)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    rng = np.random.default_rng(0)
    images = {
        32: Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)),
        224: Image.fromarray(rng.integers(0, 255, (375, 500, 3), np.uint8)),
    }
    rows = [row for size, image in images.items() for row in build_rows(size, image)]
    results = {name: ([], [], []) for name, _, _ in rows}
    for round_index in range(args.rounds):
        for name, baseline, candidate in rows:
            calls = args.calls if "224" not in name or "sampling" in name else args.calls // 5
            base_times, cand_times, ratios = results[name]
            pair = [("b", baseline), ("c", candidate)]
            if round_index % 2:
                pair.reverse()
            measured = {key: per_call_us(function, calls) for key, function in pair}
            base_times.append(measured["b"])
            cand_times.append(measured["c"])
            ratios.append(measured["c"] / measured["b"])
    print(f"timm {timm.__version__}, torch {torch.__version__}, {platform.processor() or 'cpu'}, "
          f"{args.rounds} rounds, 1 thread\n")
    print("| row | baseline us (median, min-max) | candidate us (median, min-max) "
          "| overhead us | ratio (median) |")
    print("|---|---|---|---|---|")
    for name, (base, cand, ratios) in results.items():
        overhead = statistics.median(c - b for b, c in zip(base, cand, strict=True))
        print(f"| {name} | {statistics.median(base):.1f} ({min(base):.1f}-{max(base):.1f}) "
              f"| {statistics.median(cand):.1f} ({min(cand):.1f}-{max(cand):.1f}) "
              f"| {overhead:+.1f} | {statistics.median(ratios):.3f}x |")


if __name__ == "__main__":
    main()
