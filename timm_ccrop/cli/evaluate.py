"""``timm-ccrop eval``: kNN and linear-probe accuracy of a frozen backbone; writes eval.json."""

from __future__ import annotations

import argparse
from typing import Any

from ..evaluation import EvalConfig, list_probe_recipes, run_evaluation
from ..evaluation.settings import EVAL_GROUPS
from .options import HelpFormatter, add_config_arguments, config_values

__all__ = ["add_eval_parser", "run_eval"]


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate as ``args`` say; the main process prints the summary. The exit code."""
    config = EvalConfig(**config_values(args, EvalConfig))
    # the main process prints the numbers BEFORE eval.json is written: a failed write
    # (one line, exit code 2) loses nothing
    run_evaluation(config, echo=print)
    return 0


def add_eval_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``eval`` to the subcommands ``commands``; returns its parser (generated from
    :class:`EvalConfig`'s fields)."""
    evaluate = commands.add_parser(
        "eval", help="kNN and linear-probe accuracy of a frozen backbone; writes eval.json",
        description="Evaluate a frozen backbone on a labelled dataset: weighted cosine kNN "
                    "(top-1/top-5) and/or a linear probe (the official recipe; the FINAL "
                    "epoch's accuracy is reported, the test split never selects anything). "
                    "Writes eval.json next to the backbone or to --output. Runs under "
                    "`accelerate launch` for several GPUs. Probe recipes: "
                    f"{', '.join(list_probe_recipes())}.",
        formatter_class=HelpFormatter,
    )
    add_config_arguments(evaluate, EvalConfig, groups=EVAL_GROUPS)
    evaluate.set_defaults(handler=run_eval)
    return evaluate
