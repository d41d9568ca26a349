"""``timm-ccrop report RUN``: redraw a run's plot and print its epochs and summary."""

from __future__ import annotations

import argparse
from typing import Any

from ..train.summary import report_run

__all__ = ["add_report_parser", "run_report"]


def run_report(args: argparse.Namespace) -> int:
    """Print the report of ``args.run``; the exit code."""
    print(report_run(args.run))
    return 0


def add_report_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``report`` to the subcommands ``commands``; returns its parser."""
    report = commands.add_parser(
        "report", help="redraw a run's metrics plot and print its summary",
        description="Redraw RUN/metrics.png (loss, lr, kNN and box IoU per epoch) from "
                    "RUN/metrics.jsonl and print the run's epoch table and summary: kNN "
                    "against the randomly initialised backbone, box IoU against the whole "
                    "image, false-positive view pairs against random crops.",
    )
    report.add_argument("run", metavar="RUN", help="a pretrain run folder (its --output)")
    report.set_defaults(handler=run_report)
    return report
