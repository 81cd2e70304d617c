"""Secrets never leave the library: every backend through success and failure, logs at DEBUG.

Each test configures secrets, drives a backend over a real local server (HTTP, SMTP) or the
fake Telegram client, captures every log record of every logger at DEBUG (processpype's
and those of httpx, httpcore, aiosmtplib, telethon), the reports, the errors and the CLI's
output, and searches all of it for each secret.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from http_helpers import serving

from processpype.cli import main
from processpype.communications import Notifier
from processpype.communications.backends import register_backend, unregister_backend
from processpype.communications.backends.telegram import set_default_client_factory
from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryReport
from processpype.communications.errors import DeliveryError, SendError
from processpype.communications.models import OutgoingMessage
from processpype.config.loader import config_from_mapping
from processpype.config.models import CommunicatorBackendConfig, TelegramCommunicatorConfig
from processpype.foundation._masking import REDACTED_LOGGERS
from processpype.testing.smtp import SMTPTestServer
from processpype.testing.telegram import FakeTelegramClient

PATH_SECRET = "pathsecretA1b2c3d4e5f6"
QUERY_SECRET = "querysecret9z8y7x"
HEADER_SECRET = "headersecretQ1w2e3"
ROUTING_SECRET = "routingsecretR7t8"
SMTP_PASSWORD = "smtp-password-K3y9"
BOT_SECRET = "botsecretAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
BOT_TOKEN = f"110201543:{BOT_SECRET}"
API_HASH = "apihash0123456789abcdef01234567"
DSN_PASSWORD = "dsnpassWord55"
API_KEY = "apikeyZZ998877"
LIST_TOKEN = "listtokenYY665544"


# -- capture --------------------------------------------------------------------------


class _Everything(logging.Handler):
    """Keeps every record, formatted with its traceback, as a log file would show it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("mail.log"):
            return  # the test SMTP server's own log: the far end, not this library
        text = self.format(record)
        with self._lock_lines:
            self.lines.append(text)


@pytest.fixture(autouse=True)
def _secrets_forgotten_after_each_test() -> Iterator[None]:
    """Collect this test's backends, so the secrets they registered stop being masked.

    The registry keeps a secret while its backend lives; these tests make URLs whose
    numeric path segments (webhook ids) would otherwise mask the same digits in the
    messages of later tests until the garbage collector happened to run.
    """
    yield
    gc.collect()


@pytest.fixture
def captured() -> Iterator[list[str]]:
    """Every log line of every logger at DEBUG, plus what the test adds itself."""
    handler = _Everything()
    root = logging.getLogger()
    names = [*REDACTED_LOGGERS, "httpcore.http11", "httpcore.connection"]
    saved = {name: logging.getLogger(name).level for name in names}
    saved_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _report_texts(report: DeliveryReport) -> list[str]:
    texts = [str(report), repr(report), report.model_dump_json()]
    try:
        report.raise_for_errors()
    except DeliveryError as exc:
        texts += [str(exc), repr(exc)]
    return texts


def _assert_hidden(texts: list[str], *secrets: str) -> None:
    blob = "\n".join(texts)
    for secret in secrets:
        assert secret not in blob, f"secret {secret!r} leaked in:\n{blob}"


# -- a real HTTP endpoint that echoes, redirects and fails ---------------------------------


