"""Two CPU processes (gloo, DDP) with half the batch each take the same steps as one process.

SimCLR's negatives are gathered with gradient, MoCo's keys are shuffled across processes
and enqueued in rank order: an error in either shows up as different weights or queues.
The backbone and heads have no BatchNorm, so the per-process statistics cannot differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from accelerate import Accelerator
from torch.nn.parallel import DistributedDataParallel

from timm_ccrop.methods import SiameseMethod, build_method
from timm_ccrop.utils.distributed import gather_with_grad, rank, world_size

from .distributed import spawn_launcher

pytestmark = pytest.mark.distributed

SIZE = 32
BATCH = 8  # global; 4 per process
STEPS = 2
SETTINGS = {
    "simclr": dict(hidden_dim=32, out_dim=16, temperature=0.5),
    # 12 keys, 8 per step: the second step wraps around the end of the queue.
    "moco": dict(hidden_dim=32, out_dim=16, queue_size=12, momentum=0.9, shuffle_bn=True),
}


def make_method(name: str) -> SiameseMethod:
    torch.manual_seed(0)  # the same initial weights in every process
    backbone = timm.create_model("test_vit", num_classes=0, img_size=SIZE)
    return build_method(name, backbone, **SETTINGS[name])


def make_batches() -> list[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [[torch.randn(BATCH, 3, SIZE, SIZE, generator=generator) for _ in range(2)]
            for _ in range(STEPS)]


def uneven_images() -> torch.Tensor:
    return torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


def train(model: torch.nn.Module, method: SiameseMethod, batches: list[list[torch.Tensor]],
          backward=None) -> None:
    optimizer = torch.optim.SGD(method.parameter_groups(weight_decay=0.0), lr=1.0)
    for step, views in enumerate(batches):
        optimizer.zero_grad()
        loss = model(views)["loss"]
        (backward or torch.Tensor.backward)(loss)
        optimizer.step()
        method.on_after_optimizer_step((step + 1) / len(batches))


def two_process_run(out_dir: str) -> None:
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2 and world_size() == 2
    index = rank()
    results: dict[str, object] = {}
    for name in SETTINGS:
        method = make_method(name)
        model = accelerator.prepare(method)
        assert isinstance(model, DistributedDataParallel)
        if name == "moco":  # not broadcast by DDP: the queues must stay equal on their own
            assert {"queue", "queue_ptr"} <= model.parameters_to_ignore
        local = [[view[index * BATCH // 2:(index + 1) * BATCH // 2] for view in views]
                 for views in make_batches()]
        train(model, method, local, backward=accelerator.backward)
        results[name] = {k: v.detach().clone() for k, v in method.state_dict().items()}

    # Uneven batches (3 and 5 rows): MoCo's shuffled keys come back in order...
    rows = 3 if index == 0 else 5
    images = uneven_images()[:3] if index == 0 else uneven_images()[3:]
    keys, all_keys = make_method("moco").keys(images)
    results["moco_keys"] = {"local": keys, "global": all_keys}
    # ...and the padded gather drops the padding; its backward sums over processes.
    local = torch.arange(rows * 2, dtype=torch.float32).reshape(rows, 2).add(10 * index)
    local.requires_grad_(True)
    gathered = gather_with_grad(local)
    weights = torch.arange(16, dtype=torch.float32).reshape(8, 2)
    (gathered * weights).sum().backward()  # the same loss on both processes
    results["gather"] = {"gathered": gathered.detach(), "grad": local.grad}
    torch.save(results, Path(out_dir) / f"rank{index}.pt")
    accelerator.wait_for_everyone()


def test_two_processes_equal_one_process(tmp_path: Path) -> None:
    spawn_launcher(two_process_run, args=(str(tmp_path),), num_processes=2)
    ranks = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in range(2)]

    for name in SETTINGS:
        initial = make_method(name).state_dict()
        method = make_method(name)
        train(method, method, make_batches())
        expected = method.state_dict()
        moved = [k for k in expected if not torch.equal(expected[k], initial[k])]
        assert any(k.startswith("backbone.") for k in moved), "the step changed nothing"
        assert any(k.startswith("backbone_momentum.") for k in moved) == (name == "moco")
        for index, result in enumerate(ranks):
            got = result[name]
            assert set(got) == set(expected)
            for key, value in expected.items():
                torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5,
                                           msg=f"{name} rank {index}: {key}")
        if name == "moco":
            assert int(expected["queue_ptr"]) == (STEPS * BATCH) % SETTINGS["moco"]["queue_size"]

    with torch.no_grad():
        keys = make_method("moco").keys(uneven_images())[0]
    for index, result in enumerate(ranks):
        torch.testing.assert_close(result["moco_keys"]["global"], keys, rtol=1e-4, atol=1e-6)
        own = keys[:3] if index == 0 else keys[3:]
        torch.testing.assert_close(result["moco_keys"]["local"], own, rtol=1e-4, atol=1e-6)

    # gather: rank order, padding dropped; each rank's gradient is the sum of both losses'.
    gathered = torch.cat([torch.arange(6.0).reshape(3, 2), torch.arange(10.0).reshape(5, 2) + 10])
    weights = torch.arange(16, dtype=torch.float32).reshape(8, 2)
    for index, result in enumerate(ranks):
        assert torch.equal(result["gather"]["gathered"], gathered)
        own = weights[:3] if index == 0 else weights[3:]
        assert torch.equal(result["gather"]["grad"], 2 * own)
