"""What an aiosmtplib error means for the email backend: the step, the reason, retry or not.

One place that reads aiosmtplib's exceptions, so the backend's retry loop and its error
messages agree: a 4xx reply is temporary, a 5xx permanent; a dropped connection or a
timeout is temporary and the connection is discarded; a certificate or configuration
problem is permanent and says which setting to change.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiosmtplib

__all__ = ["SMTPFailure", "classify", "is_temporary", "reply_text"]


@dataclass(frozen=True)
class SMTPFailure:
    """One failed try: where it failed, why, and what to do next."""

    step: str
    """The SMTP step that failed: connect, TLS handshake, STARTTLS, AUTH, MAIL FROM, ..."""
    reason: str
    """Why, in words that name the setting to change where there is one."""
    temporary: bool
    """True when trying again later can succeed (4xx, dropped connection, timeout)."""
    drop_connection: bool
    """True when the connection can no longer be used."""
    disconnected: bool = False
    """True when the server closed or dropped the connection."""


def reply_text(code: int, message: str) -> str:
    """An SMTP reply on one line, as errors quote it: ``550 mailbox unavailable``."""
    text = " ".join(message.split())
    return f"{code} {text}" if text else str(code)


def is_temporary(code: int) -> bool:
    """True for a 4xx reply code: the server may accept later (a 5xx is permanent)."""
    return 400 <= code < 500


def _find_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


_PLAIN_TEXT_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


def _plain_text_answer(error: ssl.SSLError) -> bool:
    """True when a TLS handshake read something that is no TLS (an SMTP banner)."""
    text = f"{getattr(error, 'reason', None) or ''} {error}".upper().replace(" ", "_")
    return any(reason in text for reason in _PLAIN_TEXT_REASONS)


def _tls_failure(error: ssl.SSLError, step: str, *, use_tls: bool, port: int) -> SMTPFailure:
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = error.verify_message or error.reason or str(error)
        reason = (
            f"the server's certificate could not be verified ({detail}); for a private or "
            "self-signed server set cert_bundle to the CA file that signed it, and check "
            "that host is the name the certificate was issued for"
        )
        return SMTPFailure("TLS handshake", reason, temporary=False, drop_connection=True)
    detail = getattr(error, "reason", None) or str(error)
    hint = ""
    if use_tls and _plain_text_answer(error):
        # The server's first bytes were no TLS record: it speaks plain SMTP on this port.
        # The fix keeps TLS: STARTTLS upgrades the plain connection before any password.
        hint = (
            f"; the server on port {port} answered in plain text, not TLS: set use_tls: "
            "false and start_tls: true to upgrade with STARTTLS (usually port 587), or "
            "point port at the server's implicit TLS port (usually 465)"
        )
    elif use_tls and port != 465:
        hint = (
            f"; use_tls is implicit TLS (usually port 465) but port is {port}: for a "
            "STARTTLS port such as 587 set use_tls: false and start_tls: true"
        )
    return SMTPFailure(
        "TLS handshake" if step == "connect" else step,
        f"TLS failed ({detail}){hint}",
        temporary=False,
        drop_connection=True,
    )


def _reply_step(exc: aiosmtplib.SMTPResponseException, step: str) -> str:
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "MAIL FROM"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return "RCPT TO"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "DATA"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "AUTH"
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return "EHLO"
    return step


def _protocol_hint(text: str, use_tls: bool, start_tls: bool) -> str:
    """``text`` with the setting that leads to a working, still encrypted, configuration.

    Never advice that weakens TLS: a server that stops offering STARTTLS may have had
    the offer stripped by an attacker, and turning STARTTLS off would hand them the
    password. The AUTH case is tested first: aiosmtplib's AUTH message names STARTTLS.
    """
    lowered = text.lower()
    encrypted = use_tls or start_tls
    if "auth extension" in lowered:
        if not encrypted:
            return (
                f"{text}; the server offers AUTH only over TLS: set start_tls: true "
                "(usually port 587) or use_tls: true (usually port 465)"
            )
        return f"{text}; the server offers no AUTH even over TLS: leave username empty"
    if "starttls" in lowered:
        return (
            f"{text}; the server did not offer STARTTLS: if it speaks implicit TLS set "
            "use_tls: true and its TLS port (usually 465); if it should offer STARTTLS, "
            "something on the way may have removed the offer: do not turn TLS off"
        )
    return text


def classify(
    exc: BaseException,
    step: str,
    *,
    use_tls: bool = False,
    port: int = 0,
    username: str = "",
    start_tls: bool = False,
) -> SMTPFailure:
    """Describe ``exc``, raised during ``step``, as an ``SMTPFailure``."""
    ssl_error = _find_ssl_error(exc)
    if ssl_error is not None:
        return _tls_failure(ssl_error, step, use_tls=use_tls, port=port)

    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = ", ".join(
            f"{r.recipient} ({reply_text(r.code, r.message)})" for r in exc.recipients
        )
        temporary = any(is_temporary(r.code) for r in exc.recipients)
        return SMTPFailure(
            "RCPT TO", f"every recipient was refused: {refused}", temporary, drop_connection=False
        )

    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        temporary = is_temporary(code)
        reply_step = _reply_step(exc, step)
        reason = f"the server answered {reply_text(code, exc.message)}"
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and not temporary:
            reason = (
                f"the server refused the username {username!r} or its password "
                f"({reply_text(code, exc.message)}); check username and password"
            )
        elif isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            reason = f"recipient {exc.recipient} was refused ({reply_text(code, exc.message)})"
        elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
            reason = f"sender {exc.sender} was refused ({reply_text(code, exc.message)})"
            if code == 530:
                reason += "; the server requires AUTH: set username and password"
        # 421: the server is closing the connection (aiosmtplib has closed it already).
        closing = code == 421 or isinstance(exc, aiosmtplib.SMTPConnectResponseError)
        return SMTPFailure(reply_step, reason, temporary, drop_connection=closing)

    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        text = str(exc) or "no answer"
        return SMTPFailure(
            step, f"timed out ({text}); see the timeout setting", True, drop_connection=True
        )

    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return SMTPFailure(
            step,
            f"the server closed the connection ({exc})",
            temporary=True,
            drop_connection=True,
            disconnected=True,
        )

    if isinstance(exc, aiosmtplib.SMTPConnectError | ConnectionError | OSError):
        text = str(exc) or type(exc).__name__
        return SMTPFailure(step, f"cannot reach the server ({text})", True, drop_connection=True)

    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return SMTPFailure(step, str(exc), temporary=False, drop_connection=False)

    if isinstance(exc, aiosmtplib.SMTPException):
        return SMTPFailure(
            step,
            _protocol_hint(str(exc), use_tls, start_tls),
            temporary=False,
            drop_connection=True,
        )

    if isinstance(exc, ValueError):
        return SMTPFailure(step, str(exc), temporary=False, drop_connection=False)

    return SMTPFailure(step, f"{type(exc).__name__}: {exc}", temporary=False, drop_connection=True)
