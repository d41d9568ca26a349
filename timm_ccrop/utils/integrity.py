"""Integrity of stored tensors: hash them when they are written, check them when read.

Two records, both sha256:

* ``weights_sha256``: of a state dict (:func:`state_dict_sha256`): in an exported
  ``model.safetensors``' metadata (:func:`sign_weights_file`, checked by
  :func:`verify_weights_file`) and in a training checkpoint (its ``model`` entry).
* ``state_sha256``: of everything else a training checkpoint holds that a resume reads
  (:func:`structure_sha256` over optimizer state with its momentum buffers, scheduler,
  grad scaler, box table, harvested heatmaps, epoch, config, metrics row), so that a
  flipped byte anywhere in it is found before a resume uses it.

A file without a record (written before records were, or by timm itself) passes: the
records prove that bytes did not change, not where a file came from.
:func:`verify_pretrained_file` checks the file timm loads for a model built with
``pretrained=True`` (``local-dir:``, a bundled ``file``, a cached Hub download).

This module is a primitive: it knows tensors and files, not models or runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import safe_open
from safetensors.torch import save_file

__all__ = [
    "STATE_SHA256_KEY",
    "WEIGHTS_FILE_NAME",
    "WEIGHTS_SHA256_KEY",
    "WeightsIntegrityError",
    "checkpoint_state_digest",
    "checkpoint_weights_digest",
    "pretrained_weights_file",
    "read_safetensors",
    "sign_weights_file",
    "state_dict_sha256",
    "unverified_pretrained",
    "structure_sha256",
    "verify_checkpoint_state",
    "verify_pretrained_file",
    "verify_weights_file",
]

#: The key of the weights' sha256: in an exported model.safetensors' metadata, and in a
#: timm-ccrop training checkpoint (of its ``model`` state dict).
WEIGHTS_SHA256_KEY = "weights_sha256"
#: The key of a training checkpoint's sha256 over every other entry (see module doc).
STATE_SHA256_KEY = "state_sha256"
#: The weights file of timm's Hub layout (what ``local-dir:`` prefers).
WEIGHTS_FILE_NAME = "model.safetensors"
_RECORD_KEYS = (WEIGHTS_SHA256_KEY, STATE_SHA256_KEY)
_VERIFY_OPT_OUT = "or pass --no-verify-weights for a file edited on purpose"
# Whether verify_pretrained_file checks (off inside unverified_pretrained()): a context
# variable, so that an opt-out reaches timm's call into our entrypoint without a global.
_VERIFY_PRETRAINED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "timm_ccrop_verify_pretrained", default=True)


class WeightsIntegrityError(ValueError):
    """Stored tensors that differ from the sha256 recorded when they were written."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the sorted names, dtypes, shapes and raw bytes of a state dict."""
    digest = hashlib.sha256()
    for key in sorted(state):
        _update_tensor(digest, key, state[key])
    return digest.hexdigest()


