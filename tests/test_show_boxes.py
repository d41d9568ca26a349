"""``timm-ccrop show-boxes`` and ``heatmap_boxes_grid``: pictures, checkpoints, early errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from timm_ccrop.cli import main
from timm_ccrop.pictures.box_grids import heatmap_boxes_grid
from timm_ccrop.pictures.drawing import GT_BOX_COLOR, LOCALIZED_BOX_COLOR, heatmap_colors

DATA = "synthetic:num_samples=8,image_size=64"
BASE = ["show-boxes", "--data", DATA, "--model", "test_resnet",
        "--localizer-kwargs", "{background: median, stage: -2}"]


def color_count(pixels: np.ndarray, color) -> int:
    return int((pixels == np.asarray(color, dtype=np.uint8)).all(axis=-1).sum())


def read_rgb(path) -> np.ndarray:
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        return np.asarray(picture.convert("RGB"))


def test_show_boxes_writes_a_png(tmp_path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "pictures" / "boxes.png"
    code = main([*BASE, "--out", str(out), "--num-images", "4", "--num-views", "2",
                 "--tile", "48", "--seed", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "wrote" in printed and str(out.resolve()) in printed
    match = re.search(r"mean IoU with ground truth over the 4 shown images: ([0-9.]+)", printed)
    assert match and 0.0 <= float(match.group(1)) <= 1.0
    pixels = read_rgb(out)
    height, width = pixels.shape[:2]
    assert 4 * (48 + 4) <= width <= 1200  # image, overlay and 2 views per row (legend wider)
    assert 4 * 48 < height <= 800
    assert pixels.std() > 20  # an actual picture, not a blank canvas
    # The heatmap scale's end colours (colour bar) and the ground-truth boxes are drawn.
    assert color_count(pixels, heatmap_colors(0.0)) >= 10
    assert color_count(pixels, heatmap_colors(1.0)) >= 10
    assert color_count(pixels, GT_BOX_COLOR) > 64 + 4 * 40  # legend swatch + 4 box outlines
    assert color_count(pixels, LOCALIZED_BOX_COLOR) > 4 * 40


def test_grid_overlays_the_heatmap_and_draws_boxes() -> None:
    images = [Image.new("RGB", (32, 32), (128, 128, 128)) for _ in range(2)]
    heatmaps = torch.zeros(2, 4, 4)
    heatmaps[:, :, :2] = 1.0  # left half hot
    boxes = [(0.0, 0.0, 0.5, 1.0), None]  # the second image has no box (degenerate map)
    gt = torch.tensor([[0.25, 0.25, 0.75, 0.75], [0.1, 0.1, 0.6, 0.6]])
    hot, cold = heatmap_colors(1.0), heatmap_colors(0.0)
    grid = heatmap_boxes_grid(images, heatmaps, boxes, gt, views=2, opacity=1.0, tile=32,
                              captions=["a", "b"], title="t")
    pixels = np.asarray(grid)
    # With opacity 1 the overlay is the colormap: 12 of 32 columns stay exactly 1 (0) after
    # bilinear upsampling of a 4-wide map (2 x 384 pixels), less the box outlines.
    assert color_count(pixels, hot) > 400 and color_count(pixels, cold) > 400
    assert color_count(pixels, GT_BOX_COLOR) > 64 + 2 * 50
    assert color_count(pixels, LOCALIZED_BOX_COLOR) > 60
    plain = np.asarray(heatmap_boxes_grid(images, heatmaps, boxes, gt, views=2, opacity=0.0,
                                          tile=32, captions=["a", "b"], title="t"))
    assert plain.shape == pixels.shape
    assert color_count(plain, hot) < 40  # only the colour bar is left
    for bad in (dict(views=-1), dict(opacity=1.5), dict(tile=8), dict(alpha=0.0)):
        with pytest.raises(ValueError):
            heatmap_boxes_grid(images, heatmaps, boxes, **bad)
    with pytest.raises(ValueError, match="boxes"):
        heatmap_boxes_grid(images, heatmaps, boxes[:1])
    with pytest.raises(ValueError, match="heatmaps"):
        heatmap_boxes_grid(images, heatmaps[0], boxes)
    with pytest.raises(ValueError):
        heatmap_boxes_grid(images, heatmaps, [(0.5, 0.0, 0.2, 1.0), None])  # x1 < x0


def test_checkpoint_round_trip(tmp_path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    trained = timm.create_model("test_resnet")  # with its classifier, as after training
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    state = trained.state_dict()
    safetensors_path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safetensors_path))
    torch_path = tmp_path / "checkpoint.pth"  # DDP + torch.compile prefixes, nested, extras
    torch.save({"model": {f"module._orig_mod.{k}": v for k, v in state.items()}, "epoch": 7},
               torch_path)

    pictures = {}
    for name, extra in (("safetensors", ["--checkpoint", str(safetensors_path)]),
                        ("torch", ["--checkpoint", str(torch_path)]), ("random", [])):
        out = tmp_path / f"{name}.png"
        assert main([*BASE, "--out", str(out), "--num-images", "2", "--num-views", "1",
                     "--tile", "32", *extra]) == 0
        printed = capsys.readouterr().out
        # Classifier weights of a trained model are ignored (the backbone has none).
        assert ("loaded" in printed and "ignored classifier weights" in printed) == (
            name != "random")
        pictures[name] = read_rgb(out)
    np.testing.assert_array_equal(pictures["safetensors"], pictures["torch"])
    assert not np.array_equal(pictures["safetensors"], pictures["random"])

    broken = dict(state)
    broken.pop("layer1.0.conv1.weight")
    broken["conv1.0.weight"] = torch.zeros(16, 3, 5, 5)
    broken["extra.weight"] = torch.zeros(1)
    broken_path = tmp_path / "broken.pth"
    torch.save({"state_dict": broken}, broken_path)
    out = tmp_path / "broken.png"
    assert main([*BASE, "--out", str(out), "--checkpoint", str(broken_path)]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {broken_path} does not match model 'test_resnet'" in err
    for fragment in ("1 missing (layer1.0.conv1.weight)", "1 unexpected (extra.weight)",
                     "conv1.0.weight: checkpoint (16, 3, 5, 5) vs model (16, 3, 3, 3)"):
        assert fragment in err
    assert not out.exists()

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    assert main([*BASE, "--out", str(out), "--checkpoint", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {garbage} as safetensors" in err


def test_bad_arguments_fail_early(tmp_path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never.png"
    for bad in (["--localizer-kwargs", "[1, 2]"], ["--num-images", "0"],
                ["--opacity", "2"], ["--tile", "8"], ["--image-size", "4"], ["--alpha", "0"],
                ["--num-views", "-1"], ["--localizer", "nope"]):
        with pytest.raises(SystemExit):
            main([*BASE, "--out", str(out), *bad])
    capsys.readouterr()
    # Checked before the dataset is read: the (missing) dataset is never reached.
    missing_data = ["show-boxes", "--data", f"cifar10:{tmp_path / 'missing'}", "--out", str(out)]
    cases = [
        (["--model", "resnet18x"], "unknown timm model 'resnet18x'; did you mean resnet18"),
        (["--localizer-kwargs", "{stage: 9}"], "stage 9 does not exist"),
        (["--localizer-kwargs", "{reduction: max}"], "reduction must be one of"),
        (["--localizer", "union", "--localizer-kwargs", "{threshold: 1.5}"],
         "threshold must be in [0, 1]"),
        (["--stage", "9"], "stage 9 does not exist"),  # the old flag: a localizer option
        (["--checkpoint", str(tmp_path / "nope.pth")], "does not exist"),
        (["--checkpoint", str(tmp_path / "nope.pth"), "--pretrained"], "not both"),
    ]
    for extra, message in cases:
        assert main([*missing_data, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main([*BASE, "--out", str(tmp_path / "picture.jpg")]) == 2
    assert ".png" in capsys.readouterr().err
    assert main(missing_data) == 2  # and then the dataset itself is checked
    assert "missing" in capsys.readouterr().err
    assert not out.exists()


def test_pretrained_offline_is_a_clear_error(tmp_path, monkeypatch, capsys) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main([*BASE, "--pretrained", "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot build 'test_resnet' with pretrained weights" in err and "--checkpoint" in err


def test_harvest_localizer_is_refused_with_the_fix(tmp_path, capsys) -> None:
    code = main(["show-boxes", "--localizer", "harvest", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "needs a training run" in err and "use peak" in err
    assert not (tmp_path / "x.png").exists()


def test_localizer_kwargs_change_the_drawn_map(tmp_path, capsys) -> None:
    """The picture is the localizer's map: the default removes the last stride (8x8 at
    32 px on resnet_mini_cifar), ``{dilate: false}`` keeps the plain 4x4 map."""
    common = ["show-boxes", "--data", "synthetic:num_samples=4,image_size=32", "--model",
              "resnet_mini_cifar", "--num-images", "2", "--num-views", "0", "--tile", "32"]
    assert main([*common, "--out", str(tmp_path / "default.png")]) == 0
    default = capsys.readouterr().out
    assert main([*common, "--localizer-kwargs", "{dilate: false}",
                 "--out", str(tmp_path / "plain.png")]) == 0
    plain = capsys.readouterr().out
    # as given; resolved:
    assert "peak(reduction=contrast, keep=0.5, background=auto), stage -1 (layer4)" in default
    assert "median subtracted" in default  # resnet's family keeps the median map
    assert "stride removed" in default and "; 8x8 maps at 32px" in default
    assert "peak(dilate=False), stage -1 (layer4)" in plain and "; 4x4 maps at 32px" in plain
    assert not np.array_equal(read_rgb(tmp_path / "default.png"),
                              read_rgb(tmp_path / "plain.png"))
