"""Load a ``CommunicationsConfig`` from YAML, with ``${VAR}`` substitution.

The file's root is either the communications section itself or an application config
that holds it under a ``communications:`` key. String values may use ``${VAR}`` and
``${VAR:-default}``; ``$${`` is a literal ``${``. Every error names the file and the key
path of the offending value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from processpype.config.models import BACKEND_TAGS, CommunicationsConfig
from processpype.foundation.errors import ConfigError

__all__ = ["config_from_mapping", "format_validation_error", "load_config", "load_config_text"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> CommunicationsConfig:
    """Read the YAML file at ``path`` and return its validated communications config."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read: {exc}", source=source) from None
    return load_config_text(text, source=source, env=env)


def load_config_text(
    text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None
) -> CommunicationsConfig:
    """Parse YAML ``text`` (named ``source`` in errors) into a communications config."""
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(
            f"invalid YAML: nested deeper than the parser can follow (at most {_MAX_DEPTH} "
            "levels are allowed)",
            source=source,
        ) from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the root must be a mapping of settings, not {type(data).__name__}", source=source
        )
    prefix: tuple[str | int, ...] = ()
    if "communications" in data:
        data = data["communications"]
        prefix = ("communications",)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"must be a mapping, not {type(data).__name__}",
                source=source,
                key="communications",
            )
    data = substitute_env(data, os.environ if env is None else env, source=source, path=prefix)
    return config_from_mapping(data, source=source, prefix=prefix)


def config_from_mapping(
    data: Mapping[str, Any], *, source: str = "<config>", prefix: tuple[str | int, ...] = ()
) -> CommunicationsConfig:
    """Validate ``data`` as a communications config, raising ``ConfigError`` on bad input."""
    try:
        return CommunicationsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix=prefix), source=source) from None


def format_validation_error(exc: ValidationError, *, prefix: tuple[str | int, ...] = ()) -> str:
    """One line per problem, each naming its key path (never an input value)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        parts = [_loc_part(part) for part in error["loc"]]
        # pydantic puts the union tag after the backend name: backends.<name>.<tag>.<key>
        if len(parts) >= 3 and parts[0] == "backends" and parts[2] in BACKEND_TAGS:
            del parts[2]
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{_key_path(prefix + tuple(parts)) or '<root>'}: {message}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems:\n  " + "\n  ".join(lines)


def _loc_part(part: Any) -> str | int:
    return part if isinstance(part, (str, int)) else str(part)


def _key_path(parts: tuple[str | int, ...]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


_MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a config may have (no real config comes close)."""


def substitute_env(
    value: Any, env: Mapping[str, str], *, source: str, path: tuple[str | int, ...] = ()
) -> Any:
    """Return ``value`` with ``${VAR}`` placeholders in its strings replaced from ``env``.

    A mapping or list that contains itself (a YAML alias inside its own anchor), or
    nesting deeper than 64 levels, is a ``ConfigError`` naming the key path.
    """
    return _walk(value, env, source, path, set())


def _walk(
    value: Any,
    env: Mapping[str, str],
    source: str,
    path: tuple[str | int, ...],
    open_nodes: set[int],
) -> Any:
    if isinstance(value, str):
        return _substitute(value, env, source=source, path=path)
    if not isinstance(value, dict | list):
        return value
    if id(value) in open_nodes:
        raise ConfigError(
            "refers to itself (a YAML alias used inside its own anchor)",
            source=source,
            key=_key_path(path) or "<root>",
        )
    if len(path) >= _MAX_DEPTH:
        raise ConfigError(
            f"nested deeper than {_MAX_DEPTH} levels",
            source=source,
            key=_key_path(path[:4]) + "...",
        )
    open_nodes.add(id(value))
    try:
        if isinstance(value, dict):
            return {
                key: _walk(item, env, source, (*path, str(key)), open_nodes)
                for key, item in value.items()
            }
        return [
            _walk(item, env, source, (*path, index), open_nodes) for index, item in enumerate(value)
        ]
    finally:
        open_nodes.discard(id(value))


def _substitute(
    text: str, env: Mapping[str, str], *, source: str, path: tuple[str | int, ...]
) -> str:
    """Resolve the placeholders of ``text``; a default may hold placeholders itself."""
    if "$" not in text:
        return text
    out: list[str] = []
    index = 0
    while True:
        start = text.find("$", index)
        if start < 0:
            out.append(text[index:])
            return "".join(out)
        out.append(text[index:start])
        if text.startswith("$${", start):
            out.append("${")
            index = start + 3
        elif text.startswith("${", start):
            end = _closing_brace(text, start + 2)
            if end < 0:
                raise ConfigError(
                    "a '${' is never closed with '}' (write $${ for a literal ${)",
                    source=source,
                    key=_key_path(path),
                )
            out.append(_resolve(text[start + 2 : end], env, source=source, path=path))
            index = end + 1
        else:
            out.append("$")
            index = start + 1


def _closing_brace(text: str, index: int) -> int:
    """Index of the ``}`` closing a ``${`` whose expression starts at ``index``, or -1."""
    depth = 1
    while index < len(text):
        if text.startswith("$${", index):
            index += 3
            continue
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return -1


def _resolve(
    expression: str, env: Mapping[str, str], *, source: str, path: tuple[str | int, ...]
) -> str:
    name, has_default, default = expression.partition(":-")
    if not _NAME.fullmatch(name):
        raise ConfigError(
            # The text is not repeated: it could be part of a password.
            "invalid placeholder: use ${NAME} or ${NAME:-default} (write $${ for a literal ${)",
            source=source,
            key=_key_path(path),
        )
    found = env.get(name)
    if found is not None and (found != "" or not has_default):
        return found
    if has_default:
        # ``${A:-${B}}``: the default is resolved in turn (only when it is used).
        return _substitute(default, env, source=source, path=path)
    raise ConfigError(
        f"environment variable {name} is not set "
        f"(set it, or write ${{{name}:-default}} for a default)",
        source=source,
        key=_key_path(path),
    )
