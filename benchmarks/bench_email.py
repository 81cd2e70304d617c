"""Email throughput: the email backend against raw aiosmtplib and a connection per message.

A local aiosmtpd server (``SMTPTestServer``) runs in a separate process. Four ways send
the same messages to it, in the same run:

- ours: ``EmailCommunicator.send`` one message after another (one reused connection);
- raw aiosmtplib on one connection, messages flattened before timing (the limit: only
  the SMTP exchange is timed, no backend around it);
- raw aiosmtplib ``send_message(EmailMessage)`` on one connection (typical direct use,
  building each message with the standard library);
- a new connection per message (connect, STARTTLS, AUTH, send, QUIT), which is what
  ``logging.handlers.SMTPHandler`` and many notification libraries do.

The target row uses STARTTLS and AUTH, as a submission server (port 587) requires; a
second row repeats the run in plain text, where a new connection is cheapest. Targets:
at least 0.8x the raw single-connection rate and 3x the per-message-connection rate.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from multiprocessing.connection import Connection
from typing import Any

from benchmarks._common import Row, Sample, print_rows

USER = ("bench", "bench-password")
SENDER = "bench@example.com"
RECIPIENT = "ops@example.com"
LOCAL_HOSTNAME = "bench.processpype.test"


def _serve(conn: Connection, tls: str | None, auth: tuple[str, str] | None) -> None:
    """Child process: run an SMTPTestServer that only counts, until told to stop."""
    from processpype.testing.smtp import SMTPTestServer

    with SMTPTestServer(tls=tls, auth=auth, record=False) as server:  # type: ignore[arg-type]
        conn.send((server.port, server.ca_cert_path))
        while conn.recv() == "count":
            conn.send(server.message_count)


@dataclass
class _Server:
    """The parent's handle on the server process."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    port: int
    ca_path: str | None
    tls: str | None
    auth: tuple[str, str] | None

    def count(self) -> int:
        self.conn.send("count")
        value: int = self.conn.recv()
        return value

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


def _start_server(tls: str | None, auth: tuple[str, str] | None) -> _Server:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child, tls, auth), daemon=True)
    process.start()
    if not parent.poll(30):
        process.terminate()
        raise RuntimeError("the SMTP server process did not start within 30s")
    port, ca_path = parent.recv()
    return _Server(process, parent, port, ca_path, tls, auth)


def _email(number: int) -> EmailMessage:
    # What the backend builds for each message: the same headers, the same body.
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = f"[WARNING] bench {number}"
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content(f"disk almost full on host {number}")
    return message


def _tls_context(server: _Server) -> ssl.SSLContext | None:
    if server.tls is None:
        return None
    return ssl.create_default_context(cafile=server.ca_path)


def _smtp_options(server: _Server) -> dict[str, Any]:
    options: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "port": server.port,
        "start_tls": server.tls == "starttls",
        "tls_context": _tls_context(server),
        "local_hostname": LOCAL_HOSTNAME,
        "timeout": 30,
    }
    if server.auth is not None:
        options["username"], options["password"] = server.auth
    return options


async def _ours(server: _Server, count: int) -> float:
    from processpype.communications.backends.email import EmailCommunicator
    from processpype.communications.models import MessageSeverity, OutgoingMessage
    from processpype.config.models import EmailCommunicatorConfig

    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "from_address": SENDER,
        "default_recipients": [RECIPIENT],
        "use_tls": False,
        "start_tls": server.tls == "starttls",
        "cert_bundle": server.ca_path,
        "local_hostname": LOCAL_HOSTNAME,
    }
    if server.auth is not None:
        values["username"], values["password"] = server.auth
    mail = EmailCommunicator("bench", EmailCommunicatorConfig.model_validate(values))
    await mail.start()
    started = time.perf_counter()
    for number in range(count):
        await mail.send(
            OutgoingMessage(
                message=f"disk almost full on host {number}",
                severity=MessageSeverity.WARNING,
                subject=f"[WARNING] bench {number}",
            )
        )
    elapsed = time.perf_counter() - started
    await mail.stop()
    return elapsed


