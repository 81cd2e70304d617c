"""``processpype-notify smtpd``: run a local SMTP test server and print every mail.

Private to the CLI. The server is ``processpype.testing.smtp.SMTPTestServer`` (the
``testing`` extra), run in the foreground until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processpype.cli._terminal import (
    EXIT_FAILED,
    EXIT_OK,
    CLIError,
    Terminated,
    add_command,
    auth,
    port,
    stop_on_sigterm,
)

if TYPE_CHECKING:
    from email.message import Message

    from processpype.testing.smtp import SMTPEnvelope


_HELP = "run a local SMTP test server and print every mail it receives"
_DESCRIPTION = (
    "Run processpype's SMTP test server in the foreground and print each "
    "mail it receives, to try email settings without a real server. Ctrl-C stops it."
)


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add ``smtpd`` to the ``processpype-notify`` sub-command parsers."""
    smtpd = add_command(commands, "smtpd", command, parents, _HELP, description=_DESCRIPTION)
    smtpd.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    smtpd.add_argument(
        "--port", type=port, default=8025, help="port to bind (default 8025; 0 picks one)"
    )
    smtpd.add_argument(
        "--tls", choices=["starttls", "implicit"], help="offer STARTTLS or speak implicit TLS"
    )
    smtpd.add_argument(
        "--auth", type=auth, metavar="USER:PASSWORD", help="require AUTH with these credentials"
    )


def command(args: argparse.Namespace) -> int:
    """Run ``smtpd`` until Ctrl-C or SIGTERM."""
    try:
        from processpype.testing.smtp import SMTPTestServer
    except ImportError as exc:
        raise CLIError(
            f"smtpd needs the testing extra ({exc.name or exc} is missing): "
            "pip install 'processpype[testing]'",
            exit_code=EXIT_FAILED,
        ) from exc

    server = SMTPTestServer(tls=args.tls, auth=args.auth, host=args.host, port=args.port)
    try:
        server.start()
    except OSError as exc:
        raise CLIError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc} "
            "(choose another --port, or --port 0 for a free one)",
            exit_code=EXIT_FAILED,
        ) from exc
    restore = stop_on_sigterm()
    try:
        _print_smtpd_banner(server, args)
        shown = 0
        while True:
            try:
                server.wait_for_messages(shown + 1, timeout=3600.0)
            except TimeoutError:
                continue
            messages = server.messages
            envelopes = server.envelopes
            for index in range(shown, len(messages)):
                envelope = envelopes[index] if index < len(envelopes) else None
                print(_format_mail(index + 1, messages[index], envelope), flush=True)
            shown = len(messages)
    except (KeyboardInterrupt, Terminated):
        print(f"{args.prog}: SMTP test server stopped", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        restore()
        server.close()


def _print_smtpd_banner(server: Any, args: argparse.Namespace) -> None:
    mode = {"starttls": "STARTTLS", "implicit": "implicit TLS"}.get(args.tls or "", "plain")
    auth = f", AUTH as {args.auth[0]!r}" if args.auth else ""
    lines = [
        f"{args.prog}: SMTP test server listening on {server.host}:{server.port} "
        f"({mode}{auth}); Ctrl-C to stop",
        "Point an email backend at it (a whole config file, ready to paste):",
        "  enabled: true",
        "  backends:",
        "    local-mail:",
        "      type: email",
        f"      host: {server.host}",
        f"      port: {server.port}",
        f"      use_tls: {'true' if args.tls == 'implicit' else 'false'}",
        f"      start_tls: {'true' if args.tls == 'starttls' else 'false'}",
    ]
    if args.tls:
        lines.append(f"      cert_bundle: {server.ca_cert_path}")
    if args.auth:
        lines.append(f"      username: {args.auth[0]}")
        lines.append("      password: ${SMTP_PASSWORD}  # the password given to --auth")
    lines += [
        "      from_address: alerts@example.com",
        "      default_recipients: [you@example.com]",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _format_mail(number: int, mail: Message, envelope: SMTPEnvelope | None) -> str:
    recipients = envelope.rcpt_tos if envelope is not None else ()
    to = mail.get("To", "")
    lines = [
        f"--- mail {number} " + "-" * 40,
        f"From: {mail.get('From', '')}",
        f"To: {to}",
    ]
    if recipients and ", ".join(recipients) != to:
        lines.append(f"Envelope recipients: {', '.join(recipients)}")
    lines += [f"Subject: {mail.get('Subject', '')}", "", _mail_body(mail)]
    return "\n".join(lines)


def _mail_body(mail: Message) -> str:
    get_body = getattr(mail, "get_body", None)
    part: Message | None = get_body(preferencelist=("plain", "html")) if get_body else None
    target = part if part is not None else mail
    get_content = getattr(target, "get_content", None)
    if get_content is not None:
        with contextlib.suppress(KeyError, LookupError, TypeError):
            return str(get_content()).rstrip("\n")
    payload = target.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(target.get_content_charset() or "utf-8", "replace").rstrip("\n")
    return str(target.get_payload()).rstrip("\n")
