"""Backbones: create one from a timm name, read weights from any file, hash them.

The one place that knows how a backbone is built (``num_classes=0``, the CIFAR-stem
architectures registered, ViTs made size-agnostic), how a state dict is read from a
``.safetensors`` or ``torch.save`` file (plain, nested under ``model``/``state_dict``, or
with DDP/compile prefixes), how a training checkpoint's ``backbone.*`` weights are cut
out, and how weights are hashed for eval reports and exports. An exported
``model.safetensors`` records the sha256 of its tensors in the file's metadata
(:func:`sign_weights_file`); reading it checks them (:func:`verify_weights_file`).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import is_model, parse_model_name
from torch import nn

from ..utils.integrity import (
    WEIGHTS_SHA256_KEY,
    WeightsIntegrityError,
    checkpoint_weights_digest,
    read_safetensors,
    sign_weights_file,
    state_dict_sha256,
    unverified_pretrained,
    verify_checkpoint_state,
    verify_weights_file,
)
from . import cifar  # noqa: F401  (registers the CIFAR-stem architectures with timm)

__all__ = [
    "CONFIG_NAME",
    "EXPORT_WEIGHT_FILES",
    "WEIGHTS_NAME",
    "WEIGHTS_SHA256_KEY",
    "WRAPPER_PREFIXES",
    "WeightsIntegrityError",
    "backbone_state_from_checkpoint",
    "checkpoint_weights_digest",
    "create_backbone",
    "eval_mode",
    "export_weights_file",
    "load_backbone_weights",
    "probe_model",
    "read_state_dict",
    "sha256_file",
    "sign_weights_file",
    "state_dict_sha256",
    "strip_wrapper_prefixes",
    "unwrap_model",
    "verify_checkpoint_state",
    "verify_weights_file",
]

#: timm's Hub layout: the weights and the config of an exported backbone folder.
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
EXPORT_WEIGHT_FILES = (WEIGHTS_NAME, "pytorch_model.bin")
#: Prefixes added by DDP/DataParallel and torch.compile; stripped from checkpoint keys.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Keys under which training scripts nest the model's state dict in a checkpoint.
CHECKPOINT_NESTS = ("model", "state_dict")
#: The prefix of the backbone's weights inside a timm-ccrop training checkpoint.
BACKBONE_PREFIX = "backbone."
# --------------------------------------------------------------------------------------
# Creating
# --------------------------------------------------------------------------------------


def _unknown_model(name: str) -> ValueError:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = (f"; did you mean {', '.join(close)}?" if close
            else "; see timm.list_models() (timm_ccrop adds resnet18_cifar, ...)")
    return ValueError(f"unknown timm model {name!r}{hint}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def create_backbone(name: str, *, pretrained: bool = False, seed: int | None = None,
                    verify: bool = True, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, num_classes=0, **kwargs)`` with one-line errors.

    Args:
        name: a timm model name (``resnet18``, ``resnet18.a1_in1k``, ``hf-hub:org/name``,
            ``local-dir:PATH``, or one of our CIFAR-stem architectures).
        pretrained: load the name's pretrained weights.
        seed: when given, the random initialisation is seeded (without touching the
            caller's RNG state).
        verify: with ``pretrained``, check a local weights file against the sha256 its
            export recorded (False: weights edited on purpose).
        kwargs: further ``create_model`` arguments (``model_kwargs`` of a run).

    Raises ValueError for an unknown name or pretrained weights that cannot be loaded.
    """
    source, arch = parse_model_name(name)
    if source is None and not is_model(arch.split(".", 1)[0]):
        raise _unknown_model(arch)
    if "num_classes" in kwargs:
        raise ValueError(f"model_kwargs may not set num_classes (got {kwargs['num_classes']!r}): "
                         "a backbone is always built without a classifier (num_classes=0); "
                         "drop it")
    try:
        with torch.random.fork_rng(devices=[], enabled=seed is not None), \
                (contextlib.nullcontext() if verify else unverified_pretrained()):
            if seed is not None:
                torch.manual_seed(seed)
            return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except TypeError as err:  # an argument the architecture does not take
        if not kwargs:
            raise
        raise ValueError(f"cannot build {name!r} with model_kwargs {kwargs}: "
                         f"{_first_line(err)}; drop or rename the argument") from err
    except WeightsIntegrityError:  # our architectures check local weights (one line)
        raise
    except Exception as err:
        if source is None and not pretrained:
            raise
        what = "with pretrained weights" if pretrained else "(its config.json)"
        raise ValueError(
            f"cannot build {name!r} {what} ({type(err).__name__}: {_first_line(err)}). "
            "Without network access: use a local copy (local-dir:PATH, a folder with "
            "config.json and model.safetensors), or put the files into the Hugging Face "
            "cache and set HF_HUB_OFFLINE=1 (a miss then fails at once instead of after "
            "retries)"
        ) from err


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


