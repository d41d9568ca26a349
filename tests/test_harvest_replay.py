"""``scripts/harvest_replay.py``: recorded harvest steps folded into one bank per variant."""

from __future__ import annotations

import pytest
import torch

from .helpers import load_script


def _recording(tmp_path, epochs: int = 4, count: int = 16):
    run = tmp_path / "small-harvest"
    run.mkdir()
    (run / "config.yaml").write_text(
        f"data: synthetic:num_samples={count},image_size=32\n")
    generator = torch.Generator().manual_seed(0)
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0])
    steps = [(epoch, torch.arange(count), torch.rand(count, 2, 4, 4, generator=generator),
              whole.expand(count, 2, 5).clone()) for epoch in range(epochs)]
    torch.save(steps, tmp_path / "small-harvest-maps.pt")
    return run


def test_one_line_per_pass_with_every_variant(tmp_path, capsys):
    replay = load_script("harvest_replay")
    run = _recording(tmp_path)
    lines = replay.main([str(run), "--variants", "{}", "{background: median}",
                         "--every", "2"])
    assert [line.split(":")[0] for line in lines] == [
        "small-harvest after epoch 2", "small-harvest after epoch 4"]
    for line in lines:
        plain, median = line.split(": ", 1)[1].split(" | ")
        assert plain.startswith("harvest ") and "background=median" in median
        assert 0.0 <= float(plain.split()[-1]) <= 1.0
    assert capsys.readouterr().out.count("after epoch") == 2


def test_a_run_without_a_recording_fails_early(tmp_path, capsys):
    replay = load_script("harvest_replay")
    with pytest.raises(SystemExit):
        replay.main([str(tmp_path / "nothing")])
    assert "nothing-maps.pt" in capsys.readouterr().err
