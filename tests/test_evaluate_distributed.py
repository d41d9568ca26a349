"""Evaluation under 2 CPU processes (gloo) equals 1 process: feature extraction gathers by
sample index, and the paper-mode probe (head in DDP) equals the single-process fast probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from accelerate import Accelerator

from timm_ccrop.data.synthetic import SyntheticObjects
from timm_ccrop.evaluation import (
    ProbeRecipe,
    extract_features,
    linear_probe_features,
    linear_probe_images,
)
from timm_ccrop.localize import eval_transform

from .distributed import spawn_launcher

SIZE = 16
TRANSFORM_ARGS = (SIZE, (0.5,) * 3, (0.5,) * 3)
# 32 probe samples = 4 global batches of 8: no partial batch that Accelerate would even out
RECIPE = ProbeRecipe(epochs=3, batch_size=8, lr=0.5)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=0).eval()


def make_datasets() -> tuple[SyntheticObjects, SyntheticObjects]:
    # 37 extraction samples: uneven shards and last batches
    return (SyntheticObjects(num_samples=37, image_size=SIZE, num_classes=4, seed=1),
            SyntheticObjects(num_samples=32, image_size=SIZE, num_classes=4, seed=1,
                             split="test"))


def two_process_evaluation(out_dir: str) -> None:
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2, "spawn_launcher must start two talking processes"
    model, (extract_set, probe_set) = make_model(), make_datasets()
    transform = eval_transform(*TRANSFORM_ARGS)
    counters: dict[str, int] = {}
    features, targets = extract_features(model, extract_set, transform, batch_size=3,
                                         accelerator=accelerator, progress=False,
                                         counters=counters)
    probe = linear_probe_images(model, probe_set, 4, transform, RECIPE,
                                {"test": (features, targets)}, seed=5, accelerator=accelerator)
    if accelerator.is_main_process:
        torch.save({"features": features, "targets": targets, "counters": counters,
                    "head": probe.head.state_dict(), "accuracy": probe.accuracy,
                    "loss": [row["loss"] for row in probe.history]},
                   Path(out_dir) / "two_process.pt")
    accelerator.wait_for_everyone()


def test_two_processes_equal_one(tmp_path: Path) -> None:
    model, (extract_set, probe_set) = make_model(), make_datasets()
    transform = eval_transform(*TRANSFORM_ARGS)
    features, targets = extract_features(model, extract_set, transform, batch_size=8,
                                         progress=False)
    probe_features, probe_labels = extract_features(model, probe_set, transform,
                                                    progress=False)
    fast = linear_probe_features(probe_features, probe_labels, 4, RECIPE,
                                 {"test": (features, targets)}, seed=5)

    spawn_launcher(two_process_evaluation, args=(str(tmp_path),), num_processes=2)
    result = torch.load(tmp_path / "two_process.pt", weights_only=True)
    assert torch.equal(result["targets"], targets)
    assert torch.allclose(result["features"], features, atol=1e-5)
    assert result["counters"] == {"skipped": 0}
    assert torch.allclose(result["head"]["weight"], fast.head.weight, atol=1e-4)
    assert torch.allclose(result["head"]["bias"], fast.head.bias, atol=1e-4)
    assert result["accuracy"] == fast.accuracy
    assert result["loss"] == pytest.approx([row["loss"] for row in fast.history], rel=1e-4)
