"""One SMTP transaction for a large message this backend rendered, sent as it is.

aiosmtplib's ``sendmail`` normalises line ends with ``re.sub`` (twice when the server
offers SIZE: once to count the octets) and then appends the terminator. ``re.sub``
keeps every line of the result as an object of its own until it joins them, so for a
base64 attachment (a line per 57 bytes) the transaction holds about five times the
message at once: some 130 MiB for a 20 MiB file. The messages this backend renders
already end every line with CRLF. For those, above ``DIRECT_MIN_BYTES``, this module
runs the same transaction with aiosmtplib's public commands: EHLO if needed, ``MAIL``
(with ``SIZE`` and ``SMTPUTF8`` as ``sendmail`` sends them), one ``RCPT`` per
recipient (the refused ones are returned, all refused raises
``SMTPRecipientsRefused``), ``DATA``, then the body and the terminator written straight
to the connection, and ``RSET`` after a refusal. The errors are aiosmtplib's own, so
they are classified as ``sendmail``'s are.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

import aiosmtplib

__all__ = ["DIRECT_MIN_BYTES", "is_prepared", "send_prepared"]

DIRECT_MIN_BYTES = 1024 * 1024
"""Messages from this size on skip ``sendmail``'s copies (smaller ones gain nothing)."""

_LEADING_DOT = re.compile(rb"(?m)^\.")


def is_prepared(data: bytes) -> bool:
    """True when every line of ``data`` ends with CRLF (no lone CR or LF), the last too."""
    crlf = data.count(b"\r\n")
    return data.endswith(b"\r\n") and crlf == data.count(b"\n") == data.count(b"\r")


async def send_prepared(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
    *,
    mail_options: Sequence[str] = (),
) -> dict[str, aiosmtplib.SMTPResponse]:
    """Send ``data`` (``is_prepared``) to ``recipients``; return the refused ones.

    Raises what ``sendmail`` raises: ``SMTPSenderRefused``, ``SMTPRecipientsRefused``,
    ``SMTPDataError``, ``SMTPNotSupported``, ``SMTPServerDisconnected``, timeouts.
    """
    options = list(mail_options)
    utf8 = any(option.lower() == "smtputf8" for option in options)
    encoding = "utf-8" if utf8 else "ascii"
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()
    if utf8 and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    if client.supports_extension("size"):
        options.insert(0, f"size={len(data)}")  # RFC 1870: octets, CRLF included
    refused: list[aiosmtplib.SMTPRecipientRefused] = []
    try:
        await client.mail(sender, options=options, encoding=encoding)
        for recipient in recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused.append(exc)
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)
        start = await client.execute_command(b"DATA")
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        await _write_body(client, data)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        # A reset that fails says nothing more about the message.
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset()
        raise
    return {exc.recipient: aiosmtplib.SMTPResponse(exc.code, exc.message) for exc in refused}


async def _write_body(client: aiosmtplib.SMTP, data: bytes) -> None:
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    if b"\n." in data:
        # Dot-stuffing (RFC 5321 4.5.2): only a text line can start with a period.
        data = _LEADING_DOT.sub(b"..", data)
    try:
        # Written as they are (the transport keeps a view, not a copy), then the
        # reply read: nothing else runs on this connection in between.
        protocol.write(data)
        protocol.write(b".\r\n")
        reply = await protocol.read_response(timeout=client.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()  # the connection is out of step: as aiosmtplib's data() does
        raise
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
