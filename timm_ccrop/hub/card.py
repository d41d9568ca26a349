"""The model card (``README.md``) of an exported folder.

Its Hub metadata is built with ``huggingface_hub``'s own :class:`~huggingface_hub.ModelCardData`
and :class:`~huggingface_hub.EvalResult` (the measured numbers become the Hub's
``model-index``), and read back with :func:`huggingface_hub.metadata_load`, so what we
write is what the Hub parses. The text starts with what data the weights saw and what they
are good for, says what they are, quotes only measured numbers, shows the loading code and
the citation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCardData, metadata_load
from huggingface_hub.repocard import REGEX_YAML_BLOCK
from torch import nn

from ..data.specs import parse_data_spec
from ..models import cifar
from .release import BIBTEX, PAPER_ARXIV, PAPER_NAME, PAPER_URL, Measurement, Release

__all__ = [
    "CARD_NAME",
    "CardInfo",
    "card_data",
    "card_front_matter",
    "card_measurements",
    "card_metadata",
    "read_card_metadata",
    "render_card",
]

CARD_NAME = "README.md"
_BASE_TAGS = ("image-feature-extraction", "timm", "self-supervised", "contrastivecrop")


@dataclass
class CardInfo:
    """What the model card says: the release, plus facts of the backbone and the run."""

    release: Release
    num_features: int
    num_parameters: int
    recipe_yaml: str | None = None
    recipe_note: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    monitor: dict[str, Any] | None = None
    monitor_bank: int | None = None
    provenance: str = ""
    #: What the weights are good for (a zoo entry's ``status``); empty: said from the
    #: measured numbers.
    status: str = ""
    #: How many images the model was pretrained on, when known (a synthetic spec says it).
    num_images: int | None = None

    @classmethod
    def for_backbone(cls, release: Release, backbone: nn.Module, **details: Any) -> CardInfo:
        """The card of ``release`` whose weights are ``backbone``."""
        return cls(release=release, num_features=int(getattr(backbone, "num_features", 0)),
                   num_parameters=sum(p.numel() for p in backbone.parameters()), **details)

    @property
    def ours(self) -> bool:
        """The architecture is registered by timm_ccrop (loading it needs the import)."""
        return self.release.architecture in cifar.CIFAR_MODEL_NAMES


def _protocol_name(protocol: str) -> str:
    return {"knn": "kNN", "linear": "linear probe"}.get(protocol, protocol)


def _eval_results(release: Release, row: Measurement) -> list[EvalResult]:
    # The Hub groups results by task type and dataset split (not by task name), so kNN and
    # linear-probe numbers of one split share a result: the metric names tell them apart.
    protocol = _protocol_name(row.protocol)
    common = {"task_type": "image-classification",
              "task_name": "Image classification on frozen features",
              "dataset_type": release.hub_dataset or release.dataset_kind,
              "dataset_name": release.dataset_name, "dataset_split": row.split}
    results = [EvalResult(metric_type="accuracy", metric_name=f"{protocol} top-1",
                          metric_value=round(row.top1, 2), **common)]
    if row.top5 is not None:
        results.append(EvalResult(metric_type="top_5_accuracy", metric_name=f"{protocol} top-5",
                                  metric_value=round(row.top5, 2), **common))
    return results


def card_data(release: Release) -> ModelCardData:
    """The card's Hub metadata."""
    tags = [*_BASE_TAGS, release.method, release.crop, "timm-ccrop"]
    results = [result for row in release.measurements for result in _eval_results(release, row)]
    return ModelCardData(
        library_name="timm", pipeline_tag="image-feature-extraction", license=release.license,
        tags=list(dict.fromkeys(tags)),
        datasets=[release.hub_dataset] if release.hub_dataset else [],
        model_name=release.name if results else None, eval_results=results or None,
    )


def card_front_matter(release: Release) -> dict[str, Any]:
    """The card's YAML front-matter (Hub metadata) as a dict."""
    return card_data(release).to_dict()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _num_images(info: CardInfo) -> int | None:
    if info.num_images is not None:
        return info.num_images
    try:  # a generated dataset's spec names its size; a folder's does not
        count = parse_data_spec(info.release.dataset).options.get("num_samples")
    except ValueError:
        return None
    return count if isinstance(count, int) else None


def _data_seen(info: CardInfo) -> str:
    """The card's first line: what data the weights saw."""
    release = info.release
    parts = [f"{release.dataset_name} (`{release.dataset}`)"]
    count = _num_images(info)
    if count is not None:
        parts.append(f"{count} images")
    epochs = info.training.get("Epochs")
    parts.append(f"{epochs} epochs" if epochs not in (None, "", "unknown")
                 else "epochs not recorded")
    return f"**Data seen:** {', '.join(parts)}; no labels."


def _good_for(info: CardInfo) -> str:
    """The card's second line: the zoo's word on the weights, else what was measured."""
    if info.status:
        return f"**Good for:** {' '.join(info.status.split())}"
    rows = info.release.measurements
    if not rows:
        return ("**Good for:** not known yet: nothing was measured on these weights, so "
                "nothing is claimed (measure them with `timm-ccrop eval`).")
    numbers = ", ".join(f"{_protocol_name(row.protocol)} top-1 {row.top1:.2f} "
                        f"(`{row.dataset}`, {row.split})" for row in rows)
    return f"**Good for:** frozen features; measured: {numbers}."


