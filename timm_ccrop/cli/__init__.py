"""The ``timm-ccrop`` command line.

Subcommands, one module each (thin: they parse, call the library, print):
    demo        render ContrastiveCrop vs RandomResizedCrop views of a dataset to a PNG
    show-boxes  render a model's heatmaps, localized boxes and ContrastiveCrop views to a PNG
    pretrain    Siamese pretraining of any timm backbone with Accelerate
    eval        kNN and linear-probe evaluation of a frozen backbone; writes eval.json
    export      a run's (or an official checkpoint's) backbone in timm's Hub layout
    push        validate an exported folder and upload it to the Hugging Face Hub
    zoo         list the model zoo (zoo/models.yaml)
    report      redraw a run's metrics plot and print its summary
    compare     does ContrastiveCrop help on my data? paired-seed rcrop vs ccrop grid
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import sys
from collections.abc import Sequence

from .compare import add_compare_parser
from .demo import add_demo_parser
from .evaluate import add_eval_parser
from .hub import add_hub_parsers
from .options import OneLineErrorParser
from .pretrain import add_pretrain_parser
from .report import add_report_parser
from .show_boxes import add_show_boxes_parser

__all__ = ["DEBUG_ENV", "LOG_LEVELS", "build_parser", "error_line", "main", "setup_logging"]

#: ``--log-level`` choices (Python's logging levels).
LOG_LEVELS = ("debug", "info", "warning", "error")
#: Errors in the user's input: printed as one line, exit code 2. An UnpicklingError comes
#: from a data file that is no safe pickle (a tampered CIFAR batch): the file's fault.
USER_ERRORS = (ValueError, OSError, pickle.UnpicklingError)
#: Setting this environment variable to 1 shows the traceback of input errors (--debug).
DEBUG_ENV = "TIMM_CCROP_DEBUG"
#: How a DataLoader worker's re-raised exception marks the worker's own traceback.
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``timm-ccrop`` (all subcommands)."""
    parser = OneLineErrorParser(
        prog="timm-ccrop",
        description="ContrastiveCrop for timm: views, pretraining, evaluation, Hub export. "
                    "An error in the input (a bad value, a missing or unreadable file) is "
                    "reported as one line and exit code 2.",
    )
    parser.add_argument("--log-level", default="info", type=str.lower, choices=LOG_LEVELS,
                        help="messages of the library shown (default: info: one line per "
                             "epoch and the summary; warning: problems only)")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of input errors instead of one line "
                             f"(also: {DEBUG_ENV}=1)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_parser(commands)
    add_show_boxes_parser(commands)
    add_pretrain_parser(commands)
    add_eval_parser(commands)
    add_hub_parsers(commands)
    add_report_parser(commands)
    add_compare_parser(commands)
    return parser


def setup_logging(level: str) -> None:
    """Show the package's log records at ``level`` and above on stderr, one plain line
    each (the library itself only logs; the command line decides what is shown)."""
    logger = logging.getLogger("timm_ccrop")
    if not any(getattr(h, "_timm_ccrop", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._timm_ccrop = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False  # not twice when the root logger has a handler too
    for handler in logger.handlers:
        handler.stream = sys.stderr  # the current stderr (pytest swaps it per test)
    logger.setLevel(level.upper())


def error_line(err: BaseException) -> str:
    """The message of ``err`` as one line.

    An exception re-raised by a DataLoader worker carries the worker's traceback in its
    message; only the worker's own error message is kept from it.
    """
    text = str(err)
    if _WORKER_TRACEBACK in text:
        tail = text.split(_WORKER_TRACEBACK, 1)[1]
        # the last line starting with "[module.]TypeName: " begins the worker's message
        pattern = rf"^(?:[\w.]+\.)?{re.escape(type(err).__name__)}: "
        starts = list(re.finditer(pattern, tail, flags=re.MULTILINE))
        if starts:
            text = tail[starts[-1].end():]
    return " ".join(text.split()) or type(err).__name__


def _debug_requested(args: argparse.Namespace) -> bool:
    return bool(args.debug) or os.environ.get(DEBUG_ENV, "").strip().lower() in (
        "1", "true", "yes", "on")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``timm-ccrop`` console script; returns the exit code.

    Bad arguments exit through argparse (code 2, one line); errors in the input found
    later (ValueError, FileNotFoundError and other OSErrors) print one line
    ``timm-ccrop COMMAND: error: ...`` and return 2, unless ``--debug`` or
    ``TIMM_CCROP_DEBUG=1`` asks for the traceback. Other exceptions are bugs: they keep
    their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(args.log_level)
    try:
        return args.handler(args)
    except USER_ERRORS as err:
        if _debug_requested(args):
            raise
        print(f"timm-ccrop {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
