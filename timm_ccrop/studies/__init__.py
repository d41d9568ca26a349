"""Studies: does ContrastiveCrop help on this data? The paired-seed comparison behind
``timm-ccrop compare`` and docs/evidence.md.

- :mod:`.config`: :class:`CompareConfig`, every setting (the command's parser is made from it);
- :mod:`.arms`: the arms (rcrop, ccrop, ccrop-paper, ccrop-harvest, ccrop-gt, simccrop);
- :mod:`.scoring`: which split is scored, and the evaluation of one backbone;
- :mod:`.cells`: one (method, arm, seed) cell, stored and reused;
- :mod:`.grid`: every cell, ``jobs`` at a time in processes of their own (:mod:`.worker`);
- :mod:`.stats`: paired differences, Student-t intervals, the bootstrap share (scipy);
- :mod:`.report`, :mod:`.plot`, :mod:`.result`: the Markdown report, its pictures, the JSON;
- :mod:`.evidence`: one table of several grids;
- :mod:`.compare`: :func:`run_compare`, the whole comparison.
"""

from .arms import ARMS, BASELINE, MODEL_BOX_ARMS, ORACLE
from .cells import CellStopped
from .compare import CompareResult, default_modes, run_compare
from .config import DEFAULT_DATA, CompareConfig
from .evidence import evidence_table

__all__ = ["ARMS", "BASELINE", "DEFAULT_DATA", "MODEL_BOX_ARMS", "ORACLE", "CellStopped",
           "CompareConfig", "CompareResult", "default_modes", "evidence_table", "run_compare"]
