"""``python -m timm_ccrop.cli``: the ``timm-ccrop`` command (for subprocesses and launchers)."""

import sys

from . import main

sys.exit(main())
