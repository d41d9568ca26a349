"""Every error in the user's input is ONE line on stderr and exit code 2, never a traceback.

The command line runs in this process (``main([...])``); what a real run would also print
on stderr (warnings, logged warnings) is counted with the captured text, so "one line"
means what the user sees. ``--debug`` / ``TIMM_CCROP_DEBUG=1`` bring the traceback back.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from timm_ccrop.cli import build_parser, error_line, main
from timm_ccrop.cli import pretrain as pretrain_cli
from timm_ccrop.evaluation import results as eval_results
from timm_ccrop.studies import compare as studies_compare

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
    code, _, lines = run_cli(["pretrain", *QUICK, "--output", str(run),
                              "--resume", "auto"], capsys, caplog)
    assert_one_line_error(code, lines, "pretrain", "checkpoint-epoch0001.pt", "does not fit")


def test_resume_auto_with_another_method(
        simclr_run: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    """Refused before the new method is built (its warnings would come first)."""
    code, _, lines = run_cli(["pretrain", *QUICK, "--output",
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
# The list of issue 23: tracebacks (exit 1) that must be one line (exit 2)
# --------------------------------------------------------------------------------------

#: A YAML file that is no YAML, one with a tag that would run code, one that is a list.
BAD_YAML = {"syntax": "epochs: [1\n", "python-tag": "epochs: !!python/object/apply:os.system "
            "['echo pwned']\n", "a-list": "- 1\n- 2\n"}


class RunsCode:
    """What a malicious pickle reduces to: a shell command on load."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def _yaml_file(tmp: Path, kind: str) -> str:
    (tmp / f"{kind}.yaml").write_text(BAD_YAML[kind])
    return str(tmp / f"{kind}.yaml")


def _unsafe_cifar(tmp: Path) -> str:
    """A CIFAR-10 folder whose batches unpickle to os.system."""
    folder = tmp / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps(RunsCode()))
    return f"cifar10:{tmp / 'cifar'}"


def _damaged_copy(run: Path, tmp: Path, name: str, text: str, append: bool = False) -> str:
    """A copy of ``run`` whose file ``name`` is replaced by (or appended) ``text``."""
    copy = tmp / "copy"
    shutil.copytree(run, copy)
    with open(copy / name, "a" if append else "w") as handle:
        handle.write(text)
    return str(copy)


PRETRAIN_ISSUE_23 = [
    ("model-kwargs-unknown", ["--model-kwargs", "{nonexistent_kw: 1}"], "nonexistent_kw"),
    ("model-kwargs-num-classes", ["--model-kwargs", "{num_classes: 10}"], "num_classes"),
    ("method-kwargs-unknown", ["--method-kwargs", "{bogus: 1}"], "bogus"),
    ("method-kwargs-type", ["--method-kwargs", "{temperature: abc}"], "temperature"),
    ("resume-nonexistent", ["--resume", "/nonexistent.pt"], "/nonexistent.pt"),
]


@pytest.mark.parametrize("name, extra, fragment", [
    pytest.param(*case, id=case[0]) for case in PRETRAIN_ISSUE_23])
