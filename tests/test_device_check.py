"""scripts/device_check.py on a CPU with tiny settings: the GPU's one command cannot rot.

One full tiny run (about 30 s on one core) is shared by the tests; two more runs of a
single check show that a failing check is reported and makes the exit code non-zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import load_script

STATUSES = {"passed", "failed", "warning", "skipped"}


@pytest.fixture(scope="module")
def device_check() -> ModuleType:
    return load_script("device_check")


def run(module: ModuleType, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """``main`` with tiny CPU settings (environment restored after); its code and JSON."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACCELERATE_USE_CPU", "1")
        patch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        code = module.main(["--out", str(out), "--device", "cpu", "--tiny", *extra])
    return code, json.loads((out / "device-check.json").read_text())


@pytest.fixture(scope="module")
def report(device_check: ModuleType, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[int, dict[str, Any], Path]]:
    out = tmp_path_factory.mktemp("device-check")
    code, record = run(device_check, out)
    yield code, record, out


def checks(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in record["checks"]}


def test_every_check_runs_and_reports_a_status(report: tuple, device_check: ModuleType) -> None:
    code, record, out = report
    by_name = checks(record)
    expected = [f"train:{m}:{p}" for m in device_check.METHODS for p in device_check.PRECISIONS]
    expected += ["channels_last", "compile", "step_ratio", "box_pass", "loader", "memory"]
    assert list(by_name) == expected
    assert all(check["status"] in STATUSES and check["detail"] for check in by_name.values())
    failed = [name for name, check in by_name.items() if check["status"] == "failed"]
    assert code == 0 and not failed, [by_name[name]["detail"] for name in failed]
    text = (out / "device-check.md").read_text()
    environment = record["environment"]
    for key in ("device", "date_utc", "torch", "timm", "accelerate", "timm_ccrop"):
        assert environment[key] and str(environment[key]) in text
    assert all(name in text for name in expected)


def test_resume_is_exact_on_cpu_for_every_method(report: tuple,
                                                 device_check: ModuleType) -> None:
    by_name = checks(report[1])
    for method in device_check.METHODS:
        for precision in ("fp32", "bf16"):
            numbers = by_name[f"train:{method}:{precision}"]["numbers"]
            assert numbers["resume_exact"] and numbers["resume_max_abs_diff"] == 0.0
            assert len(numbers["box_pass_seconds"]) == 2  # the default localizer ran twice
            assert len(numbers["losses"]) == 3


def test_what_a_cpu_cannot_check_is_skipped_with_the_reason(report: tuple) -> None:
    by_name = checks(report[1])
    assert by_name["train:moco:fp16"]["status"] == "skipped"
    assert "CUDA" in by_name["train:moco:fp16"]["detail"]
    assert by_name["compile"]["status"] == "skipped"
    assert "test_cuda_paths" in by_name["compile"]["detail"]
    assert by_name["memory"]["status"] == "skipped"
    assert "CUDA" in by_name["memory"]["detail"]


def test_the_measurements_are_recorded(report: tuple) -> None:
    by_name = checks(report[1])
    assert by_name["channels_last"]["status"] == "passed"  # it exports its backbone now
    step = by_name["step_ratio"]["numbers"]
    assert step["full_images_per_s"] > 0 and step["model_bound_images_per_s"] > 0
    boxes = by_name["box_pass"]["numbers"]
    assert boxes["peak_over_forward"] > 0 and boxes["paper_over_forward"] > 0
    loader = by_name["loader"]["numbers"]
    for name in ("ccrop_pil", "ccrop_device", "timm_rrc"):
        assert loader[name]["images_per_s"] > 0 and 0 <= loader[name]["wait_share"] <= 1


def test_a_failing_check_is_reported_and_fails_the_command(
        device_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(settings: Any) -> Any:
        raise RuntimeError("the device lost its memory")

    monkeypatch.setattr(device_check, "check_step_ratio", broken)
    code, record = run(device_check, tmp_path, "--only", "step_ratio,memory")
    by_name = checks(record)
    assert code == 1 and list(by_name) == ["step_ratio", "memory"]
    assert by_name["step_ratio"]["status"] == "failed"
    assert "the device lost its memory" in by_name["step_ratio"]["detail"]
    assert by_name["memory"]["status"] == "skipped"  # the others still run
    assert "| step_ratio | failed |" in (tmp_path / "device-check.md").read_text()


def test_an_inexact_resume_on_cpu_is_a_failure(
        device_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_check, "state_difference", lambda first, second: (0.5, False))
    code, record = run(device_check, tmp_path, "--only", "train:simclr:fp32")
    check = checks(record)["train:simclr:fp32"]
    assert code == 1 and check["status"] == "failed" and "not bit-identical" in check["detail"]