def probe_model(name: str) -> tuple[nn.Module | None, dict[str, Any]]:
    """Build ``name`` on the meta device (no weights, no memory).

    It fails fast on unknown names, lets a stage be checked before any data is read, and
    tells whether the model is ViT-like and takes ``dynamic_img_size`` (then True, so any
    image size works). Returns the probe (None if it cannot be built on the meta device)
    and extra ``create_backbone`` keyword arguments.
    """
    source, arch = parse_model_name(name)
    if source is None and not is_model(arch):
        raise _unknown_model(arch)
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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block; restore its previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP/DataParallel, ``torch.compile`` and Accelerate wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# --------------------------------------------------------------------------------------
# Reading weights
# --------------------------------------------------------------------------------------


def strip_wrapper_prefixes(key: str) -> str:
    """``'module._orig_mod.conv1.weight'`` -> ``'conv1.weight'`` (any order, repeated)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def _load_file(path: Path, verify: bool) -> Any:
    if path.suffix.lower() == ".safetensors":
        return verify_weights_file(path) if verify else read_safetensors(path)[0]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ...
        raise ValueError(
            f"cannot read {path} with torch.load(weights_only=True) ({type(err).__name__}: "
            f"{_first_line(err)}); it must be a state dict saved with torch.save or a "
            ".safetensors file"
        ) from err
    if verify and isinstance(state, dict):
        verify_checkpoint_state(state, path)
    return state


def read_state_dict(path: str | Path, verify: bool = True) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.save`` file (weights only).

    Accepts a plain state dict or one nested under ``'model'``/``'state_dict'``; strips
    ``module.``/``_orig_mod.`` prefixes. With ``verify``, weights are checked against the
    sha256 recorded when they were written (a safetensors file's metadata, a training
    checkpoint's ``weights_sha256``). Raises FileNotFoundError for a missing file,
    :class:`WeightsIntegrityError` for a mismatch and ValueError when the file is no
    state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist or is not a file")
    state = _load_file(path, verify)
    while isinstance(state, dict):
        nested = next((state[k] for k in CHECKPOINT_NESTS if isinstance(state.get(k), dict)),
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


def backbone_state_from_checkpoint(state: Mapping[str, Any], source: Any = "checkpoint"
                                   ) -> dict[str, torch.Tensor]:
    """The ``backbone.*`` weights of a timm-ccrop training checkpoint, prefix removed.

    ``state`` is the whole checkpoint (with a ``model`` entry) or its model state dict.
    Raises ValueError when there are none.
    """
    model_state = state.get("model", state)
    if not isinstance(model_state, Mapping):
        raise ValueError(f"{source} has no 'model' state dict")
    weights = {strip_wrapper_prefixes(k)[len(BACKBONE_PREFIX):]: v
               for k, v in model_state.items()
               if strip_wrapper_prefixes(k).startswith(BACKBONE_PREFIX)}
    if not weights:
        raise ValueError(f"{source} has no {BACKBONE_PREFIX}* weights (is it a timm-ccrop "
                         "training checkpoint?)")
    return weights


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{name}." for name in names)


def _describe(what: str, keys: list[str]) -> str:
    more = f", ... ({len(keys) - 3} more)" if len(keys) > 3 else ""
    return f"{len(keys)} {what} ({'; '.join(keys[:3])}{more})"


def load_backbone_weights(model: nn.Module, state: Mapping[str, torch.Tensor],
                          source: Any = "checkpoint") -> list[str]:
    """Load ``state`` into ``model`` strictly; returns the classifier keys it ignored.

    The backbone is built without a classifier (``num_classes=0``), so classifier weights
    in ``state`` are dropped. Any other missing or unexpected key, or a shape mismatch, is
    a ValueError that names the first few (``num_batches_tracked`` may be missing).
    """
    state = dict(state)
    own = model.state_dict()
    classifier = _classifier_prefixes(model)
    ignored = [k for k in state if k not in own and classifier and k.startswith(classifier)]
    for key in ignored:
        del state[key]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                for k, v in state.items() if k in own and v.shape != own[k].shape]
    problems = [_describe(what, keys) for what, keys in
                (("missing", missing), ("unexpected", unexpected),
                 ("with another shape", reshaped)) if keys]
    if problems:
        name = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") \
            or type(model).__name__
        raise ValueError(
            f"{source} does not match model {name!r} (built with num_classes=0): "
            + ", ".join(problems)
            + ". Was it saved from another architecture? Pass the model it was trained with."
        )
    model.load_state_dict(state, strict=False)  # strict but for num_batches_tracked
    return ignored


def export_weights_file(folder: Path) -> Path | None:
    """The weights file of an exported backbone folder (config.json + weights), or None."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        return None
    return next((folder / n for n in EXPORT_WEIGHT_FILES if (folder / n).is_file()), None)


# --------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
