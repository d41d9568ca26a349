"""The ``timm-ccrop`` command line.

Subcommands, one module each (thin: they parse, call the library, print):
    demo        render ContrastiveCrop vs RandomResizedCrop views of a dataset to a PNG
    show-boxes  render a model's heatmaps, localized boxes and ContrastiveCrop views to a PNG
    pretrain    Siamese pretraining of any timm backbone with Accelerate
    eval        kNN and linear-probe evaluation of a frozen backbone; writes eval.json
    export      a run's (or an official checkpoint's) backbone in timm's Hub layout
    push        validate an exported folder and upload it to the Hugging Face Hub
    zoo         list the model zoo (zoo/models.yaml)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .demo import add_demo_parser
from .evaluate import add_eval_parser
from .hub import add_hub_parsers
from .pretrain import add_pretrain_parser
from .show_boxes import add_show_boxes_parser

__all__ = ["build_parser", "main"]

#: Errors in the user's input: printed as one line, exit code 2.
USER_ERRORS = (ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``timm-ccrop`` (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="timm-ccrop",
        description="ContrastiveCrop for timm: views, pretraining, evaluation, Hub export.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_parser(commands)
    add_show_boxes_parser(commands)
    add_pretrain_parser(commands)
    add_eval_parser(commands)
    add_hub_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``timm-ccrop`` console script; returns the exit code.

    Bad arguments exit through argparse (code 2); errors in the input found later
    (ValueError, FileNotFoundError and other OSErrors) print one line
    ``timm-ccrop COMMAND: error: ...`` and return 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except USER_ERRORS as err:
        message = " ".join(str(err).split())
        print(f"timm-ccrop {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
