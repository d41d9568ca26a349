"""Pictures: the crop demo (viz), boxes drawn over images (box_grids) with their drawing
primitives (drawing), line charts of a run's metrics (charts), the localizer's maps and
boxes on a dataset (localization) and its settings, the options of show-boxes (settings)."""
