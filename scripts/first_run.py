"""Run the README's main job as a newcomer would and record what it shows.

    python scripts/first_run.py                       # runs `timm-ccrop pretrain`, ~3-5 min
    python scripts/first_run.py --workdir /tmp/first --docs docs

Runs ``timm-ccrop pretrain`` with no arguments at all, in a fresh process whose working
directory is an empty folder (``--workdir``, default a new temporary folder), so its run
folder is ``runs/pretrain`` there and its output reads as a newcomer's does. It times it
and writes ``DOCS/first-run.md`` (machine, date, wall time,
the command's output) plus ``DOCS/first-run-metrics.png`` and ``DOCS/first-run-boxes.png``
(copies of the run's plot and last box picture): the numbers and pictures of the README's
"The first five minutes". It also checks the issue's targets: kNN at least 15 points above
the random-init backbone and box IoU at least twice the whole image's; the exit code is 1
when one is missed (the files are written either way).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KNN_GAIN_TARGET = 15.0  # kNN points above the random-init backbone
IOU_RATIO_TARGET = 2.0  # box IoU over the whole image's


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


def run_main_job(workdir: Path) -> tuple[float, str, int]:
    """``timm-ccrop pretrain`` in ``workdir``: (seconds, its output, exit code)."""
    command = [sys.executable, "-m", "timm_ccrop.cli", "pretrain"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    return time.perf_counter() - started, result.stdout + result.stderr, result.returncode


def targets(summary: dict) -> list[tuple[str, bool]]:
    gain = summary["knn_top1"] - summary["random_init_knn_top1"]
    ratio = summary["box_mean_iou"] / summary["whole_image_mean_iou"]
    return [(f"kNN {gain:+.1f} points over random init (target >= +{KNN_GAIN_TARGET:g})",
             gain >= KNN_GAIN_TARGET),
            (f"box IoU {ratio:.1f}x the whole image's (target >= {IOU_RATIO_TARGET:g}x)",
             ratio >= IOU_RATIO_TARGET)]


def write_report(docs: Path, output: Path, seconds: float, log: str, summary: dict) -> bool:
    pictures = sorted(output.glob("boxes-epoch*.png"))
    shutil.copyfile(output / "metrics.png", docs / "first-run-metrics.png")
    if pictures:
        shutil.copyfile(pictures[-1], docs / "first-run-boxes.png")
    checks = targets(summary)
    lines = [
        "# The first run (`timm-ccrop pretrain`, no arguments)", "",
        "- command: `python scripts/first_run.py` (runs `timm-ccrop pretrain`, no arguments, "
        "in an empty folder)",
        f"- machine: {machine()}",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- wall time of the command: {seconds:.0f} s ({seconds / 60:.1f} min)",
        *[f"- {text}: {'met' if ok else 'NOT met'}" for text, ok in checks], "",
        "Its output:", "", "```", log.strip(), "```", "",
        "![the run's metrics](first-run-metrics.png)", "",
        "![the last box picture](first-run-boxes.png)", "",
    ]
    (docs / "first-run.md").write_text("\n".join(lines))
    return all(ok for _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=None,
                        help="an empty folder to run in (default: a new temporary folder)")
    parser.add_argument("--docs", default="docs", help="where first-run.md and the PNGs go")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="timm-ccrop-first-run-"))
    if (workdir / "runs").exists():
        parser.error(f"--workdir {workdir} already holds runs/; give an empty folder")
    workdir.mkdir(parents=True, exist_ok=True)
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    seconds, log, code = run_main_job(workdir)
    output = workdir / "runs" / "pretrain"
    print(log)
    if code != 0:
        print(f"timm-ccrop pretrain failed with exit code {code}", file=sys.stderr)
        return code
    summary = json.loads((output / "summary.json").read_text())
    met = write_report(docs, output, seconds, log, summary)
    print(f"{seconds:.0f} s; wrote {docs / 'first-run.md'}; targets {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
