"""Claiming a run folder for one training run (and giving it back after a failed start).

A folder belongs to one run: :func:`claim_folder` makes it writable, locks it against a
second trainer, refuses one that holds another run (unless ``--overwrite``), sweeps a
crashed writer's temporary files and, when the run fails on its input before its first
epoch ended, removes what it wrote (the whole folder when it created it), so that the
corrected command runs as given.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from accelerate import Accelerator

from ..runs import RunFolder, RunFolderError
from ..utils.distributed import any_process

__all__ = ["claim_folder"]


@contextmanager
def claim_folder(folder: RunFolder, accelerator: Accelerator, fresh: bool,
                 overwrite: bool) -> Iterator[None]:
    """Make ``folder`` this run's, for the block: writable, locked against a second
    trainer, holding no other run (unless ``overwrite``), swept of a crashed writer's
    temporary files. A run that fails on bad input (ValueError, OSError) before it
    finished an epoch leaves nothing behind: a fresh run removes its files, and a folder
    this call created (also by a resume from elsewhere) is removed whole."""
    created = not folder.path.exists()
    with ExitStack() as stack:
        error: Exception | None = None
        if accelerator.is_main_process:
            try:
                folder.create()
                stack.enter_context(folder.lock())
                _check_fresh(folder, fresh, overwrite)
                folder.sweep_temporaries()
                if fresh and overwrite:
                    folder.clear_run()
            except (ValueError, OSError) as err:
                error = err
        if any_process(accelerator, error is not None):
            if accelerator.is_main_process and created:
                stack.close()  # a folder this call made (and locked) for nothing
                shutil.rmtree(folder.path, ignore_errors=True)
            raise error or RunFolderError(f"the main process could not claim {folder.path}")
        try:
            yield
        except (ValueError, OSError):
            if accelerator.is_main_process and (fresh or created) \
                    and not _finished_an_epoch(folder):
                # Bad input: leave no trace, so that the corrected command runs as given.
                stack.close()  # release the lock before removing its file
                _remove_start(folder, created)
            raise


def _finished_an_epoch(folder: RunFolder) -> bool:
    return bool(folder.checkpoints()) or folder.metrics_path.exists()


def _remove_start(folder: RunFolder, created: bool) -> None:
    """Remove what a fresh run wrote before its first epoch ended (the whole folder when
    this run created it)."""
    if created:
        shutil.rmtree(folder.path, ignore_errors=True)
    else:
        folder.clear_run()


def _check_fresh(folder: RunFolder, fresh: bool, overwrite: bool) -> None:
    if fresh and not overwrite and folder.has_run():
        names = ", ".join(p.name for p in folder.run_files()[:4])
        raise RunFolderError(
            f"output folder {folder.path} already holds a run ({names}); resume it with "
            "--resume auto, choose a new --output, or pass --overwrite to replace it")
