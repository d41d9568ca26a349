#!/usr/bin/env python
"""Reproduce Table 1 of ContrastiveCrop: 4 methods x 4 datasets x {rcrop, ccrop} = 32 cells.

Every cell is one zoo recipe (``zoo/recipes/<dataset>-<method>-<crop>.yaml``): it is
pretrained with ``timm-ccrop pretrain`` under a launcher (default ``accelerate launch``),
then its backbone is evaluated with ``timm-ccrop eval --protocol linear --linear-mode
paper``. The measured linear top-1 is written beside the paper's number in a markdown
table (``OUT/table.md``, also printed).

Resumable cell by cell: a cell whose run folder ``OUT/runs/<cell>`` holds a finished
export (``backbone/``) and an ``eval.json`` with a linear result is skipped; a cell with an
export but no result is only evaluated; any other cell is (re)started with
``--resume auto``, which continues from its newest checkpoint.

Examples::

    # all 32 cells on 8 GPUs, datasets at /data/{cifar10,cifar100,tiny-imagenet,stl10}
    python scripts/reproduce_paper.py --data-root /data --out repro \\
        --launcher "accelerate launch --multi_gpu --num_processes 8"
    # what would run
    python scripts/reproduce_paper.py --data-root /data --out repro --dry-run
    # two cells, short schedule, extra overrides; eval options after '=' (they start with --)
    python scripts/reproduce_paper.py --data-root /data --out quick --epochs 100 \\
        --cells cifar10-simclr-rcrop,cifar10-simclr-ccrop --override mixed_precision=bf16 \\
        --eval-args="--mixed-precision bf16"
    # no accelerate at all (one process): --launcher python
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

METHODS = ("simclr", "moco", "byol", "simsiam")
#: Paper order of Table 1's columns; also the folder names under --data-root.
DATASETS = ("cifar10", "cifar100", "tiny-imagenet", "stl10")
CROPS = ("rcrop", "ccrop")
DATASET_LABELS = {"cifar10": "C10", "cifar100": "C100", "tiny-imagenet": "Tiny",
                  "stl10": "STL"}
METHOD_LABELS = {"simclr": "SimCLR", "moco": "MoCo", "byol": "BYOL", "simsiam": "SimSiam"}
CROP_LABELS = {"rcrop": "R", "ccrop": "C"}

# Table 1 of the paper (linear top-1, %), copied from ../shared/REFERENCE.md section 2
# ("Headline results"): ResNet-18 with the CIFAR stem, 500 epochs, batch 512,
# SGD cosine lr 0.5. R = RandomResizedCrop (rcrop), C = ContrastiveCrop (ccrop).
PAPER_TABLE1: dict[tuple[str, str, str], float] = {}
_PAPER_ROWS = {  # method: C10 R, C10 C, C100 R, C100 C, Tiny R, Tiny C, STL R, STL C
    "simclr": (89.63, 90.08, 60.30, 61.91, 45.19, 46.21, 88.95, 89.53),
    "moco": (86.73, 88.78, 56.10, 57.65, 47.09, 47.98, 89.17, 89.81),
    "byol": (91.96, 92.54, 63.75, 64.62, 46.08, 47.23, 91.84, 92.42),
    "simsiam": (90.96, 91.48, 64.79, 65.82, 43.03, 44.54, 89.39, 89.83),
}
for _method, _values in _PAPER_ROWS.items():
    for _i, _value in enumerate(_values):
        PAPER_TABLE1[(_method, DATASETS[_i // 2], CROPS[_i % 2])] = _value


@dataclass(frozen=True)
class Cell:
    dataset: str
    method: str
    crop: str

    @property
    def name(self) -> str:  # also the recipe's name
        return f"{self.dataset}-{self.method}-{self.crop}"


ALL_CELLS = tuple(Cell(d, m, c) for d in DATASETS for m in METHODS for c in CROPS)


DRY_RUN_NOTES = {"done": "finished: would be skipped",
                 "eval": "exported: only eval would run",
                 "pretrain": "would pretrain (--resume auto), then eval"}


class ReproError(Exception):
    """A problem reported as one clear line, before (or instead of) a traceback."""


def parse_cells(text: str | None) -> list[Cell]:
    if not text:
        return list(ALL_CELLS)
    by_name = {cell.name: cell for cell in ALL_CELLS}
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ReproError(f"unknown cells {unknown}; cells are DATASET-METHOD-CROP with "
                         f"DATASET in {DATASETS}, METHOD in {METHODS}, CROP in {CROPS}")
    return [by_name[name] for name in dict.fromkeys(names)]


def parse_overrides(items: list[str]) -> list[str]:
    """``key=value`` -> ``['--key', 'value']`` for ``timm-ccrop pretrain``."""
    args: list[str] = []
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not eq or not key:
            raise ReproError(f"--override takes key=value (a TrainConfig field), got {item!r}")
        args += [f"--{key.replace('_', '-')}", value]
    return args


def launcher_prefix(launcher: str) -> list[str]:
    """The command that runs ``timm_ccrop.cli``; ``python`` means no accelerate at all."""
    tokens = shlex.split(launcher)
    if not tokens:
        raise ReproError("--launcher is empty")
    if tokens == ["python"] or tokens[0] in ("python", "python3"):
        tokens = [sys.executable, *tokens[1:]]
    return [*tokens, "-m", "timm_ccrop.cli"]


def run_dir(out: Path, cell: Cell) -> Path:
    return out / "runs" / cell.name


def data_spec(data_root: Path, cell: Cell) -> str:
    return f"{cell.dataset}:{data_root / cell.dataset}"


def pretrain_command(args: argparse.Namespace, cell: Cell) -> list[str]:
    return [*launcher_prefix(args.launcher), "pretrain", "--recipe", cell.name,
            "--output", str(run_dir(args.out, cell)), "--resume", "auto",
            "--data", data_spec(args.data_root, cell), *args.pretrain_overrides]


def eval_command(args: argparse.Namespace, cell: Cell) -> list[str]:
    folder = run_dir(args.out, cell)
    return [*launcher_prefix(args.launcher), "eval", "--backbone", str(folder),
            "--data", data_spec(args.data_root, cell), "--protocol", "linear",
            "--linear-mode", "paper", "--output", str(folder / "eval.json"),
            *shlex.split(args.eval_args)]


def has_export(folder: Path) -> bool:
    export = folder / "backbone"
    return (export / "config.json").is_file() and (export / "model.safetensors").is_file()


def linear_top1(folder: Path) -> float | None:
    """The linear-probe test top-1 of ``folder/eval.json``, or None if there is none."""
    path = folder / "eval.json"
    try:
        report = json.loads(path.read_text())
        return float(report["linear"]["test"]["top1"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cell_state(out: Path, cell: Cell) -> str:
    """'done' (export + eval), 'eval' (export, no eval) or 'pretrain' (anything else)."""
    folder = run_dir(out, cell)
    if not has_export(folder):
        return "pretrain"
    return "done" if linear_top1(folder) is not None else "eval"


def check_datasets(data_root: Path, cells: list[Cell]) -> None:
    missing = sorted({cell.dataset for cell in cells
                      if not (data_root / cell.dataset).is_dir()
                      or not any((data_root / cell.dataset).iterdir())})
    if missing:
        where = ", ".join(str(data_root / name) for name in missing)
        raise ReproError(
            f"missing dataset{'s' if len(missing) > 1 else ''} {', '.join(missing)}: expected "
            f"non-empty folder{'s' if len(missing) > 1 else ''} {where} (--data-root "
            f"{data_root} holds cifar10/, cifar100/, tiny-imagenet/, stl10/ in the layout of "
            "the official archives); nothing was run")


def format_table(out: Path) -> str:
    """Table 1's layout: rows = methods, columns = dataset x R/C, measured beside paper."""
    header = ["Method"] + [f"{DATASET_LABELS[d]} {CROP_LABELS[c]}"
                           for d in DATASETS for c in CROPS]
    lines = ["# ContrastiveCrop Table 1: reproduction vs paper",
             "",
             "Linear top-1 (%), `timm-ccrop eval --protocol linear --linear-mode paper`. "
             "Each cell: measured (paper); `not run` where the cell has no finished "
             "export + eval.json under runs/. Paper numbers: Table 1 (REFERENCE.md s2; "
             "ResNet-18, 500 epochs). Runs with other settings (e.g. --epochs) are not "
             "comparable with the paper's numbers.",
             "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    measured = 0
    for method in METHODS:
        row = [METHOD_LABELS[method]]
        for dataset in DATASETS:
            for crop in CROPS:
                cell = Cell(dataset, method, crop)
                paper = PAPER_TABLE1[(method, dataset, crop)]
                folder = run_dir(out, cell)
                top1 = linear_top1(folder) if has_export(folder) else None
                if top1 is None:
                    row.append(f"not run ({paper:.2f})")
                else:
                    measured += 1
                    row.append(f"{top1:.2f} ({paper:.2f})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"{measured}/{len(ALL_CELLS)} cells measured."]
    return "\n".join(lines) + "\n"


def write_table(out: Path) -> str:
    text = format_table(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run ContrastiveCrop's Table 1 grid (pretrain + linear eval per cell), "
                    "resumably, and write OUT/table.md beside the paper's numbers.",
        epilog="Options whose value starts with '--' need '=': --eval-args=\"--epochs 10\".")
    parser.add_argument("--data-root", type=Path, default=Path("data"),
                        help="folder with cifar10/, cifar100/, tiny-imagenet/, stl10/ "
                             "(default: data)")
    parser.add_argument("--out", type=Path, default=Path("reproduce"),
                        help="output folder: runs/<cell>/ and table.md (default: reproduce)")
    parser.add_argument("--launcher", default="accelerate launch",
                        help="command that runs `-m timm_ccrop.cli ...`, e.g. \"accelerate "
                             "launch --multi_gpu --num_processes 8\"; 'python' runs it in one "
                             "plain process (default: accelerate launch)")
    parser.add_argument("--cells", default=None,
                        help="comma-separated subset, e.g. cifar10-simclr-rcrop,"
                             "cifar10-simclr-ccrop (default: all 32)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="pretraining epochs of every cell (default: the recipes', 500)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="TrainConfig override passed to every pretrain (repeatable)")
    parser.add_argument("--eval-args", default="",
                        help="extra arguments of every `timm-ccrop eval`, one string "
                             "(write --eval-args=\"--epochs 10 --batch-size 256\")")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the pretrain and eval command of every cell and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cells = parse_cells(args.cells)
        overrides = list(args.override)
        if args.epochs is not None:
            if args.epochs < 1:
                raise ReproError(f"--epochs must be >= 1, got {args.epochs}")
            overrides.append(f"epochs={args.epochs}")
        args.pretrain_overrides = parse_overrides(overrides)
        from timm_ccrop.config import list_recipes

        known = set(list_recipes())
        absent = [cell.name for cell in cells if cell.name not in known]
        if absent:
            raise ReproError(f"recipes {absent} are not in zoo/recipes")
        if args.dry_run:
            for cell in cells:
                state = cell_state(args.out, cell)
                print(f"# {cell.name} ({DRY_RUN_NOTES[state]})")
                print(shlex.join(pretrain_command(args, cell)))
                print(shlex.join(eval_command(args, cell)))
            if any(not (args.data_root / c.dataset).is_dir() for c in cells):
                print(f"# note: some datasets are missing under {args.data_root}",
                      file=sys.stderr)
            return 0
        check_datasets(args.data_root, cells)
    except ReproError as err:
        print(f"reproduce_paper: error: {err}", file=sys.stderr)
        return 2

    for index, cell in enumerate(cells, 1):
        state = cell_state(args.out, cell)
        tag = f"[{index}/{len(cells)}] {cell.name}"
        if state == "done":
            print(f"{tag}: finished (export + eval.json), skipped", flush=True)
            continue
        steps = ([("pretrain", pretrain_command(args, cell))] if state == "pretrain" else [])
        steps.append(("eval", eval_command(args, cell)))
        for step, command in steps:
            print(f"{tag}: {step}: {shlex.join(command)}", flush=True)
            try:
                subprocess.run(command, check=True)  # output streams to this terminal
            except (subprocess.CalledProcessError, OSError) as err:
                reason = (f"exit status {err.returncode}"
                          if isinstance(err, subprocess.CalledProcessError) else str(err))
                write_table(args.out)
                print(f"reproduce_paper: cell {cell.name} failed in {step} ({reason}); "
                      f"its run folder is {run_dir(args.out, cell)}. Fix the cause and rerun "
                      "the same command: finished cells are skipped, this one resumes.",
                      file=sys.stderr)
                return 1
        if linear_top1(run_dir(args.out, cell)) is None:
            print(f"reproduce_paper: cell {cell.name}: eval finished but "
                  f"{run_dir(args.out, cell) / 'eval.json'} has no linear test top-1",
                  file=sys.stderr)
            return 1
    text = write_table(args.out)
    print(text, end="")
    print(f"wrote {(args.out / 'table.md').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
