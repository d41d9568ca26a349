"""``timm-ccrop pretrain``: the parser is generated from :class:`TrainConfig`'s fields.

Every field becomes one ``--field-name`` option in its group (data, model and method,
ContrastiveCrop, optimisation, execution) with its declared type, choices and help; the
values are checked by :meth:`TrainConfig.validate`, the same check recipes and the Python
API get. Precedence: defaults < ``--recipe`` < ``-c FILE`` < the command line.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import yaml

from ..config import (
    GROUPS,
    TrainConfig,
    list_recipes,
    load_config_file,
    load_recipe,
)
from ..train import TrainingStopped, train
from .options import HelpFormatter, add_config_arguments, config_values

__all__ = ["add_pretrain_parser", "resolve_config", "run_pretrain"]

USAGE = ("timm-ccrop pretrain [-h] [--recipe NAME] [-c FILE.yaml] [--print-config] "
         "[--resume PATH|auto] [--FIELD VALUE ...]")


def add_pretrain_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``pretrain`` to the subcommands ``commands``; returns its parser."""
    pretrain = commands.add_parser(
        "pretrain", help="Siamese pretraining of any timm backbone (SimCLR, MoCo, BYOL, SimSiam)",
        usage=USAGE, formatter_class=HelpFormatter,
        description="Pretrain with random crop, ContrastiveCrop or SimCCrop views. With no "
                    "arguments: a short CPU job on the built-in dataset. Run under "
                    "`accelerate launch` for several GPUs or nodes. A recipe from "
                    "zoo/recipes sets the paper's settings; a -c config file overrides it, "
                    "and every --key on the command line overrides both.",
    )
    setup = pretrain.add_argument_group("configuration")
    setup.add_argument("--recipe", default=None, metavar="NAME",
                       help=f"recipe name or YAML path; shipped: {', '.join(list_recipes())}")
    setup.add_argument("-c", "--config", default=None, metavar="FILE.yaml",
                       help="YAML file of config keys (as --print-config writes them); "
                            "overrides --recipe")
    setup.add_argument("--print-config", action="store_true",
                       help="print the resolved configuration as YAML and exit")
    setup.add_argument("--resume", default=None, metavar="PATH|auto",
                       help="checkpoint file or run folder to resume from; 'auto' resumes "
                            "the --output folder if it has a checkpoint, else starts fresh")
    setup.add_argument("--overwrite", action="store_true",
                       help="a fresh run may replace the run already in --output (without "
                            "it, a folder that holds a run is refused)")
    add_config_arguments(pretrain, TrainConfig, groups=GROUPS)
    pretrain.set_defaults(handler=run_pretrain)
    return pretrain


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults < ``--recipe`` < ``--config`` < the command line's ``--FIELD``, validated."""
    values: dict[str, Any] = {}
    if args.recipe:
        values.update(load_recipe(args.recipe))
    if args.config:
        values.update(load_config_file(args.config))
    values.update(config_values(args, TrainConfig))
    config = TrainConfig.from_dict(values)
    config.validate()
    return config


def run_pretrain(args: argparse.Namespace) -> int:
    """Train (or, with ``--print-config``, print the configuration); the exit code."""
    config = resolve_config(args)
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    try:
        result = train(config, resume=args.resume, overwrite=args.overwrite)
    except TrainingStopped as err:
        print(f"timm-ccrop pretrain: {err}", file=sys.stderr)
        return 3
    if result.stopped is None:
        return 0
    # The shell's convention for a process ended by a signal: 128 + its number (SIGTERM
    # 143, SIGINT 130); a stop another process received is reported as SIGINT's.
    stop = signal.Signals[result.signal] if result.signal else signal.SIGINT
    return 128 + int(stop)
