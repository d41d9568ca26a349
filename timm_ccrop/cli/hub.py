"""``timm-ccrop export``, ``push`` and ``zoo``: the Hugging Face Hub and the model zoo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..hub import (
    OFFICIAL_DATASETS,
    PushError,
    entry_problems,
    export_official,
    export_run,
    format_zoo_table,
    load_zoo,
    push_folder,
    registered_zoo_tags,
)
from .options import add_verify_weights_argument

__all__ = ["add_hub_parsers", "run_export", "run_push", "run_zoo"]


def run_export(args: argparse.Namespace) -> int:
    """Export a run folder or an official checkpoint as ``args`` say; the exit code."""
    if (args.run is None) == (args.official is None):
        raise ValueError("give either a run folder (timm-ccrop export RUN_DIR --out DIR) or "
                         "--official CHECKPOINT, not both")
    if args.official is not None:
        if args.checkpoint or args.tag:
            raise ValueError("--checkpoint and --tag apply to run folders, not to --official")
        out = export_official(args.official, args.out, method=args.method,
                              dataset=args.dataset or "cifar10", crop=args.crop,
                              boxes=args.boxes, overwrite=args.overwrite,
                              repo_id=args.repo_id, eval_reports=args.eval_json)
    else:
        if args.method or args.crop or args.boxes:
            raise ValueError("--method, --crop and --boxes apply to --official checkpoints; a "
                             "run folder records its own")
        out = export_run(args.run, args.out, checkpoint=args.checkpoint,
                         overwrite=args.overwrite, repo_id=args.repo_id, dataset=args.dataset,
                         license=args.license, tag=args.tag, eval_reports=args.eval_json,
                         verify=args.verify_weights)
    files = sorted(p.name for p in Path(out).iterdir())
    print(f"wrote {Path(out).resolve()}: {', '.join(files)}")
    print(f"load it with timm.create_model('local-dir:{out}', pretrained=True) after "
          "`import timm_ccrop`; publish it with `timm-ccrop push "
          f"{out} --repo-id ORG/NAME`")
    return 0


def run_push(args: argparse.Namespace) -> int:
    """Validate and upload a folder; exit code 1 (one line on stderr) when refused."""
    try:
        result = push_folder(args.folder, args.repo_id, private=args.private,
                             revision=args.revision, create_pr=args.create_pr,
                             dry_run=args.dry_run, require_metrics=args.require_metrics,
                             commit_message=args.commit_message,
                             verify=args.verify_weights)
    except PushError as err:
        print(f"timm-ccrop push: error: {err}", file=sys.stderr)
        return 1
    for line in result.summary():
        print(line)
    return 0


def run_zoo(args: argparse.Namespace) -> int:
    """List (and with ``--validate`` check) the zoo; exit code 1 when an entry fails."""
    entries = load_zoo()
    if args.json:
        print(json.dumps([entry.raw for entry in entries], indent=2))
    else:
        print(format_zoo_table(entries))
        loadable = set(registered_zoo_tags())
        print(f"\n{len(entries)} model{'' if len(entries) == 1 else 's'}, "
              f"{sum(e.name in loadable for e in entries)} loadable with "
              "timm_ccrop.create_model('ARCH.TAG', pretrained=True);\ntimm-ccrop's own "
              "architectures also with timm.create_model, after `import timm_ccrop`.")
    if not args.validate:
        return 0
    failed = 0
    for entry in entries:
        problems = entry_problems(entry)
        if problems:
            failed += 1
            print(f"{entry.name}: " + "; ".join(problems), file=sys.stderr)
    print(f"validated {len(entries)} entries: {failed} with problems",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def add_hub_parsers(commands: Any) -> None:
    """Add ``export``, ``push`` and ``zoo`` to the subcommands ``commands``."""
    export = commands.add_parser(
        "export", help="a run's (or an official checkpoint's) backbone in timm's Hub layout",
        description="Write the backbone only (no projector, predictor, momentum encoder or "
                    "queue) as config.json + model.safetensors + README.md (a model card with "
                    "the recipe, the measured numbers of eval.json when it evaluated these "
                    "weights, and the citation). The folder is written atomically. Load it "
                    "with timm.create_model('local-dir:DIR', pretrained=True).",
    )
    export.add_argument("run", nargs="?", default=None, metavar="RUN_DIR",
                        help="a run folder of `timm-ccrop pretrain` (its newest valid "
                             "checkpoint) or a checkpoint-epoch*.pt")
    export.add_argument("--official", default=None, metavar="CHECKPOINT",
                        help="convert an official ContrastiveCrop checkpoint (last.pth) instead")
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out folder that holds an export and "
                             "nothing else (once the new one is complete); a folder with "
                             "other files is refused, never emptied")
    export.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="a specific checkpoint-epoch*.pt of the run (default: newest)")
    export.add_argument("--tag", default=None,
                        help="pretrained tag in config.json (default: CROP_METHOD)")
    export.add_argument("--method", choices=("simclr", "moco", "byol", "simsiam"), default=None,
                        help="--official: the method (default: from the checkpoint)")
    export.add_argument("--dataset", default=None,
                        help="--official: pretraining dataset, for the official mean/std and "
                             f"input size: {', '.join(OFFICIAL_DATASETS)} (default cifar10); "
                             "a run: the dataset named on the card (default: the run's)")
    export.add_argument("--crop", choices=("ccrop", "rcrop"), default=None,
                        help="--official: crop mode (default: rcrop if no box was ever "
                             "updated, else ccrop)")
    export.add_argument("--boxes", action="store_true",
                        help="--official: also write the final boxes as boxes.csv (x0, y0, x1, "
                             "y1 in timm-ccrop's convention)")
    export.add_argument("--repo-id", default=None, metavar="ORG/NAME",
                        help="Hub id to name in the card's loading code")
    export.add_argument("--license", default="apache-2.0",
                        help="license of a run's weights (official ones: mit)")
    export.add_argument("--eval-json", action="append", default=[], metavar="PATH",
                        help="further eval.json reports (used only if they evaluated these "
                             "weights); RUN/eval.json, RUN/backbone/eval.json and "
                             "OUT/eval.json are read anyway")
    add_verify_weights_argument(export, "the run's weights")
    export.set_defaults(handler=run_export)

    push = commands.add_parser(
        "push", help="validate an exported folder and upload it to the Hugging Face Hub",
        description="Check the folder (config.json with architecture and pretrained_cfg, "
                    "model.safetensors loads and matches the sha256 in its metadata, README.md "
                    "with front-matter; every other file of a kind a model repository carries, "
                    "checked by its bytes: safetensors, JSON, plain text, images, no pickle "
                    "whatever its name; no symlink that loops or leaves the folder), then "
                    "create the repo (exist_ok) and upload the folder. The token is "
                    "huggingface_hub's (HF_TOKEN or `hf auth login`); it is never printed.",
    )
    push.add_argument("folder", metavar="DIR", help="an exported folder (timm-ccrop export)")
    push.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--revision", default=None, help="branch to upload to (created if new)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    push.add_argument("--dry-run", action="store_true",
                      help="list the files and sizes that would be uploaded; touch nothing")
    push.add_argument("--require-metrics", action="store_true",
                      help="refuse unless the card holds measured numbers (model-index)")
    push.add_argument("--commit-message", default=None)
    add_verify_weights_argument(push, "model.safetensors")
    push.set_defaults(handler=run_push)

    zoo = commands.add_parser(
        "zoo", help="list the model zoo (zoo/models.yaml)",
        description="Print the released models: architecture.tag (the name to load), "
                    "measured kNN / linear top-1, method, crop mode, the sha256 of the "
                    "weights, the data and where the weights are.",
    )
    zoo.add_argument("--validate", action="store_true",
                     help="check every entry (fields, ids, recipe, weights and their sha256)")
    zoo.add_argument("--json", action="store_true", help="print the entries as JSON")
    zoo.set_defaults(handler=run_zoo)