def test_pretrain_input_errors_are_one_line_and_leave_no_folder(
        name: str, extra: list[str], fragment: str, tmp_path: Path,
        capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    output = tmp_path / "run"
    code, _, lines = run_cli(["pretrain", *QUICK, "--output", str(output), *extra],
                             capsys, caplog)
    assert_one_line_error(code, lines, "pretrain", fragment)
    assert not output.exists(), "a folder holding only .lock blocks the corrected command"


@pytest.mark.parametrize("kind", list(BAD_YAML))
def test_a_bad_probe_recipe_is_one_line(kind: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture,
                                       caplog: pytest.LogCaptureFixture) -> None:
    recipe = _yaml_file(tmp_path, kind)
    code, _, lines = run_cli(["eval", "--backbone", "test_resnet", "--data", EVAL_DATA,
                              *QUICK_EVAL, "--protocol", "linear", "--probe-recipe", recipe,
                              "--output", str(tmp_path / "eval")], capsys, caplog)
    assert_one_line_error(code, lines, "eval", recipe)
    assert not (tmp_path / "eval").exists()


def test_an_unsafe_cifar_pickle_is_one_line_and_never_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_shell(command: str) -> int:
        raise AssertionError(f"the pickle ran {command!r}")

    data = _unsafe_cifar(tmp_path)  # pickled while os.system is the real one
    monkeypatch.setattr(os, "system", no_shell)
    code, _, lines = run_cli(["eval", "--backbone", "test_resnet", "--data",
                              data, *QUICK_EVAL, "--output",
                              str(tmp_path / "eval")], capsys, caplog)
    assert_one_line_error(code, lines, "eval", "refusing to load", "system")


@pytest.mark.parametrize("file, text, append, fragment", [
    pytest.param("config.yaml", BAD_YAML["syntax"], False, "config.yaml is not valid YAML",
                 id="config-syntax"),
    pytest.param("config.yaml", BAD_YAML["python-tag"], False, "config.yaml is not valid YAML",
                 id="config-python-tag"),
    pytest.param("config.yaml", BAD_YAML["a-list"], False, "config.yaml must be a YAML mapping",
                 id="config-a-list"),
    pytest.param("metrics.jsonl", "[1, 2]\n", True, "metrics.jsonl line 2 is not a metrics row",
                 id="metrics-a-list"),
    pytest.param("metrics.jsonl", "{bad\n", True, "metrics.jsonl line 2 is not valid JSON",
                 id="metrics-invalid-json"),
    pytest.param("metrics.jsonl", '{"loss": 1}\n', True, "metrics.jsonl line 2",
                 id="metrics-no-epoch"),
])
def test_report_names_a_damaged_file_in_one_line(
        simclr_run: Path, tmp_path: Path, file: str, text: str, append: bool, fragment: str,
        capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    copy = _damaged_copy(simclr_run, tmp_path, file, text, append)
    code, _, lines = run_cli(["report", copy], capsys, caplog)
    assert_one_line_error(code, lines, "report", f"{copy}/{fragment}")


def test_report_of_a_copied_run_points_at_the_copy(
        simclr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(simclr_run, copy)
    code, out, _ = run_cli(["report", str(copy)], capsys, caplog)
    assert code == 0
    opened = out.split("open next:", 1)[1]
    assert str(simclr_run) not in out, out
    assert f"{copy}/metrics.png" in opened and f"{copy}/backbone" in opened
    assert f"timm-ccrop report {copy}" in opened


@pytest.mark.parametrize("extra, fragment", [
    pytest.param(["--seed", "1"], "seed=0", id="seed"),
    pytest.param(["--batch-size", "4"], "batch_size=8", id="batch-size"),
    pytest.param(["--crop", "rcrop"], "crop='ccrop'", id="crop"),
    pytest.param(["--epochs", "2"], "epochs=1", id="epochs"),
    pytest.param(["--lr", "0.1"], "lr=0.3", id="lr"),
    pytest.param(["--data", "synthetic:num_samples=24,image_size=32"], "data=", id="data"),
    pytest.param(["--localizer", "paper"], "localizer=", id="localizer"),
])
def test_resume_auto_refuses_a_change_of_the_runs_meaning(
        simclr_run: Path, tmp_path: Path, extra: list[str], fragment: str,
        capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(simclr_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    code, _, lines = run_cli(["pretrain", *QUICK, "--output", str(run), "--resume", "auto",
                              *extra], capsys, caplog)
    assert_one_line_error(code, lines, "pretrain", "checkpoint-epoch0001.pt", fragment,
                          "start a new --output")
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before, "config.yaml keeps the values the run was trained with"


def test_resume_auto_takes_a_change_of_execution_settings(
        simclr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(simclr_run, run)
    code, _, lines = run_cli(["pretrain", *QUICK, "--output", str(run), "--resume", "auto",
                              "--knn-every", "2", "--pictures", "0", "--keep-checkpoints", "3",
                              "--image-size", "32"], capsys, caplog)  # 32: the preset's own
    assert code == 0, lines


def test_overwrite_keeps_files_the_run_did_not_write(
        simclr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(simclr_run, run)
    (run / "backbone" / "notes.md").write_text("my notes on these weights\n")
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    code, _, lines = run_cli(["pretrain", *QUICK, "--output", str(run), "--overwrite"],
                             capsys, caplog)
    assert_one_line_error(code, lines, "pretrain", "backbone/notes.md", "nothing was removed")
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before


@pytest.mark.parametrize("what", ["another-run", "a-users-folder", "an-export-and-notes"])
def test_export_overwrite_never_deletes_what_it_did_not_write(
        what: str, simclr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    if what == "another-run":
        shutil.copytree(simclr_run, out)
    elif what == "a-users-folder":
        out.mkdir()
        (out / "thesis.tex").write_text("\\documentclass{article}\n")
    else:
        assert main(["export", str(simclr_run), "--out", str(out)]) == 0
        (out / "notes.txt").write_text("mine\n")
    capsys.readouterr()
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, lines = run_cli(["export", str(simclr_run), "--out", str(out), "--overwrite"],
                             capsys, caplog)
    assert_one_line_error(code, lines, "export", str(out), "move them out")
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*")
            if p.is_file()} == before
    assert not list(tmp_path.glob(".out.*")), "no staging folder is left behind"


def test_pretrain_from_a_local_dir_says_it_uses_only_the_architecture(
        simclr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    code, _, lines = run_cli(["pretrain", *QUICK, "--model",
                              f"local-dir:{simclr_run / 'backbone'}", "--output",
                              str(tmp_path / "run")], capsys, caplog)
    assert code == 0, lines
    said = [line for line in lines if "uses only its architecture" in line]
    assert len(said) == 1 and "its weights are not loaded" in said[0], lines


def test_model_source_advice_names_no_missing_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from timm_ccrop.models.backbones import create_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for pretrained in (False, True):
        with pytest.raises(ValueError, match="local-dir:PATH") as caught:
            create_backbone("local-dir:/nonexistent/folder", pretrained=pretrained)
        assert "--checkpoint" not in str(caught.value)


def _single_class_folder(root: Path) -> Path:
    for split in ("train", "val"):
        write_image_folder(root / split, classes=("only",), n_per_class=4)
    return root


def test_single_class_labels_are_flagged_by_eval_and_pretrain(
        tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    data = f"folder:{_single_class_folder(tmp_path / 'one')}"
    code, out, lines = run_cli(["eval", "--backbone", "test_resnet", "--data", data,
                                *QUICK_EVAL, "--output", str(tmp_path / "eval")], capsys, caplog)
    assert code == 0 and "top1 100.00" in out, lines
    assert any("single class" in line and "mean nothing" in line for line in lines), lines
    code, _, lines = run_cli(["pretrain", "--data", data, "--epochs", "1", "--batch-size", "4",
                              "--num-workers", "0", "--no-progress", "--image-size", "32",
                              "--model", "test_resnet", "--localizer-kwargs", "{stage: -3}",
                              "--output", str(tmp_path / "run")], capsys, caplog)
    assert code == 0, lines
    assert any("single class" in line and "mean nothing" in line for line in lines), lines


def _pickle_checkpoint(tmp: Path) -> str:
    """A checkpoint-named file whose pickle imports os.system (weights_only refuses it)."""
    path = tmp / "run" / "checkpoint-epoch0001.pt"
    path.parent.mkdir(parents=True)
    torch.save({"model": {}, "epoch": RunsCode()}, path)
    return str(path)


def _export_with(run: Path, tmp: Path, name: str, text: str) -> str:
    """A copy of the run's backbone export with ``name`` replaced by ``text``."""
    folder = tmp / "export"
    shutil.copytree(run / "backbone", folder)
    (folder / name).write_text(text)
    return str(folder)


@pytest.mark.parametrize("command, build, fragment", [
    pytest.param("pretrain", lambda r, t: ["pretrain", "-c", _yaml_file(t, "syntax"),
                                           "--print-config"], "not valid YAML", id="c-syntax"),
    pytest.param("pretrain", lambda r, t: ["pretrain", "-c", _yaml_file(t, "python-tag"),
                                           "--print-config"], "not valid YAML", id="c-tag"),
    pytest.param("pretrain", lambda r, t: ["pretrain", "-c", _yaml_file(t, "a-list"),
                                           "--print-config"], "must be a mapping", id="c-list"),
    pytest.param("pretrain", lambda r, t: ["pretrain", "--recipe", _yaml_file(t, "python-tag"),
                                           "--print-config"], "not valid YAML", id="recipe-tag"),
    pytest.param("pretrain", lambda r, t: ["pretrain", "--recipe", "no-such-recipe"],
                 "no-such-recipe", id="recipe-missing"),
    pytest.param("eval", lambda r, t: ["eval", "--backbone", _pickle_checkpoint(t), "--data",
                                       EVAL_DATA, *QUICK_EVAL], "weights_only",
                 id="checkpoint-pickle"),
    pytest.param("export", lambda r, t: ["export", _pickle_checkpoint(t), "--out",
                                         str(t / "out")], "checkpoint-epoch0001.pt",
                 id="export-checkpoint-pickle"),
    pytest.param("pretrain", lambda r, t: ["pretrain", *QUICK, "--output", str(t / "new"),
                                           "--resume", _pickle_checkpoint(t)],
                 "checkpoint-epoch0001.pt", id="resume-checkpoint-pickle"),
    pytest.param("eval", lambda r, t: ["eval", "--backbone",
                                       _export_with(r, t, "config.json", "{broken"), "--data",
                                       EVAL_DATA, *QUICK_EVAL], "export", id="export-config"),
    pytest.param("eval", lambda r, t: ["eval", "--backbone",
                                       _export_with(r, t, "model.safetensors", "garbage"),
                                       "--data", EVAL_DATA, *QUICK_EVAL], "model.safetensors",
                 id="export-weights"),
    pytest.param("pretrain", lambda r, t: ["pretrain", *QUICK, "--output",
                                           _damaged_copy(r, t, "metrics.jsonl", "[1]\n", True),
                                           "--resume", "auto"], "metrics.jsonl line 2",
                 id="resume-metrics"),
    pytest.param("eval", lambda r, t: ["eval", "--backbone",
                                       _damaged_copy(r, t, "config.yaml", BAD_YAML["python-tag"]),
                                       *QUICK_EVAL], "config.yaml", id="eval-run-config"),
    pytest.param("push", lambda r, t: ["push", str(t / "nowhere"), "--repo-id", "a/b",
                                       "--dry-run"], "nowhere", id="push-missing"),
    pytest.param("report", lambda r, t: ["report", str(t / "nowhere")], "nowhere",
                 id="report-missing"),
])
def test_a_damaged_file_any_command_reads_is_one_line(
        command: str, build, fragment: str, simclr_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    code, _, lines = run_cli(build(simclr_run, tmp_path), capsys, caplog)
    assert_one_line_error(code, lines, command, fragment)


def test_outputs_no_command_needs_may_be_garbage(
        simclr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    """boxes.csv, baseline.json and summary.json are written, never needed: report,
    export and a resume run with them damaged."""
    run = tmp_path / "run"
    shutil.copytree(simclr_run, run)
    for name in ("boxes.csv", "baseline.json", "summary.json"):
        (run / name).write_bytes(b"\x00garbage[{")
    code, out, lines = run_cli(["report", str(run)], capsys, caplog)
    assert code == 0 and "| 1 |" in out, lines
    code, _, lines = run_cli(["export", str(run), "--out", str(tmp_path / "out")], capsys,
                             caplog)
    assert code == 0, lines
    code, _, lines = run_cli(["pretrain", *QUICK, "--output", str(run), "--resume", "auto"],
                             capsys, caplog)
    assert code == 0, lines


# --------------------------------------------------------------------------------------
# eval never loses its numbers; export never touches its own run
# --------------------------------------------------------------------------------------


def test_eval_prints_the_numbers_before_a_failed_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    def full_disk(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(eval_results, "atomic_write_text", full_disk)
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
    eval_results.check_report_target(fine / "eval.json")
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


# --------------------------------------------------------------------------------------
# Every option of every subcommand, given garbage: it runs or fails in one line
# --------------------------------------------------------------------------------------

#: Values no option expects: a word, a negative number, broken YAML, nothing at all.
GARBAGE = ("garbage", "-1", "{", "")


@pytest.fixture(scope="module")
def exported_run(simclr_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete export of the SimCLR run (what push takes)."""
    out = tmp_path_factory.mktemp("export") / "export"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", str(simclr_run), "--out", str(out)]) == 0
    return out


def _base_commands(run: Path, export: Path, tmp: Path) -> dict[str, list[str]]:
    """A quick valid invocation of each subcommand (pretrain only resolves its config)."""
    small = "synthetic:num_samples=8,image_size=32,num_classes=2"
    return {
        "demo": ["demo", "--data", small, "--num-images", "1", "--num-views", "1",
                 "--tile", "16", "--out", str(tmp / "demo.png")],
        "show-boxes": ["show-boxes", "--data", small, "--num-images", "1", "--num-views", "1",
                       "--tile", "16", "--out", str(tmp / "boxes.png")],
        "pretrain": ["pretrain", "--print-config"],
        "eval": ["eval", "--backbone", "test_resnet", "--data", EVAL_DATA, *QUICK_EVAL,
                 "--output", str(tmp / "eval")],
        "export": ["export", str(run), "--out", str(tmp / "export")],
        "push": ["push", str(export), "--repo-id", "ccrop-test/x", "--dry-run"],
        "zoo": ["zoo"],
        "report": ["report", str(run)],
        "compare": ["compare", "--data", small, "--image-size", "16", "--model", "test_resnet",
                    "--epochs", "1", "--seeds", "0", "--modes", "rcrop", "--batch-size", "8",
                    "--jobs", "1", "--runs", str(tmp / "compare")],
    }


def _options_with_values() -> list[tuple[str, str]]:
    """(subcommand, option) of every option that takes a value."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and action.nargs != 0 and action.dest != "help":
                found.append((name, action.option_strings[0]))
    return found


def _grid_reached(*args: object, **kwargs: object) -> None:
    raise SystemExit(0)


@pytest.mark.slow
@pytest.mark.parametrize("command, option", [
    pytest.param(*case, id=f"{case[0]}{case[1]}") for case in _options_with_values()])
def test_every_option_with_garbage_runs_or_fails_in_one_line(
        command: str, option: str, simclr_run: Path, exported_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a garbage path writes lands here
    # compare: the settings and the data are checked for real; the grid itself (training,
    # tested in test_compare_cli.py) is skipped: an accepted value stops there with code 0
    monkeypatch.setattr(studies_compare, "run_grid", _grid_reached)
    run = tmp_path / "run"
    shutil.copytree(simclr_run, run)
    base = _base_commands(run, exported_run, tmp_path)[command]
    for value in GARBAGE:
        code, _, lines = run_cli([*base, option, value], capsys, caplog)
        text = "\n".join(lines)
        assert code in (0, 2) and "Traceback" not in text, (value, text)
        if code == 2:
            errors = [line for line in lines if line.startswith(f"timm-ccrop {command}: error")]
            assert len(errors) == 1 and len(lines) == 1, (value, text)
