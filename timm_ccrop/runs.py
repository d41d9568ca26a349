"""The run folder: everything a pretraining run writes, and the only code that writes it.

A run folder (``--output`` of ``timm-ccrop pretrain``) holds::

    config.yaml                 the resolved TrainConfig
    metrics.jsonl               one JSON row per finished epoch
    boxes.csv                   the current box of every training image (one schema)
    checkpoint-epoch0004.pt     the newest ``keep_checkpoints`` epoch checkpoints
    boxes-epoch0004.png         the trainer's box pictures
    backbone/                   the final backbone in timm's Hub layout
    snapshots/epoch0004.pt      the method's weights (only with --snapshots, for studies)
    .lock                       held by the trainer writing the folder

Every file is written atomically (a temporary sibling, fsync, rename), so a crash leaves
either the old or the new file, never a torn one. Folders (exports) are built in a
staging sibling and renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import fnmatch
import io
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from .utils.folders import (
    EXPORT_FOLDER_FILES,
    OutputExistsError,
    atomic_write_bytes,
    atomic_write_text,
    ensure_writable_folder,
    foreign_entries,
    replace_folder,
    staging_folder,
)
from .utils.integrity import (
    STATE_SHA256_KEY,
    WEIGHTS_SHA256_KEY,
    WeightsIntegrityError,
    checkpoint_state_digest,
    checkpoint_weights_digest,
    verify_checkpoint_state,
)

__all__ = [
    "BOXES_CSV_COLUMNS",
    "CHECKPOINT_PATTERN",
    "OutputExistsError",
    "RunFolder",
    "RunFolderError",
    "atomic_write_bytes",
    "atomic_write_text",
    "ensure_writable_folder",
    "list_checkpoints",
    "read_checkpoint",
    "read_metrics",
    "read_run_config",
    "replace_folder",
    "save_checkpoint",
    "staging_folder",
    "write_boxes_csv",
]

_LOG = logging.getLogger(__name__)

CHECKPOINT_PATTERN = "checkpoint-epoch{epoch:04d}.pt"
CHECKPOINT_GLOB = "checkpoint-epoch*.pt"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
BOXES_FILE = "boxes.csv"
BASELINE_FILE = "baseline.json"  # what the run is compared with, measured before epoch 1
SUMMARY_FILE = "summary.json"
PLOT_FILE = "metrics.png"
BACKBONE_DIR = "backbone"
SNAPSHOT_DIR = "snapshots"
#: The one ``boxes.csv`` schema: boxes are ``(x0, y0, x1, y1)`` normalised to [0, 1].
BOXES_CSV_COLUMNS = ("index", "sample_id", "x0", "y0", "x1", "y1", "valid")


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Run config, metrics, boxes
# --------------------------------------------------------------------------------------


def read_run_config(run: Path) -> dict[str, Any] | None:
    """The run's ``config.yaml`` as a dict, or None when there is none.

    Raises ValueError (one line naming the file) when it is not a YAML mapping.
    """
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid YAML ({' '.join(str(err).split())[:200]}); "
                         "restore the run's config.yaml (each checkpoint carries a copy)"
                         ) from err
    if not isinstance(values, dict):
        raise ValueError(f"{path} must be a YAML mapping of config keys, got "
                         f"{type(values).__name__}; restore the run's config.yaml")
    return values


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (a run folder or the file itself).

    Raises ValueError naming the file and the line when a row is not a JSON object.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path} line {number} is not valid JSON ({err}); remove or "
                             "repair that line") from err
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int) \
                or isinstance(row["epoch"], bool):
            raise ValueError(f"{path} line {number} is not a metrics row (a JSON object "
                             f"with an integer 'epoch'), got {line.strip()[:60]!r}; remove "
                             "or repair that line")
        rows.append(row)
    return rows


def write_boxes_csv(path: Path, boxes: torch.Tensor, valid: torch.Tensor | None = None,
                    sample_ids: Sequence[str] | None = None) -> None:
    """Write ``boxes`` (N x 4, normalised ``x0, y0, x1, y1``) in the one ``boxes.csv``
    schema (:data:`BOXES_CSV_COLUMNS`), atomically. ``sample_ids`` default to the index;
    ``valid`` to all True."""
    rows = boxes.reshape(-1, 4).tolist()
    flags = valid.tolist() if valid is not None else [True] * len(rows)
    ids = list(sample_ids) if sample_ids is not None else [str(i) for i in range(len(rows))]
    if not len(rows) == len(flags) == len(ids):
        raise ValueError(f"boxes ({len(rows)}), valid ({len(flags)}) and sample ids "
                         f"({len(ids)}) differ in length")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BOXES_CSV_COLUMNS)
    for index, (row, flag, sample_id) in enumerate(zip(rows, flags, ids, strict=True)):
        writer.writerow([index, sample_id, *(f"{v:.6f}" for v in row), int(bool(flag))])
    atomic_write_text(Path(path), out.getvalue())


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (holds another run, or is in use)."""


