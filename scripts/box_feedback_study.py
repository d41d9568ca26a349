#!/usr/bin/env python
"""Can a box-update policy keep ContrastiveCrop's boxes as good as the random-init
network's, pass after pass? (issue 21, item 4)

The boxes of every box-pass snapshot of real runs (``--snapshots passes``) and of the same
architecture at its random initialisation (epoch 0) are computed once with one localizer,
then each update policy is replayed over them offline:

* ``fresh``: today's rule, each pass replaces the boxes (first pass after the warm-up);
* ``epoch-0 pass``: the random-init network's boxes are the first pass;
* ``momentum m``: each pass moves the boxes ``1 - m`` of the way to the new ones (a pass
  whose new box is degenerate keeps the old one), from the first pass or from epoch 0.

Every policy is scored against the TRAINING split's ground-truth boxes (never a test split,
never accuracy) with the issue's three box targets: the first pass at least the random-init
network's IoU, no pass lowering the mean IoU by more than 0.02, no pass below the whole
image. Offline replay ignores the crops' feedback into the maps (a run cropping with other
boxes trains other maps); the runs' own rcrop arms, which have no feedback at all, show how
much of the change is training alone. Usage::

    python scripts/box_feedback_study.py /work/runs/devA/simclr-rcrop-seed0 ... \\
        --label devA --cache /work/runs/feedback-cache --out docs/realistic/feedback-devA.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib
import torch
import yaml

matplotlib.use("Agg")  # before pyplot: the picture is a file, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from timm_ccrop.crop.boxes import blend_boxes, paired_iou, whole_image_iou
from timm_ccrop.data import build_dataset, parse_data_spec
from timm_ccrop.localize import (
    DEFAULT_LOCALIZER,
    DEFAULT_LOCALIZER_OPTIONS,
    create_localizer,
    localize_dataset,
)
from timm_ccrop.runs import RunFolder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localization_study import load_snapshot  # noqa: E402

#: name -> (start from the random-init pass, momentum)
POLICIES: dict[str, tuple[bool, float]] = {
    "fresh (today)": (False, 0.0),
    "momentum 0.5": (False, 0.5),
    "momentum 0.75": (False, 0.75),
    "epoch-0 pass, then fresh": (True, 0.0),
    "epoch-0 pass, momentum 0.5": (True, 0.5),
    "epoch-0 pass, momentum 0.75": (True, 0.75),
    "epoch-0 pass, momentum 0.9": (True, 0.9),
    "epoch-0 pass, frozen": (True, 1.0),
}
MAX_DROP = 0.02


def run_boxes(folder: Path, localizer: tuple[str, dict[str, Any]], cache: Path | None,
              limit: int) -> dict[str, Any]:
    """Boxes and degenerate flags of the random-init network (epoch 0) and every snapshot
    of one run, with the training split's ground truth; cached by run and localizer."""
    key = f"{folder.parent.name}-{folder.name}-{localizer[0]}-" + "-".join(
        f"{k}{v}" for k, v in sorted(localizer[1].items())) + f"-{limit}.pt"
    if cache is not None and (cache / key).exists():
        return torch.load(cache / key, weights_only=True)
    by_epoch = {int(p.stem.removeprefix("epoch")): p for p in RunFolder(folder).snapshots()}
    if not by_epoch:
        raise SystemExit(f"{folder} has no snapshots; train with --snapshots passes")
    first = min(by_epoch)
    _, config = load_snapshot(by_epoch[first])
    dataset = build_dataset(parse_data_spec(config.data), split="train")
    gt = dataset.gt_boxes.float()
    if limit and len(dataset) > limit:
        dataset, gt = torch.utils.data.Subset(dataset, range(limit)), gt[:limit]
    mean, std = config.normalisation()
    epochs, boxes, degenerate = [], [], []
    for epoch in sorted({0, *by_epoch}):
        # a run with --box-warmup-epochs 0 kept its random-init network as epoch 0
        method, _ = load_snapshot(by_epoch.get(epoch, by_epoch[first]),
                                  random_init=epoch not in by_epoch)
        made = create_localizer(localizer[0], **localizer[1])
        made.attach(method.projector)
        result = localize_dataset(method.backbone, dataset, config.resolved_image_size(),
                                  localizer=made, batch_size=256, mean=mean, std=std,
                                  progress=False)
        epochs.append(epoch)
        boxes.append(result.boxes.float())
        degenerate.append(result.degenerate)
        print(f"{folder.name} epoch {epoch}: IoU "
              f"{float(paired_iou(result.boxes.float(), gt).mean()):.3f}", flush=True)
    found = {"epochs": torch.tensor(epochs), "boxes": torch.stack(boxes),
             "degenerate": torch.stack(degenerate), "gt": gt,
             "last_epoch": torch.tensor(config.epochs)}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(found, cache / key)
    return found


