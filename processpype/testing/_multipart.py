"""Read a ``multipart/form-data`` body (as browsers and httpx write it) into fields and files."""

from __future__ import annotations

import re
from dataclasses import dataclass

from processpype.testing._file_bytes import FileBytes

__all__ = ["CapturedFile", "parse_multipart"]

_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)="((?:[^"\\]|\\.)*)"')
_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


@dataclass(frozen=True)
class CapturedFile(FileBytes):
    """One file of a multipart body: its form field, file name, content type and bytes."""

    field: str
    """The form field it was posted under, e.g. ``files[0]``."""
    filename: str | None
    """The file name (HTML5 escapes undone; non-ASCII names arrive as UTF-8)."""
    content_type: str
    """The part's ``Content-Type`` (``application/octet-stream`` when absent)."""
    data: bytes
    """The bytes, exactly as posted."""


def _unescape(value: str) -> str:
    # HTML5 form encoding (httpx, browsers): '"' as %22, '\' doubled, controls as %XX.
    value = re.sub(r"%([01][0-9A-Fa-f]|22)", lambda m: chr(int(m.group(1), 16)), value)
    return value.replace("\\\\", "\\")


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], list[CapturedFile]]:
    """The text fields and the files of a ``multipart/form-data`` ``body``.

    Raises ``ValueError`` for a body that is not well-formed multipart.
    """
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise ValueError("multipart body without a boundary in its Content-Type")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("ascii")
    sections = body.split(b"\r\n" + delimiter)
    # The first section holds the preamble and the first delimiter (no CRLF before it).
    first = sections[0]
    if not first.startswith(delimiter) and delimiter not in first:
        raise ValueError("multipart body does not start with its boundary")
    sections[0] = first[first.index(delimiter) + len(delimiter) :]
    fields: dict[str, str] = {}
    files: list[CapturedFile] = []
    for section in sections:
        if section.startswith(b"--"):
            break  # the closing delimiter
        head, separator, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("multipart part without a blank line after its headers")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        params = {
            key.lower(): _unescape(value)
            for key, value in _PARAM.findall(headers.get("content-disposition", ""))
        }
        field = params.get("name", "")
        if "filename" in params or "content-type" in headers:
            files.append(
                CapturedFile(
                    field=field,
                    filename=params.get("filename"),
                    content_type=headers.get("content-type", "application/octet-stream"),
                    data=content,
                )
            )
        else:
            fields[field] = content.decode("utf-8", "replace")
    return fields, files
