"""Every error in the user's input is ONE line on stderr and exit code 2, never a traceback.

The command line runs in this process (``main([...])``); what a real run would also print
on stderr (warnings, logged warnings) is counted with the captured text, so "one line"
means what the user sees. ``--debug`` / ``TIMM_CCROP_DEBUG=1`` bring the traceback back.
"""

from __future__ import annotations

import errno
import logging
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from timm_ccrop.cli import error_line, main
from timm_ccrop.cli import pretrain as pretrain_cli
from timm_ccrop.evaluation import report as eval_report

from .fixtures import write_image_folder

#: A place no one can write, even root: /proc refuses new folders.
UNWRITABLE = "/proc/timm-ccrop-test/out"
#: A pretraining run of a few seconds.
QUICK = ["--data", "synthetic:num_samples=16,image_size=32", "--epochs", "1",
         "--batch-size", "8", "--num-workers", "0", "--knn-every", "0", "--no-progress"]
EVAL_DATA = "synthetic:num_samples=24,image_size=16,num_classes=4"
QUICK_EVAL = ["--protocol", "knn", "--image-size", "16", "--num-workers", "0",
              "--no-progress"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture,
            caplog: pytest.LogCaptureFixture) -> tuple[int, str, list[str]]:
    """``main(argv)``: (exit code, stdout, the lines a user would see on stderr)."""
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    captured = capsys.readouterr()
    shown = [w for w in caught
             if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    lines = (captured.err.strip().splitlines()
             + [f"{w.category.__name__}: {w.message}" for w in shown]
             + [record.getMessage() for record in caplog.records
                if record.levelno >= logging.WARNING])
    return code, captured.out, lines


def assert_one_line_error(code: int, lines: list[str], command: str, *fragments: str) -> None:
    """Exit code 2 and exactly one ``timm-ccrop COMMAND: error:`` line naming the value."""
    text = "\n".join(lines)
    assert code == 2, text
    assert "Traceback" not in text
    assert len(lines) == 1, text
    assert lines[0].startswith(f"timm-ccrop {command}: error: "), text
    for fragment in fragments:
        assert fragment in lines[0], (fragment, text)


def truncated_checkpoint(path: Path) -> Path:
    """A checkpoint file cut in half, as an interrupted copy leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"weight": torch.randn(64, 64)}, "epoch": 1}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def unreadable_image_folder(root: Path) -> Path:
    """An ImageFolder tree whose every "image" is text."""
    for name in ("a", "b"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (root / name / f"{i}.png").write_text("not an image\n")
    return root


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch SimCLR run folder."""
    run = tmp_path_factory.mktemp("simclr") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["pretrain", *QUICK, "--output", str(run)]) == 0
    return run


# --------------------------------------------------------------------------------------
# The list of issue 13: each a one-line error with exit code 2
# --------------------------------------------------------------------------------------


def _file(tmp: Path) -> str:
    (tmp / "a-file").write_text("not a folder\n")
    return str(tmp / "a-file")


def _truncated_pt(tmp: Path) -> str:
    return str(truncated_checkpoint(tmp / "run" / "checkpoint-epoch0001.pt"))


def _unreadable_checkpoints_run(tmp: Path) -> str:
    truncated_checkpoint(tmp / "run" / "checkpoint-epoch0002.pt")
    truncated_checkpoint(tmp / "run" / "checkpoint-epoch0001.pt")
    return str(tmp / "run")


def _unreadable_images(tmp: Path) -> str:
    return str(unreadable_image_folder(tmp / "images"))