async def _raw_one_connection(server: _Server, count: int) -> float:
    import aiosmtplib

    smtp = aiosmtplib.SMTP(**_smtp_options(server))
    await smtp.connect()
    started = time.perf_counter()
    for number in range(count):
        await smtp.send_message(_email(number))
    elapsed = time.perf_counter() - started
    await smtp.quit()
    return elapsed


async def _raw_prebuilt(server: _Server, count: int) -> float:
    import aiosmtplib

    # The transport limit: messages flattened before the clock starts, so only the SMTP
    # exchange on one connection is timed.
    messages = [_email(number).as_bytes() for number in range(count)]
    smtp = aiosmtplib.SMTP(**_smtp_options(server))
    await smtp.connect()
    started = time.perf_counter()
    for data in messages:
        await smtp.sendmail(SENDER, [RECIPIENT], data)
    elapsed = time.perf_counter() - started
    await smtp.quit()
    return elapsed


async def _connection_per_message(server: _Server, count: int) -> float:
    import aiosmtplib

    options = _smtp_options(server)
    started = time.perf_counter()
    for number in range(count):
        await aiosmtplib.send(_email(number), **options)
    return time.perf_counter() - started


_Way = Callable[[_Server, int], Coroutine[Any, Any, float]]


def _measure(server: _Server, way: _Way, count: int) -> float:
    """Messages per second for one run of ``way``; checks that all of them arrived."""
    before = server.count()
    elapsed = asyncio.run(way(server, count))
    arrived = server.count() - before
    if arrived != count:
        raise RuntimeError(f"{way.__name__}: {arrived} of {count} messages arrived")
    return count / elapsed


def _row(
    label: str, tls: str | None, auth: tuple[str, str] | None, count: int, repeats: int
) -> dict[str, Any]:
    ways: list[_Way] = [_ours, _raw_prebuilt, _raw_one_connection, _connection_per_message]
    server = _start_server(tls, auth)
    try:
        for way in ways:
            _measure(server, way, min(count, 20))  # warm up imports, caches, the server
        samples: dict[str, Sample] = {way.__name__: Sample([]) for way in ways}
        for _ in range(repeats):  # interleaved, so a noisy moment hits every way
            for way in ways:
                samples[way.__name__].values.append(_measure(server, way, count))
    finally:
        server.close()
    ours = samples["_ours"]
    limit = samples["_raw_prebuilt"].median
    typical = samples["_raw_one_connection"].median
    per_message = samples["_connection_per_message"].median
    vs_limit = ours.median / limit
    vs_per_message = ours.median / per_message
    return Row(
        benchmark=f"email throughput, {count} messages ({label})",
        figure=ours.median,
        unit="msg/s",
        baselines={
            "raw aiosmtplib, one connection, pre-built messages (msg/s)": limit,
            "raw aiosmtplib send_message(EmailMessage), one connection (msg/s)": typical,
            "new connection per message (msg/s)": per_message,
        },
        ratios={
            "vs raw one connection (limit)": vs_limit,
            "vs raw send_message": ours.median / typical,
            "vs connection per message": vs_per_message,
            # What a perfect backend could reach against the per-message way.
            "ceiling: limit vs connection per message": limit / per_message,
        },
        target="≥ 0.8x raw one connection (limit); ≥ 3x connection per message",
        met=vs_limit >= 0.8 and vs_per_message >= 3.0,
        spread=ours.spread_text(),
    ).as_dict()


def run(size: str = "full") -> list[dict[str, Any]]:
    """Two rows: STARTTLS + AUTH (the target) and plain text, medians of repeated runs."""
    count, repeats = (20, 1) if size == "tiny" else (1000, 3)
    return [
        _row("STARTTLS + AUTH", "starttls", USER, count, repeats),
        _row("plain text, no AUTH", None, None, count, repeats),
    ]


if __name__ == "__main__":
    print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