#: What a run writes into its folder (``has_run`` looks for these).
RUN_FILE_PATTERNS = (CONFIG_FILE, METRICS_FILE, BOXES_FILE, CHECKPOINT_GLOB,
                     "boxes-epoch*.png", BACKBONE_DIR, SNAPSHOT_DIR, BASELINE_FILE,
                     SUMMARY_FILE, PLOT_FILE)
LOCK_FILE = ".lock"


class RunFolder:
    """One run's folder: the paths of its files and the reads and writes on them.

    Guarantees (README, "Reliability"): a folder holds one run (:meth:`lock` while a
    trainer writes it; a fresh run refuses a folder that :meth:`has_run` unless told to
    :meth:`clear_run`); every file is written atomically; temporary files of a crashed
    writer are swept on start (:meth:`sweep_temporaries`); metrics rows past the epoch a
    run resumes from are dropped (:meth:`truncate_metrics`), so no row is ever doubled.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def boxes_path(self) -> Path:
        return self.path / BOXES_FILE

    @property
    def backbone_dir(self) -> Path:
        return self.path / BACKBONE_DIR

    baseline_path = property(lambda self: self.path / BASELINE_FILE)
    summary_path = property(lambda self: self.path / SUMMARY_FILE)
    plot_path = property(lambda self: self.path / PLOT_FILE)

    def box_pictures(self) -> list[Path]:
        """The box pictures of the run's box passes, oldest first."""
        return sorted(self.path.glob("boxes-epoch*.png"))

    def write_json(self, path: Path, values: Mapping[str, Any]) -> None:
        """Write ``values`` as JSON to ``path`` (one of this folder's files), atomically."""
        atomic_write_text(path, json.dumps(dict(values), indent=2) + "\n")

    def read_json(self, path: Path) -> dict[str, Any] | None:
        """The JSON object in ``path``, or None when it is missing or unreadable."""
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def checkpoint_path(self, epoch: int) -> Path:
        """Where the checkpoint of finished epoch ``epoch`` goes."""
        return self.path / CHECKPOINT_PATTERN.format(epoch=epoch)

    def box_picture_path(self, epoch: int) -> Path:
        return self.path / f"boxes-epoch{epoch:04d}.png"

    def checkpoints(self) -> list[Path]:
        """Epoch checkpoints, newest first."""
        return list_checkpoints(self.path)

    def create(self) -> None:
        """Create the folder; one-line OSError when it cannot be created or written."""
        ensure_writable_folder(self.path, "the run folder", "choose another --output")

    def run_files(self) -> list[Path]:
        """The files and folders of a run in this folder (empty for a fresh folder)."""
        if not self.path.is_dir():
            return []
        return sorted({found for pattern in RUN_FILE_PATTERNS
                       for found in self.path.glob(pattern)})

    def has_run(self) -> bool:
        return bool(self.run_files())

    def clear_run(self) -> None:
        """Remove a previous run's files (``--overwrite``); other files stay.

        Raises :class:`RunFolderError`, before anything is removed, when the run's
        ``backbone/`` or ``snapshots/`` holds files the run did not write there.
        """
        foreign = [f"{BACKBONE_DIR}/{name}" for name in
                   foreign_entries(self.backbone_dir, EXPORT_FOLDER_FILES)]
        if self.snapshot_dir.is_dir():
            foreign += [f"{SNAPSHOT_DIR}/{p.name}" for p in sorted(self.snapshot_dir.iterdir())
                        if not fnmatch.fnmatch(p.name, "epoch*.pt")]
        if foreign:
            raise RunFolderError(
                f"cannot replace the run in {self.path}: {', '.join(foreign[:5])} "
                "were not written by the run; move them out first (nothing was removed)")
        for path in self.run_files():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def sweep_temporaries(self) -> list[Path]:
        """Remove temporary files and folders a crashed writer left (``.NAME.tmp-*``,
        ``.NAME.old-*``); returns what was removed."""
        swept = sorted([*self.path.glob(".*.tmp-*"), *self.path.glob(".*.old-*")])
        for path in swept:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return swept

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder for the block (one trainer per folder).

        Raises :class:`RunFolderError` at once when another process holds it. The lock is
        the kernel's (``flock``): it goes away with its process, also on SIGKILL.
        """
        handle = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115  (held for the block)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "unknown"
                raise RunFolderError(
                    f"run folder {self.path} is in use by another trainer (pid {owner}); "
                    "wait for it to finish, or choose another --output") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            handle.close()  # releases the lock

    def write_config(self, values: Mapping[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(dict(values), sort_keys=False))

    def read_config(self) -> dict[str, Any] | None:
        return read_run_config(self.path)

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one row to ``metrics.jsonl`` (flushed and synced)."""
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(dict(record)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics_path)

    def truncate_metrics(self, last_epoch: int,
                         last_row: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Make ``metrics.jsonl`` end at ``last_epoch`` (a resume redoes later epochs).

        Rows of later epochs are dropped; ``last_row`` (the row a checkpoint carries) is
        appended when the file lacks ``last_epoch``'s row (a stop between the checkpoint
        and its row). Returns the rows kept.
        """
        rows = self.read_metrics()
        keep = [row for row in rows if int(row.get("epoch", 0)) <= last_epoch]
        if last_row is not None and not any(row.get("epoch") == last_epoch for row in keep):
            keep.append(dict(last_row))
        if keep != rows:
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
        return keep

    def save_checkpoint(self, state: Mapping[str, Any], epoch: int, keep: int) -> Path:
        """Save ``state`` as epoch ``epoch``'s checkpoint; keep the newest ``keep``."""
        path = self.checkpoint_path(epoch)
        save_checkpoint(state, path)
        for old in self.checkpoints()[keep:]:
            old.unlink(missing_ok=True)
        return path

    def read_checkpoint(self) -> tuple[dict[str, Any], Path]:
        return read_checkpoint(self.path)

    @property
    def snapshot_dir(self) -> Path:
        return self.path / SNAPSHOT_DIR

    def snapshot_path(self, epoch: int) -> Path:
        return self.snapshot_dir / f"epoch{epoch:04d}.pt"

    def save_snapshot(self, model_state: Mapping[str, Any], epoch: int,
                      config: Mapping[str, Any]) -> Path:
        """Keep the method's weights after ``epoch`` (``--snapshots``): for offline
        localization studies; never read by a resume."""
        path = self.snapshot_path(epoch)
        save_checkpoint({"model": model_state, "epoch": epoch, "config": dict(config)}, path)
        return path

    def snapshots(self) -> list[Path]:
        """Saved snapshots, oldest first."""
        return sorted(self.snapshot_dir.glob("epoch*.pt"))