def _intro(info: CardInfo) -> list[str]:
    release = info.release
    lines = [f"# {release.name}", "", _data_seen(info), "", _good_for(info), "",
             f"A {release.architecture} feature backbone pretrained without labels with "
             f"{release.method_name} and {release.crop_name} ([ContrastiveCrop]({PAPER_URL}), "
             f"Peng et al., CVPR 2022) on {release.dataset_name}. It has no classifier "
             f"(`num_classes=0`): the forward pass returns {info.num_features} pooled "
             "features.", ""]
    if info.provenance:
        lines += [info.provenance, ""]
    return lines


def _details(info: CardInfo) -> list[str]:
    release = info.release
    lines = ["## Model details", "",
             f"- **Architecture:** `{release.architecture}`"
             + (" (a CIFAR-stem ResNet registered with timm by `import timm_ccrop`: 3x3 "
                "stride-1 stem, no max-pool)" if info.ours else " (timm)"),
             f"- **Parameters:** {info.num_parameters / 1e6:.2f} M; **features:** "
             f"{info.num_features}",
             f"- **Method:** {release.method_name}",
             f"- **Crop mode:** {release.crop}"]
    if release.crop_params:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in release.crop_params.items())
        lines.append(f"- **Crop parameters:** {params}")
    lines += [f"- **Pretraining data:** {release.dataset_name} (`{release.dataset}`)",
              f"- **Input:** {release.input_size[-1]}x{release.input_size[-2]} px, mean "
              f"{list(release.mean)}, std {list(release.std)}",
              f"- **Paper:** [{PAPER_NAME}]({PAPER_URL}) ({PAPER_ARXIV})",
              f"- **License:** {release.license}"]
    lines += [f"- **{key}:** {value}" for key, value in info.training.items()]
    return lines


def _results(info: CardInfo) -> list[str]:
    rows = info.release.measurements
    lines = ["## Results", ""]
    if rows:
        lines += ["Measured on the frozen backbone with `timm-ccrop eval` (these exact weights: "
                  "the report's sha256 matches):", "",
                  "| protocol | dataset | split | top-1 | top-5 | settings |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {_protocol_name(row.protocol)} | `{row.dataset}` | {row.split} | "
                  f"{row.top1:.2f} | {_fmt(row.top5)} | {row.details} |" for row in rows]
        commands = list(dict.fromkeys(row.command for row in rows))
        lines += ["", "Measured with:", "", "```bash", *commands, "```"]
    else:
        lines.append("No evaluation of these weights was recorded (no `eval.json` from "
                     "`timm-ccrop eval` for them); no accuracy is claimed.")
    if info.monitor:
        top5 = info.monitor.get("knn_top5")
        lines += ["", f"Training-time kNN monitor (the trainer's `metrics.jsonl`, epoch "
                      f"{info.monitor.get('epoch')}, on a subset of at most "
                      f"{info.monitor_bank or 'all'} train images): top-1 "
                      f"{float(info.monitor['knn_top1']):.2f}"
                  + (f", top-5 {float(top5):.2f}" if top5 is not None else "") + "."]
    return lines


def _usage(info: CardInfo) -> list[str]:
    release = info.release
    lines = ["## How to use", "", "```python", "import timm"]
    if info.ours:
        lines.append(f"import timm_ccrop  # the timm-ccrop package: registers "
                     f"{release.architecture} with timm")
    return lines + [
        "",
        f'model = timm.create_model("hf-hub:{release.hf_hub_id or "ORG/NAME"}", '
        "pretrained=True).eval()",
        "# or from a local copy: timm.create_model(\"local-dir:PATH\", pretrained=True)",
        "data_config = timm.data.resolve_model_data_config(model)",
        "transform = timm.data.create_transform(**data_config, is_training=False)",
        f"features = model(transform(image).unsqueeze(0))  # (1, {info.num_features})",
        "```", ""]


def _recipe(info: CardInfo) -> list[str]:
    lines = ["## Training recipe", ""]
    if info.recipe_note:
        lines += [info.recipe_note, ""]
    if info.recipe_yaml:
        lines += ["```yaml", info.recipe_yaml.rstrip(), "```", ""]
    return lines + ["## Citation", "", "```bibtex", BIBTEX, "```", ""]


def render_card(info: CardInfo) -> str:
    """The README.md model card."""
    front = card_data(info.release).to_yaml()
    lines = [f"---\n{front}\n---", "", *_intro(info), *_details(info), "", *_results(info),
             "", *_usage(info), *_recipe(info)]
    return "\n".join(lines)


def _as_metadata(yaml_block: str) -> dict[str, Any] | None:
    try:
        meta = yaml.safe_load(yaml_block)
    except yaml.YAMLError:
        return None
    return meta if isinstance(meta, dict) else None


def card_metadata(text: str) -> dict[str, Any] | None:
    """The YAML front-matter of a model card's text, or None when it has none (or it is
    broken). The front-matter is found as :func:`huggingface_hub.metadata_load` finds it
    (which reads only files: see :func:`read_card_metadata`)."""
    match = REGEX_YAML_BLOCK.search(text)
    return _as_metadata(match.group(2)) if match else None


def read_card_metadata(path: str | Path) -> dict[str, Any] | None:
    """The front-matter of the card file ``path`` (``huggingface_hub.metadata_load``), or
    None when it has none or it does not parse as a YAML mapping."""
    try:
        meta = metadata_load(Path(path))
    except (ValueError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def card_measurements(meta: Mapping[str, Any] | None) -> list[float]:
    """The metric values in a card's ``model-index``."""
    values = []
    for model in (meta or {}).get("model-index") or []:
        for result in (model or {}).get("results") or []:
            for metric in (result or {}).get("metrics") or []:
                value = (metric or {}).get("value")
                if isinstance(value, (int, float)) and math.isfinite(value):
                    values.append(float(value))
    return values
