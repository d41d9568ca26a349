"""What a run shows: baseline, summary, metrics plot, `report`, readable logs, trackers."""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

import timm_ccrop  # noqa: F401  (registers the architectures)
from timm_ccrop.cli import main
from timm_ccrop.config import MAIN_JOB_DATA, TrainConfig
from timm_ccrop.crop.boxes import Box
from timm_ccrop.crop.pair_quality import coverage, false_positive_pair_rate
from timm_ccrop.data import SyntheticObjects
from timm_ccrop.pictures.charts import Panel, Reference, Series, chart_figure, line_chart_grid
from timm_ccrop.pictures.localization import class_labels
from timm_ccrop.train.summary import epoch_line, format_summary
from timm_ccrop.utils.progress import progress_bar

SMALL = "synthetic:num_samples=96,image_size=32,object_scale=0.2:0.35,center_bias=-0.5"
RUN = ["--model", "test_resnet", "--data", SMALL, "--image-size", "32",
       "--localizer-kwargs", "{stage: -3}", "--batch-size", "32", "--num-workers", "0",
       "--knn-max-train", "64",
       "--progress", "false", "--epochs", "3"]


# ------------------------------------------------------------------ pair quality


def test_coverage_is_the_share_of_the_object_inside_the_view() -> None:
    objects = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])
    views = torch.tensor([[0.0, 0.0, 0.25, 0.5], [0.0, 0.0, 1.0, 1.0]])
    assert coverage(views, objects).tolist() == pytest.approx([0.5, 1.0])


def test_boxes_on_the_object_give_fewer_false_positive_pairs_than_random_crops() -> None:
    data = SyntheticObjects(200, image_size=32, object_scale=(0.2, 0.3), center_bias=-0.5)
    gt = data.gt_boxes.float()
    random_crops = false_positive_pair_rate([None] * len(gt), gt, 32, alpha=1.0)
    on_object = false_positive_pair_rate([Box(*row) for row in gt.tolist()], gt, 32,
                                         alpha=0.6)
    assert 0.15 < random_crops < 0.8  # small off-centre objects: random crops miss often
    assert on_object < random_crops / 2
    # the same seed gives the same number; another seed another sample
    assert random_crops == false_positive_pair_rate([None] * len(gt), gt, 32, alpha=1.0)


@pytest.mark.parametrize("kwargs, named", [
    ({"threshold": 1.5}, "threshold"), ({"pairs": 0}, "pairs"),
])
def test_false_positive_rate_rejects_bad_input(kwargs: dict, named: str) -> None:
    gt = torch.tensor([[0.1, 0.1, 0.3, 0.3]])
    with pytest.raises(ValueError, match=named):
        false_positive_pair_rate([None], gt, 32, 1.0, **kwargs)
    with pytest.raises(ValueError, match="2 crop boxes but 1"):
        false_positive_pair_rate([None, None], gt, 32, 1.0)


# ------------------------------------------------------------------ pictures and lines


def test_line_chart_grid_draws_every_panel_and_rejects_nothing_to_draw() -> None:
    panels = [Panel("loss", [Series("loss", [1, 2, 3], [3.0, 2.0, float("nan")])]),
              Panel("kNN", [Series("kNN", [1, 2], [10.0, 20.0])], [Reference("init", 5.0)]),
              Panel("empty", [Series("none", [], [])])]
    image = line_chart_grid(panels, title="t", columns=2, panel_size=(200, 100))
    assert image.size == (400, 200)
    assert len(image.getcolors(maxcolors=1 << 16)) > 3  # lines, text and the reference were drawn
    figure = chart_figure(panels, columns=2)
    try:
        axes = [a for a in figure.axes if a.get_visible()]
        assert [a.get_title() for a in axes] == ["loss", "kNN", "empty"]
        assert [len(a.lines) for a in axes] == [1, 2, 0]  # kNN: its line and the reference
        assert axes[0].lines[0].get_ydata().tolist() == [3.0, 2.0]  # NaN left out
    finally:
        plt.close(figure)
    with pytest.raises(ValueError, match="at least one panel"):
        line_chart_grid([])


def test_chart_of_non_negative_values_never_shows_a_negative_axis() -> None:
    # the lr of a warm-up starts at 0: the axis used to start at -0.024
    lr = Panel("lr", [Series("lr", [0, 1, 2, 3], [0.0, 0.25, 0.5, 0.4])])
    signed = Panel("delta", [Series("d", [0, 1], [-1.0, 1.0])])
    figure = chart_figure([lr, signed])
    try:
        assert figure.axes[0].get_ylim()[0] == 0
        assert figure.axes[1].get_ylim()[0] < -1
    finally:
        plt.close(figure)


def test_epoch_line_names_every_measured_value() -> None:
    line = epoch_line({"epoch": 3, "loss": 5.25, "lr": 0.1, "images_per_second": 321.0,
                       "knn_top1": 61.5, "box_mean_iou": 0.3333, "epoch_seconds": 7.25}, 20)
    assert line == ("epoch 3/20 | loss 5.2500 | lr 0.1 | 321 img/s | kNN 61.5% | "
                    "box IoU 0.333 | 7.2s")
    assert "kNN" not in epoch_line({"epoch": 1, "loss": 1.0, "lr": 0.1}, 2)


