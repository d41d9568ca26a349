"""The ``timm-ccrop`` command line.

Subcommands:
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
import difflib
import inspect
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..backbones import strip_wrapper_prefixes
from ..boxes import Box

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _image_size(text: str) -> int:
    value = int(text)
    if value < 8:
        raise argparse.ArgumentTypeError(f"must be >= 8 pixels, got {value}")
    return value


def _tile(text: str) -> int:
    value = int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"must be >= 16 pixels, got {value}")
    return value


def _run_demo(args: argparse.Namespace) -> int:
    from ..data import build_dataset
    from ..viz import crop_views_grid

    dataset = build_dataset(args.data, split="train")
    count = min(args.num_images, len(dataset))
    images = [dataset[i][0] for i in range(count)]
    gt_boxes = getattr(dataset, "gt_boxes", None)
    if gt_boxes is not None:
        boxes: list[Box | None] = [Box(*gt_boxes[i].tolist()) for i in range(count)]
        source = "ground-truth boxes"
    else:
        boxes = [None] * count
        source = "no boxes (whole image)"
        print(f"note: {args.data} has no ground-truth boxes; showing whole-image boxes")
    title = f"{args.data}: {source}, alpha={args.alpha}, scale=({args.min_scale}, 1.0)"
    grid = crop_views_grid(images, boxes, num_views=args.num_views, alpha=args.alpha,
                           scale=(args.min_scale, 1.0), tile=args.tile, seed=args.seed,
                           title=title)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {out.resolve()} ({grid.width}x{grid.height}, {count} images, "
          f"{args.num_views} views per crop mode)")
    return 0


# --------------------------------------------------------------------------------------
# show-boxes: the model's heatmaps and boxes
# --------------------------------------------------------------------------------------

#: Keys under which training scripts nest the model's state dict in a checkpoint.
_CHECKPOINT_NESTS = ("model", "state_dict")


def _read_state_dict(path: Path) -> dict[str, Any]:
    """A state dict from a ``.safetensors`` file or a ``torch.save`` file (weights only).

    Accepts a plain state dict or one nested under ``'model'``/``'state_dict'``; strips
    ``module.``/``_orig_mod.`` prefixes. Raises ValueError when the file is no state dict.
    """
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path), device="cpu")
        except Exception as err:  # SafetensorError, OSError: a corrupt or foreign file
            raise ValueError(f"cannot read checkpoint {path} as safetensors: {err}") from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ...
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ValueError(
                f"cannot read checkpoint {path} with torch.load(weights_only=True) "
                f"({type(err).__name__}: {first_line}); it must be a state dict saved with "
                "torch.save or a .safetensors file"
            ) from err
    while isinstance(state, dict):
        nested = next((state[k] for k in _CHECKPOINT_NESTS if isinstance(state.get(k), dict)),
                      None)
        if nested is None:
            break
        state = nested
    if not isinstance(state, dict) or not state:
        raise ValueError(
            f"checkpoint {path} holds no state dict (got {type(state).__name__}); expected "
            "{name: tensor}, possibly nested under 'model' or 'state_dict'"
        )
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"checkpoint {path} is not a state dict: {len(not_tensors)} entries are not "
            f"tensors ({', '.join(not_tensors[:5])}); save model.state_dict(), possibly "
            "nested under 'model' or 'state_dict'"
        )
    return {strip_wrapper_prefixes(str(k)): v for k, v in state.items()}


def _classifier_prefixes(model: Any) -> tuple[str, ...]:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{name}." for name in names)


def _load_checkpoint(model: Any, path: Path, name: str) -> list[str]:
    """Load ``path`` into ``model`` strictly; returns the classifier keys it ignored.

    The backbone is built without a classifier (``num_classes=0``), so classifier weights
    of a checkpoint are dropped. Any other missing/unexpected key or shape mismatch is a
    ValueError that names the first few.
    """
    state = _read_state_dict(path)
    own = model.state_dict()
    classifier = _classifier_prefixes(model)
    ignored = [k for k in state if k not in own and classifier and k.startswith(classifier)]
    for key in ignored:
        del state[key]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                for k, v in state.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or reshaped:
        problems = []
        for what, keys in (("missing", missing), ("unexpected", unexpected),
                           ("with another shape", reshaped)):
            if keys:
                more = f", ... ({len(keys) - 3} more)" if len(keys) > 3 else ""
                problems.append(f"{len(keys)} {what} ({'; '.join(keys[:3])}{more})")
        raise ValueError(
            f"checkpoint {path} does not match model {name!r} (built with num_classes=0): "
            + ", ".join(problems)
            + ". Was it saved from another architecture? Pass the --model it was trained with."
        )
    model.load_state_dict(state, strict=False)  # strict but for num_batches_tracked
    return ignored


def _accepts_keyword(cls: type, keyword: str) -> bool:
    """Whether ``cls(...)`` takes ``keyword``, following ``**kwargs`` up the MRO."""
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        try:
            params = inspect.signature(klass.__init__).parameters
        except (TypeError, ValueError):
            return False
        if keyword in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return False


def _probe_model(name: str) -> tuple[Any, dict[str, Any]]:
    """Build ``name`` on the meta device (no weights, no memory): fails fast on unknown
    names, lets the stage be checked before any data is read, and tells whether the model
    is ViT-like and takes ``dynamic_img_size`` (then True, so any image size works).

    Returns the probe (None if it cannot be built on the meta device) and extra
    ``create_model`` keyword arguments.
    """
    import timm
    import torch
    from timm.models import is_model, parse_model_name

    source, arch = parse_model_name(name)
    if source is None and not is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            "; see timm.list_models() for the names timm knows"
        raise ValueError(f"unknown model {name!r}{hint}")
    try:
        with torch.device("meta"):
            probe = timm.create_model(name, pretrained=False, num_classes=0)
    except Exception as err:
        if source is None:  # a registered model that cannot be built on meta: build it plainly
            return None, {}
        raise ValueError(f"cannot build {name!r}: {type(err).__name__}: {err}") from err
    vit_like = hasattr(probe, "patch_embed") and hasattr(probe, "dynamic_img_size")
    if vit_like and _accepts_keyword(type(probe), "dynamic_img_size"):
        return probe, {"dynamic_img_size": True}
    return probe, {}


def _create_backbone(name: str, pretrained: bool, kwargs: dict[str, Any]) -> Any:
    import timm

    try:
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
        except TypeError as err:
            if "dynamic_img_size" not in str(err) or not kwargs:
                raise
            return timm.create_model(name, pretrained=pretrained, num_classes=0)
    except Exception as err:
        if not pretrained:
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(
            f"cannot load pretrained weights for {name!r} ({type(err).__name__}: {message}). "
            "Without network access: pass --checkpoint PATH, or put the weights into the "
            "Hugging Face cache and set HF_HUB_OFFLINE=1 (which also makes a miss fail at once "
            "instead of after retries)"
        ) from err


def _run_show_boxes(args: argparse.Namespace) -> int:
    import torch
    from timm.data import resolve_data_config

    from ..boxes import paired_iou
    from ..data import build_dataset, default_train_split, parse_data_spec
    from ..localize import (
        eval_transform,
        feature_heatmaps,
        heatmap_boxes,
        localization_defaults,
        resolve_stage,
        warn_if_too_coarse,
    )
    from ..viz import heatmap_boxes_grid

    # Everything that can be checked without data or weights, first.
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {str(out)!r}")
    if args.checkpoint is not None and args.pretrained:
        raise ValueError("give either --checkpoint or --pretrained, not both")
    checkpoint = Path(args.checkpoint).expanduser() if args.checkpoint is not None else None
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist or is not a file")
    spec = parse_data_spec(args.data)
    split = args.split or default_train_split(spec)
    probe, model_kwargs = _probe_model(args.model)
    if probe is not None:
        info = resolve_stage(probe, args.stage)  # ValueError for a stage it does not have

    dataset = build_dataset(spec, split=split)
    count = min(args.num_images, len(dataset))
    images = [dataset[i][0] for i in range(count)]
    gt_all = getattr(dataset, "gt_boxes", None)
    gt_boxes = gt_all[:count].float() if gt_all is not None else None

    with torch.random.fork_rng(devices=[]):  # reproducible random init, global RNG untouched
        torch.manual_seed(args.seed)
        model = _create_backbone(args.model, args.pretrained, model_kwargs)
    if checkpoint is not None:
        ignored = _load_checkpoint(model, checkpoint, args.model)
        note = f" (ignored classifier weights: {', '.join(ignored)})" if ignored else ""
        print(f"loaded {checkpoint}{note}")
    model.eval()
    info = resolve_stage(model, args.stage)
    defaults = localization_defaults(model)
    reduction = args.reduction or defaults.reduction
    threshold = defaults.threshold if args.threshold is None else args.threshold
    size = args.image_size or min(max(images[0].size), 224)
    data_config = resolve_data_config({}, model=model)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        too_coarse = warn_if_too_coarse(model, (size, size), args.stage)
    for caught_warning in caught:
        print(f"warning: {caught_warning.message}", file=sys.stderr)
    transform = eval_transform(size, data_config["mean"], data_config["std"])
    batch = torch.stack([transform(image) for image in images])
    try:
        maps, flat = feature_heatmaps(model, batch, args.stage, reduction,
                                      return_degenerate=True)
    except (RuntimeError, AssertionError) as err:  # e.g. a fixed-size model at another size
        native = data_config.get("input_size", (3, "?", "?"))[1:]
        raise ValueError(
            f"{args.model} cannot run at {size}x{size} ({type(err).__name__}: {err}); try "
            f"--image-size {native[0]} (its native size) or a model that takes any size"
        ) from err
    boxes, degenerate = heatmap_boxes(maps, threshold, (size, size), return_degenerate=True)
    degenerate = degenerate | flat
    if too_coarse:
        degenerate = torch.ones_like(degenerate)

    captions = ["no box: random crop" if bad else "" for bad in degenerate.tolist()]
    mean_iou = None
    if gt_boxes is not None:
        ious = paired_iou(boxes, gt_boxes)
        whole = paired_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand_as(gt_boxes), gt_boxes)
        mean_iou, whole_iou = float(ious.mean()), float(whole.mean())
        captions = [f"IoU {float(iou):.2f}" + (f", {caption}" if caption else "")
                    for iou, caption in zip(ious, captions, strict=True)]
    map_h, map_w = maps.shape[-2:]
    title = (f"{args.model} stage {args.stage} ({info['module']}, {map_h}x{map_w} map at "
             f"{size}px), reduction {reduction}, k={threshold:g} | {args.data} [{split}]")
    grid = heatmap_boxes_grid(
        images, maps, [None if bad else box for box, bad in zip(boxes, degenerate.tolist(),
                                                                 strict=True)],
        gt_boxes, views=args.num_views, opacity=args.opacity, alpha=args.alpha,
        tile=args.tile, seed=args.seed, title=title, captions=captions,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG")
    print(f"wrote {out.resolve()} ({grid.width}x{grid.height}, {count} images, "
          f"{args.num_views} ContrastiveCrop views each)")
    print(f"{args.model} stage {args.stage} ({info['module']}): {map_h}x{map_w} heatmaps at "
          f"{size}px, reduction {reduction}, threshold {threshold:g}; "
          f"{int(degenerate.sum())}/{count} without a box")
    if mean_iou is not None:
        print(f"mean IoU with ground truth over the {count} shown images: {mean_iou:.3f} "
              f"(whole-image box: {whole_iou:.3f})")
    else:
        print(f"note: {args.data} has no ground-truth boxes; no IoU")
    return 0


def _config_value(text: str) -> Any:
    """A command-line value as YAML: numbers, true/false, null, {k: v} and [..] work."""
    import yaml

    for number in (int, float):  # YAML reads '1e30' as a string
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _run_pretrain(args: argparse.Namespace) -> int:
    from ..config import TrainConfig, load_recipe
    from ..runs import list_checkpoints
    from ..train import TrainingStopped, train

    values = load_recipe(args.recipe) if args.recipe else {}
    overrides = {key: value for key, value in vars(args).items()
                 if key in TrainConfig.__dataclass_fields__ and value is not None}
    config = TrainConfig.from_dict({**values, **overrides})
    resume = args.resume
    if resume == "auto":
        resume = config.output if list_checkpoints(Path(config.output)) else None
    try:
        result = train(config, resume=resume)
    except TrainingStopped as err:
        print(f"timm-ccrop pretrain: {err}", file=sys.stderr)
        return 3
    return 0 if result.stopped is None else 130


def _add_pretrain_parser(commands: Any) -> None:
    from dataclasses import fields

    from ..config import TrainConfig, list_recipes

    pretrain = commands.add_parser(
        "pretrain", help="Siamese pretraining of any timm backbone (SimCLR, MoCo, BYOL, SimSiam)",
        description="Pretrain with random crop, ContrastiveCrop or SimCCrop views. With no "
                    "arguments: a short CPU job on the built-in dataset. Run under "
                    "`accelerate launch` for several GPUs or nodes. A recipe from "
                    "zoo/recipes sets the paper's settings; every --key overrides it.",
    )
    pretrain.add_argument("--recipe", default=None,
                          help=f"recipe name or YAML path; shipped: {', '.join(list_recipes())}")
    pretrain.add_argument("--resume", default=None, metavar="PATH|auto",
                          help="checkpoint file or run folder to resume from; 'auto' resumes "
                               "the --output folder if it has a checkpoint")
    defaults = TrainConfig()
    for field in fields(TrainConfig):
        default = getattr(defaults, field.name)
        pretrain.add_argument(
            f"--{field.name.replace('_', '-')}", dest=field.name, type=_config_value,
            default=None, metavar="VALUE", help=f"default: {default!r}",
        )
    pretrain.set_defaults(handler=_run_pretrain)


# --------------------------------------------------------------------------------------
# eval: kNN and linear probes of a frozen backbone
# --------------------------------------------------------------------------------------


def _val_fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _run_eval(args: argparse.Namespace) -> int:
    from ..evaluation import EvalConfig, run_evaluation, summary_lines

    config = EvalConfig(
        backbone=args.backbone, data=args.data, protocol=args.protocol, output=args.output,
        image_size=args.image_size, mean=args.mean, std=args.std, batch_size=args.batch_size,
        num_workers=args.num_workers, knn_k=args.knn_k, knn_t=args.knn_t,
        linear_mode=args.linear_mode, probe_recipe=args.probe_recipe, epochs=args.epochs,
        lr=args.lr, augment=args.augment, val_fraction=args.val_fraction, seed=args.seed,
        train_split=args.train_split, test_split=args.test_split,
        mixed_precision=args.mixed_precision, progress=args.progress,
    )
    report = run_evaluation(config)
    from accelerate import PartialState

    if PartialState().is_main_process:
        for line in summary_lines(report):
            print(line)
    return 0


def _add_eval_parser(commands: Any) -> None:
    from ..evaluation import LINEAR_MODES, PROTOCOLS, list_probe_recipes

    evaluate = commands.add_parser(
        "eval", help="kNN and linear-probe accuracy of a frozen backbone; writes eval.json",
        description="Evaluate a frozen backbone on a labelled dataset: weighted cosine kNN "
                    "(top-1/top-5) and/or a linear probe (the official recipe; the FINAL "
                    "epoch's accuracy is reported, the test split never selects anything). "
                    "Writes eval.json next to the backbone or to --output. Runs under "
                    "`accelerate launch` for several GPUs.",
    )
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
    evaluate.add_argument("--val-fraction", type=_val_fraction, default=0.0,
                          help="carve this seeded fraction of the train split out as a "
                               "validation split for choosing hyper-parameters; reported "
                               "too (default: 0, none)")
    evaluate.add_argument("--image-size", type=_image_size, default=None,
                          help="input size (default: the model's pretrained_cfg)")
    evaluate.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                          help="normalisation mean (default: the model's pretrained_cfg)")
    evaluate.add_argument("--std", type=_positive_float, nargs=3, default=None,
                          metavar=("R", "G", "B"),
                          help="normalisation std (default: the model's pretrained_cfg)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=None,
                          help="global batch of the probe and of feature extraction "
                               "(default: the probe recipe's, 512)")
    evaluate.add_argument("--num-workers", type=_non_negative_int, default=2)
    evaluate.add_argument("--knn-k", type=_positive_int, default=200,
                          help="neighbours (clipped to the train set size)")
    evaluate.add_argument("--knn-t", type=_positive_float, default=0.1,
                          help="temperature of the vote weights exp(sim / T)")
    evaluate.add_argument("--linear-mode", choices=LINEAR_MODES, default="fast",
                          help="fast: the recipe's SGD on features cached once without "
                               "augmentation; paper: images through the frozen backbone every "
                               "epoch with RandomResizedCrop + flip (default: fast)")
    evaluate.add_argument("--probe-recipe", default="auto", metavar="NAME|PATH",
                          help=f"probe recipe: {', '.join(list_probe_recipes())} or a YAML "
                               "path; auto: imagenet for inputs >= 128 px, else small")
    evaluate.add_argument("--epochs", type=_positive_int, default=None,
                          help="probe epochs (default: the recipe's, 100; the lr decays at "
                               "60%% and 80%%)")
    evaluate.add_argument("--lr", type=_positive_float, default=None,
                          help="probe lr (default: the recipe's: 10 small, 30 imagenet)")
    evaluate.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                          help="paper mode: train augmentation (--no-augment: eval transform)")
    evaluate.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
                          help="autocast of the backbone's forward passes")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of the validation split, probe init and order, and of a "
                               "randomly initialised backbone")
    evaluate.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                          help="tqdm progress bars")
    evaluate.set_defaults(handler=_run_eval)


# --------------------------------------------------------------------------------------
# export, push, zoo: the Hugging Face Hub and the model zoo (timm_ccrop.hub, .zoo_index)
# --------------------------------------------------------------------------------------


def _run_export(args: argparse.Namespace) -> int:
    from ..hub import export_official, export_run

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
                         license=args.license, tag=args.tag, eval_reports=args.eval_json)
    files = sorted(p.name for p in Path(out).iterdir())
    print(f"wrote {Path(out).resolve()}: {', '.join(files)}")
    print(f"load it with timm.create_model('local-dir:{out}', pretrained=True) after "
          "`import timm_ccrop`; publish it with `timm-ccrop push "
          f"{out} --repo-id ORG/NAME`")
    return 0


def _run_push(args: argparse.Namespace) -> int:
    from ..hub import PushError, push_folder

    try:
        result = push_folder(args.folder, args.repo_id, private=args.private,
                             revision=args.revision, create_pr=args.create_pr,
                             dry_run=args.dry_run, require_metrics=args.require_metrics,
                             commit_message=args.commit_message)
    except PushError as err:
        print(f"timm-ccrop push: error: {err}", file=sys.stderr)
        return 1
    for line in result.summary():
        print(line)
    return 0


def _run_zoo(args: argparse.Namespace) -> int:
    import json

    from ..hub.zoo import entry_problems, format_zoo_table, load_zoo, registered_zoo_tags

    entries = load_zoo()
    if args.json:
        print(json.dumps([entry.raw for entry in entries], indent=2))
    else:
        print(format_zoo_table(entries))
        registered = set(registered_zoo_tags())
        print(f"\n{len(entries)} model{'' if len(entries) == 1 else 's'}; registered with timm: "
              f"{sum(e.name in registered for e in entries)} "
              "(timm.create_model('ARCH.TAG', pretrained=True) after `import timm_ccrop`)")
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


def _add_hub_parsers(commands: Any) -> None:
    from ..hub import OFFICIAL_DATASETS

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
                        help="replace an existing --out folder (once the new one is complete)")
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
    export.set_defaults(handler=_run_export)

    push = commands.add_parser(
        "push", help="validate an exported folder and upload it to the Hugging Face Hub",
        description="Check the folder (config.json with architecture and pretrained_cfg, "
                    "model.safetensors loads, README.md with front-matter, no pickle files), "
                    "then create the repo (exist_ok) and upload the folder. The token is "
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
    push.set_defaults(handler=_run_push)

    zoo = commands.add_parser(
        "zoo", help="list the model zoo (zoo/models.yaml)",
        description="Print the released models: architecture.tag (a timm pretrained name), "
                    "method, crop mode, data, measured kNN / linear top-1 and where the "
                    "weights are.",
    )
    zoo.add_argument("--validate", action="store_true",
                     help="check every entry (fields, ids, recipe, weights and their sha256)")
    zoo.add_argument("--json", action="store_true", help="print the entries as JSON")
    zoo.set_defaults(handler=_run_zoo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``timm-ccrop`` (all subcommands)."""
    from ..localize import REDUCTIONS

    parser = argparse.ArgumentParser(
        prog="timm-ccrop",
        description="ContrastiveCrop for timm: views, pretraining, evaluation, Hub export.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="render ContrastiveCrop vs RandomResizedCrop views to a PNG",
        description="Render a grid of images with their boxes and sampled views of both crop "
                    "modes. Uses ground-truth boxes where the dataset has them (the built-in "
                    "synthetic set does).",
    )
    demo.add_argument("--data", default="synthetic",
                      help="dataset spec, e.g. synthetic, cifar10:PATH, folder:PATH "
                           "(default: the built-in synthetic set)")
    demo.add_argument("--out", default="ccrop_views.png", help="PNG file to write")
    demo.add_argument("--num-images", type=_positive_int, default=6)
    demo.add_argument("--num-views", type=_positive_int, default=4)
    demo.add_argument("--alpha", type=_positive_float, default=0.6,
                      help="Beta(alpha, alpha) of ContrastiveCrop (paper: 0.6)")
    demo.add_argument("--min-scale", type=_fraction, default=0.2,
                      help="smallest crop area fraction (paper: 0.2)")
    demo.add_argument("--tile", type=_positive_int, default=96, help="tile size in pixels")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_run_demo)

    show = commands.add_parser(
        "show-boxes", help="render a model's heatmaps, boxes and ContrastiveCrop views to a PNG",
        description="Run a timm backbone over a few images and draw what ContrastiveCrop's "
                    "localization sees: the heatmap (channel reduction of one stage's feature "
                    "map) overlaid on each image, the box around everything above the "
                    "threshold (white), the ground-truth box (green) where the dataset has "
                    "one, and ContrastiveCrop views sampled from the box. Prints the mean IoU "
                    "with the ground truth.",
    )
    show.add_argument("--data", default="synthetic",
                      help="dataset spec, e.g. synthetic, cifar10:PATH, folder:PATH "
                           "(default: the built-in synthetic set)")
    show.add_argument("--split", default=None,
                      help="dataset split (default: the pretraining split, usually train)")
    show.add_argument("--model", default="test_resnet",
                      help="any timm model name, also hf-hub:ORG/NAME or local-dir:PATH "
                           "(default: test_resnet)")
    show.add_argument("--checkpoint", default=None, metavar="PATH",
                      help="weights to load: a .safetensors file or a torch.save'd state "
                           "dict (possibly nested under 'model'/'state_dict')")
    show.add_argument("--pretrained", action="store_true",
                      help="load timm's pretrained weights (needs the Hub or a filled cache)")
    show.add_argument("--image-size", type=_image_size, default=None,
                      help="input resolution of the box pass (default: the images' own size, "
                           "at most 224)")
    show.add_argument("--stage", type=int, default=-1,
                      help="feature stage of the heatmap: -1 last, -2 the one before, ...")
    show.add_argument("--reduction", choices=REDUCTIONS, default=None,
                      help="channel reduction (default: per model family)")
    show.add_argument("--threshold", type=_unit_interval, default=None,
                      help="box threshold k in [0, 1] (default: per model family; paper 0.1)")
    show.add_argument("--alpha", type=_positive_float, default=0.6,
                      help="Beta(alpha, alpha) of ContrastiveCrop's views (paper: 0.6)")
    show.add_argument("--opacity", type=_unit_interval, default=0.5,
                      help="weight of the heatmap colours in the overlay, in [0, 1]")
    show.add_argument("--num-images", type=_positive_int, default=6)
    show.add_argument("--num-views", type=_non_negative_int, default=4,
                      help="ContrastiveCrop views per image (0 for none)")
    show.add_argument("--tile", type=_tile, default=96, help="tile size in pixels (>= 16)")
    show.add_argument("--out", default="ccrop_boxes.png", help="PNG file to write")
    show.add_argument("--seed", type=int, default=0,
                      help="seed of the views' sampler and of a randomly initialised model")
    show.set_defaults(handler=_run_show_boxes)
    _add_pretrain_parser(commands)
    _add_eval_parser(commands)
    _add_hub_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``timm-ccrop`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"timm-ccrop {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
