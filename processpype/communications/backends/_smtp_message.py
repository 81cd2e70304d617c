"""Render a notification as the bytes of a text/plain email (RFC 5322 + MIME).

The email backend sends one short text part; building it directly is about 50 times
faster than ``email.message.EmailMessage`` with the default policy, whose header parsing
and refolding cost more than the SMTP round trips on a local relay. The output is plain
7-bit: non-ASCII header text is RFC 2047 encoded, and a body with non-ASCII text, control
characters or lines over 998 octets is quoted-printable (UTF-8). aiosmtplib normalises
line ends and dot-stuffs lines that start with a period when it sends the data.
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Sequence
from email.header import Header
from email.utils import formataddr, parseaddr

from processpype.communications.backends._smtp_mime import mixed_body
from processpype.foundation.models import Attachment

__all__ = [
    "MAX_SUBJECT_CHARS",
    "envelope_address",
    "format_address",
    "render_message",
    "shorten_subject",
]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MAX_LINE = 998  # RFC 5322 2.1.1: a line is at most 998 characters plus CRLF
_MAX_PLAIN_HEADER = 900  # leave room for the header name on the line
MAX_SUBJECT_CHARS = 4000
"""Longest subject sent, in characters: a longer one is cut, ending with an ellipsis
(servers refuse headers past their own limits; nobody reads that far)."""
_UNSAFE_7BIT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# Both are pure and called for every recipient of every message; the standard
# library's address parser costs more than the rest of rendering, and most messages go
# to the same few addresses.
@functools.lru_cache(maxsize=1024)
def envelope_address(text: str) -> str:
    """The bare address of ``Name <addr@host>`` or ``addr@host``; "" if it has none."""
    _, address = parseaddr(text)
    return address


@functools.lru_cache(maxsize=1024)
def format_address(text: str) -> str:
    """``text`` as a header address, with a non-ASCII display name RFC 2047 encoded."""
    name, address = parseaddr(text)
    if not address or not address.isascii():
        # Nothing to reformat (or an internationalised address, sent as SMTPUTF8).
        return text.strip()
    if not name:
        return address
    return formataddr((name, address), charset="utf-8")


def shorten_subject(subject: str) -> str:
    """``subject`` cut to ``MAX_SUBJECT_CHARS`` characters, the last an ellipsis."""
    if len(subject) <= MAX_SUBJECT_CHARS:
        return subject
    return subject[: MAX_SUBJECT_CHARS - 1] + "…"


def _encode_unstructured(value: str, header_name: str) -> str:
    """``value`` as a header value whose every line fits RFC 5322's 998 characters."""
    plain = value.isascii() and not _UNSAFE_7BIT.search(value)
    if plain and len(value) <= _MAX_PLAIN_HEADER:
        return value
    if plain:
        # us-ascii only folds, at spaces: a long word without one would stay one line,
        # which servers refuse ("500 Line too long").
        folded = Header(value, "us-ascii", header_name=header_name).encode(linesep="\r\n")
        first = len(header_name) + 2  # "Subject: " shares the first line
        lines = folded.split("\r\n")
        if len(lines[0]) + first <= _MAX_LINE and all(len(line) <= _MAX_LINE for line in lines):
            return folded
    # utf-8 encoded words can be cut anywhere (and carry control characters too).
    return Header(value, "utf-8", header_name=header_name).encode(linesep="\r\n")


def _encode_body(text: str) -> tuple[str, bytes]:
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    if (
        text.isascii()
        and not _UNSAFE_7BIT.search(text)
        and all(len(line) <= _MAX_LINE for line in lines)
    ):
        return "7bit", "".join(line + "\r\n" for line in lines).encode("ascii")
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return "quoted-printable", encoded.replace(b"\n", b"\r\n")


def render_message(
    *,
    from_header: str,
    to_headers: list[str],
    subject: str,
    body: str,
    date: str,
    message_id: str,
    attachments: Sequence[Attachment] = (),
) -> bytes:
    """The complete message: headers, a blank line, then the encoded body.

    ``from_header`` and ``to_headers`` come from ``format_address``; the caller has
    already refused line breaks in the subject and the addresses. With ``attachments``
    the body is ``multipart/mixed`` (``_smtp_mime``), the text part first.
    """
    encoding, payload = _encode_body(body)
    subject = shorten_subject(subject)  # with or without attachments
    head = (
        f"From: {from_header}\r\n"
        f"To: {',\r\n '.join(to_headers)}\r\n"
        f"Subject: {_encode_unstructured(subject, 'Subject')}\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
    )
    if attachments:
        content_type, pieces = mixed_body(encoding, payload, attachments)
        head += f"Content-Type: {content_type}\r\n\r\n"
        pieces.insert(0, head.encode("utf-8"))
        return b"".join(pieces)
    head += (
        'Content-Type: text/plain; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n"
        "\r\n"
    )
    # Internationalised addresses (sent with SMTPUTF8) are the only non-ASCII here.
    return head.encode("utf-8") + payload