def _update_tensor(digest: Any, key: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def _update_structure(digest: Any, path: str, value: Any) -> None:
    """Feed ``value`` (nested dicts, lists, tensors, plain values) to ``digest``; every
    entry is named by its path, so a moved value changes the hash too."""
    if isinstance(value, torch.Tensor):
        _update_tensor(digest, path, value)
    elif isinstance(value, Mapping):
        digest.update(f"{path}|dict|{len(value)}|".encode())
        # keys may mix types (the optimizer's state is keyed by int): order by their text
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _update_structure(digest, f"{path}/{type(key).__name__}:{key!r}", value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{path}|{type(value).__name__}|{len(value)}|".encode())
        for index, item in enumerate(value):
            _update_structure(digest, f"{path}/{index}", item)
    else:  # None, bool, int, float, str, ...: repr is exact for each of them
        digest.update(f"{path}|{type(value).__name__}|{value!r}|".encode())


def structure_sha256(value: Any) -> str:
    """sha256 of a nested structure of dicts, lists, tuples, tensors and plain values
    (what ``torch.load(weights_only=True)`` returns): names, types, shapes and bytes."""
    digest = hashlib.sha256()
    _update_structure(digest, "", value)
    return digest.hexdigest()


def checkpoint_weights_digest(state: Mapping[str, Any]) -> str | None:
    """The sha256 a training checkpoint records of its ``model`` state dict (None when
    it has none)."""
    model = state.get("model")
    if not isinstance(model, Mapping) or not model:
        return None
    return state_dict_sha256(model)


def checkpoint_state_digest(state: Mapping[str, Any]) -> str:
    """The sha256 a training checkpoint records of everything but its model and its
    records: optimizer, scheduler, scaler, boxes, harvest bank, epoch, config, ..."""
    rest = {key: value for key, value in state.items()
            if key not in (*_RECORD_KEYS, "model")}
    return structure_sha256(rest)


def _check_recorded(recorded: Any, actual: str, what: str, fix: str,
                    opt_out: str = _VERIFY_OPT_OUT) -> None:
    # Files written before hashes were recorded (and timm's own) carry none: they pass.
    if recorded is not None and actual != recorded:
        raise WeightsIntegrityError(
            f"{what} does not match the sha256 recorded when it was written (corrupted or "
            f"edited); {fix}, {opt_out}")


def verify_checkpoint_state(state: Mapping[str, Any], source: Any) -> None:
    """Check a training checkpoint against its records: the ``model`` weights and every
    other entry a resume reads (optimizer with its momentum buffers, box table, ...).

    Raises :class:`WeightsIntegrityError` naming what differs; a checkpoint without a
    record (written before records were) passes that check.
    """
    fix = "use another checkpoint (--resume FILE)"
    if isinstance(state.get("model"), Mapping) and state.get(WEIGHTS_SHA256_KEY) is not None:
        _check_recorded(state[WEIGHTS_SHA256_KEY], state_dict_sha256(state["model"]),
                        f"checkpoint {source} (its model weights)", fix,
                        "or, for eval and export of a file edited on purpose, pass "
                        "--no-verify-weights")
    if state.get(STATE_SHA256_KEY) is not None:
        _check_recorded(state[STATE_SHA256_KEY], checkpoint_state_digest(state),
                        f"checkpoint {source} (its optimizer, scheduler, boxes or other "
                        "training state)", fix,
                        "or, for a checkpoint edited on purpose, save it again with "
                        "timm_ccrop.runs.save_checkpoint (it records new sha256s)")


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the header metadata of a safetensors file (on the CPU).

    Raises ValueError (one line naming the file) for a file that is no safetensors.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # SafetensorError, OSError: a corrupt or foreign file
        raise ValueError(f"cannot read {path} as safetensors: {_first_line(err)}") from err
    return tensors, metadata


def verify_weights_file(path: str | Path,
                        opt_out: str = _VERIFY_OPT_OUT) -> dict[str, torch.Tensor]:
    """Check a ``.safetensors`` file's tensors against the sha256 in its metadata.

    Returns the tensors; ``opt_out`` is the message's way out for a file edited on
    purpose. Raises :class:`WeightsIntegrityError` (a ValueError, one line
    naming the file and the fix) on a mismatch, ValueError for a file that is no
    safetensors. A file without a recorded sha256 (an older export, timm's own) passes.
    """
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    recorded = metadata.get(WEIGHTS_SHA256_KEY)
    if recorded is not None:
        _check_recorded(recorded, state_dict_sha256(tensors), f"weights file {path}",
                        "re-export it", opt_out)
    return tensors


def sign_weights_file(path: str | Path) -> str:
    """Rewrite a ``.safetensors`` file with the sha256 of its tensors in its metadata
    (under :data:`WEIGHTS_SHA256_KEY`; other metadata kept); returns that sha256."""
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    digest = state_dict_sha256(tensors)
    temporary = path.with_name(f".{path.name}.signing")
    # A sibling then a rename: the tensors just read may still map the original file.
    save_file(tensors, str(temporary), metadata={**metadata, WEIGHTS_SHA256_KEY: digest})
    os.replace(temporary, path)
    return digest


def pretrained_weights_file(pretrained_cfg: Mapping[str, Any] | None) -> Path | None:
    """The ``.safetensors`` file timm reads for ``pretrained_cfg``, where it can be known
    without a download: ``local-dir:`` (``DIR/model.safetensors``, timm's first choice),
    a ``file`` entry, or a Hub file already in the local cache. None otherwise."""
    cfg = dict(pretrained_cfg or {})
    source = cfg.get("file")
    if source:
        path = Path(source)
        path = path / WEIGHTS_FILE_NAME if path.is_dir() else path
        return path if path.suffix == ".safetensors" and path.is_file() else None
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return None
    filename = cfg.get("hf_hub_filename") or WEIGHTS_FILE_NAME
    if not str(filename).endswith(".safetensors"):
        return None
    # the Hub is only read from its local cache here: nothing is downloaded
    repo, _, revision = str(hub_id).partition("@")
    cached = try_to_load_from_cache(repo, str(filename), revision=revision or None)
    return Path(cached) if isinstance(cached, str) and Path(cached).is_file() else None


@contextlib.contextmanager
def unverified_pretrained() -> Iterator[None]:
    """Within the block, :func:`verify_pretrained_file` checks nothing (``--no-verify-
    weights``: weights edited on purpose)."""
    token = _VERIFY_PRETRAINED.set(False)
    try:
        yield
    finally:
        _VERIFY_PRETRAINED.reset(token)


def verify_pretrained_file(pretrained_cfg: Mapping[str, Any] | None) -> Path | None:
    """Check the weights file of ``pretrained_cfg`` (see :func:`pretrained_weights_file`)
    against the sha256 in its metadata; returns the file checked (None: none could be
    found, or inside :func:`unverified_pretrained`). Raises
    :class:`WeightsIntegrityError` on a mismatch."""
    if not _VERIFY_PRETRAINED.get():
        return None
    path = pretrained_weights_file(pretrained_cfg)
    if path is not None:
        verify_weights_file(path, opt_out="or, for a file edited on purpose, record its new "
                            f"sha256 with timm_ccrop.utils.integrity.sign_weights_file('{path}')")
    return path