# (id, command, argv builder from a temporary folder, what the line must name)
CASES = [
    ("alpha-abc", "pretrain", lambda t: ["pretrain", "--alpha", "abc"], "'abc'"),
    ("epochs-1.5", "pretrain", lambda t: ["pretrain", "--epochs", "1.5"], "'1.5'"),
    ("lr-abc", "pretrain", lambda t: ["pretrain", "--lr", "abc"], "'abc'"),
    ("image-size-7", "pretrain", lambda t: ["pretrain", "--image-size", "7", "--print-config"],
     "image_size must be >= 8, got 7"),
    ("output-is-a-file", "pretrain",
     lambda t: ["pretrain", *QUICK, "--output", _file(t)], "a-file"),
    ("output-unwritable", "pretrain",
     lambda t: ["pretrain", *QUICK, "--output", UNWRITABLE], UNWRITABLE),
    ("eval-truncated-pt", "eval",
     lambda t: ["eval", "--backbone", _truncated_pt(t), "--data", EVAL_DATA, *QUICK_EVAL,
                "--output", str(t / "eval")], "checkpoint-epoch0001.pt"),
    ("export-truncated-pt", "export",
     lambda t: ["export", _truncated_pt(t), "--out", str(t / "export")],
     "checkpoint-epoch0001.pt"),
    ("unreadable-images", "pretrain",
     lambda t: ["pretrain", *QUICK, "--data", f"folder:{_unreadable_images(t)}",
                "--batch-size", "2", "--output", str(t / "run")], "images"),
    ("eval-output-unwritable", "eval",
     lambda t: ["eval", "--backbone", "test_resnet", "--data", EVAL_DATA, *QUICK_EVAL,
                "--output", UNWRITABLE], UNWRITABLE),
    ("eval-output-under-a-file", "eval",
     lambda t: ["eval", "--backbone", "test_resnet", "--data", EVAL_DATA, *QUICK_EVAL,
                "--output", _file(t)], "a-file"),
    ("resume-auto-all-unreadable", "pretrain",
     lambda t: ["pretrain", *QUICK, "--output", _unreadable_checkpoints_run(t), "--resume",
                "auto"], "unreadable"),
]
#: Failures from input leave no folder behind: the outputs these cases named.
NO_FOLDER_LEFT = {"eval-truncated-pt": "eval", "export-truncated-pt": "export",
                  "unreadable-images": "run"}


@pytest.mark.parametrize("name, command, build, fragment", [
    pytest.param(*case, id=case[0]) for case in CASES])
def test_user_error_is_one_line_with_exit_code_2(
        name: str, command: str, build, fragment: str, tmp_path: Path,
        capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    code, _, lines = run_cli(build(tmp_path), capsys, caplog)
    assert_one_line_error(code, lines, command, fragment)
    assert "trying the previous one" not in lines[0]
    if name in NO_FOLDER_LEFT:
        assert not (tmp_path / NO_FOLDER_LEFT[name]).exists()


def test_unreadable_images_name_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           caplog: pytest.LogCaptureFixture) -> None:
    images = unreadable_image_folder(tmp_path / "images")
    code, _, lines = run_cli(["pretrain", *QUICK, "--data", f"folder:{images}",
                              "--batch-size", "2", "--output", str(tmp_path / "run")],
                             capsys, caplog)
    assert_one_line_error(code, lines, "pretrain", f"at {images}", "no readable image",
                          "all 6 samples")