class _EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.mode = "ok"
        self.hits = 0

    def url(self, path: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{path}"


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _EchoServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.hits += 1
        mode = self.server.mode
        headers: dict[str, str] = {}
        if mode == "ok":
            status, body = 200, "ok"
        elif mode == "redirect":
            # A moved webhook: the new address carries the same token.
            status, body = 302, ""
            headers["Location"] = f"/moved{self.path}"
        elif mode == "busy":
            status, body = 503, f"overloaded while handling {self.path}"
        else:  # Express-style refusal that echoes the path and query
            status, body = 404, f"Cannot POST {self.path}"
        raw = body.encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the server is the far end, not this library."""


@pytest.fixture
def echo_server() -> Iterator[_EchoServer]:
    with serving(_EchoServer()) as server:
        yield server


def _http_backends(server: _EchoServer) -> dict[str, Any]:
    return {
        "hook": {
            "type": "webhook",
            "url": server.url(f"/hooks/{PATH_SECRET}?token={QUERY_SECRET}"),
            "headers": {"Authorization": f"Bearer {HEADER_SECRET}"},
            "body": {"routing_key": ROUTING_SECRET, "text": "{message}"},
            "max_attempts": 2,
            "retry_base_delay": 0.001,
        },
        "slack": {
            "type": "slack",
            "url": server.url(f"/services/T0/B0/{PATH_SECRET}"),
            "max_attempts": 2,
            "retry_base_delay": 0.001,
        },
        "discord": {
            "type": "discord",
            "url": server.url(f"/api/webhooks/123456/{PATH_SECRET}"),
            "max_attempts": 2,
            "retry_base_delay": 0.001,
        },
    }


HTTP_SECRETS = (PATH_SECRET, QUERY_SECRET, HEADER_SECRET, ROUTING_SECRET)


@pytest.mark.parametrize("mode", ["ok", "echo", "redirect", "busy"])
def test_webhook_slack_and_discord_never_show_their_secrets(
    mode: str, echo_server: _EchoServer, captured: list[str]
) -> None:
    echo_server.mode = mode
    config = {"enabled": True, "backends": _http_backends(echo_server)}
    with Notifier(config) as notifier:
        report = notifier.send("disk full", timeout=10)
        texts = [*_report_texts(report), repr(notifier)]
        texts += [repr(c.config) for c in notifier.communicators.values()]

    assert echo_server.hits >= 3
    assert report.ok is (mode == "ok")
    if mode == "echo":
        assert all("Cannot POST" in (r.error or "") for r in report.results)
    _assert_hidden(texts + captured, *HTTP_SECRETS)


@pytest.mark.parametrize("mode", ["ok", "echo"])
def test_the_cli_never_shows_webhook_secrets(
    mode: str,
    echo_server: _EchoServer,
    captured: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    echo_server.mode = mode
    path = tmp_path / "hooks.yaml"
    path.write_text(yaml.safe_dump({"enabled": True, "backends": _http_backends(echo_server)}))

    check = main(["check", str(path)])
    check_out = capsys.readouterr()
    send = main(["send", "-c", str(path), "--debug", "disk full"])
    send_out = capsys.readouterr()

    assert check == 0
    assert send == (0 if mode == "ok" else 1)
    _assert_hidden(
        [check_out.out, check_out.err, send_out.out, send_out.err, *captured], *HTTP_SECRETS
    )


# -- email over a real SMTP server -------------------------------------------------------


@pytest.mark.parametrize("failure", [None, "wrong-password", "refused"])
def test_email_never_shows_the_smtp_password(
    failure: str | None, captured: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SMTPTestServer(tls="starttls", auth=("alerts", SMTP_PASSWORD)) as server:
        backend = server.email_config(max_attempts=1).model_dump(mode="python")
        backend["password"] = SMTP_PASSWORD
        if failure == "wrong-password":
            server.auth = ("alerts", "another-password")
        if failure == "refused":
            server.fail_next(code=554, message=f"rejected: looks like {SMTP_PASSWORD}")
        config = {"enabled": True, "backends": {"mail": backend}}
        with Notifier(config) as notifier:
            report = notifier.send("disk full", timeout=20)
            texts = [*_report_texts(report), repr(notifier.communicator("mail").config)]
        path = tmp_path / "mail.yaml"
        path.write_text(yaml.safe_dump(json.loads(json.dumps(config, default=str))))
        main(["check", str(path)])
        main(["send", "-c", str(path), "--debug", "disk full"])
        out = capsys.readouterr()

    assert report.ok is (failure is None)
    _assert_hidden([*texts, out.out, out.err, *captured], SMTP_PASSWORD)


# -- Telegram on the fake client ---------------------------------------------------------


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegramClient]:
    fake = FakeTelegramClient()
    previous = set_default_client_factory(fake.as_client_factory())
    try:
        yield fake
    finally:
        set_default_client_factory(previous)


def _telegram_backend() -> dict[str, Any]:
    return {
        "type": "telegram",
        "api_id": 12345,
        "api_hash": API_HASH,
        # Pasted with a trailing newline: the masked token must be the one used.
        "token": f"  {BOT_TOKEN} \n",
        "chats": {"default": {"chat_id": -1001234567890}},
        "max_attempts": 1,
    }


@pytest.mark.parametrize("failure", [False, True])
def test_telegram_never_shows_its_token_or_api_hash(
    failure: bool,
    fake_telegram: FakeTelegramClient,
    captured: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if failure:
        # A library error that quotes the bot API URL, token included.
        error = ConnectionError(f"cannot reach https://api.telegram.org/bot{BOT_TOKEN}/send")
        fake_telegram.fail_next(error, count=2)  # one for the Notifier, one for the CLI
    config = {"enabled": True, "backends": {"tg": _telegram_backend()}}
    with Notifier(config) as notifier:
        report = notifier.send("disk full", timeout=10)
        texts = [*_report_texts(report), repr(notifier.communicator("tg").config)]
    path = tmp_path / "tg.yaml"
    path.write_text(yaml.safe_dump(config))
    check = main(["check", str(path)])
    send = main(["send", "-c", str(path), "--debug", "disk full"])
    out = capsys.readouterr()

    assert check == 0
    assert send == (1 if failure else 0)
    assert report.ok is not failure
    assert fake_telegram.sessions  # the backend really logged in through the fake
    _assert_hidden([*texts, out.out, out.err, *captured], BOT_SECRET, API_HASH)


def test_the_telegram_token_is_stripped_where_it_is_configured() -> None:
    config = config_from_mapping({"backends": {"tg": _telegram_backend()}})

    backend = config.backends["tg"]

    assert isinstance(backend, TelegramCommunicatorConfig)
    assert backend.token.get_secret_value() == BOT_TOKEN


# -- console, and a third-party backend's own secrets ------------------------------------


class _PagerCommunicator(Communicator):
    """A third-party backend whose service quotes its credentials in errors."""

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        extra = self.config.model_extra or {}
        if message.message == "fail":
            raise SendError(f"pager refused key {extra['api_key']} for {extra['dsn']}")
        logging.getLogger("processpype.thirdparty").debug("using %s", extra["targets"])


@pytest.fixture
def pager_type() -> Iterator[str]:
    register_backend("leaktest-pager", _PagerCommunicator, replace=True)
    try:
        yield "leaktest-pager"
    finally:
        unregister_backend("leaktest-pager")


def _pager_backend(type_name: str) -> dict[str, Any]:
    return {
        "type": type_name,
        "api_key": API_KEY,
        "dsn": f"postgres://pager:{DSN_PASSWORD}@db.example.com/pager",
        "targets": [{"name": "ops", "token": LIST_TOKEN}],
        "integration_key": ROUTING_SECRET,
    }


PAGER_SECRETS = (API_KEY, DSN_PASSWORD, LIST_TOKEN, ROUTING_SECRET)


@pytest.mark.parametrize("text", ["ok", "fail"])
def test_third_party_backend_secrets_are_masked_by_key_name(
    text: str,
    pager_type: str,
    captured: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = {
        "enabled": True,
        "backends": {"pager": _pager_backend(pager_type), "console": {"type": "console"}},
    }
    with Notifier(config) as notifier:
        report = notifier.send(text, timeout=10)
        texts = _report_texts(report) + [repr(c.config) for c in notifier.communicators.values()]
        texts.append(str(notifier.communicator("pager").config))
    path = tmp_path / "pager.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["check", str(path)])
    out = capsys.readouterr()

    assert report.ok is (text == "ok")
    assert "db.example.com" in out.out  # masked, not dropped: the host stays readable
    _assert_hidden([*texts, out.out, out.err, *captured], *PAGER_SECRETS)


def test_repr_of_a_third_party_config_masks_its_secret_keys() -> None:
    config = CommunicatorBackendConfig.model_validate(_pager_backend("pager"))

    text = repr(config)

    assert "api_key='**********'" in text
    assert "'name': 'ops'" in text
    _assert_hidden([text, str(config)], *PAGER_SECRETS)
