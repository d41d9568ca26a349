"""The names of a run folder's files and the one ``boxes.csv`` schema."""

from __future__ import annotations

__all__ = ["BACKBONE_DIR", "BASELINE_FILE", "BOXES_CSV_COLUMNS", "BOXES_FILE", "CHECKPOINT_GLOB",
           "CHECKPOINT_PATTERN", "CONFIG_FILE", "METRICS_FILE", "PLOT_FILE", "SNAPSHOT_DIR",
           "SUMMARY_FILE"]

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
