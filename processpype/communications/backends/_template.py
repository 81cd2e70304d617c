"""The webhook body template language: JSON data whose strings may hold placeholders.

A template is any JSON-like value (mapping, list, string, number...). Each string in it
is parsed once, when the backend is built, with ``str.format`` syntax restricted to the
message's fields: ``{message}``, ``{severity}``, ``{metadata[key]}``,
``{metadata[key]!r}``, ``{message:.20}``. A string that is exactly one placeholder keeps
the value's JSON type (a number, a mapping, null); any other string is rendered as text.

- ``compile_template`` checks the syntax and names (``ConfigError``, naming the config
  key of the string);
- ``render_template`` fills a compiled template from a message's fields (``SendError``,
  permanent, naming the placeholder that has no value);
- ``uses_field`` tells whether a compiled template places a given field.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processpype.foundation.errors import ConfigError, SendError

__all__ = ["TEMPLATE_FIELDS", "compile_template", "render_template", "uses_field"]

TEMPLATE_FIELDS = ("message", "label", "severity", "subject", "source", "metadata", "attachments")
"""The names a body template may use, as ``{name}`` or ``{metadata[key]}``."""

_FIELD_NAME = re.compile(r"(?P<root>[A-Za-z_]\w*)(?P<keys>(?:\[[^\[\]]*\])*)")
_KEY = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class _Placeholder:
    source: str  # as written, e.g. "{metadata[host]}"
    root: str
    keys: tuple[str, ...]
    conversion: str | None
    spec: str


@dataclass(frozen=True)
class _TextTemplate:
    path: str
    parts: tuple[str | _Placeholder, ...]


def compile_template(node: Any, path: str, key_prefix: str) -> Any:
    """Turn every string of ``node`` into a ``_TextTemplate``; ConfigError on bad syntax."""
    if isinstance(node, str):
        return _compile_text(node, path, key_prefix)
    if isinstance(node, Mapping):
        return {
            str(key): compile_template(value, f"{path}.{key}", key_prefix)
            for key, value in node.items()
        }
    if isinstance(node, list | tuple):
        return [
            compile_template(value, f"{path}[{index}]", key_prefix)
            for index, value in enumerate(node)
        ]
    return node


def _compile_text(text: str, path: str, key_prefix: str) -> _TextTemplate:
    key = key_prefix + path
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(
            f"invalid template ({exc}); write {{{{ and }}}} for literal braces", key=key
        ) from None
    parts: list[str | _Placeholder] = []
    for literal, field_name, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field_name is None:
            continue
        written = "{" + field_name + (f"!{conversion}" if conversion else "")
        written += (f":{spec}" if spec else "") + "}"
        match = _FIELD_NAME.fullmatch(field_name)
        if match is None:
            raise ConfigError(
                f"unsupported placeholder {written}: use {{name}} or {{metadata[key]}} "
                f"(names: {', '.join(TEMPLATE_FIELDS)}); write {{{{ and }}}} for literal braces",
                key=key,
            )
        root = match.group("root")
        if root not in TEMPLATE_FIELDS:
            raise ConfigError(
                f"unknown placeholder {written}: use one of "
                + ", ".join("{" + name + "}" for name in TEMPLATE_FIELDS),
                key=key,
            )
        if spec and "{" in spec:
            raise ConfigError(f"nested placeholders are not supported: {written}", key=key)
        keys = tuple(_KEY.findall(match.group("keys")))
        parts.append(_Placeholder(written, root, keys, conversion, spec or ""))
    return _TextTemplate(path, tuple(parts))


def render_template(node: Any, fields: Mapping[str, Any]) -> Any:
    """The value of the compiled template ``node`` for a message's ``fields``."""
    if isinstance(node, _TextTemplate):
        return _render_text(node, fields)
    if isinstance(node, dict):
        return {key: render_template(value, fields) for key, value in node.items()}
    if isinstance(node, list):
        return [render_template(value, fields) for value in node]
    return node


def _render_text(template: _TextTemplate, fields: Mapping[str, Any]) -> Any:
    parts = template.parts
    if len(parts) == 1 and isinstance(parts[0], _Placeholder):
        only = parts[0]
        if only.conversion is None and not only.spec:
            # A string that is one placeholder keeps the value's JSON type (a number, a
            # mapping, null) instead of its text.
            return _resolve(only, template.path, fields)
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(_format(part, template.path, _resolve(part, template.path, fields)))
    return "".join(out)


def _template_error(placeholder: _Placeholder, path: str, problem: str) -> SendError:
    return SendError(
        f"body template: placeholder {placeholder.source} at {path}: {problem}",
        attempts=0,
        permanent=True,
    )


def _resolve(placeholder: _Placeholder, path: str, fields: Mapping[str, Any]) -> Any:
    value = fields[placeholder.root]
    where = placeholder.root
    for key in placeholder.keys:
        if isinstance(value, Mapping):
            if key not in value:
                known = ", ".join(sorted(map(str, value))) or "none"
                raise _template_error(
                    placeholder, path, f"the message's {where} has no key {key!r} (keys: {known})"
                )
            value = value[key]
        elif isinstance(value, list):
            try:
                value = value[int(key)]
            except (ValueError, IndexError):
                raise _template_error(
                    placeholder,
                    path,
                    f"the message's {where} is a list of {len(value)}; {key!r} is no index in it",
                ) from None
        else:
            kind = "null" if value is None else type(value).__name__
            raise _template_error(
                placeholder, path, f"the message's {where} is {kind}, not a mapping"
            )
        where += f"[{key}]"
    return value


def _format(placeholder: _Placeholder, path: str, value: Any) -> str:
    if placeholder.conversion is None and not placeholder.spec:
        if value is None:
            return ""
        if isinstance(value, dict | list | bool):
            return json.dumps(value, ensure_ascii=False)
        return str(value)
    try:
        formatter = string.Formatter()
        converted = formatter.convert_field(value, placeholder.conversion)
        return str(formatter.format_field(converted, placeholder.spec))
    except (ValueError, TypeError) as exc:
        kind = "null" if value is None else type(value).__name__
        raise _template_error(placeholder, path, f"cannot format a {kind}: {exc}") from None


def uses_field(node: Any, root: str) -> bool:
    """True when the compiled template ``node`` has a placeholder of field ``root``."""
    if isinstance(node, _TextTemplate):
        return any(isinstance(part, _Placeholder) and part.root == root for part in node.parts)
    if isinstance(node, dict):
        return any(uses_field(value, root) for value in node.values())
    if isinstance(node, list):
        return any(uses_field(value, root) for value in node)
    return False
