"""The ``timm-ccrop`` command line: the demo renders a real picture, bad input fails early."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from timm_ccrop.cli import main
from timm_ccrop.config import TrainConfig, load_recipe


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


# --------------------------------------------------------------------------------------
# pretrain: the parser generated from TrainConfig
# --------------------------------------------------------------------------------------


def pretrain_exit(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run ``timm-ccrop pretrain ARGS``; (exit code, stdout, stderr), SystemExit included."""
    try:
        code = main(["pretrain", *args])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def printed_config(args: list[str], capsys: pytest.CaptureFixture) -> dict:
    code, out, err = pretrain_exit([*args, "--print-config"], capsys)
    assert code == 0, err
    return yaml.safe_load(out)


def test_pretrain_help_is_grouped_with_types_choices_and_defaults(
        capsys: pytest.CaptureFixture) -> None:
    code, out, _ = pretrain_exit(["--help"], capsys)
    assert code == 0
    text = " ".join(out.split())  # help is wrapped at the terminal width
    headings = [line.rstrip(":") for line in out.splitlines()
                if line.endswith(":") and not line.startswith(" ")]
    assert headings[-5:] == ["data", "model and method", "ContrastiveCrop", "optimisation",
                             "execution"]
    for fragment in ("--crop {rcrop,ccrop,simccrop}", "--mixed-precision {no,bf16,fp16}",
                     "--lr FLOAT", "--epochs INT", "--model-kwargs YAML",
                     "--progress, --no-progress", "--channels-last, --no-channels-last",
                     "peak learning rate (default: 0.3); > 0", "the paper's schedule (default: 0)",
                     "-c FILE.yaml, --config FILE.yaml", "--print-config"):
        assert fragment in text, fragment
    assert "VALUE" not in out.split("configuration:")[1]  # every field has a real type
    # a field whose help says what null means does not also call it "unset"
    assert "the paper's schedule (default: 0); >= 0; null: unset" not in text


@pytest.mark.parametrize("args, fragment", [
    (["--lr", "abc"], "argument --lr: expected a number, got 'abc'"),
    (["--epochs", "1.5"], "argument --epochs: expected an integer, got '1.5'"),
    (["--alpha", "abc"], "argument --alpha: expected a number, got 'abc'"),
    (["--lr", "nan"], "argument --lr: must be finite, got nan"),
    (["--crop", "random"], "argument --crop: invalid choice: 'random'"),
    (["--localizer-kwargs", "[1, 2]"], "argument --localizer-kwargs: expected a YAML mapping"),
    (["--progress", "maybe"], "argument --progress: expected true or false, got 'maybe'"),
    (["--no-progress", "true"], "argument --no-progress: takes no value"),
    (["--method-kwargs", "[1, 2]"], "argument --method-kwargs: expected a YAML mapping"),
    (["--model-kwargs", "{a: ["], "argument --model-kwargs: not valid YAML"),
    (["--no-such-option", "1"], "unrecognized arguments: --no-such-option"),
])
def test_pretrain_bad_values_are_one_line_argparse_errors(
        args: list[str], fragment: str, capsys: pytest.CaptureFixture) -> None:
    code, _, err = pretrain_exit([*args, "--print-config"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1, err  # no usage: one line, as every other input error
    # an unknown option is the top parser's error
    prog = "timm-ccrop" if "unrecognized" in fragment else "timm-ccrop pretrain"
    assert lines[0].startswith(f"{prog}: error: ") and fragment in lines[0]
    assert lines[0].endswith(f"(see {prog} --help)")


@pytest.mark.parametrize("args, fragment", [
    (["--lr", "-1"], "lr must be > 0, got -1.0"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--momentum", "1"], "momentum must be in [0, 1), got 1.0"),
    (["--momentum", "1.5", "--batch-size", "1"],
     "batch_size must be >= 2, got 1; momentum must be in [0, 1), got 1.5"),
    (["--localizer", "union", "--localizer-kwargs", "{threshold: 1.5}"],
     "threshold must be in [0, 1], got 1.5"),
    (["--localizer-kwargs", "{reduction: max}"], "reduction must be one of"),
    (["-c", "/no/such/config.yaml"], "config file /no/such/config.yaml does not exist"),
    (["--recipe", "no-such-recipe"], "recipe 'no-such-recipe' not found"),
])
def test_pretrain_out_of_range_values_are_one_line_errors(
        args: list[str], fragment: str, capsys: pytest.CaptureFixture) -> None:
    """Bounds are TrainConfig.validate's (the one check), before any work is done."""
    code, out, err = pretrain_exit([*args, "--print-config"], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("timm-ccrop pretrain: error: ") and fragment in err


def test_pretrain_boolean_flags(capsys: pytest.CaptureFixture) -> None:
    defaults = printed_config([], capsys)
    assert (defaults["progress"], defaults["channels_last"], defaults["sync_bn"]) == (
        True, False, None)
    flipped = printed_config(["--no-progress", "--channels-last", "--no-exclude-norm-bias",
                              "--sync-bn"], capsys)
    assert (flipped["progress"], flipped["channels_last"], flipped["exclude_norm_bias"],
            flipped["sync_bn"]) == (False, True, False, True)
    # Scripts may also spell a boolean out (scripts/reproduce_paper.py --override key=value).
    spelled = printed_config(["--progress", "false", "--compile", "yes"], capsys)
    assert (spelled["progress"], spelled["compile"]) == (False, True)


def test_pretrain_precedence_defaults_recipe_config_file_command_line(
        tmp_path, capsys: pytest.CaptureFixture) -> None:
    recipe = load_recipe("cifar10-byol-ccrop")
    config_file = tmp_path / "mine.yaml"
    config_file.write_text("description: a test\nepochs: 7\nlr: 0.25\nmethod_kwargs: {}\n")
    resolved = printed_config(["--recipe", "cifar10-byol-ccrop", "-c", str(config_file),
                               "--lr", "0.125", "--knn-max-train", "null"], capsys)
    assert resolved["model"] == recipe["model"] != TrainConfig().model  # recipe > defaults
    assert resolved["momentum"] == recipe["momentum"]
    assert resolved["epochs"] == 7 and resolved["method_kwargs"] == {}  # file > recipe
    assert resolved["lr"] == 0.125  # command line > file
    assert resolved["knn_max_train"] is None  # null unsets an optional field
    assert resolved["pictures"] == TrainConfig().pictures  # untouched: the default
    assert "description" not in resolved
    (tmp_path / "bad.yaml").write_text("learning_rate: 0.1\n")
    code, _, err = pretrain_exit(["-c", str(tmp_path / "bad.yaml")], capsys)
    assert code == 2 and "unknown config keys ['learning_rate']" in err
    assert "bad.yaml" in err and len(err.strip().splitlines()) == 1


def test_print_config_round_trips_through_from_dict(tmp_path,
                                                    capsys: pytest.CaptureFixture) -> None:
    args = ["--recipe", "cifar10-moco-ccrop", "--epochs", "3", "--method-kwargs",
            "{queue_size: 64}", "--weight-decay", "5e-4", "--no-progress"]
    values = printed_config(args, capsys)
    config = TrainConfig.from_dict(values)
    config.validate()
    assert config.method_kwargs == {"queue_size": 64} and config.weight_decay == 5e-4
    assert config.progress is False and config.epochs == 3
    assert config.to_dict() == values
    saved = tmp_path / "resolved.yaml"
    code, out, _ = pretrain_exit([*args, "--print-config"], capsys)
    saved.write_text(out)
    assert printed_config(["-c", str(saved)], capsys) == values  # a config file as it is
