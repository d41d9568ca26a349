"""Hugging Face Hub: export in timm's layout, model cards, official checkpoints, push, the zoo.

Modules, split as timm splits its own hub code:

* :mod:`.release`: the one release record (:class:`Release`) behind config.json's
  pretrained_cfg, the model card and a zoo entry; tag and repo-id checks.
* :mod:`.builder`: export of trainer backbones and run folders (timm's ``_builder``).
* :mod:`.reports`: measured numbers (``eval.json``, the trainer's kNN monitor).
* :mod:`.card`: the model card (``huggingface_hub.ModelCardData`` metadata).
* :mod:`.official`: official ContrastiveCrop checkpoints.
* :mod:`.publish`: validation and upload (timm's ``_hub``).
* :mod:`.zoo` and :mod:`.registry`: the zoo index, and its entries as loadable names
  (tags in our architectures' ``default_cfgs``; :func:`create_model` for timm's own).
"""

from ..models.backbones import CONFIG_NAME, WEIGHTS_NAME
from .builder import export_backbone, export_run, release_for_config, write_weights_and_config
from .card import (
    CARD_NAME,
    CardInfo,
    card_data,
    card_front_matter,
    card_measurements,
    card_metadata,
    read_card_metadata,
    render_card,
)
from .measurements import (
    export_hashes,
    matching_eval_results,
    measurements_from_eval,
    monitor_record,
)
from .official import (
    OFFICIAL_DATASETS,
    OFFICIAL_STATE_KEYS,
    convert_official_state_dict,
    export_official,
    official_architecture,
    official_method,
)
from .publish import (
    PICKLE_SUFFIXES,
    PushError,
    PushResult,
    push_folder,
    scrub_token,
    validate_export,
)
from .registry import (
    create_model,
    register_zoo,
    registered_zoo_tags,
    unregister_zoo,
    zoo_pretrained_cfg,
)
from .release import (
    BIBTEX,
    OFFICIAL_REPO_URL,
    PAPER_ARXIV,
    PAPER_NAME,
    PAPER_URL,
    HubExportError,
    Measurement,
    Release,
    check_repo_id,
    check_tag,
    full_pretrained_cfg,
)
from .zoo import (
    INDEX_NAME,
    METRIC_FIELDS,
    REQUIRED_FIELDS,
    ZooEntry,
    entry_problems,
    format_zoo_table,
    load_zoo,
    zoo_root,
)

__all__ = [
    "BIBTEX",
    "CARD_NAME",
    "CONFIG_NAME",
    "INDEX_NAME",
    "METRIC_FIELDS",
    "OFFICIAL_DATASETS",
    "OFFICIAL_REPO_URL",
    "OFFICIAL_STATE_KEYS",
    "PAPER_ARXIV",
    "PAPER_NAME",
    "PAPER_URL",
    "PICKLE_SUFFIXES",
    "REQUIRED_FIELDS",
    "WEIGHTS_NAME",
    "CardInfo",
    "HubExportError",
    "Measurement",
    "PushError",
    "PushResult",
    "Release",
    "ZooEntry",
    "card_data",
    "card_front_matter",
    "card_measurements",
    "card_metadata",
    "check_repo_id",
    "check_tag",
    "convert_official_state_dict",
    "create_model",
    "entry_problems",
    "export_backbone",
    "export_hashes",
    "export_official",
    "export_run",
    "format_zoo_table",
    "full_pretrained_cfg",
    "load_zoo",
    "matching_eval_results",
    "measurements_from_eval",
    "monitor_record",
    "official_architecture",
    "official_method",
    "push_folder",
    "read_card_metadata",
    "register_zoo",
    "registered_zoo_tags",
    "release_for_config",
    "render_card",
    "scrub_token",
    "unregister_zoo",
    "validate_export",
    "write_weights_and_config",
    "zoo_pretrained_cfg",
    "zoo_root",
]
