"""The ``timm-ccrop`` command line: the demo renders a real picture, bad input fails early."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from timm_ccrop.cli import main


def test_demo_writes_a_png_grid(tmp_path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "views" / "grid.png"
    code = main(["demo", "--data", "synthetic:num_samples=16", "--out", str(out),
                 "--num-images", "3", "--num-views", "2", "--tile", "48"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        assert picture.width > 5 * 48 and picture.height > 3 * 48
        pixels = np.asarray(picture.convert("RGB"))
    assert pixels.std() > 20  # an actual picture, not a blank canvas
    assert ((pixels == (40, 220, 60)).all(axis=-1)).sum() > 50  # ground-truth boxes drawn


def test_demo_reports_bad_input(tmp_path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--data", f"cifar10:{tmp_path / 'missing'}"]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--min-scale", "1.5"])
    assert main([]) == 2
