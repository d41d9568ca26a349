"""The package's CUDA-only branches, exercised on a CPU where a test can be written.

- ``--channels-last`` (setup, epoch, the export at the end of a run);
- ``--compile`` (trainer), with dynamo's eager backend instead of inductor's C++ build;
- a grad scaler (what Accelerate makes for fp16 on CUDA): scaled steps, its state in the
  checkpoint and an exact resume, with torch's CPU GradScaler in its place;
- SyncBatchNorm conversion on CUDA with several processes, never otherwise;
- pinned loader memory on CUDA, and the evaluation's free-memory check on CUDA.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import timm
import torch

import timm_ccrop  # noqa: F401  (registers the architectures)
from timm_ccrop.config import TrainConfig
from timm_ccrop.evaluation.features import fits_on
from timm_ccrop.runs import RunFolder, read_checkpoint
from timm_ccrop.train import train, trainer
from timm_ccrop.train.setup import build_data, build_method_for


@pytest.fixture(autouse=True)
def cpu_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")


def tiny(output: Path, **changes: Any) -> TrainConfig:
    """Three short epochs of test_resnet, box passes after epochs 1 and 2."""
    values = dict(model="test_resnet", data="synthetic:num_samples=64,image_size=32",
                  image_size=32, localizer_kwargs={"background": "median", "stage": -3},
                  batch_size=16, epochs=3, box_warmup_epochs=1,
                  loc_interval=1, num_workers=0, knn_every=0, pictures=0, progress=False,
                  keep_checkpoints=3, output=str(output))
    return TrainConfig(**{**values, **changes})


def final_state(run: Path) -> dict[str, torch.Tensor]:
    state, _ = read_checkpoint(run)
    return {**state["model"], "boxes": state["boxes"]["boxes"]}


def assert_same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_a_channels_last_run_trains_and_exports_its_backbone(tmp_path: Path) -> None:
    result = train(tiny(tmp_path / "run", channels_last=True))
    assert result.export is not None and result.epochs_done == 3
    loaded = timm.create_model(f"local-dir:{result.export}", pretrained=True).eval()
    state = final_state(tmp_path / "run")
    trained = timm.create_model("test_resnet", num_classes=0).eval()
    trained.load_state_dict({k[len("backbone."):]: v for k, v in state.items()
                             if k.startswith("backbone.")})
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), trained(x))


def test_a_compiled_run_saves_plain_keys_and_resumes_without_compile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Any] = []
    real = torch.compile

    def eager_compile(model: torch.nn.Module, **kwargs: Any) -> Any:
        compiled.append(model)
        return real(model, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    config = tiny(tmp_path / "compiled", compile=True, epochs=2)
    result = train(config)
    assert compiled and result.epochs_done == 2
    state = final_state(tmp_path / "compiled")
    assert not any("_orig_mod" in key for key in state)
    first = RunFolder(tmp_path / "compiled").checkpoint_path(1)
    resumed = train(config.replace(compile=False, output=str(tmp_path / "plain")), resume=first)
    assert resumed.epochs_done == 2 and len(compiled) == 1


def test_a_grad_scaler_is_used_checkpointed_and_resumed_exactly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scalers: list[torch.amp.GradScaler] = []
    real = trainer._accelerator

    def with_scaler(config: TrainConfig) -> Any:
        accelerator = real(config)
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12,
                                                  growth_interval=3)
        scalers.append(accelerator.scaler)
        return accelerator

    monkeypatch.setattr(trainer, "_accelerator", with_scaler)
    train(tiny(tmp_path / "reference"))
    saved, _ = read_checkpoint(RunFolder(tmp_path / "reference").checkpoint_path(1))
    assert saved["scaler"] is not None and saved["scaler"]["scale"] > 2.0 ** 12  # it grew
    assert scalers[0].get_scale() != 2.0 ** 12
    train(tiny(tmp_path / "resumed"), resume=RunFolder(tmp_path / "reference").checkpoint_path(1))
    assert scalers[1].get_scale() == scalers[0].get_scale()  # the state was loaded
    assert_same(final_state(tmp_path / "reference"), final_state(tmp_path / "resumed"))


@pytest.mark.parametrize(("device", "processes", "converted"), [
    ("cuda", 2, True), ("cuda", 1, False), ("cpu", 2, False)])
def test_syncbn_only_on_cuda_with_several_processes(device: str, processes: int,
                                                    converted: bool) -> None:
    config = tiny(Path("unused"), method="simclr")
    accelerator = SimpleNamespace(device=torch.device(device), num_processes=processes)
    data = SimpleNamespace(image_size=32, dataset=range(64), localizer=None)
    method = build_method_for(config, accelerator, data)
    kinds = {type(module) for module in method.modules()}
    assert (torch.nn.SyncBatchNorm in kinds) is converted
    if converted:
        assert torch.nn.BatchNorm2d not in kinds


def test_cuda_loaders_pin_memory(tmp_path: Path) -> None:
    config = tiny(tmp_path, augment_on="loader")
    for device, pinned in (("cuda", True), ("cpu", False)):
        stand_in = SimpleNamespace(device=torch.device(device), num_processes=1)
        assert build_data(config, stand_in).loader.pin_memory is pinned


def test_the_free_memory_check_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info",
                        functools.partial(lambda device: (8 << 30, 80 << 30)))
    assert fits_on(torch.device("cuda"), 4 << 30)
    assert not fits_on(torch.device("cuda"), (4 << 30) + 1)
    assert fits_on(torch.device("cpu"), 1 << 40)
