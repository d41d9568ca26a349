"""``timm-ccrop compare``: does ContrastiveCrop help on my data? The parser is generated
from :class:`~timm_ccrop.studies.CompareConfig`'s fields (types, help, choices, bounds);
the settings and the data are checked before anything is trained."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ..studies import CellStopped, CompareConfig, run_compare
from ..studies.config import GROUPS
from .options import HelpFormatter, add_config_arguments, config_values

__all__ = ["add_compare_parser", "resolve_compare_config", "run_compare_command"]

DESCRIPTION = (
    "Pretrain every arm (rcrop, ccrop, and ccrop-gt where the data has ground-truth boxes) "
    "with the same seeds, evaluate each backbone by kNN and a linear probe, and report the "
    "paired differences from rcrop with 95% intervals. Every cell is stored under --runs, "
    "so a rerun computes only what is missing. Example: timm-ccrop compare --data "
    "folder:~/photos --epochs 50 --seeds 0 1 2")


def add_compare_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to the subcommands ``commands``; returns its parser."""
    parser = commands.add_parser(
        "compare", help="does ContrastiveCrop help on my data? paired-seed rcrop vs ccrop",
        description=DESCRIPTION, formatter_class=HelpFormatter)
    add_config_arguments(parser, CompareConfig, groups=GROUPS)
    parser.set_defaults(handler=run_compare_command)
    return parser


def resolve_compare_config(args: argparse.Namespace) -> CompareConfig:
    """The command line's settings over the defaults, validated (ValueError, one line)."""
    config = CompareConfig(**config_values(args, CompareConfig))
    config.validate()
    return config


def run_compare_command(args: argparse.Namespace) -> int:
    """Run the comparison and print where its report is; the exit code (128 + the signal's
    number when a signal stopped a cell: nothing of that cell is recorded)."""
    config = resolve_compare_config(args)
    try:
        result = run_compare(config)
    except CellStopped as stopped:
        print(f"timm-ccrop compare: {stopped}", file=sys.stderr)
        name = stopped.signal if stopped.signal in signal.Signals.__members__ else "SIGINT"
        return 128 + int(signal.Signals[name])
    print(f"\nreport: {result.report}\nplot: {result.plot}\nresults: {result.json}\n"
          f"wall: {result.grid.wall / 60:.1f} min")
    return 0
