"""From config text to a validated Config, or a ConfigError listing every problem.

Order: ``${NAME}`` substitution on the text, YAML parsing, then field validation and the
cross-field checks, whose problems are reported together.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ninelives.config.checks import cross_field_problems
from ninelives.config.errors import ConfigError, problem, problems_from
from ninelives.config.fields import as_name
from ninelives.config.models import CROSS_CHECKED, Config
from ninelives.units import describe_input

_REFERENCE = re.compile(r"(?P<escape>\$\$\{)|\$\{(?P<body>[^}\n]*)(?P<close>\}?)")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def substitute_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace ``${NAME}`` with its value and ``$${`` with ``${``; list what went wrong.

    Whole-line comments are left alone, so a commented-out ``# token: ${OLD}`` does not
    demand a variable nobody sets.
    """
    problems: list[str] = []
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("#"):
            continue

        def replace(match: re.Match[str], number: int = number) -> str:
            if match.group("escape"):
                return "${"
            name = match.group("body")
            if not match.group("close"):
                problems.append(f"line {number}: unclosed ${{ (write $${{ for a literal ${{)")
            elif not _VARIABLE.fullmatch(name):
                problems.append(f"line {number}: expected ${{NAME}} with NAME like "
                                f"NINELIVES_TOKEN, got ${{{name}}}")
            elif name not in env:
                problems.append(f"line {number}: environment variable {name} is not set")
            else:
                return env[name]
            return match.group(0)

        lines[number - 1] = _REFERENCE.sub(replace, line)
    return "".join(lines), problems


class _Duplicates:
    """Records duplicate keys while loading: in plain YAML the last one silently wins."""

    duplicates: list[str]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                self.duplicates.append(
                    f'line {line}: duplicate key "{key_node.value}" '
                    f"(first at line {seen[key_node.value]})"
                )
            else:
                seen[key_node.value] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)  # type: ignore[misc]
        return mapping


class _Loader(_Duplicates, yaml.SafeLoader):
    """The node config's loader: PyYAML's own parser, whose error messages say most."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates = []


class _FastLoader(_Duplicates, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser (PyYAML's wheels have it), about ten times faster on a large file,
    for architecture files of hundreds of components; its error messages are terser."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates = []


# YAML 1.2 booleans: only true and false. YAML 1.1 also reads on/off/yes/no as booleans,
# which would turn the key of ``retries: {on: [...]}`` into True. Where a boolean is
# wanted (``enabled: yes``), pydantic still takes those words.
_BOOL = "tag:yaml.org,2002:bool"
for _cls in (_Loader, _FastLoader):
    _cls.yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _cls.add_implicit_resolver(
        _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )


def _load_yaml(text: str, fast: bool = False) -> tuple[Any, list[str]]:
    loader = _FastLoader(text) if fast else _Loader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = ""
        if error.context and error.context_mark:
            context = f" ({error.context} at line {error.context_mark.line + 1})"
        return None, [f"{where}{error.problem or error.context}{context}"]
    except yaml.YAMLError as error:
        return None, [f"invalid YAML: {error}"]
    finally:
        loader.dispose()


def parse_config(
    text: str, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate config text; raise ConfigError with every problem found, each with its path."""
    text, problems = substitute_env(text, os.environ if env is None else env)
    if problems:
        raise ConfigError(problems, source)
    data, problems = _load_yaml(text)
    if problems:
        raise ConfigError(problems, source)
    if data is None:
        data = {}  # an empty file: report the missing sections, as for any config
    if not isinstance(data, dict):
        raise ConfigError(
            [f"expected a mapping of sections (listeners, pools, ...), got {describe_input(data)}"],
            source,
        )
    if isinstance(data.get("pools"), dict):
        # `pools: {1: ...}`: YAML made the name an int; keep it a name so paths read pools.1
        data["pools"] = {as_name(k) or k: v for k, v in data["pools"].items()}
    problems = [problem(loc, text) for loc, text in cross_field_problems(data)]
    try:
        config = Config.model_validate(data, context={CROSS_CHECKED: True})
    except ValidationError as error:
        field_problems = problems_from(error)
        raise ConfigError(field_problems + [p for p in problems if p not in field_problems],
                          source) from None
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; an unreadable file is a ConfigError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"cannot read {path}: {error.strerror or error}"], str(path)) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"cannot read {path}: not UTF-8 text ({error.reason})"],
                          str(path)) from None
    return parse_config(text, source=str(path))


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, for editors (yaml-language-server and others)."""
    schema = Config.model_json_schema(mode="validation")
    schema["title"] = "ninelives config"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
