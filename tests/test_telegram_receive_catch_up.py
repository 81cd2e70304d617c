"""Commands caught up after a downtime: old ones dropped; @username chats always matched."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.models import IncomingMessage
from processpype.testing.telegram import FakeTelegramClient

GROUP = -1001234567890
CHANNEL = -1005555555555
CHATS = {
    "default": {"chat_id": str(GROUP), "command_authorized": True},
    "ops": {"chat_id": "@ops_room", "command_authorized": True},
}

Factory = Callable[..., Awaitable[list[IncomingMessage]]]


@pytest.fixture
def fake() -> FakeTelegramClient:
    return FakeTelegramClient()


@pytest_asyncio.fixture
async def listening(fake: FakeTelegramClient, tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[TelegramCommunicator] = []

    async def make(**overrides: Any) -> list[IncomingMessage]:
        values = {"chats": CHATS, "listen_to_commands": True, "session_path": str(tmp_path)}
        config = fake.telegram_config(**{**values, **overrides})
        backend = TelegramCommunicator("tg", config, client_factory=fake.as_client_factory())
        received: list[IncomingMessage] = []
        backend.set_incoming_handler(received.append)
        await backend.start()
        made.append(backend)
        return received

    yield make
    for backend in made:
        await backend.stop()


@pytest.mark.asyncio
async def test_command_older_than_max_command_age_is_dropped_with_an_info_log(
    listening: Factory, fake: FakeTelegramClient, caplog: pytest.LogCaptureFixture
) -> None:
    received = await listening(max_command_age=300)
    hours_ago = datetime.now(UTC) - timedelta(hours=3)

    with caplog.at_level(logging.INFO, logger="processpype.communications.telegram"):
        await fake.inject_message_async(GROUP, "/restart", date=hours_ago)

    assert received == []
    assert "older than max_command_age=300s" in caplog.text
    assert "/restart" not in caplog.text  # the text of a dropped command is not logged


@pytest.mark.asyncio
async def test_command_within_max_command_age_is_handled(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    received = await listening(max_command_age=300)

    await fake.inject_message_async(
        GROUP, "/status", date=datetime.now(UTC) - timedelta(seconds=60)
    )

    assert [m.text for m in received] == ["/status"]


@pytest.mark.asyncio
async def test_username_chat_matches_a_command_that_arrives_without_its_chat(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    received = await listening()

    await fake.inject_message_async(
        CHANNEL, "/status", chat_username="ops_room", chat_attached=False
    )
    await fake.inject_message_async(
        CHANNEL, "/again", chat_username="ops_room", chat_attached=False
    )

    assert [(m.text, m.chat_label) for m in received] == [("/status", "ops"), ("/again", "ops")]


@pytest.mark.asyncio
async def test_unknown_chat_without_its_entity_is_still_ignored(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    received = await listening()

    await fake.inject_message_async(
        CHANNEL, "/status", chat_username="someone_else", chat_attached=False
    )

    assert received == []
