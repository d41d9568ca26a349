#!/usr/bin/env python
"""Learnability check for ``timm_ccrop.data.synthetic.SyntheticObjects`` (CPU, plain torch).

For each setting (default object sizes, and small off-centre objects) it reports:

(a) a small supervised CNN (3 conv stages 32-64-128, BN, ReLU, global pool) trained WITH the
    labels for a fixed wall-clock budget -> test accuracy (should be well above chance);
(b) raw-pixel kNN (cosine on standardised, flattened pixels) -> test accuracy (should be near
    chance: the dataset is not solvable by pixel matching);
(c) nearest-class-mean on RGB colour histograms -> test accuracy (colour is not tied to class).

Prints a markdown table; ``--json`` also writes the numbers, ``--samples-png`` a sample grid.

    python scripts/check_synthetic.py                  # ~3 min on a 2-core CPU
    python scripts/check_synthetic.py --train-seconds 10 --settings default   # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from timm_ccrop.data.synthetic import SyntheticObjects

SETTINGS = {
    # name: (SyntheticObjects kwargs, description)
    "default": ({}, "default: object_scale=(0.3, 0.55), center_bias=0"),
    "small": (
        {"object_scale": (0.2, 0.35), "center_bias": -0.5},
        "small off-centre: object_scale=(0.2, 0.35), center_bias=-0.5",
    ),
}


def small_cnn(num_classes: int) -> nn.Module:
    def stage(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    return nn.Sequential(
        *stage(3, 32), nn.MaxPool2d(2),
        *stage(32, 64), nn.MaxPool2d(2),
        *stage(64, 128), *stage(128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes),
    )


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    x = x_u8.float().div_(255.0)
    return (x - 0.5) / 0.25


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random translation (pad + crop, reflect) and horizontal flip, batched."""
    B, _, H, W = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=gen)
    ar = torch.arange(W)
    cols = (dx[:, None] + ar[None, :])[:, None, None, :].expand(B, 3, H + 2 * pad, W)
    xp = torch.gather(xp, 3, cols)
    rows = (dy[:, None] + torch.arange(H)[None, :])[:, None, :, None].expand(B, 3, H, W)
    out = torch.gather(xp, 2, rows)
    flip = torch.rand(B, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), bs):
        correct += (model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item()
    return correct / len(x)


def train_cnn(x_tr, y_tr, x_te, y_te, num_classes: int, seconds: float, seed: int,
              batch_size: int = 128, lr: float = 2e-3, epochs: float = 0.0):
    """Train for ``epochs`` epochs if > 0 (reproducible), else for ``seconds`` of wall clock;
    the learning-rate schedule (warm-up + cosine) follows whichever budget is used."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = small_cnn(num_classes).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    n = len(x_tr)
    total_steps = max(1, round(epochs * (n // batch_size))) if epochs > 0 else 0
    t0 = time.perf_counter()
    steps = epochs = 0
    seen = 0
    done = False
    while not done:
        perm = torch.randperm(n, generator=gen)
        model.train()
        for i in range(0, n - batch_size + 1, batch_size):
            elapsed = time.perf_counter() - t0
            frac = steps / total_steps if total_steps else elapsed / seconds
            if frac >= 1.0:
                done = True
                break
            warm = min(1.0, (steps + 1) / 50)
            for g in opt.param_groups:  # warm-up, then cosine decay over the wall-clock budget
                g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * frac))
            idx = perm[i:i + batch_size]
            xb = augment(x_tr[idx], gen).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), y_tr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            seen += len(idx)
        else:
            epochs += 1
    train_time = time.perf_counter() - t0
    x_te_cl = x_te.contiguous(memory_format=torch.channels_last)
    acc = evaluate(model, x_te_cl, y_te)
    return {"test_acc": acc, "train_seconds": train_time, "steps": steps,
            "epochs": seen / n, "final_loss": float(loss.item())}


def knn_pixels(x_tr, y_tr, x_te, y_te, num_classes: int, k: int = 20) -> float:
    """Cosine kNN on flattened pixels, standardised per dimension with train statistics."""
    a = x_tr.reshape(len(x_tr), -1).double()
    b = x_te.reshape(len(x_te), -1).double()
    mu, sd = a.mean(0), a.std(0).clamp_min(1e-6)
    a = F.normalize((a - mu) / sd, dim=1)
    b = F.normalize((b - mu) / sd, dim=1)
    return _knn_vote(a, y_tr, b, y_te, num_classes, k)


def _knn_vote(a, y_tr, b, y_te, num_classes, k):
    sim = b @ a.T
    top, idx = sim.topk(k, dim=1)
    votes = torch.zeros(len(b), num_classes, dtype=torch.float64)
    votes.scatter_add_(1, y_tr[idx], torch.exp(top / 0.07))  # similarity-weighted vote
    return (votes.argmax(1) == y_te).double().mean().item()


def colour_hist(x_u8: torch.Tensor, bins: int = 4) -> torch.Tensor:
    q = (x_u8.long() * bins) // 256  # (N, 3, H, W)
    code = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    h = torch.zeros(len(x_u8), bins ** 3, dtype=torch.float64)
    h.scatter_add_(1, code.reshape(len(x_u8), -1), torch.ones(code.reshape(len(x_u8), -1).shape,
                                                              dtype=torch.float64))
    return h / h.sum(1, keepdim=True)


def colour_ncm(x_tr, y_tr, x_te, y_te, num_classes: int) -> float:
    h_tr, h_te = colour_hist(x_tr), colour_hist(x_te)
    means = torch.stack([h_tr[y_tr == c].mean(0) for c in range(num_classes)])
    d = torch.cdist(h_te, means)
    return (d.argmin(1) == y_te).double().mean().item()


def save_sample_grid(ds: SyntheticObjects, path: str, n: int = 64, upscale: int = 4) -> None:
    from PIL import Image, ImageDraw

    cols = int(math.ceil(math.sqrt(n)))
    rows_ = int(math.ceil(n / cols))
    S = ds.image_size * upscale
    pad = 2
    grid = Image.new("RGB", (cols * (S + pad) - pad, rows_ * (S + pad) - pad + 0), "white")
    boxes = ds.gt_boxes[:n].numpy() * S
    for k in range(n):
        img, target = ds[k]
        im = img.resize((S, S), Image.NEAREST)
        d = ImageDraw.Draw(im)
        x0, y0, x1, y1 = boxes[k]
        d.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 0, 0))
        d.text((3, 2), ds.classes[target], fill=(255, 255, 255), stroke_width=1,
               stroke_fill=(0, 0, 0))
        grid.paste(im, ((k % cols) * (S + pad), (k // cols) * (S + pad)))
    grid.save(path, optimize=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-samples", type=int, default=5000)
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clutter", type=float, default=1.0)
    p.add_argument("--settings", default="default,small",
                   help=f"comma-separated subset of {sorted(SETTINGS)}")
    p.add_argument("--train-seconds", type=float, default=60.0,
                   help="wall-clock budget of the supervised CNN per setting")
    p.add_argument("--epochs", type=float, default=0.0,
                   help="if > 0, train the CNN for this many epochs instead of --train-seconds "
                        "(reproducible when other processes share the CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--knn-k", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    p.add_argument("--samples-png", default="", help="write an 8x8 sample grid with boxes")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    for name in names:
        if name not in SETTINGS:
            p.error(f"unknown setting {name!r}; choose from {sorted(SETTINGS)}")
    chance = 1.0 / args.num_classes
    print(f"# SyntheticObjects learnability check  (torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
          f"{platform.processor() or platform.machine()})")
    results = []
    for name in names:
        kwargs, desc = SETTINGS[name]
        common = dict(image_size=args.image_size, num_classes=args.num_classes, seed=args.seed,
                      clutter=args.clutter, **kwargs)
        t0 = time.perf_counter()
        tr = SyntheticObjects(args.train_samples, split="train", **common)
        te = SyntheticObjects(args.test_samples, split="test", **common)
        xtr_u8, xte_u8 = tr.images_uint8(), te.images_uint8()
        render_s = time.perf_counter() - t0
        ms_per_img = 1e3 * render_s / (len(tr) + len(te))
        ytr = torch.tensor(tr.targets)
        yte = torch.tensor(te.targets)
        if args.samples_png and name == names[0]:
            save_sample_grid(te, args.samples_png)
        xtr, xte = to_float(xtr_u8), to_float(xte_u8)
        cnn = train_cnn(xtr, ytr, xte, yte, args.num_classes, args.train_seconds, args.seed,
                        args.batch_size, args.lr, args.epochs)
        knn = knn_pixels(xtr, ytr, xte, yte, args.num_classes, args.knn_k)
        ncm = colour_ncm(xtr_u8, ytr, xte_u8, yte, args.num_classes)
        row = {"setting": name, "description": desc, "render_ms_per_image": ms_per_img,
               "cnn": cnn, "knn_pixels": knn, "colour_hist_ncm": ncm, "chance": chance}
        results.append(row)
        print(f"- {desc}: rendered {len(tr)}+{len(te)} images in {render_s:.2f}s "
              f"({ms_per_img:.3f} ms/img); CNN {cnn['epochs']:.1f} epochs in "
              f"{cnn['train_seconds']:.0f}s, final loss {cnn['final_loss']:.3f}", flush=True)

    print()
    budget = f"{args.epochs:g} epochs" if args.epochs > 0 else f"{args.train_seconds:.0f} s"
    print(f"| setting | supervised CNN ({budget}) | CNN train time | raw-pixel kNN "
          f"(k={args.knn_k}) | colour-hist NCM | chance |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['description']} | {100 * r['cnn']['test_acc']:.1f}% "
              f"| {r['cnn']['train_seconds']:.0f} s ({r['cnn']['epochs']:.1f} ep) "
              f"| {100 * r['knn_pixels']:.1f}% | {100 * r['colour_hist_ncm']:.1f}% "
              f"| {100 * r['chance']:.1f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
