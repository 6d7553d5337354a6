"""Command-line flags generated from a dataclass's fields, so each option is declared once: its
name, type, default and help come from the dataclass (help from the field's metadata)."""
import argparse
import typing
from dataclasses import MISSING, fields
from typing import Any, Callable, Dict


def _parser(kind) -> Callable[[str], Any]:
    """int, float, str or bool; Optional[X] also takes 'none' (or 'off')."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Union and type(None) in args:
        inner = _parser(next(a for a in args if a is not type(None)))

        def optional(text: str):
            return None if text.lower() in ("none", "off") else inner(text)

        optional.__name__ = f"{inner.__name__} or none"
        return optional
    if kind is bool:
        def boolean(text: str) -> bool:
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
            return text.lower() in ("true", "yes", "1")
        return boolean
    return kind


_METAVARS = {"int": "N", "float": "X", "int or none": "N|none", "float or none": "X|none", "boolean": "true|false"}


def add_dataclass_flags(parser, cls, title: str, default_note: str = "") -> None:
    """One --flag-name per field of `cls`. Flags left out are absent from the parsed namespace, so
    `given_values` tells what the user chose from what a default (or a model file) supplies."""
    group = parser.add_argument_group(title)
    for f in fields(cls):
        default = f.default if f.default is not MISSING else None
        help_text = f.metadata.get("help", "")
        default_text = "none" if default is None else default
        parse = _parser(f.type)
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=parse, default=argparse.SUPPRESS,
                           metavar=_METAVARS.get(parse.__name__, parse.__name__.upper()),
                           help=f"{help_text} (default {default_text}{default_note})")


def given_values(args: argparse.Namespace, cls) -> Dict[str, Any]:
    """The fields of `cls` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
