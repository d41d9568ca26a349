"""The run folder: one run's files, claimed by one writer, cleared only of its own files."""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from ..utils.folders import (
    EXPORT_FOLDER_FILES,
    atomic_write_text,
    ensure_writable_folder,
    foreign_entries,
)
from .checkpoints import list_checkpoints, read_checkpoint, save_checkpoint
from .names import (
    BACKBONE_DIR,
    BASELINE_FILE,
    BOXES_FILE,
    CHECKPOINT_GLOB,
    CHECKPOINT_PATTERN,
    CONFIG_FILE,
    METRICS_FILE,
    PLOT_FILE,
    SNAPSHOT_DIR,
    SUMMARY_FILE,
)
from .records import read_boxes_csv, read_metrics, read_run_config

__all__ = ["RUN_FILE_PATTERNS", "RunFolder", "RunFolderError"]


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
        """The rows of ``metrics.jsonl`` (:func:`~timm_ccrop.runs.read_metrics`)."""
        return read_metrics(self.metrics_path)

    def read_boxes(self) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """The run's current boxes, valid flags and sample ids (``boxes.csv``)."""
        return read_boxes_csv(self.boxes_path)

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
