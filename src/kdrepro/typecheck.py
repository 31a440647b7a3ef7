"""Plain values (parsed from JSON or YAML) checked against type annotations, so that a mistyped run-spec
field or model option is refused by name before anything is built from it."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def fits(value: Any, hint: Any) -> bool:
    """Does `value` have the annotated type? A float field takes an integer (YAML and JSON write 1 for
    1.0), an integer field never takes true/false. Annotations not named here are not checked."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if hint is bool or hint is str or hint is type(None):
        return isinstance(value, hint)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple)) and all(fits(v, args[0]) for v in value)
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    return True


def expected(hint: Any) -> str:
    """The annotated type in words: "a number", "null or an integer", "a list of strings"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(expected(arg) for arg in sorted(args, key=lambda a: a is not type(None)))
    if origin in (tuple, list):
        return f"a list of {expected(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return "a mapping"
    return NAMES.get(hint, str(hint))
