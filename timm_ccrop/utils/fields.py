"""Typed config fields: each option's type, help, group, choices and bounds, declared once.

A config is a dataclass whose fields are made with :func:`option`. :func:`options_of` reads
them back as :class:`Option` records; :func:`field_problems` checks a config against them,
and the command line (``timm_ccrop.cli.options.add_config_arguments``) is generated from
them, so a bound or a choice is written in one place for the parser, the Python API and
YAML files alike.
"""

from __future__ import annotations

import functools
import math
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

__all__ = ["Bounds", "Option", "field_default", "field_problems", "option", "options_of",
           "tuples_from_lists"]

#: Python types of the annotations a config field may have.
_KINDS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict,
                           "tuple": tuple}
_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "a mapping", tuple: "a list of numbers"}


@dataclass(frozen=True)
class Bounds:
    """A numeric range: ``low``/``high`` (None: unbounded), each inclusive unless open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """``'>= 1'``, ``'> 0'``, ``'in [0, 1)'``, ... (empty when unbounded)."""
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return ""


def _is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, kind) or kind is float and isinstance(value, int)


@dataclass(frozen=True)
class Option:
    """What a config field declares besides its default: the one source of truth for the
    command line (help, group, type, choices) and for the config's validation.

    A ``tuple`` field holds several values of ``item_kind`` (``tuple[int, ...]``), each
    within ``choices`` and ``bounds``; ``length`` fixes how many. ``required`` marks a
    field without a default (a required option).
    """

    name: str
    kind: type
    optional: bool
    help: str
    group: str
    choices: tuple[str, ...] | None = None
    bounds: Bounds | None = None
    length: int | None = None
    required: bool = False
    item_kind: type | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this option (None if it is)."""
        if value is None:
            return None if self.optional else f"{self.name} must be set, got None"
        if self.kind is tuple:
            return self._tuple_problem(value)
        numeric = self.kind in (int, float)
        ok_type = _is_number(value, self.kind) if numeric else isinstance(value, self.kind)
        if not ok_type:
            return (f"{self.name} must be {_KIND_NAMES[self.kind]}, got "
                    f"{type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        if self.bounds is not None and value not in self.bounds:
            return f"{self.name} must be {self.bounds.describe()}, got {value}"
        return None

    def _tuple_problem(self, value: Any) -> str | None:
        kind = self.item_kind or float
        if not isinstance(value, (tuple, list)):
            return f"{self.name} must be a list of {_KIND_NAMES[kind]} values, got {value!r}"
        if not value:
            return f"{self.name} must name at least one value"
        for item in value:
            numeric = kind in (int, float)
            if not (_is_number(item, kind) if numeric else isinstance(item, kind)):
                return f"{self.name} must hold {kind.__name__} values, got {item!r}"
            if self.choices is not None and item not in self.choices:
                return f"{self.name}: {item!r} is not one of {', '.join(self.choices)}"
            if self.bounds is not None and item not in self.bounds:
                return f"{self.name} values must be {self.bounds.describe()}, got {list(value)}"
        if self.length is not None and len(value) != self.length:
            return f"{self.name} needs {self.length} values, got {list(value)}"
        return None


def option(default: Any = MISSING, help: str = "", *, group: str = "options",
           factory: Any = None, choices: Any = None, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False,
           length: int | None = None) -> Any:
    """A dataclass field carrying its :class:`Option` parts in ``metadata``.

    Without ``default`` (and ``factory``) the field is required, on the command line too.
    """
    bounds = (Bounds(low, high, low_open, high_open)
              if low is not None or high is not None else None)
    metadata = {"help": help, "group": group, "bounds": bounds, "length": length,
                "choices": tuple(choices) if choices is not None else None}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _field_option(item: Any) -> Option:
    annotation = str(item.type).replace(" ", "")
    optional = annotation.endswith("|None")
    base, _, inner = annotation.removesuffix("|None").partition("[")
    required = item.default is MISSING and item.default_factory is MISSING
    item_kind = _KINDS[inner.split(",", 1)[0]] if base == "tuple" else None
    return Option(name=item.name, kind=_KINDS[base], optional=optional,
                  help=item.metadata["help"], group=item.metadata["group"],
                  choices=item.metadata["choices"], bounds=item.metadata["bounds"],
                  length=item.metadata.get("length"), required=required, item_kind=item_kind)


@functools.cache
def options_of(config_class: type) -> tuple[Option, ...]:
    """The declared :class:`Option` of every field of ``config_class``, in field order."""
    return tuple(_field_option(item) for item in fields(config_class))


def field_default(item: Field) -> Any:
    """A dataclass field's default value (its factory called; None for a required field)."""
    if item.default_factory is not MISSING:
        return item.default_factory()
    return None if item.default is MISSING else item.default


def tuples_from_lists(config: Any) -> None:
    """Turn the lists a YAML or JSON file gives for ``tuple`` fields into tuples (call it
    from a config's ``__post_init__``), so equal settings compare equal."""
    for item in options_of(type(config)):
        if item.kind is tuple and isinstance(getattr(config, item.name), list):
            setattr(config, item.name, tuple(getattr(config, item.name)))


def field_problems(config: Any) -> list[str]:
    """Every field of ``config`` that breaks its declared type, choices or bounds."""
    return [problem for item in options_of(type(config))
            if (problem := item.problem(getattr(config, item.name))) is not None]
