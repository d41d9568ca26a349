"""Primitives every layer uses: constants, collectives, progress bars, atomic files and
folders, and the sha256 records of weights and checkpoints."""
