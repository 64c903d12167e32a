"""Config problems as the user reads them: ``path: message``, without pydantic's noise.

Pydantic reports ``Value error, expected host:port ... [type=value_error, input_value=...]``
at a location tuple; the user wants
``pools.app.tiers[0].servers[1].address: expected host:port, got "10.0.0.1"``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ninelives.config.fields import Loc, ModelProblems, format_loc
from ninelives.units import describe_input


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` lists every problem found, with its path."""

    def __init__(self, problems: list[str], source: str = "<config>") -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.source = source


class ReloadError(Exception):
    """A valid config that cannot be applied here (an address in use); nothing changed."""


def problem(loc: Loc, text: str) -> str:
    path = format_loc(loc)
    return f"{path}: {text}" if path else text


# What a type error expected, by pydantic error type.
_EXPECTED: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "path_type": "a path",
}


def problems_from(error: ValidationError) -> list[str]:
    out: list[str] = []
    for details in error.errors(include_url=False):
        for loc, text in _explain(details):
            line = problem(loc, text)
            if line not in out:
                out.append(line)
    return out


def _explain(details: ErrorDetails) -> list[tuple[Loc, str]]:
    loc: Loc = tuple(details["loc"])
    kind = details["type"]
    ctx: dict[str, Any] = dict(details.get("ctx") or {})
    given = details["input"]
    if loc and loc[-1] == "[key]":  # a dict key (a pool name) failed, not its value
        loc = loc[:-1]
    if kind in ("value_error", "assertion_error"):
        cause = ctx.get("error")
        if isinstance(cause, ModelProblems):
            return [((*loc, *where), text) for where, text in cause.items]
        return [(loc, str(cause) if cause is not None else details["msg"])]
    return [(loc, _message(kind, ctx, given, details["msg"]))]


def _message(kind: str, ctx: dict[str, Any], given: Any, fallback: str) -> str:
    got = f", got {describe_input(given)}"
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "literal_error":
        return f"expected {str(ctx.get('expected', '')).replace(chr(39), '')}{got}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}{got}"
    if kind in ("too_short", "string_too_short"):
        minimum = ctx.get("min_length", 1)
        if minimum == 1:
            return "must not be empty"
        return f"expected at least {minimum} items, got {ctx.get('actual_length')}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "less_than_equal": ("at most", "le"),
        "greater_than": ("more than", "gt"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"expected {words} {ctx.get(key)}{got}"
    return fallback
