"""``timm-ccrop eval``: kNN and linear-probe accuracy of a frozen backbone; writes eval.json."""

from __future__ import annotations

import argparse
from typing import Any

from ..evaluation import (
    LINEAR_MODES,
    PROTOCOLS,
    EvalConfig,
    list_probe_recipes,
    run_evaluation,
)
from .options import BooleanFlag, HelpFormatter, add_verify_weights_argument, number

__all__ = ["add_eval_parser", "run_eval"]


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate as ``args`` say; the main process prints the summary. The exit code."""
    config = EvalConfig(
        backbone=args.backbone, data=args.data, protocol=args.protocol, output=args.output,
        image_size=args.image_size, mean=args.mean, std=args.std, batch_size=args.batch_size,
        num_workers=args.num_workers, knn_k=args.knn_k, knn_temperature=args.knn_temperature,
        linear_mode=args.linear_mode, probe_recipe=args.probe_recipe, epochs=args.epochs,
        lr=args.lr, augment=args.augment, val_fraction=args.val_fraction, seed=args.seed,
        train_split=args.train_split, test_split=args.test_split,
        mixed_precision=args.mixed_precision, progress=args.progress,
        verify_weights=args.verify_weights,
    )
    # the main process prints the numbers BEFORE eval.json is written: a failed write
    # (one line, exit code 2) loses nothing
    run_evaluation(config, echo=print)
    return 0


def _add_input_arguments(evaluate: argparse.ArgumentParser) -> None:
    """What is evaluated on what: backbone, data, splits, input size and normalisation."""
    evaluate.add_argument(
        "--backbone", required=True, metavar="SRC",
        help="a run folder (its backbone/ export, else its newest checkpoint), an exported "
             "folder (config.json + model.safetensors), a checkpoint-epoch*.pt, or a timm "
             "name: hf-hub:ORG/NAME, local-dir:PATH, ARCH.TAG (pretrained) or ARCH (random "
             "init, a baseline)")
    evaluate.add_argument("--data", default=None, metavar="SPEC",
                          help="dataset spec, e.g. cifar10:PATH, folder:PATH, "
                               "synthetic:num_samples=2000 (default: a run folder's own)")
    evaluate.add_argument("--protocol", choices=PROTOCOLS, default="both")
    evaluate.add_argument("--output", default=None, metavar="PATH",
                          help="folder for eval.json, or a .json file (default: next to the "
                               "backbone: the run or export folder)")
    evaluate.add_argument("--train-split", default=None,
                          help="labelled split the kNN bank / probe trains on (default: train)")
    evaluate.add_argument("--test-split", default=None,
                          help="labelled split to report (default: the dataset's eval split)")
    evaluate.add_argument("--val-fraction", type=number(float, low=0, high=1, high_open=True),
                          default=0.0,
                          help="carve this seeded fraction of the train split out as a "
                               "validation split for choosing hyper-parameters; reported "
                               "too (default: 0, none)")
    evaluate.add_argument("--image-size", type=number(int, low=8, unit="pixels"), default=None,
                          help="input size (default: the model's pretrained_cfg)")
    evaluate.add_argument("--mean", type=number(float), nargs=3, default=None,
                          metavar=("R", "G", "B"),
                          help="normalisation mean (default: the model's pretrained_cfg)")
    evaluate.add_argument("--std", type=number(float, low=0, low_open=True), nargs=3,
                          default=None, metavar=("R", "G", "B"),
                          help="normalisation std (default: the model's pretrained_cfg)")
    add_verify_weights_argument(evaluate, "the weights")


def _add_protocol_arguments(evaluate: argparse.ArgumentParser) -> None:
    """How: the kNN vote, the probe recipe and the execution settings."""
    evaluate.add_argument("--batch-size", type=number(int, low=1), default=None,
                          help="global batch of the probe and of feature extraction "
                               "(default: the probe recipe's, 512)")
    evaluate.add_argument("--num-workers", type=number(int, low=0), default=2)
    evaluate.add_argument("--knn-k", type=number(int, low=1), default=200,
                          help="neighbours (clipped to the train set size)")
    evaluate.add_argument("--knn-temperature", "--knn-t", dest="knn_temperature",
                          type=number(float, low=0, low_open=True), default=0.1,
                          help="temperature T of the vote weights exp(sim / T)")
    evaluate.add_argument("--linear-mode", choices=LINEAR_MODES, default="fast",
                          help="fast: the recipe's SGD on features cached once without "
                               "augmentation; paper: images through the frozen backbone every "
                               "epoch with RandomResizedCrop + flip (default: fast)")
    evaluate.add_argument("--probe-recipe", default="auto", metavar="NAME|PATH",
                          help=f"probe recipe: {', '.join(list_probe_recipes())} or a YAML "
                               "path; auto: imagenet for inputs >= 128 px, else small")
    evaluate.add_argument("--epochs", type=number(int, low=1), default=None,
                          help="probe epochs (default: the recipe's, 100; the lr decays at "
                               "60%% and 80%%)")
    evaluate.add_argument("--lr", type=number(float, low=0, low_open=True), default=None,
                          help="probe lr (default: the recipe's: 10 small, 30 imagenet)")
    evaluate.add_argument("--augment", action=BooleanFlag, default=True,
                          help="paper mode: train augmentation (--no-augment: eval transform)")
    evaluate.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
                          help="autocast of the backbone's forward passes")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of the validation split, probe init and order, and of a "
                               "randomly initialised backbone")
    evaluate.add_argument("--progress", action=BooleanFlag, default=True,
                          help="progress bars (shown on a terminal only)")


def add_eval_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``eval`` to the subcommands ``commands``; returns its parser."""
    evaluate = commands.add_parser(
        "eval", help="kNN and linear-probe accuracy of a frozen backbone; writes eval.json",
        description="Evaluate a frozen backbone on a labelled dataset: weighted cosine kNN "
                    "(top-1/top-5) and/or a linear probe (the official recipe; the FINAL "
                    "epoch's accuracy is reported, the test split never selects anything). "
                    "Writes eval.json next to the backbone or to --output. Runs under "
                    "`accelerate launch` for several GPUs.",
        formatter_class=HelpFormatter,
    )
    _add_input_arguments(evaluate)
    _add_protocol_arguments(evaluate)
    evaluate.set_defaults(handler=run_eval)
    return evaluate
