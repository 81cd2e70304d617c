"""Attachments through the webhook backends: generic (base64, multipart, omit), Slack, Discord."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from http_helpers import build_backend, serving, started_backend

from processpype.communications.backends.webhook import SLACK_NOT_ATTACHED
from processpype.communications.base import Communicator
from processpype.communications.errors import SendError
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.testing import WebhookCapture
from processpype.testing._multipart import parse_multipart

URL = "https://hooks.example.com/intake/s3cr3t-t0ken"
DISCORD_URL = "https://discord.com/api/webhooks/1/tok3n"
SLACK_URL = "https://hooks.slack.com/services/T/B/tok3n"
FAST = {"retry_base_delay": 0.001, "max_retry_delay": 0.01}
BLOB = os.urandom(5000) + b"\r\n--\r\n\x00"


def files() -> list[Attachment]:
    return [
        Attachment.from_bytes(BLOB, "dump.bin"),
        Attachment.from_bytes("ünïcode".encode(), 'naïve "q" ü.txt'),
    ]


def build(kind: str, url: str, **settings: Any) -> Communicator:
    return build_backend(kind, url, name=kind, **{**FAST, **settings})


def running(
    kind: str, url: str = URL, **settings: Any
) -> contextlib.AbstractAsyncContextManager[Communicator]:
    return started_backend(kind, url, name=kind, **{**FAST, **settings})


@pytest.fixture
def capture() -> Iterator[WebhookCapture]:
    with WebhookCapture() as running_capture:
        yield running_capture


# -- generic webhook ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_webhook_default_sends_files_base64_in_the_json_body(
    capture: WebhookCapture,
) -> None:
    async with running("webhook") as hook:
        result = await hook.deliver(OutgoingMessage(message="done", attachments=files()))
    assert result.status == "delivered"
    assert result.warnings == ()
    [body] = capture.json_bodies
    assert [
        (a["filename"], a["content_type"], a["size"], base64.b64decode(a["data"]))
        for a in body["attachments"]
    ] == [
        ("dump.bin", "application/octet-stream", len(BLOB), BLOB),
        ('naïve "q" ü.txt', "text/plain", 9, "ünïcode".encode()),
    ]


@pytest.mark.asyncio
async def test_webhook_template_places_the_attachments(capture: WebhookCapture) -> None:
    body = {"text": "{message}", "files": "{attachments}", "count": "{attachments[0][size]}"}
    async with running("webhook", body=body) as hook:
        result = await hook.deliver(OutgoingMessage(message="done", attachments=files()))
    assert result.warnings == ()
    [sent] = capture.json_bodies
    assert sent["text"] == "done"
    assert base64.b64decode(sent["files"][0]["data"]) == BLOB
    assert sent["count"] == len(BLOB)


@pytest.mark.asyncio
async def test_a_template_without_attachments_says_the_files_were_not_sent(
    capture: WebhookCapture,
) -> None:
    async with running("webhook", body={"text": "{message}"}) as hook:
        result = await hook.deliver(OutgoingMessage(message="done", attachments=files()))
    assert capture.json_bodies == [{"text": "done"}]
    assert result.status == "delivered"
    assert result.warnings == (
        "attachments not sent: the body template has no {attachments} placeholder: "
        'dump.bin, naïve "q" ü.txt',
    )


@pytest.mark.asyncio
async def test_webhook_multipart_posts_payload_json_and_files(capture: WebhookCapture) -> None:
    async with running("webhook", attachments="multipart") as hook:
        await hook.deliver(OutgoingMessage(message="done", attachments=files()))
    [request] = capture.requests
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.json["message"] == "done"
    assert "data" not in request.json["attachments"][0]
    assert [(f.field, f.filename, f.content_type, f.data) for f in request.files] == [
        ("files[0]", "dump.bin", "application/octet-stream", BLOB),
        ("files[1]", 'naïve "q" ü.txt', "text/plain", "ünïcode".encode()),
    ]
    assert capture.files == request.files


@pytest.mark.asyncio
async def test_webhook_omit_names_the_files_in_a_warning(capture: WebhookCapture) -> None:
    async with running("webhook", attachments="omit") as hook:
        result = await hook.deliver(OutgoingMessage(message="done", attachments=files()))
    [body] = capture.json_bodies
    assert body["attachments"] == [
        {"filename": "dump.bin", "content_type": "application/octet-stream", "size": len(BLOB)},
        {"filename": 'naïve "q" ü.txt', "content_type": "text/plain", "size": 9},
    ]
    assert result.warnings == (
        'attachments not sent (attachments: omit): dump.bin, naïve "q" ü.txt',
    )


@pytest.mark.asyncio
async def test_a_message_without_files_keeps_the_old_default_body(capture: WebhookCapture) -> None:
    async with running("webhook") as hook:
        await hook.deliver(OutgoingMessage(message="done"))
    [body] = capture.json_bodies
    assert "attachments" not in body


# -- Slack --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_slack_names_the_files_it_cannot_attach(capture: WebhookCapture) -> None:
    async with running("slack", SLACK_URL) as slack:
        result = await slack.deliver(OutgoingMessage(message="done", attachments=files()))
    [body] = capture.json_bodies
    assert body["text"].splitlines()[-1] == (
        f"\N{PAPERCLIP} Not attached ({SLACK_NOT_ATTACHED}): dump.bin "
        '(application/octet-stream, 4.9 KiB), naïve "q" ü.txt (text/plain, 9 B)'
    )
    assert capture.files == []
    assert result.status == "delivered"
    assert result.warnings == (f'not attached ({SLACK_NOT_ATTACHED}): dump.bin, naïve "q" ü.txt',)


def test_slack_warning_reaches_the_report_text(capture: WebhookCapture) -> None:
    config = {"enabled": True, "backends": {"slack": {"type": "slack", "url": SLACK_URL}}}
    with Notifier(config) as notifier:
        report = notifier.send("done", attachments=[Attachment.from_bytes(b"x", "a.png")])
    assert report.ok
    assert f"slack: delivered [warning: not attached ({SLACK_NOT_ATTACHED}): a.png]" in str(report)


# -- Discord ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_discord_posts_payload_json_and_files_n(capture: WebhookCapture) -> None:
    async with running("discord", DISCORD_URL) as discord:
        result = await discord.deliver(OutgoingMessage(message="done", attachments=files()))
    assert result.status == "delivered"
    [request] = capture.requests
    assert request.headers["content-type"].startswith("multipart/form-data")
    payload = json.loads(request.form["payload_json"])
    assert payload["content"].endswith("done")
    assert payload["attachments"] == [
        {"id": 0, "filename": "dump.bin"},
        {"id": 1, "filename": 'naïve "q" ü.txt'},
    ]
    assert [(f.field, f.filename, f.data) for f in request.files] == [
        ("files[0]", "dump.bin", BLOB),
        ("files[1]", 'naïve "q" ü.txt', "ünïcode".encode()),
    ]


@pytest.mark.asyncio
async def test_discord_sends_the_files_with_the_last_part_of_a_long_text(
    capture: WebhookCapture,
) -> None:
    text = "\n".join(f"line {i} " + "x" * 60 for i in range(60))
    async with running("discord", DISCORD_URL) as discord:
        await discord.deliver(OutgoingMessage(message=text, attachments=files()[:1]))
    requests = capture.requests
    assert len(requests) > 1
    assert all(r.files == [] for r in requests[:-1])
    assert [f.data for f in requests[-1].files] == [BLOB]


@pytest.mark.asyncio
async def test_discord_refuses_more_files_than_max_attachments(capture: WebhookCapture) -> None:
    many = [Attachment.from_bytes(b"x", f"f{i}.txt") for i in range(11)]
    async with running("discord", DISCORD_URL) as discord:
        with pytest.raises(SendError, match=r"11 attachments, over the limit of 10 \(max_attachm"):
            await discord.deliver(OutgoingMessage(message="done", attachments=many))
    assert capture.requests == []


@pytest.mark.asyncio
async def test_discord_refuses_over_max_attachment_bytes_naming_the_file(
    capture: WebhookCapture,
) -> None:
    big = Attachment.from_bytes(b"x" * 2048, "big.bin")
    async with running("discord", DISCORD_URL, max_attachment_bytes=1024) as discord:
        with pytest.raises(SendError) as caught:
            await discord.deliver(OutgoingMessage(message="done", attachments=[big]))
    assert "big.bin (2.0 KiB, 2048 bytes)" in str(caught.value)
    assert "limit of 1.0 KiB (1024 bytes, max_attachment_bytes)" in str(caught.value)
    assert caught.value.permanent
    assert capture.requests == []


def test_discord_limits_default_to_10_files_and_10_mib() -> None:
    discord = build("discord", DISCORD_URL)
    assert discord.config.max_attachments == 10  # type: ignore[attr-defined]
    assert discord.config.max_attachment_bytes == 10 * 1024 * 1024  # type: ignore[attr-defined]


# -- a real HTTP server: the bytes httpx puts on the wire ----------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.bodies.append((self.headers.get("Content-Type", ""), raw))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[_Server]:
    with serving(_Server()) as hook_server:
        yield hook_server


def test_discord_files_cross_a_real_http_server_byte_for_byte(server: _Server) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1))
    figure.subplots().plot([3, 1, 2])
    png = Attachment.from_figure(figure, filename="courbe été.png")
    host, port = server.server_address[:2]
    url = f"http://{host!s}:{port}/api/webhooks/1/tok3n"
    config = {"enabled": True, "backends": {"discord": {"type": "discord", "url": url}}}
    with Notifier(config) as notifier:
        notifier.send("loss curve", attachments=[png, files()[0]]).raise_for_errors()
    [(content_type, raw)] = server.bodies
    form, posted = parse_multipart(raw, content_type)
    assert json.loads(form["payload_json"])["attachments"][0]["filename"] == "courbe été.png"
    assert [(f.filename, f.content_type, f.data) for f in posted] == [
        ("courbe été.png", "image/png", png.data),
        ("dump.bin", "application/octet-stream", BLOB),
    ]
