"""A message as JSON-ready data, the same for every backend that writes JSON.

The webhook body and the console's JSON lines both come from ``message_json``, so a
value one accepts the other accepts too: metadata of an unknown type becomes its text,
bytes become text when they are UTF-8. What JSON cannot carry (bytes that are not UTF-8,
a string with a lone surrogate) is a ``SendError`` naming the metadata key, never a bare
``UnicodeError``.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

from processpype.foundation.errors import SendError
from processpype.foundation.models import OutgoingMessage

__all__ = ["message_json"]


def message_json(message: OutgoingMessage) -> dict[str, Any]:
    """``message`` as JSON-ready data; ``SendError`` (permanent) for what JSON cannot hold."""
    try:
        data: dict[str, Any] = to_jsonable_python(message, fallback=str)
    except UnicodeDecodeError:
        raise _unsendable(message.metadata, "bytes that are not UTF-8 text") from None
    problem = _surrogate_path(data.get("metadata"), "metadata")
    if problem is not None:
        raise SendError(
            f"{problem} holds a lone surrogate, which is not valid text (decode bytes with "
            "errors='replace'); nothing was sent",
            attempts=0,
            permanent=True,
        )
    return data


def _unsendable(metadata: Any, what: str) -> SendError:
    where = _bytes_path(metadata, "metadata") or "metadata"
    return SendError(
        f"{where} holds {what}, which JSON cannot carry: decode them (or send them as "
        "base64 text); nothing was sent",
        attempts=0,
        permanent=True,
    )


def _bytes_path(value: Any, path: str) -> str | None:
    """The key path of the first bytes value that is not UTF-8, if any."""
    if isinstance(value, bytes | bytearray):
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return path
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple | set | frozenset):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _bytes_path(item, f"{path}[{key!r}]")
        if found is not None:
            return found
    return None


def _surrogate_path(value: Any, path: str) -> str | None:
    """The key path of the first string (key or value) holding a lone surrogate."""
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}[{key!r}]"
            found = _surrogate_path(key, where) or _surrogate_path(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
