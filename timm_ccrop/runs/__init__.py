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

from ..utils.folders import (
    OutputExistsError,
    atomic_write_bytes,
    atomic_write_text,
    ensure_writable_folder,
    replace_folder,
    staging_folder,
)
from .backbone import RunWeights, build_run_backbone, read_run_weights
from .checkpoints import list_checkpoints, read_checkpoint, save_checkpoint
from .folder import RUN_FILE_PATTERNS, RunFolder, RunFolderError
from .names import BOXES_CSV_COLUMNS, BOXES_FILE, CHECKPOINT_PATTERN, CONFIG_FILE, METRICS_FILE
from .records import read_boxes_csv, read_metrics, read_run_config, write_boxes_csv

__all__ = [
    "BOXES_CSV_COLUMNS",
    "BOXES_FILE",
    "CHECKPOINT_PATTERN",
    "CONFIG_FILE",
    "METRICS_FILE",
    "RUN_FILE_PATTERNS",
    "OutputExistsError",
    "RunFolder",
    "RunFolderError",
    "RunWeights",
    "build_run_backbone",
    "atomic_write_bytes",
    "atomic_write_text",
    "ensure_writable_folder",
    "list_checkpoints",
    "read_boxes_csv",
    "read_checkpoint",
    "read_metrics",
    "read_run_config",
    "read_run_weights",
    "replace_folder",
    "save_checkpoint",
    "staging_folder",
    "write_boxes_csv",
]
