"""The body of an email with attachments: ``multipart/mixed``, built by hand.

The text part comes first, as the text-only path encodes it; each attachment follows as
a base64 part with ``Content-Disposition: attachment``. A non-ASCII (or long) file name
is written per RFC 2231 (``filename*=utf-8''...``, continued over several lines when
long), which every mail client and the standard library's parser read. Built directly,
like the text-only message, so a 20 MiB attachment costs one base64 pass and one join.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Sequence
from urllib.parse import quote

from processpype.foundation.models import Attachment

__all__ = ["mixed_body"]

_LINE = 76  # RFC 2045: base64 lines of at most 76 characters
_BLOCK_LINES = 1024  # lines encoded per step: bounded temporaries, few Python calls
_RAW_BLOCK = _LINE // 4 * 3 * _BLOCK_LINES
_PLAIN_PARAM = re.compile(r"[ !#-\[\]-~]*")  # printable ASCII but '"' and '\'
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 2231 attribute-char, besides letters and digits
_SEGMENT = 60  # characters of an encoded value per continuation line


def _parameter(name: str, value: str) -> str:
    """``name="value"``, or its RFC 2231 form (``name*=utf-8''...``) when it must be."""
    if value.isascii() and _PLAIN_PARAM.fullmatch(value) and len(value) <= _SEGMENT:
        return f'{name}="{value}"'
    encoded = quote(value.encode("utf-8"), safe=_ATTR_CHARS)
    if len(encoded) <= _SEGMENT:
        return f"{name}*=utf-8''{encoded}"
    # Continuations (RFC 2231 section 3), cut between %XX escapes, one per line.
    segments: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + _SEGMENT, len(encoded))
        percent = encoded.rfind("%", max(end - 2, start), end)
        if percent != -1 and end < len(encoded):
            end = percent
        segments.append(encoded[start:end])
        start = end
    return ";\r\n ".join(
        f"{name}*{index}*={"utf-8''" if index == 0 else ''}{segment}"
        for index, segment in enumerate(segments)
    )


def _base64(data: bytes) -> list[bytes]:
    """``data`` in base64 lines of 76 characters, each ending with CRLF, in blocks."""
    blocks: list[bytes] = []
    view = memoryview(data)
    for start in range(0, len(data), _RAW_BLOCK):
        encoded = binascii.b2a_base64(view[start : start + _RAW_BLOCK], newline=False)
        lines = [encoded[i : i + _LINE] for i in range(0, len(encoded), _LINE)]
        lines.append(b"")
        blocks.append(b"\r\n".join(lines))
    return blocks


def mixed_body(
    text_encoding: str, text_payload: bytes, attachments: Sequence[Attachment]
) -> tuple[str, list[bytes]]:
    """The ``Content-Type`` header value and the body pieces of a multipart/mixed message.

    ``text_payload`` is the text part encoded with ``text_encoding`` (CRLF line ends).
    """
    boundary = f"=_processpype_{secrets.token_hex(12)}"  # "=_" never occurs in QP or base64
    delimiter = f"--{boundary}\r\n".encode("ascii")
    pieces: list[bytes] = [
        b"This is a multi-part message in MIME format.\r\n",
        delimiter,
        (
            'Content-Type: text/plain; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {text_encoding}\r\n\r\n"
        ).encode("ascii"),
        text_payload,
    ]
    if text_payload:
        # The CRLF before a delimiter belongs to the delimiter: one more keeps the
        # text's last line end, as the text-only message has it.
        pieces.append(b"\r\n")
    for attachment in attachments:
        pieces.append(delimiter)
        pieces.append(
            (
                f"Content-Type: {attachment.content_type};\r\n"
                f" {_parameter('name', attachment.filename)}\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                f"Content-Disposition: attachment;\r\n"
                f" {_parameter('filename', attachment.filename)}\r\n\r\n"
            ).encode("ascii")
        )
        pieces.extend(_base64(attachment.data))
    pieces.append(f"--{boundary}--\r\n".encode("ascii"))
    return f'multipart/mixed; boundary="{boundary}"', pieces
