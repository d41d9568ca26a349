"""Dataset spec strings: ``KIND:PATH`` or ``synthetic[:key=value,...]``.

A spec names a kind of :mod:`timm_ccrop.data.kinds` and where its files are (or, for the
generated ``synthetic`` kind, its options). :func:`parse_data_spec` turns the string into a
:class:`DatasetSpec`; ``str(spec)`` gives the string back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kinds import dataset_kind, kind_names

__all__ = ["KINDS", "SPEC_FORMS", "DatasetSpec", "kind_of", "parse_data_spec"]

#: Dataset kinds accepted in a spec string (those with a reader), in registry order.
KINDS: tuple[str, ...] = kind_names(readable=True)


def _spec_forms() -> str:
    """The valid spec forms, listed in error messages (built from the registry)."""
    path_forms = [f"{name}:PATH" for name in KINDS if dataset_kind(name).needs_path]
    return (
        ", ".join(path_forms) + ", synthetic or synthetic:key=value,... (e.g. "
        "synthetic:num_samples=2000,image_size=32,seed=0; a range is lo:hi, e.g. "
        "object_scale=0.2:0.35), scenes or scenes:key=value,... (objects on photographs)"
    )


SPEC_FORMS = _spec_forms()


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec: ``kind``, ``path`` (``None`` for ``synthetic``) and options.

    ``options`` holds the ``key=value`` pairs of a ``synthetic`` spec with values already
    converted to ``int``/``float`` where they parse as such (strings otherwise).
    ``str(spec)`` gives back a spec string that :func:`parse_data_spec` accepts.
    """

    kind: str
    path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.path is not None:
            return f"{self.kind}:{self.path}"
        if self.options:
            return self.kind + ":" + ",".join(f"{k}={_format_value(v)}"
                                              for k, v in self.options.items())
        return self.kind


def _convert_number(text: str) -> int | float | str:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _convert_value(text: str) -> int | float | str | tuple[int | float, ...]:
    """Turn an option value into int or float when it is one, and ``lo:hi`` (numbers joined
    by ``:``) into a tuple, which is how a range such as ``object_scale=0.2:0.35`` is
    written; anything else stays a string."""
    if ":" in text:
        parts = [_convert_number(part.strip()) for part in text.split(":")]
        if all(isinstance(part, (int, float)) for part in parts):
            return tuple(parts)  # type: ignore[arg-type]
        return text
    return _convert_number(text)


def _format_value(value: Any) -> str:
    """Inverse of :func:`_convert_value`, so a parsed spec prints as it was written."""
    if isinstance(value, tuple):
        return ":".join(str(part) for part in value)
    return str(value)


def _parse_options(rest: str, spec: str) -> dict[str, Any]:
    """The ``key=value,...`` options of a generated-kind spec."""
    options: dict[str, Any] = {}
    rest = rest.strip()
    for item in rest.split(",") if rest else []:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value or not key.isidentifier():
            raise ValueError(
                f"malformed option {item.strip()!r} in dataset spec {spec!r}: options are "
                f"comma-separated key=value pairs. Valid forms: {SPEC_FORMS}"
            )
        if key in options:
            raise ValueError(f"option {key!r} given twice in dataset spec {spec!r}")
        options[key] = _convert_value(value)
    return options


def parse_data_spec(spec: str) -> DatasetSpec:
    """Parse a dataset spec string such as ``cifar10:/data/cifar`` or ``synthetic:seed=1``.

    Args:
        spec: ``KIND:PATH`` for ``cifar10``, ``cifar100``, ``stl10``, ``tiny-imagenet`` and
            ``folder``; ``synthetic`` or ``synthetic:key=value,key=value`` for the built-in
            dataset. The kind is case-insensitive; ``~`` in a path is expanded.

    Raises:
        ValueError: unknown kind, a missing/empty path, or a malformed/duplicate option;
            the message names the bad value and lists the valid forms.
    """
    if not isinstance(spec, str):
        raise ValueError(f"dataset spec must be a string, got {spec!r}; valid forms: {SPEC_FORMS}")
    kind, sep, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(
            f"unknown dataset kind {kind!r} in spec {spec!r}; valid forms: {SPEC_FORMS}"
        )
    if dataset_kind(kind).needs_path:
        path_text = rest.strip()
        if not sep or not path_text:
            raise ValueError(
                f"dataset spec {spec!r} has no path; write {kind}:PATH where PATH is the "
                f"folder the dataset was extracted to. Valid forms: {SPEC_FORMS}"
            )
        return DatasetSpec(kind=kind, path=Path(path_text).expanduser(), options={})
    return DatasetSpec(kind=kind, path=None, options=_parse_options(rest, spec))


def kind_of(kind_or_spec: str | DatasetSpec) -> str:
    """The kind named by a kind name, a spec string (what the user typed) or a spec.

    Raises:
        ValueError: the kind is unknown or has no reader (see :func:`parse_data_spec`).
    """
    if isinstance(kind_or_spec, DatasetSpec):
        return kind_or_spec.kind
    kind = kind_or_spec.strip().lower()
    if kind not in KINDS:
        # Also accept a full spec string, so callers can pass what the user typed.
        kind = parse_data_spec(kind_or_spec).kind
    return kind
