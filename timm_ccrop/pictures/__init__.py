"""Pictures: crops and boxes drawn on images (viz), line charts of a run's metrics (charts),
and the localizer's maps and boxes on a dataset (localization)."""
