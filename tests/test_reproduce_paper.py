"""scripts/reproduce_paper.py: the Table 1 driver (dry run, two tiny cells end to end,
resume, missing data)."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from timm_ccrop.config import list_recipes

from .fixtures import write_cifar10
from .helpers import load_script

CELLS = ["cifar10-simclr-rcrop", "cifar10-simclr-ccrop"]
TINY = ["--epochs", "1", "--override", "model=resnet_tiny_cifar", "--override", "batch_size=32",
        "--override", "num_workers=0", "--override", "knn_every=0", "--override", "pictures=0",
        "--override", "progress=false", "--override", "save_every=1"]
EVAL_ARGS = "--eval-args=--epochs 1 --linear-mode fast --batch-size 32 --num-workers 0 " \
            "--no-progress"


def load_reproduce_paper():
    return load_script("reproduce_paper")


@pytest.fixture(scope="module")
def repro():
    return load_reproduce_paper()


def test_dry_run_prints_every_cell(repro, tmp_path, capsys):
    launcher = "accelerate launch --multi_gpu --num_processes 8"
    assert repro.main(["--dry-run", "--out", str(tmp_path / "out"), "--data-root",
                       str(tmp_path / "data"), "--launcher", launcher, "--epochs", "3",
                       "--override", "mixed_precision=bf16"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    commands = [shlex.split(line) for line in lines]
    pretrains = [c for c in commands if "pretrain" in c]
    evals = [c for c in commands if "eval" in c]
    assert len(pretrains) == 32 and len(evals) == 32 and len(commands) == 64
    recipes = {c[c.index("--recipe") + 1] for c in pretrains}
    expected = {f"{d}-{m}-{c}" for d in ("cifar10", "cifar100", "tiny-imagenet", "stl10")
                for m in ("simclr", "moco", "byol", "simsiam") for c in ("rcrop", "ccrop")}
    assert recipes == expected and expected <= set(list_recipes())
    for command in pretrains:
        prefix = shlex.split(launcher) + ["-m", "timm_ccrop.cli", "pretrain"]
        assert command[:len(prefix)] == prefix
        recipe = command[command.index("--recipe") + 1]
        dataset = recipe.rsplit("-", 2)[0]
        assert command[command.index("--data") + 1] == f"{dataset}:{tmp_path / 'data' / dataset}"
        assert command[command.index("--output") + 1] == str(tmp_path / "out" / "runs" / recipe)
        assert command[command.index("--resume") + 1] == "auto"
        assert command[command.index("--epochs") + 1] == "3"
        assert command[command.index("--mixed-precision") + 1] == "bf16"
    for command in evals:
        assert command[command.index("--protocol") + 1] == "linear"
        assert command[command.index("--linear-mode") + 1] == "paper"
    assert not (tmp_path / "out").exists()  # a dry run touches nothing


def test_paper_numbers_are_table1(repro):
    assert len(repro.PAPER_TABLE1) == 32
    assert repro.PAPER_TABLE1[("simclr", "cifar10", "rcrop")] == 89.63
    assert repro.PAPER_TABLE1[("byol", "stl10", "ccrop")] == 92.42
    assert repro.PAPER_TABLE1[("simsiam", "tiny-imagenet", "rcrop")] == 43.03
    assert repro.PAPER_TABLE1[("moco", "cifar100", "ccrop")] == 57.65


def test_missing_dataset_fails_before_running(repro, tmp_path, capsys):
    (tmp_path / "data" / "cifar10").mkdir(parents=True)  # empty: not a dataset
    code = repro.main(["--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data"),
                       "--cells", "cifar10-simclr-rcrop,stl10-byol-ccrop", "--launcher",
                       "python"])
    err = capsys.readouterr().err
    assert code == 2 and "missing datasets cifar10, stl10" in err
    assert not (tmp_path / "out").exists()
    assert repro.main(["--dry-run", "--cells", "cifar10-nope-rcrop"]) == 2
    assert "unknown cells" in capsys.readouterr().err


@pytest.mark.slow
def test_two_cells_end_to_end_and_resume(repro, tmp_path, capsys):
    write_cifar10(tmp_path / "data" / "cifar10", n_train=64, n_test=32)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--data-root", str(tmp_path / "data"), "--launcher", "python",
            "--cells", ",".join(CELLS), *TINY, EVAL_ARGS]
    assert repro.main(argv) == 0
    printed = capsys.readouterr().out
    for cell in CELLS:
        folder = out / "runs" / cell
        assert (folder / "backbone" / "model.safetensors").is_file()
        report = json.loads((folder / "eval.json").read_text())
        assert 0 <= report["linear"]["test"]["top1"] <= 100
    table = (out / "table.md").read_text()
    assert table in printed
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.splitlines() if line.startswith("| ")}
    assert rows["Method"] == ["C10 R", "C10 C", "C100 R", "C100 C", "Tiny R", "Tiny C",
                              "STL R", "STL C"]
    assert list(rows)[1:] == ["SimCLR", "MoCo", "BYOL", "SimSiam"]
    assert re.fullmatch(r"\d+\.\d\d \(89\.63\)", rows["SimCLR"][0])
    assert re.fullmatch(r"\d+\.\d\d \(90\.08\)", rows["SimCLR"][1])
    assert rows["SimCLR"][2] == "not run (60.30)"
    assert rows["BYOL"][7] == "not run (92.42)"
    assert sum(cell.startswith("not run") for row in list(rows.values())[1:]
               for cell in row) == 30
    assert "2/32 cells measured" in table

    # Rerun: both cells are finished and skipped (no subprocess at all).
    stamps = {c: (out / "runs" / c / "eval.json").stat().st_mtime_ns for c in CELLS}
    assert repro.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 2 and "pretrain:" not in printed
    assert stamps == {c: (out / "runs" / c / "eval.json").stat().st_mtime_ns for c in CELLS}

    # An exported cell without eval.json is only evaluated, not retrained.
    (out / "runs" / CELLS[0] / "eval.json").unlink()
    assert repro.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{CELLS[0]}: eval:" in printed and "pretrain:" not in printed
    assert (out / "runs" / CELLS[0] / "eval.json").is_file()


@pytest.mark.distributed
def test_one_cell_under_accelerate_launch_with_two_cpu_processes(repro, tmp_path, capsys,
                                                                 monkeypatch):
    # The default launcher path: `accelerate launch` with two gloo processes on the CPU
    # (ACCELERATE_USE_CPU makes --multi_gpu start CPU processes that talk to each other).
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    write_cifar10(tmp_path / "data" / "cifar10", n_train=64, n_test=32)
    out = tmp_path / "out"
    launcher = "accelerate launch --multi_gpu --num_processes 2 --num_machines 1 " \
               "--mixed_precision no --dynamo_backend no"
    assert repro.main(["--out", str(out), "--data-root", str(tmp_path / "data"),
                       "--launcher", launcher, "--cells", CELLS[1], *TINY, EVAL_ARGS]) == 0
    folder = out / "runs" / CELLS[1]
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["processes"] == 2
    assert (folder / "backbone" / "model.safetensors").is_file()
    assert 0 <= json.loads((folder / "eval.json").read_text())["linear"]["test"]["top1"] <= 100
    assert "1/32 cells measured" in (out / "table.md").read_text()


@pytest.mark.slow
def test_failing_cell_names_it(repro, tmp_path, capsys):
    write_cifar10(tmp_path / "data" / "cifar10", n_train=8, n_test=4)
    code = repro.main(["--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data"),
                       "--launcher", "python", "--cells", "cifar10-moco-ccrop",
                       "--override", "model=no_such_model_xyz", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "cell cifar10-moco-ccrop failed in pretrain" in err
    assert (tmp_path / "out" / "table.md").is_file()