def test_resume_with_a_state_dict_that_does_not_fit(
        simclr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes((simclr_run / "config.yaml").read_bytes())
    state = torch.load(simclr_run / "checkpoint-epoch0001.pt", weights_only=True)
    del state["model"][next(iter(state["model"]))]
    state.pop("weights_sha256", None)  # edited on purpose: only the missing key is wrong
    torch.save(state, run / "checkpoint-epoch0001.pt")
    code, _, lines = run_cli(["pretrain", *QUICK, "--epochs", "2", "--output", str(run),
                              "--resume", "auto"], capsys, caplog)
    assert_one_line_error(code, lines, "pretrain", "checkpoint-epoch0001.pt")


def test_resume_auto_with_another_method(
        simclr_run: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    """Refused before the new method is built (its warnings would come first)."""
    code, _, lines = run_cli(["pretrain", *QUICK, "--epochs", "2", "--output",
                              str(simclr_run), "--method", "moco", "--resume", "auto"],
                             capsys, caplog)
    assert_one_line_error(code, lines, "pretrain", "simclr", "moco")


def test_a_run_that_fails_on_its_input_leaves_no_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    """A failed start leaves nothing that blocks the corrected command."""
    images = unreadable_image_folder(tmp_path / "images")
    output = tmp_path / "run"
    code, _, _ = run_cli(["pretrain", *QUICK, "--data", f"folder:{images}", "--batch-size",
                          "2", "--output", str(output)], capsys, caplog)
    assert code == 2
    assert not output.exists(), sorted(p.name for p in output.iterdir())
    # the corrected command then just runs
    assert main(["pretrain", *QUICK, "--output", str(output)]) == 0


# --------------------------------------------------------------------------------------
# eval never loses its numbers; export never touches its own run
# --------------------------------------------------------------------------------------


def test_eval_prints_the_numbers_before_a_failed_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    def full_disk(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(eval_report, "atomic_write_text", full_disk)
    output = tmp_path / "out" / "eval.json"
    code, out, lines = run_cli(["eval", "--backbone", "test_resnet", "--data", EVAL_DATA,
                                *QUICK_EVAL, "--output", str(output)], capsys, caplog)
    assert_one_line_error(code, lines, "eval", str(output), "No space left on device")
    assert "kNN (k=" in out and "test top1" in out  # the numbers reached the user
    assert "wrote" not in out and not output.exists()


def test_eval_refuses_an_unwritable_output_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from timm_ccrop.evaluation import EvalConfig, run_evaluation
    from timm_ccrop.evaluation import run as evaluation_run

    def no_loading(*args, **kwargs):
        raise AssertionError("the backbone was loaded before the output was checked")

    monkeypatch.setattr(evaluation_run, "load_backbone", no_loading)
    with pytest.raises(OSError, match="not writable"):
        run_evaluation(EvalConfig("test_resnet", data=EVAL_DATA, output=UNWRITABLE))
    # a folder that can be made is made, and only the probe file touched it
    fine = tmp_path / "new" / "deeper"
    eval_report.check_report_target(fine / "eval.json")
    assert fine.is_dir() and list(fine.iterdir()) == []


@pytest.mark.parametrize("where", ["the-run", "its-parent", "inside-it"])
def test_export_refuses_an_out_related_to_its_run(
        where: str, simclr_run: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    out = {"the-run": simclr_run, "its-parent": simclr_run.parent,
           "inside-it": simclr_run / "export"}[where]
    before = sorted(p.name for p in simclr_run.parent.rglob("*"))
    code, _, lines = run_cli(["export", str(simclr_run / ".." / simclr_run.name), "--out",
                              str(out), "--overwrite"], capsys, caplog)
    assert_one_line_error(code, lines, "export", str(out.resolve()),
                          str(simclr_run.resolve()), "-export")
    assert sorted(p.name for p in simclr_run.parent.rglob("*")) == before


# --------------------------------------------------------------------------------------
# --debug, TIMM_CCROP_DEBUG, internal errors, DataLoader workers
# --------------------------------------------------------------------------------------


def test_debug_flag_and_environment_show_the_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    argv = ["pretrain", "--image-size", "7", "--print-config"]
    assert main(argv) == 2
    with pytest.raises(ValueError, match="image_size must be >= 8"):
        main(["--debug", *argv])
    monkeypatch.setenv("TIMM_CCROP_DEBUG", "1")
    with pytest.raises(ValueError, match="image_size must be >= 8"):
        main(argv)
    monkeypatch.setenv("TIMM_CCROP_DEBUG", "0")
    assert main(argv) == 2
    main_help = capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--debug" in capsys.readouterr().out and main_help.out == ""


def test_internal_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(pretrain_cli, "resolve_config", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["pretrain", "--print-config"])


def test_error_line_keeps_only_a_worker_s_own_message() -> None:
    worker = ValueError(
        "Caught ValueError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n"
        '  File "boxed.py", line 1, in _load\n'
        "    raise ValueError(message)\n"
        "ValueError: no readable image in the dataset at /data: all 6 samples failed")
    assert error_line(worker) == "no readable image in the dataset at /data: all 6 samples failed"
    assert error_line(OSError("two\nlines")) == "two lines"


def test_image_size_bound_is_shared_by_pretrain_and_eval() -> None:
    from timm_ccrop.config import MIN_IMAGE_SIZE, TrainConfig
    from timm_ccrop.evaluation import EvalConfig

    assert MIN_IMAGE_SIZE == 8
    TrainConfig(image_size=8).validate()
    with pytest.raises(ValueError, match="image_size must be >= 8, got 7"):
        TrainConfig(image_size=7).validate()
    with pytest.raises(ValueError, match="image_size must be >= 8, got 7"):
        EvalConfig("test_resnet", image_size=7).validate()


def test_a_truncated_image_in_a_folder_is_substituted_and_flagged(tmp_path: Path) -> None:
    from timm_ccrop.data import BoxedDataset, FolderDataset

    write_image_folder(tmp_path / "f", classes=("a",), n_per_class=3)
    files = sorted((tmp_path / "f" / "a").glob("*.png"))
    files[1].write_bytes(files[1].read_bytes()[:40])
    boxed = BoxedDataset(FolderDataset(tmp_path / "f"))
    with pytest.warns(UserWarning, match="unreadable sample 1"):
        image, _, index = boxed[1]
    assert index == 1 and isinstance(image, Image.Image)
    assert boxed.substituted.tolist() == [False, True, False]
