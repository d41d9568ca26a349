#!/usr/bin/env python
"""Does a network's localization map have a place it prefers whatever the image shows?

Feeds content-free images (uniform grey, uniform noise) through a run's snapshot (or a
random-init network of its architecture) and prints the mean map a localizer reads,
scaled to [0, 1]. A map that peaks in the same cell for grey and noise has a position
prior (e.g. from zero padding at the borders) that no image content put there::

    python scripts/position_prior.py runs/effnet/efficientnet_b0/snapshots/epoch0008.pt \\
        --localizer-kwargs "{reduction: contrast}"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from timm_ccrop.localize import create_localizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localization_study import load_snapshot  # noqa: E402


def content_free_images(size: int, count: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    """Uniform grey and uniform noise images in [0, 1], ``(count, 3, size, size)``."""
    generator = torch.Generator().manual_seed(seed)
    return {"grey": torch.full((count, 3, size, size), 0.5),
            "noise": torch.rand(count, 3, size, size, generator=generator)}


def mean_maps(snapshot: Path, random_init: bool, localizer: str,
              options: dict) -> dict[str, torch.Tensor]:
    """The localizer's mean map over each kind of content-free image, scaled to [0, 1]."""
    method, config = load_snapshot(snapshot, random_init=random_init)
    made = create_localizer(localizer, **options)
    made.attach(method.projector)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in config.normalisation())
    found = {}
    for name, images in content_free_images(config.resolved_image_size()).items():
        with torch.no_grad():
            maps, _ = made.maps(method.backbone, (images - mean) / std)
        average = maps.float().mean(0)
        average = average - average.min()
        found[name] = average / average.max().clamp_min(1e-12)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("snapshot", type=Path, help="a snapshot of a run (RUN/snapshots/*.pt)")
    parser.add_argument("--localizer", default="peak")
    parser.add_argument("--localizer-kwargs", type=yaml.safe_load, default={},
                        help="YAML mapping; a background map cannot be used here (it needs "
                             "a dataset)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for random_init in (False, True):
        for name, grid in mean_maps(args.snapshot, random_init, args.localizer,
                                    args.localizer_kwargs).items():
            print(f"{'random init' if random_init else 'trained'}, {name} "
                  f"{tuple(grid.shape)}:")
            for row in grid.tolist():
                print("  " + " ".join(f"{value:.1f}" for value in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
