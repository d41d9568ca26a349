"""Views per second: the PIL multi-view pipeline (DataLoader, workers = cores) vs the
batched tensor pipeline (:class:`timm_ccrop.crop.augment.BatchedViews`) on CPU.

Rounds alternate the two (order flipped every round); the table gives the median and
min-max views/s over rounds and the median of per-round ratios.

    python scripts/bench_augment.py                      # 32 px and 224 px, 5 rounds
    python scripts/bench_augment.py --sizes 32 --rounds 3
    python scripts/bench_augment.py --gpu                # CUDA: data-on-device SSL step

``--gpu``: images/s of a ResNet-18 (CIFAR stem) SimCLR-style pretraining step (bf16
autocast, channels_last, batch 512, two views) with the batched views made from a
DeviceImageBank on the GPU, vs the same fwd+bwd on pre-made random tensors; target >= 0.8.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import timm
import torch
from torch.utils.data import DataLoader

import timm_ccrop  # noqa: F401  (registers resnet18_cifar)
from timm_ccrop import multi_view_transform
from timm_ccrop.crop.augment import BatchedViews, DeviceImageBank
from timm_ccrop.data.synthetic import SyntheticObjects

PRESETS = {32: ("cifar", 32), 224: ("imagenet", 256)}  # output size -> (preset, input side)


def pil_round(loader: DataLoader, batches: int) -> float:
    start, views = time.perf_counter(), 0
    iterator = iter(loader)
    for _ in range(batches):
        batch = next(iterator)
        views += sum(v.shape[0] for v in batch[0])
    return views / (time.perf_counter() - start)


def batched_round(views: BatchedViews, bank: DeviceImageBank, batch: int, batches: int,
                  generator: torch.Generator) -> float:
    start, count = time.perf_counter(), 0
    boxes = torch.tensor([[0.2, 0.15, 0.7, 0.8]]).expand(batch, 4)
    valid = torch.ones(batch, dtype=torch.bool)
    for _ in range(batches):
        index = torch.randint(0, len(bank), (batch,), generator=generator)
        out = views(bank.batch(index), boxes, valid, generator)
        count += sum(v.shape[0] for v in out)
    return count / (time.perf_counter() - start)


def bench_size(size: int, rounds: int, batch: int, batches: int, workers: int) -> list[str]:
    preset, side = PRESETS[size]
    dataset = SyntheticObjects(num_samples=max(batch * 4, 512), image_size=side, seed=0)
    images = dataset.images_uint8()  # renders and caches every image before workers fork
    dataset.transform = multi_view_transform(preset, crop_mode="ccrop")
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, drop_last=True)
    bank = DeviceImageBank(images, "cpu")
    views = BatchedViews.from_preset(preset, "ccrop")
    generator = torch.Generator().manual_seed(0)
    # Warm-up (worker start, first-call allocations).
    pil_round(loader, 1)
    batched_round(views, bank, batch, 1, generator)
    pil, ours, ratios = [], [], []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        result = {}
        for which in order:
            if which == 0:
                result[0] = pil_round(loader, batches)
            else:
                result[1] = batched_round(views, bank, batch, batches, generator)
        pil.append(result[0])
        ours.append(result[1])
        ratios.append(result[1] / result[0])

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):8.0f} ({min(values):.0f}-{max(values):.0f})"

    return [f"| {size:>4} px | {cell(pil)} | {cell(ours)} | {statistics.median(ratios):5.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |"]


def bench_gpu(rounds: int, steps: int, batch: int = 512) -> None:
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = timm.create_model("resnet18_cifar", num_classes=128).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dataset = SyntheticObjects(num_samples=10_000, image_size=32, seed=0)
    bank = DeviceImageBank(dataset.images_uint8(), device)
    views = BatchedViews.from_preset("cifar", "ccrop")
    corners = torch.rand(len(bank), 2, 2, device=device).sort(dim=1).values
    boxes = torch.cat([corners[:, 0], corners[:, 1]], dim=1)  # (x0, y0, x1, y1), ordered
    valid = torch.ones(len(bank), dtype=torch.bool, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    fixed = [torch.randn(batch, 3, 32, 32, device=device).contiguous(
        memory_format=torch.channels_last) for _ in range(2)]

    def step(inputs: list[torch.Tensor]) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            z = [nnf_normalize(model(x)) for x in inputs]
            loss = -(z[0] * z[1]).sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def nnf_normalize(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x.float(), dim=1)

    def with_data() -> None:
        index = torch.randint(0, len(bank), (batch,), device=device, generator=generator)
        out = views(bank.batch(index), boxes[index], valid[index], generator)
        step([v.contiguous(memory_format=torch.channels_last) for v in out])

    def pure() -> None:
        step(fixed)

    def rate(function) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            function()
        torch.cuda.synchronize()
        return steps * batch / (time.perf_counter() - start)

    rate(with_data), rate(pure)  # warm-up
    data, base, ratios = [], [], []
    for r in range(rounds):
        pair = (with_data, pure) if r % 2 == 0 else (pure, with_data)
        got = {f: rate(f) for f in pair}
        data.append(got[with_data])
        base.append(got[pure])
        ratios.append(got[with_data] / got[pure])
    print(f"GPU {torch.cuda.get_device_name()}: ResNet-18 CIFAR, batch {batch}, bf16, "
          "channels_last, two views")
    print(f"  data on device + batched views: {statistics.median(data):.0f} img/s "
          f"({min(data):.0f}-{max(data):.0f})")
    print(f"  pure fwd+bwd on random tensors: {statistics.median(base):.0f} img/s "
          f"({min(base):.0f}-{max(base):.0f})")
    print(f"  ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}), "
          "target >= 0.8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224], choices=[32, 224])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=None, help="default: 512 at 32, 64 at 224")
    parser.add_argument("--batches", type=int, default=None, help="batches per round")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the batched pipeline (default 1: on a shared "
                             "2-core box 2 threads oversubscribe and run 2-20x slower)")
    parser.add_argument("--gpu", action="store_true", help="run the CUDA section instead")
    parser.add_argument("--steps", type=int, default=50, help="--gpu: steps per round")
    args = parser.parse_args()
    if args.gpu:
        bench_gpu(args.rounds, args.steps)
        return
    torch.set_num_threads(args.threads)
    print(f"CPU: {os.cpu_count()} cores, {args.workers} DataLoader workers, "
          f"{torch.get_num_threads()} torch threads, {args.rounds} rounds\n")
    print("| size | PIL views/s median (min-max) | batched views/s median (min-max) "
          "| ratio median (min-max) |")
    print("|---|---|---|---|")
    for size in args.sizes:
        batch = args.batch or (512 if size == 32 else 64)
        batches = args.batches or (4 if size == 32 else 2)
        for line in bench_size(size, args.rounds, batch, batches, args.workers):
            print(line, flush=True)


if __name__ == "__main__":
    main()
