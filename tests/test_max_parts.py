"""max_parts: a huge text becomes at most that many messages, and the result says so."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from http_helpers import FaultyServer, faulty_server, started_backend
from telegram_helpers import FAST_LIMITS, BackendMaker
from telethon import errors

from processpype.communications.backends._telegram_text import MAX_MESSAGE_UNITS, utf16_len
from processpype.communications.backends.webhook import (
    DISCORD_CONTENT_LIMIT,
    SLACK_TEXT_LIMIT,
    cap_parts,
    split_text,
)
from processpype.communications.base import Communicator
from processpype.communications.models import OutgoingMessage
from processpype.testing.telegram import FakeTelegramClient

TEN_MB = ("All work and no play makes Jack a dull boy. " * 40 + "\n") * 5700


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with faulty_server() as running:
        yield running


def chat_backend(
    kind: str, url: str, **settings: Any
) -> contextlib.AbstractAsyncContextManager[Communicator]:
    return started_backend(kind, url, name="chat", **settings)


def test_the_text_is_ten_megabytes() -> None:
    assert len(TEN_MB) > 10_000_000


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "field", "limit"),
    [("slack", "text", SLACK_TEXT_LIMIT), ("discord", "content", DISCORD_CONTENT_LIMIT)],
)
async def test_ten_megabytes_become_ten_posts_ending_with_what_was_cut(
    server: FaultyServer, kind: str, field: str, limit: int
) -> None:
    async with chat_backend(kind, server.url) as chat:
        async with asyncio.timeout(60):
            result = await chat.deliver(OutgoingMessage(message=TEN_MB))

    posts = [json.loads(body)[field] for body in server.bodies]
    assert len(posts) == 10
    assert all(len(post) <= limit for post in posts)
    assert "more characters cut: the message was longer than 10 parts" in posts[-1]
    assert result.status == "delivered"
    (warning,) = result.warnings
    assert "cut after 10 part(s)" in warning
    assert "max_parts" in warning


@pytest.mark.asyncio
async def test_max_parts_is_a_config_key_and_a_short_text_has_no_warning(
    server: FaultyServer,
) -> None:
    async with chat_backend("slack", server.url, max_parts=2) as chat:
        short = await chat.deliver(OutgoingMessage(message="fits in one"))
        long = await chat.deliver(OutgoingMessage(message="x " * 20_000))

    assert short.warnings == ()
    assert len(server.bodies) == 1 + 2
    assert long.warnings


def test_the_cut_line_counts_the_characters_that_were_not_sent() -> None:
    text = "\n".join(f"line {i:05d} " + "y" * 80 for i in range(2000))
    chunks, warning = cap_parts(text, 1000, 3, lambda part: split_text(part, 1000))
    assert len(chunks) == 3
    assert all(len(chunk) <= 1000 for chunk in chunks)
    sent = sum(len(chunk) for chunk in chunks[:-1]) + len(chunks[-1].split("\n… ")[0])
    cut = len(text) - sent
    assert f"… {cut:,} more characters cut" in chunks[-1]
    assert warning is not None
    assert f"{cut:,} characters were not sent" in warning


@pytest.mark.asyncio
async def test_ten_megabytes_become_ten_telegram_messages_with_a_warning() -> None:
    fake = FakeTelegramClient()
    async with BackendMaker(fake, FAST_LIMITS) as make:
        telegram = await make()
        async with asyncio.timeout(60):
            result = await telegram.deliver(OutgoingMessage(message=TEN_MB))

    texts = fake.texts
    assert len(texts) == 10
    assert all(utf16_len(text) <= MAX_MESSAGE_UNITS for text in texts)
    assert "more characters cut: the message was longer than 10 parts" in texts[-1]
    assert result.status == "delivered"
    assert any("max_parts" in warning for warning in result.warnings)


@pytest.mark.asyncio
async def test_each_message_keeps_its_own_cut_warning_when_sent_together(
    server: FaultyServer,
) -> None:
    async with chat_backend("slack", server.url, max_parts=2) as chat:
        async with asyncio.timeout(30):
            long, short, again = await asyncio.gather(
                chat.deliver(OutgoingMessage(message="x " * 20_000)),
                chat.deliver(OutgoingMessage(message="fits in one")),
                chat.deliver(OutgoingMessage(message="y " * 20_000)),
            )

    assert short.warnings == ()
    assert len(long.warnings) == 1
    assert len(again.warnings) == 1
    assert "cut after 2 part(s)" in long.warnings[0]


@pytest.mark.asyncio
async def test_a_telegram_edit_past_max_parts_says_what_was_cut() -> None:
    fake = FakeTelegramClient()
    async with BackendMaker(fake, FAST_LIMITS) as make:
        telegram = await make(max_parts=2)
        async with asyncio.timeout(30):
            posted = await telegram.deliver(OutgoingMessage(message="short"))
            edited = await telegram.edit(posted.reference, OutgoingMessage(message=TEN_MB))
            after = await telegram.deliver(OutgoingMessage(message="short again"))

    assert posted.warnings == ()
    assert edited.status == "delivered"
    assert any("cut after 2 part(s)" in warning for warning in edited.warnings)
    assert after.warnings == ()


@pytest.mark.asyncio
async def test_a_telegram_message_failed_after_a_cut_still_says_what_was_cut() -> None:
    fake = FakeTelegramClient()
    async with BackendMaker(fake, FAST_LIMITS) as make:
        telegram = await make(max_parts=2)
        fake.fail_next(errors.ChatWriteForbiddenError(request=None))
        async with asyncio.timeout(30):
            result = await telegram.deliver(OutgoingMessage(message=TEN_MB))

    assert result.status == "failed"
    assert any("max_parts" in warning for warning in result.warnings)
