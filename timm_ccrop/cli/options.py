"""Argument types of the command line, and parsers generated from typed config fields.

:func:`add_config_arguments` turns every field of a config dataclass (declared with
:func:`timm_ccrop.utils.fields.option`) into one ``--field-name`` option, so each command's
options, their types, choices, bounds and help live in one place: its config class.

One helper, :func:`number`, replaces a validator per range: ``number(int, low=1)``,
``number(float, low=0, high=1, high_open=True)``; its errors read like the config's
(``must be in [0, 1), got 1.5``), since both describe the range with :class:`Bounds`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, NoReturn

import yaml

from ..utils.fields import Bounds, Option, field_default, options_of

__all__ = ["BooleanFlag", "HelpFormatter", "OneLineErrorParser", "add_config_arguments",
           "config_values", "number", "optional_text", "parse_bool", "yaml_mapping"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_KIND_WORDS = {int: "an integer", float: "a number"}


def number(kind: type, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, unit: str = "",
           none: bool = False) -> Callable[[str], Any]:
    """An argparse ``type``: parse an ``int`` or ``float`` and check its range.

    Args:
        kind: ``int`` or ``float``; ``'1.5'`` is no int, ``'nan'``/``'inf'`` are no float.
        low, high: the range's ends (None: unbounded), inclusive unless ``*_open``.
        unit: a word after the bound in the error, e.g. ``'pixels'``.
        none: also accept ``none``/``null`` (then the value is None).
    """
    bounds = Bounds(low, high, low_open, high_open)
    suffix = f" {unit}" if unit else ""

    def parse(text: str) -> Any:
        """``text`` as a checked number; ArgumentTypeError (one line) otherwise."""
        if none and text.strip().lower() in ("none", "null"):
            return None
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {_KIND_WORDS[kind]}, got {text!r}") from None
        if value not in bounds:
            raise argparse.ArgumentTypeError(
                f"must be {bounds.describe() or 'finite'}{suffix}, got {value}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def parse_bool(text: str) -> bool:
    """``true/yes/on/1`` or ``false/no/off/0`` (any case); else ArgumentTypeError."""
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def yaml_mapping(text: str) -> dict[str, Any]:
    """An argparse ``type``: a YAML mapping such as ``'{queue_size: 4096}'``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(
            f"not valid YAML ({' '.join(str(err).split())}): {text!r}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a YAML mapping such as '{{key: value}}', got {text!r}")
    return value


class BooleanFlag(argparse.BooleanOptionalAction):
    """``--flag`` / ``--no-flag``, and for scripts also ``--flag true|false``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.nargs = "?"
        self.metavar = "BOOL"

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        """Set the destination: True, False for ``--no-flag``, or the given value."""
        negative = bool(option_string) and option_string.startswith("--no-")
        if values is None:
            setattr(namespace, self.dest, not negative)
            return
        if negative:
            parser.error(f"argument {option_string}: takes no value, got {values!r}")
        try:
            setattr(namespace, self.dest, parse_bool(values))
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument {option_string}: {err}")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse's parser, but a bad argument is ONE line on stderr (exit code 2).

    argparse prints the usage before the error; a generated parser's usage is long, and
    every other input error of ``timm-ccrop`` is one line too, so the usage is replaced
    by a pointer to ``--help``. Subcommand parsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with code 2."""
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but shows a :class:`BooleanFlag` as ``--x, --no-x``."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, BooleanFlag):
            return ", ".join(action.option_strings)
        return super()._format_action_invocation(action)


def add_verify_weights_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--verify-weights/--no-verify-weights`` (default on): check ``what`` against the
    sha256 recorded when it was written (off: for a file edited on purpose)."""
    parser.add_argument("--verify-weights", action=BooleanFlag, default=True,
                        help=f"check {what} against the sha256 recorded when it was written "
                             "(--no-verify-weights: for a file edited on purpose)")


def optional_text(text: str) -> str | None:
    """A string option that may be reset to None with ``none``/``null``."""
    return None if text.strip().lower() in ("none", "null") else text


def _typed_keywords(option: Option) -> dict[str, Any]:
    if option.kind is bool:
        return {"action": BooleanFlag}
    if option.kind is dict:
        return {"type": yaml_mapping, "metavar": "YAML"}
    if option.kind is tuple:
        item = option.item_kind or float
        keywords = {"nargs": option.length or "+", "metavar": item.__name__.upper(),
                    "type": str if item is str else number(item)}
        if option.choices is not None:
            keywords.update(choices=option.choices,
                            metavar="{" + ",".join(option.choices) + "}")
        return keywords
    if option.kind is str:
        keywords = {"type": optional_text if option.optional else str}
        if option.choices is not None:
            keywords["choices"] = (*option.choices, None) if option.optional else option.choices
            keywords["metavar"] = "{" + ",".join(option.choices) + "}"
        return keywords
    # bounds are checked by the config's validation, which lists every problem at once
    return {"type": number(option.kind, none=option.optional),
            "metavar": option.kind.__name__.upper()}


def config_argument(option: Option, default: Any) -> dict[str, Any]:
    """``add_argument`` keywords of one config field. Its default is only shown: the
    parser leaves unset options out (``SUPPRESS``), so the config's own default applies."""
    shown = ("none" if default is None else " ".join(map(str, default))
             if isinstance(default, (tuple, list)) else default)
    shows_default = option.required or "default:" in option.help
    help_text = option.help if shows_default else f"{option.help} (default: {shown})"
    if option.bounds is not None:
        help_text += f"; {option.bounds.describe()}"
    if option.optional and option.kind not in (bool, tuple) and "null:" not in option.help:
        help_text += "; null: unset"  # unless the help says what null means
    keywords = {"help": help_text.replace("%", "%%"), "dest": option.name,
                **_typed_keywords(option)}
    if option.required:
        keywords["required"] = True
    else:
        keywords["default"] = argparse.SUPPRESS
    return keywords


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type,
                         groups: Sequence[str] = (), skip: Sequence[str] = ()) -> None:
    """One ``--field-name`` argument per field of ``config_class`` (required where the
    field has no default), in an argument group per field group when ``groups`` names them.

    Args:
        parser: the command's parser.
        config_class: a dataclass whose fields were made with ``fields.option``.
        groups: the field groups, in help order (empty: no groups).
        skip: fields the command declares itself.
    """
    sections = {name: parser.add_argument_group(name) for name in groups}
    defaults = {item.name: field_default(item) for item in fields(config_class)}
    for item in options_of(config_class):
        if item.name in skip:
            continue
        target = sections.get(item.group, parser)
        target.add_argument(f"--{item.name.replace('_', '-')}",
                            **config_argument(item, defaults[item.name]))


def config_values(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields of ``config_class`` given on the command line (tuples as tuples)."""
    given = vars(args)
    return {item.name: tuple(given[item.name]) if item.kind is tuple else given[item.name]
            for item in options_of(config_class) if item.name in given}