def replay(found: dict[str, Any], from_random_init: bool, momentum: float) -> list[float]:
    """Mean IoU after each box pass of one policy. The passes are the snapshots before the
    last epoch (the trainer makes no pass after it), after the epoch-0 pass if any."""
    epochs = found["epochs"].tolist()
    passes = [i for i, e in enumerate(epochs) if 0 < e < int(found["last_epoch"])]
    order = ([0] if from_random_init else []) + passes
    boxes, valid = found["boxes"][order[0]], ~found["degenerate"][order[0]]
    scores = [float(paired_iou(boxes, found["gt"]).mean())]
    for index in order[1:]:  # the trainer's update (timm_ccrop.crop.boxes.blend_boxes)
        boxes, valid = blend_boxes(boxes, valid, found["boxes"][index],
                                   ~found["degenerate"][index], momentum)
        scores.append(float(paired_iou(boxes, found["gt"]).mean()))
    return scores


def targets(scores: list[float], random_init: float, whole: float) -> dict[str, bool]:
    """The issue's three box targets for one run's pass scores."""
    drops = [b - a for a, b in itertools.pairwise(scores)]
    return {"first >= random init": scores[0] >= random_init - 1e-9,
            "no drop > 0.02": all(d >= -MAX_DROP for d in drops),
            "never below whole image": min(scores) >= whole}


def study(runs: list[Path], localizer: tuple[str, dict[str, Any]], cache: Path | None,
          limit: int) -> list[dict[str, Any]]:
    """Every policy's pass scores and targets on every run."""
    rows = []
    for folder in runs:
        found = run_boxes(folder, localizer, cache, limit)
        random_init = float(paired_iou(found["boxes"][0], found["gt"]).mean())
        whole = float(whole_image_iou(found["gt"]).mean())
        for name, (from_zero, momentum) in POLICIES.items():
            scores = replay(found, from_zero, momentum)
            rows.append({"run": f"{folder.parent.name}/{folder.name}", "policy": name,
                         "scores": scores, "random_init": random_init, "whole": whole,
                         "targets": targets(scores, random_init, whole)})
    return rows


def report(rows: list[dict[str, Any]], label: str, localizer: tuple[str, dict[str, Any]],
           command: str) -> str:
    """Markdown: per policy, how many runs meet each target and the mean IoU per pass."""
    runs = sorted({r["run"] for r in rows})
    lines = [f"# Box-update policies replayed on {label}", "",
             f"- command: `{command}`",
             f"- localizer: `{localizer[0]}` {localizer[1]}",
             f"- runs ({len(runs)}): " + ", ".join(f"`{r}`" for r in runs),
             "- IoU with the training split's ground truth; 'random init' is the same "
             "localizer on the run's architecture at its seed's initialisation; the "
             "replay ignores the crops' feedback into the maps", "",
             "| policy | mean IoU per pass (mean over runs) | mean over passes | worst "
             "pass-to-pass change | first >= random init | no drop > 0.02 | never below "
             "whole image |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in POLICIES:
        mine = [r for r in rows if r["policy"] == name]
        width = min(len(r["scores"]) for r in mine)
        per_pass = [statistics.fmean(r["scores"][i] for r in mine) for i in range(width)]
        worst = min((b - a for r in mine for a, b in itertools.pairwise(r["scores"])),
                    default=0.0)
        met = {t: sum(r["targets"][t] for r in mine) for t in mine[0]["targets"]}
        lines.append(f"| {name} | " + " / ".join(f"{s:.3f}" for s in per_pass)
                     + f" | {statistics.fmean(per_pass):.3f} | {worst:+.3f} | "
                     + " | ".join(f"{met[t]}/{len(mine)}" for t in met) + " |")
    random_inits = [r["random_init"] for r in rows if r["policy"] == "fresh (today)"]
    lines += ["", f"Random init: {statistics.fmean(random_inits):.3f} (mean over runs); "
              f"whole image: {rows[0]['whole']:.3f}.", ""]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], label: str, path: Path) -> None:
    """Mean IoU per pass of every policy (mean over the runs), with the whole image and the
    random-init network as dashed lines."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for name in POLICIES:
        mine = [r["scores"] for r in rows if r["policy"] == name]
        width = min(len(s) for s in mine)
        start = 0 if POLICIES[name][0] else 1
        axis.plot(range(start, start + width),
                  [statistics.fmean(s[i] for s in mine) for i in range(width)],
                  marker="o", label=name)
    fresh = [r for r in rows if r["policy"] == "fresh (today)"]
    axis.axhline(statistics.fmean(r["random_init"] for r in fresh), color="grey",
                 linestyle="--", label="random-init network")
    axis.axhline(fresh[0]["whole"], color="black", linestyle=":", label="whole image")
    axis.set(xlabel="box pass (0: before epoch 1)", ylabel="mean IoU with ground truth",
             title=f"Box-update policies on {label}")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with snapshots")
    parser.add_argument("--label", default="these runs", help="the setting's name")
    parser.add_argument("--localizer", default=DEFAULT_LOCALIZER)
    parser.add_argument("--localizer-kwargs", type=yaml.safe_load, default=None,
                        help="YAML mapping (default: the default localizer's options)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--cache", type=Path, default=None, help="folder for computed boxes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kwargs = args.localizer_kwargs
    localizer = (args.localizer, dict(DEFAULT_LOCALIZER_OPTIONS) if kwargs is None else kwargs)
    rows = study(args.runs, localizer, args.cache, args.limit)
    text = report(rows, args.label, localizer, "python " + " ".join(sys.argv))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.label, args.out.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
