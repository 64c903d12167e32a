"""Field types of the config models: how a YAML scalar becomes a typed value.

Each type is an ``Annotated`` alias carrying its parser (from :mod:`ninelives.units` or
:mod:`ninelives.address`), its serialiser and the JSON Schema editors see, so the models
read as plain declarations.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, PlainSerializer, PlainValidator, WithJsonSchema

from ninelives.address import Address, parse_address
from ninelives.units import describe_input, parse_duration, parse_percent, parse_size

Loc = tuple[str | int, ...]


class ModelProblems(ValueError):
    """Problems a model validator found, each at a path below the model being validated.

    Pydantic gives a model validator's error the model's own location; the loader appends
    ``where`` so the user sees ``pools.app.hash_on: ...`` rather than ``pools.app: ...``.
    """

    def __init__(self, items: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{format_loc(where)}: {text}" for where, text in items))
        self.items = items


def format_loc(loc: Loc) -> str:
    """``("pools", "app", "tiers", 0)`` -> ``pools.app.tiers[0]``, the form PRODUCT.md shows."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


# RFC 9110 token: what header names and HTTP methods are made of; RFC 6265 uses the same
# set for cookie names.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Names appear in admin URLs (/v1/pools/{pool}/servers/{server}) and metric labels, so a
# slash or a space in one would be a bug waiting for the first API call.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def is_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None


def _to_address(value: Any) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected host:port, got {describe_input(value)}")
    return parse_address(value)


def _to_addresses(value: Any) -> list[Any]:
    # `bind: 127.0.0.1:8080` is the common case; a list is for several network paths.
    if isinstance(value, str | Address):
        return [value]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected host:port or a list of them, got {describe_input(value)}")
    return list(value)


def _to_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(
            f"expected a duration above 0 like 500ms or 2s, got {describe_input(value)}"
        )
    return seconds


def _to_duration_or_zero(value: Any) -> float:
    return parse_duration(value)


def _to_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a size like 64KiB or 1MiB, got {describe_input(value)}")
    return parse_size(value)


_RETRY_CONDITIONS = ("connect-failure", "timeout", "reset")


def _to_retry_condition(value: Any) -> str:
    """``connect-failure``, ``timeout``, ``reset``, a status (``503``) or a class (``5xx``)."""
    text = "" if isinstance(value, bool) else str(value).strip().lower()
    if not isinstance(value, int | str):
        text = ""
    if text in _RETRY_CONDITIONS or _STATUS.fullmatch(text) or _STATUS_CLASS.fullmatch(text):
        return text
    raise ValueError(
        "expected connect-failure, timeout, reset, a status like 503 or a class like 5xx, "
        f"got {describe_input(value)}"
    )


def as_name(value: Any) -> str | None:
    """A name as YAML may give it: ``name: 1`` is the int 1, which the user meant as "1"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None


def _to_name(value: Any) -> str:
    name = as_name(value)
    if name is None or not _NAME.fullmatch(name):
        raise ValueError(
            'expected a name of letters, digits, "-", "_" and ".", '
            f"got {describe_input(value)}"
        )
    return name


def _to_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {describe_input(value)}")
    return value


def _to_webhook_url(value: Any) -> str:
    """An ``http://`` or ``https://`` URL with a host: where a webhook is posted."""
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "https") and parts.hostname:
            try:
                parts.port  # noqa: B018 - raises on a port out of range
            except ValueError:
                pass
            else:
                return value.strip()
    raise ValueError(f"expected a URL like http://127.0.0.1:8080/hook, got {describe_input(value)}")


_STATUS = re.compile(r"[1-5]\d\d")
_STATUS_CLASS = re.compile(r"[1-5]xx", re.IGNORECASE)
_STATUS_RANGE = re.compile(r"([1-5]\d\d)\s*-\s*([1-5]\d\d)")


def _to_expect(value: Any) -> str:
    """Normalise a health check's expected status to ``200``, ``2xx`` or ``200-399``."""
    # bool is an int subclass; `expect: true` is not a status.
    text = "" if isinstance(value, bool) else str(value).strip()
    if not isinstance(value, int | str):
        text = ""
    if _STATUS.fullmatch(text) or _STATUS_CLASS.fullmatch(text):
        return text.lower()
    match = _STATUS_RANGE.fullmatch(text)
    if match and int(match.group(1)) <= int(match.group(2)):
        return f"{match.group(1)}-{match.group(2)}"
    raise ValueError(
        "expected a status like 200, a class like 2xx or a range like 200-399, "
        f"got {describe_input(value)}"
    )


def status_accepted(expect: str, status: int) -> bool:
    """Does ``status`` satisfy a normalised expectation (see ``_to_expect``)?"""
    if expect.endswith("xx"):
        return status // 100 == int(expect[0])
    low, _, high = expect.partition("-")
    return int(low) <= status <= int(high or low)


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
        {"type": "string", "pattern": r"^\s*((\d+(\.\d*)?|\.\d+)\s*(ms|s|m|h|d)\s*)+$"},
    ],
    "examples": ["500ms", "2s", "1m"],
}
_ADDRESS_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": "host:port, or [v6]:port; port 0 picks a free port when listening",
    "examples": ["127.0.0.1:8080", "[::1]:8080"],
}

Duration = Annotated[float, PlainValidator(_to_duration), WithJsonSchema(_DURATION_SCHEMA)]
# A duration where 0 means "off" (slow_start: 0s).
DurationOrZero = Annotated[
    float,
    PlainValidator(_to_duration_or_zero),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "description": "seconds"},
                _DURATION_SCHEMA["anyOf"][1],
            ],
            "examples": ["0s", "10s"],
        }
    ),
]
AddressField = Annotated[
    Address,
    PlainValidator(_to_address),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(_ADDRESS_SCHEMA),
]
AddressList = Annotated[
    list[AddressField],
    BeforeValidator(_to_addresses),
    WithJsonSchema({"anyOf": [_ADDRESS_SCHEMA, {"type": "array", "items": _ADDRESS_SCHEMA}]}),
]
Name = Annotated[
    str,
    PlainValidator(_to_name),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}),
]
Percent = Annotated[
    float,
    PlainValidator(parse_percent),
    PlainSerializer(lambda f: f"{f * 100:g}%", return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"}),
]
Size = Annotated[
    int,
    PlainValidator(_to_size),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}], "examples": ["64KiB"]}
    ),
]
RetryCondition = Annotated[
    str,
    PlainValidator(_to_retry_condition),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["connect-failure", 503, "5xx"]}),
]
WebhookUrl = Annotated[
    str,
    PlainValidator(_to_webhook_url),
    WithJsonSchema({"type": "string", "format": "uri", "examples": ["http://127.0.0.1:8080/hook"]}),
]
Text = Annotated[str, PlainValidator(_to_text), WithJsonSchema({"type": "string", "minLength": 1})]
StatusExpectation = Annotated[
    str,
    PlainValidator(_to_expect),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 100, "maximum": 599},
                {"type": "string", "pattern": r"^([1-5]\d\d|[1-5][xX][xX]|[1-5]\d\d-[1-5]\d\d)$"},
            ],
            "examples": [200, "2xx", "200-399"],
        }
    ),
]
