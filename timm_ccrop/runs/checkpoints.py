"""Checkpoints of a run: written atomically with their sha256 records, read back verified,
the newest readable one found when newer ones are damaged."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..utils.folders import atomic_write_bytes
from ..utils.integrity import (
    STATE_SHA256_KEY,
    WEIGHTS_SHA256_KEY,
    WeightsIntegrityError,
    checkpoint_state_digest,
    checkpoint_weights_digest,
    verify_checkpoint_state,
)
from .names import CHECKPOINT_GLOB

__all__ = ["list_checkpoints", "read_checkpoint", "save_checkpoint"]

_LOG = logging.getLogger(__name__)


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` ``state`` atomically (a temporary sibling, fsync, rename), with the
    sha256 of its ``model`` weights recorded under ``weights_sha256`` and the sha256 of
    every other entry (optimizer with its momentum buffers, scheduler, scaler, boxes,
    harvest bank, ...) under ``state_sha256``: a resume checks both.

    A full disk raises OSError naming the file (and leaves no temporary file behind).
    """
    state = dict(state)
    digest = checkpoint_weights_digest(state)
    if digest is not None:
        state[WEIGHTS_SHA256_KEY] = digest
    state[STATE_SHA256_KEY] = checkpoint_state_digest(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = Path(path)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as err:
        raise type(err)(f"cannot write checkpoint {path} ({err.strerror or err}); free space "
                        "(or fix the folder) and resume with --resume auto") from err


def list_checkpoints(run: Path) -> list[Path]:
    """Epoch checkpoints of a run folder, newest first."""
    return sorted(Path(run).glob(CHECKPOINT_GLOB), reverse=True)


def read_checkpoint(run_or_file: Path, verify: bool = True) -> tuple[dict[str, Any], Path]:
    """The newest readable checkpoint of a run folder, or the given file
    (``weights_only=True``); in a folder, unreadable or corrupted checkpoints are skipped
    with a warning.

    Args:
        run_or_file: a run folder or a checkpoint file.
        verify: check the weights against their recorded sha256 (see
            :func:`~timm_ccrop.models.backbones.verify_checkpoint_state`); False for a checkpoint
            edited on purpose.

    Raises FileNotFoundError when there is none, ValueError (WeightsIntegrityError for a
    sha256 mismatch of a single file) when none can be read.
    """
    run_or_file = Path(run_or_file)
    single = run_or_file.is_file()
    candidates = [run_or_file] if single else list_checkpoints(run_or_file)
    if not candidates:
        raise FileNotFoundError(f"no {CHECKPOINT_GLOB} in {run_or_file}")
    skipped: list[str] = []
    for candidate in candidates:
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True)
            if verify:
                verify_checkpoint_state(state, candidate)
        except Exception as err:  # truncated or corrupt: fall back to the previous one
            if single and isinstance(err, WeightsIntegrityError):
                raise
            if single:
                raise ValueError(f"checkpoint {candidate} is unreadable "
                                 f"({type(err).__name__}: {_first_line(err)})") from err
            skipped.append(f"{candidate.name} ({type(err).__name__}: {_first_line(err)})")
            continue
        if skipped:
            _LOG.warning("skipped damaged newer checkpoints: %s; using %s",
                         "; ".join(skipped), candidate.name)
        return state, candidate
    raise ValueError(f"every checkpoint in {run_or_file} is unreadable ({'; '.join(skipped)}); "
                     "start a new run or point --resume at a readable checkpoint file")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""