def test_summary_text_compares_with_the_baselines() -> None:
    text = format_summary({
        "run": "runs/x", "method": "simclr", "crop": "ccrop", "model": "m", "epochs": 20,
        "train_seconds": 125.0, "knn_top1": 65.0, "random_init_knn_top1": 45.0,
        "box_mean_iou": 0.3, "whole_image_mean_iou": 0.06, "false_positive_pairs": 0.1,
        "false_positive_pairs_rcrop": 0.37,
        "outputs": {"plot": "runs/x/metrics.png", "backbone": "runs/x/backbone"}})
    assert "2m05s" in text and "(+20.0 points)" in text and "(5.0x)" in text
    assert "10.0%" in text and "37.0%" in text
    assert "timm-ccrop eval --backbone runs/x" in text and "timm-ccrop report runs/x" in text


def test_class_labels_name_each_sample_class() -> None:
    data = SyntheticObjects(6, image_size=32)
    assert class_labels(data, 3) == [data.classes[data[i][1]] for i in range(3)]


class _Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_progress_bars_show_only_when_enabled_on_a_terminal() -> None:
    assert not progress_bar(range(3), "x", enabled=True, file=_Stream(True)).disable
    assert progress_bar(range(3), "x", enabled=False, file=_Stream(True)).disable
    assert progress_bar(range(3), "x", enabled=True, file=_Stream(False)).disable  # a log file
    shown = _Stream(True)
    assert list(progress_bar(range(3), "counting", file=shown)) == [0, 1, 2]
    assert "counting" in shown.getvalue()


def test_main_job_defaults_are_the_learnable_setting() -> None:
    config = TrainConfig()
    assert config.data == MAIN_JOB_DATA and "backgrounds=1" in config.data
    assert (config.model, config.crop, config.localizer) == ("resnet_mini_cifar", "ccrop", "peak")


# ------------------------------------------------------------------ a real run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 3-epoch run through the command line, with its log (stderr) captured."""
    run = tmp_path_factory.mktemp("summary") / "run"
    handler_stream = _LogCapture()
    logger = logging.getLogger("timm_ccrop")
    code = main(["pretrain", *RUN, "--output", str(run)])
    logger.removeHandler(handler_stream)
    assert code == 0
    return run, handler_stream.text


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        logging.getLogger("timm_ccrop").addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.mark.slow
def test_a_run_writes_its_baseline_summary_and_plot(finished_run: tuple[Path, str]) -> None:
    run, log = finished_run
    baseline = json.loads((run / "baseline.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 0 <= baseline["random_init_knn_top1"] <= 100
    assert 0 < baseline["whole_image_mean_iou"] < 0.2  # small objects
    assert 0 < baseline["false_positive_pairs_rcrop"] < 1
    assert summary["knn_top1"] == rows[-1]["knn_top1"]
    assert summary["box_mean_iou"] == [r for r in rows if "box_mean_iou" in r][-1]["box_mean_iou"]
    assert 0 <= summary["false_positive_pairs"] <= 1
    assert summary["random_init_knn_top1"] == baseline["random_init_knn_top1"]
    with Image.open(run / "metrics.png") as plot:
        assert plot.width >= 600
    # one persistent line per epoch, then the summary
    epoch_lines = [line for line in log.splitlines() if line.startswith("epoch ")]
    assert [line.split(" | ")[0] for line in epoch_lines] == ["epoch 1/3", "epoch 2/3",
                                                              "epoch 3/3"]
    assert "random init" in log and "open next:" in log and "\r" not in log


@pytest.mark.slow
def test_report_redraws_the_plot_and_prints_the_table(finished_run: tuple[Path, str],
                                                      capsys: pytest.CaptureFixture) -> None:
    run, _ = finished_run
    (run / "metrics.png").unlink()
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| epoch | loss |") and out.count("\n| ") == 3  # 3 epochs
    assert "random init" in out and (run / "metrics.png").is_file()


def test_report_of_a_folder_without_a_run_is_one_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.jsonl" in err and str(tmp_path) in err


@pytest.mark.slow
def test_log_level_warning_hides_the_epoch_lines(tmp_path: Path) -> None:
    capture = _LogCapture()
    try:
        assert main(["--log-level", "warning", "pretrain", *RUN, "--epochs", "1",
                     "--output", str(tmp_path)]) == 0
    finally:
        logging.getLogger("timm_ccrop").removeHandler(capture)
        logging.getLogger("timm_ccrop").setLevel(logging.INFO)
    assert not [line for line in capture.lines if line.startswith("epoch ")]


@pytest.mark.slow
def test_tensorboard_gets_the_run_and_per_step_loss_and_lr(tmp_path: Path) -> None:
    # tensorboard is in the [test] extra: CI always runs this test
    from tensorboard.backend.event_processing import event_accumulator
    assert main(["pretrain", *RUN, "--epochs", "2", "--log-with", "tensorboard",
                 "--output", str(tmp_path)]) == 0
    logs = tmp_path / "timm-ccrop"
    events = event_accumulator.EventAccumulator(str(logs))
    events.Reload()
    scalars = events.Tags()["scalars"]
    steps_per_epoch = 96 // 32
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 2 * steps_per_epoch
                                                                          + 1))
    assert len(events.Scalars("train/lr")) == 2 * steps_per_epoch
    assert [e.step for e in events.Scalars("epoch/loss")] == [steps_per_epoch,
                                                              2 * steps_per_epoch]
    assert "epoch/knn_top1" in scalars
    assert all(math.isfinite(e.value) for e in events.Scalars("train/loss"))
