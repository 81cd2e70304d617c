"""max_parts and attachments together: the files still go (or are named), and the result
carries every warning, so nothing is sent half without saying so."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from http_helpers import FaultyServer, faulty_server, started_backend
from telegram_helpers import FAST_LIMITS, BackendMaker

from processpype.communications.backends.webhook import SLACK_NOT_ATTACHED, SLACK_TEXT_LIMIT
from processpype.communications.base import Communicator
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.testing import WebhookCapture
from processpype.testing.telegram import FakeTelegramClient

LONG = "All work and no play makes Jack a dull boy.\n" * 2000  # ~88,000 characters
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(400)


def files() -> list[Attachment]:
    return [Attachment.from_bytes(PNG, "loss.png"), Attachment.from_bytes(b"a,b\n", "m.csv")]


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with faulty_server() as running:
        yield running


def chat_backend(
    kind: str, url: str, **settings: Any
) -> contextlib.AbstractAsyncContextManager[Communicator]:
    return started_backend(kind, url, name="chat", **settings)


@pytest.mark.asyncio
async def test_slack_keeps_the_line_naming_the_files_when_max_parts_cuts_the_text(
    server: FaultyServer,
) -> None:
    async with chat_backend("slack", server.url, max_parts=2) as slack:
        result = await slack.deliver(OutgoingMessage(message=LONG, attachments=files()))
    posts = [json.loads(body)["text"] for body in server.bodies]
    assert len(posts) == 2
    assert all(len(post) <= SLACK_TEXT_LIMIT for post in posts)
    last_lines = posts[-1].splitlines()
    assert "more characters cut" in last_lines[-2]
    assert last_lines[-1].startswith(f"\N{PAPERCLIP} Not attached ({SLACK_NOT_ATTACHED}): ")
    assert "loss.png" in last_lines[-1]
    assert "m.csv" in last_lines[-1]
    assert result.status == "delivered"
    not_attached, cut = result.warnings
    assert "loss.png, m.csv" in not_attached
    assert "max_parts" in cut


@pytest.mark.asyncio
async def test_slack_names_many_files_in_a_line_that_fits_one_post(
    server: FaultyServer,
) -> None:
    many = [Attachment.from_bytes(b"x", f"file-{i:03d}-{'n' * 40}.bin") for i in range(200)]
    async with chat_backend("slack", server.url) as slack:
        result = await slack.deliver(OutgoingMessage(message="done", attachments=many))
    [body] = server.bodies
    text = json.loads(body)["text"]
    assert len(text) <= SLACK_TEXT_LIMIT
    assert text.splitlines()[-1].endswith(" more")
    assert "file-199" in result.warnings[0]  # the warning names them all


@pytest.mark.asyncio
async def test_discord_sends_the_files_on_the_last_post_kept_and_warns_of_the_cut() -> None:
    url = "https://discord.com/api/webhooks/1/tok3n"
    with WebhookCapture() as capture:
        async with chat_backend("discord", url, max_parts=2) as discord:
            result = await discord.deliver(OutgoingMessage(message=LONG, attachments=files()))
    first, last = capture.requests
    assert first.files == []
    assert [f.filename for f in last.files] == ["loss.png", "m.csv"]
    assert [f.data for f in last.files] == [PNG, b"a,b\n"]
    assert "more characters cut" in json.loads(last.form["payload_json"])["content"]
    assert result.status == "delivered"
    (cut,) = result.warnings
    assert "max_parts" in cut


@pytest.mark.asyncio
async def test_telegram_sends_every_file_after_the_cut_text_and_warns_of_the_cut() -> None:
    fake = FakeTelegramClient()
    async with BackendMaker(fake, {**FAST_LIMITS, "max_parts": 2}) as make:
        telegram = await make()
        result = await telegram.deliver(OutgoingMessage(message=LONG, attachments=files()))
    assert len(fake.texts) == 2
    assert "more characters cut" in fake.texts[-1]
    assert [(f.filename, f.data, f.caption) for f in fake.sent_files] == [
        ("loss.png", PNG, ""),
        ("m.csv", b"a,b\n", ""),
    ]
    assert result.status == "delivered"
    (cut,) = result.warnings
    assert "max_parts" in cut
