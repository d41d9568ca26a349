"""Replay a harvest run's recorded maps into fresh banks and score each variant's boxes.

A recording (``RUN-maps.pt``, written by the harvest study's driver, docs/harvest.md) is a
list of ``(epoch, indices [B], maps [B, V, h, w], geometry [B, V, 5])`` per training step.
Every variant (a ``harvest`` localizer's options) folds the same steps into its own bank
and reads boxes after every ``--every``-th epoch; mean IoU with the training split's
ground-truth boxes is printed, one line per pass::

    python scripts/harvest_replay.py runs/harvest_study/small-harvest \\
        --variants "{}" "{background: median}"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from timm_ccrop.crop.boxes import paired_iou
from timm_ccrop.data import build_dataset, parse_data_spec
from timm_ccrop.localize import create_localizer


def replay(run: Path, variants: list[dict], every: int) -> list[str]:
    """One line per box pass: each variant's mean IoU on the run's training split."""
    steps = torch.load(run.with_name(f"{run.name}-maps.pt"), weights_only=True)
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    gt = build_dataset(parse_data_spec(data), split="train").gt_boxes.float()
    localizers = [create_localizer("harvest", **options) for options in variants]
    banks = [localizer.make_bank(len(gt)) for localizer in localizers]
    lines = []
    for step, (epoch, indices, maps, geometry) in enumerate(steps):
        for bank in banks:
            bank.accumulate(maps, indices, geometry)
        epoch_ends = step + 1 == len(steps) or steps[step + 1][0] != epoch
        if epoch_ends and (epoch + 1) % every == 0:
            scores = [float(paired_iou(bank.boxes(localizer)[0], gt).mean())
                      for bank, localizer in zip(banks, localizers, strict=True)]
            lines.append(f"{run.name} after epoch {epoch + 1}: " + " | ".join(
                f"{localizer.describe()} {score:.3f}"
                for localizer, score in zip(localizers, scores, strict=True)))
            print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path,
                        help="harvest run folders with a RUN-maps.pt recording beside them")
    parser.add_argument("--variants", nargs="+", type=yaml.safe_load, default=[{}],
                        help="harvest localizer options, one YAML mapping per variant")
    parser.add_argument("--every", type=int, default=4, help="score every N-th epoch")
    args = parser.parse_args(argv)
    for run in args.runs:
        if not run.with_name(f"{run.name}-maps.pt").is_file():
            parser.error(f"{run}: no recording {run.name}-maps.pt beside it")
    return [line for run in args.runs for line in replay(run, args.variants, args.every)]


if __name__ == "__main__":
    main()
