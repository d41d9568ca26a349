"""The crop-mode comparison, now ``timm-ccrop compare`` (timm_ccrop/studies/).

Kept so the commands in older reports still run: every argument is passed on unchanged::

    python scripts/compare_crops.py --seeds 0 1 2 --modes rcrop ccrop ccrop-gt
    # is
    timm-ccrop compare --seeds 0 1 2 --modes rcrop ccrop ccrop-gt

One default changed: without ``--modes`` the arms are rcrop and ccrop, plus ccrop-gt when
the data has ground-truth boxes (the script's default also ran ccrop-paper and
ccrop-harvest). Reports name ``timm-ccrop compare`` as their command.
"""

from __future__ import annotations

import sys

from timm_ccrop.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
