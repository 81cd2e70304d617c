"""Incoming commands: authorized chats, topics and senders become IncomingMessage events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from telethon import events

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.models import IncomingMessage
from processpype.testing.telegram import FakeTelegramClient

GROUP = -1001234567890
FORUM = -1003333333333
PRIVATE = 42
CHATS = {
    "default": {"chat_id": str(GROUP), "command_authorized": True},
    "ops": {"chat_id": str(PRIVATE), "command_authorized": True, "allowed_sender_ids": [42]},
    "forum": {"chat_id": str(FORUM), "topic_id": 7, "command_authorized": True},
    "silent": {"chat_id": "-1004444444444"},
}

Factory = Callable[..., Awaitable[tuple[TelegramCommunicator, list[IncomingMessage]]]]


@pytest.fixture
def fake() -> FakeTelegramClient:
    return FakeTelegramClient()


@pytest_asyncio.fixture
async def listening(fake: FakeTelegramClient, tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[TelegramCommunicator] = []

    async def make(**overrides: Any) -> tuple[TelegramCommunicator, list[IncomingMessage]]:
        config = fake.telegram_config(
            **{
                "chats": CHATS,
                "listen_to_commands": True,
                "session_path": str(tmp_path),
                **overrides,
            }
        )
        backend = TelegramCommunicator("tg", config, client_factory=fake.as_client_factory())
        received: list[IncomingMessage] = []
        backend.set_incoming_handler(received.append)
        await backend.start()
        made.append(backend)
        return backend, received

    yield make
    for backend in made:
        await backend.stop()


@pytest.mark.asyncio
async def test_message_from_authorized_chat_becomes_an_incoming_message(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    _, received = await listening()

    sent = await fake.inject_message_async(
        GROUP, "/status db", sender_id=99, sender_name="Ada Lovelace"
    )

    [incoming] = received
    assert incoming.text == "/status db"
    assert (incoming.sender, incoming.sender_id) == ("Ada Lovelace", "99")
    assert (incoming.chat_label, incoming.backend_name) == ("default", "tg")
    assert isinstance(incoming.timestamp, datetime)
    assert incoming.timestamp.tzinfo is not None
    assert incoming.metadata == {"chat_id": GROUP, "message_id": sent.id, "topic_id": None}
    assert isinstance(incoming.raw_event, events.NewMessage.Event)


@pytest.mark.asyncio
async def test_message_from_a_chat_without_command_authorized_is_dropped(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    _, received = await listening()

    await fake.inject_message_async(-1004444444444, "/reboot")

    assert received == []


@pytest.mark.asyncio
async def test_message_from_an_unknown_chat_is_dropped_and_logged_without_its_text(
    listening: Factory, fake: FakeTelegramClient, caplog: pytest.LogCaptureFixture
) -> None:
    _, received = await listening()

    with caplog.at_level(logging.DEBUG, logger="processpype.communications.telegram"):
        await fake.inject_message_async(-1005555555555, "/reboot secret-password")

    assert received == []
    assert "not a configured chat" in caplog.text
    assert "secret-password" not in caplog.text


@pytest.mark.asyncio
async def test_message_in_the_configured_topic_is_accepted(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    _, received = await listening()

    await fake.inject_message_async(FORUM, "/status", topic_id=7)

    [incoming] = received
    assert (incoming.chat_label, incoming.metadata["topic_id"]) == ("forum", 7)


@pytest.mark.asyncio
async def test_reply_inside_the_configured_topic_is_accepted(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    _, received = await listening()

    await fake.inject_message_async(FORUM, "/ack", topic_id=7, reply_to=120)

    [incoming] = received
    assert incoming.metadata["topic_id"] == 7


@pytest.mark.asyncio
async def test_message_in_another_topic_is_dropped(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    _, received = await listening()

    await fake.inject_message_async(FORUM, "/status", topic_id=8)
    await fake.inject_message_async(FORUM, "/status")  # General topic

    assert received == []


@pytest.mark.asyncio
async def test_sender_not_in_allowed_sender_ids_is_dropped(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    _, received = await listening(
        chats={
            "default": {
                "chat_id": str(GROUP),
                "command_authorized": True,
                "allowed_sender_ids": [7],
            }
        }
    )

    await fake.inject_message_async(GROUP, "/deploy", sender_id=8)
    await fake.inject_message_async(GROUP, "/deploy", sender_id=7)

    assert [m.sender_id for m in received] == ["7"]


@pytest.mark.asyncio
async def test_private_chat_message_comes_from_the_chat_partner(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    _, received = await listening()

    await fake.inject_message_async(PRIVATE, "/help", sender_name="Grace")

    [incoming] = received
    assert (incoming.chat_label, incoming.sender_id, incoming.sender) == ("ops", "42", "Grace")


@pytest.mark.asyncio
async def test_username_chat_config_matches_the_chat_username(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    _, received = await listening(
        chats={"default": {"chat_id": "@OpsRoom", "command_authorized": True}}
    )

    await fake.inject_message_async(-1006666666666, "/status", chat_username="opsroom")

    assert [m.chat_label for m in received] == ["default"]


@pytest.mark.asyncio
async def test_incoming_messages_reach_dispatcher_subscribers(
    listening: Factory, fake: FakeTelegramClient
) -> None:
    backend, _ = await listening()
    dispatcher = CommunicationDispatcher()
    dispatcher.register(backend)
    got: list[str] = []
    dispatcher.subscribe(lambda message: got.append(message.text))

    await fake.inject_message_async(GROUP, "/status")

    assert got == ["/status"]


@pytest.mark.asyncio
async def test_send_only_backend_does_not_listen(fake: FakeTelegramClient) -> None:
    backend = TelegramCommunicator(
        "tg", fake.telegram_config(chats=CHATS), client_factory=fake.as_client_factory()
    )
    await backend.start()
    try:
        assert not backend.supports_receiving
        assert fake.list_event_handlers() == []
    finally:
        await backend.stop()


@pytest.mark.asyncio
async def test_stop_removes_the_handler(listening: Factory, fake: FakeTelegramClient) -> None:
    backend, _ = await listening()

    await backend.stop()

    assert fake.list_event_handlers() == []
