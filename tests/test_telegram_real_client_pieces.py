"""Files, edits and old-style factories on telethon's real TelegramClient (sender stubbed).

telethon's own ``_call`` runs: its flood memory per request type, its internal retries,
its wrapping of requests. Nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from telegram_helpers import ClientsBuilt, StubSender, StubTelegram, msg, press_event
from telethon import TelegramClient
from telethon.tl import functions

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.testing.telegram import FakeTelegramClient

CHAT_A = -111  # small groups: telethon needs no access hash (no lookup request)
CHAT_B = -222
CHATS = {
    "default": {"chat_id": str(CHAT_A), "command_authorized": True},
    "b": {"chat_id": str(CHAT_B)},
}


def backend_on(factory: Any, **overrides: Any) -> TelegramCommunicator:
    values: dict[str, Any] = {"chats": CHATS, "retry_base_delay": 0.01, **overrides}
    config = FakeTelegramClient.telegram_config(**values)
    return TelegramCommunicator("tg", config, client_factory=factory)


def listening(factory: Any, folder: Path, **overrides: Any) -> TelegramCommunicator:
    # A listening client keeps telethon's flood memory under the request's own type (a
    # send-only one wraps requests in InvokeWithoutUpdatesRequest and files it there).
    return backend_on(
        factory, listen_to_commands=True, session_path=str(folder), stop_timeout=0.1, **overrides
    )


def with_file(text: str, label: str = "default") -> OutgoingMessage:
    return OutgoingMessage(
        message=text, label=label, attachments=[Attachment.from_bytes(b"x" * 600, "log.txt")]
    )


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_text_flood_wait_on_a_listening_client_pauses_only_that_chat(
    tmp_path: Path,
) -> None:
    server = StubTelegram()
    backend = listening(ClientsBuilt(server=server), tmp_path)
    await backend.start()
    server.fail(functions.messages.SendMessageRequest, 420, "FLOOD_WAIT_60")
    try:
        await backend.send(msg("to A"))  # A pauses a minute; telethon remembers the wait
        result = await backend.deliver(msg("to B", label="b"))
        pending = backend.pending
    finally:
        await backend.stop()

    assert result.status == "delivered"
    assert pending == 1
    assert len(server.of_type(functions.messages.SendMessageRequest)) == 2


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_file_flood_wait_pauses_only_that_chat(tmp_path: Path) -> None:
    server = StubTelegram()
    backend = listening(ClientsBuilt(server=server), tmp_path)
    await backend.start()
    server.fail(functions.messages.SendMediaRequest, 420, "FLOOD_WAIT_60")
    try:
        await backend.send(with_file("to A"))
        result = await backend.deliver(with_file("to B", label="b"))
        pending = backend.pending
    finally:
        await backend.stop()

    assert result.status == "delivered"
    assert pending == 1
    peers = [r.peer for r in server.of_type(functions.messages.SendMediaRequest)]
    assert [getattr(p, "chat_id", None) for p in peers] == [111, 222]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_edit_flood_wait_pauses_only_that_chat(tmp_path: Path) -> None:
    server = StubTelegram()
    backend = listening(ClientsBuilt(server=server), tmp_path)
    await backend.start()
    try:
        first = await backend.deliver(msg("A: 10%"))
        second = await backend.deliver(msg("B: 10%", label="b"))
        server.fail(functions.messages.EditMessageRequest, 420, "FLOOD_WAIT_60")
        # Queued first (eager start), so A's edit meets the flood wait before B's goes.
        waiting = asyncio.Task(
            backend.edit(first.reference, msg("A: 20%")),
            loop=asyncio.get_running_loop(),
            eager_start=True,
        )
        edited = await backend.edit(second.reference, msg("B: 20%", label="b"))
        still_waiting = not waiting.done()
    finally:
        await backend.stop()
        await asyncio.gather(waiting, return_exceptions=True)

    assert edited.status == "delivered"
    assert still_waiting
    edits = server.of_type(functions.messages.EditMessageRequest)
    assert [r.message for r in edits] == ["A: 20%", "B: 20%"]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_upload_without_an_answer_disconnects_and_the_next_send_reconnects() -> None:
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    backend = backend_on(factory, send_timeout=0.2)
    await backend.start()
    [client] = factory.clients
    try:
        server.silent = True
        lost = await backend.deliver(with_file("unanswered"))
        disconnected = not client.is_connected()
        server.silent = False
        after = await backend.deliver(with_file("after"))
    finally:
        await backend.stop()

    assert lost.status == "failed"
    assert "no answer within send_timeout" in (lost.error or "")
    assert disconnected
    assert after.status == "delivered"


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_edit_without_an_answer_disconnects_so_the_next_one_starts_clean() -> None:
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    backend = backend_on(factory, send_timeout=0.2)
    await backend.start()
    [client] = factory.clients
    try:
        sent = await backend.deliver(msg("10%"))
        server.silent = True
        lost = await backend.edit(sent.reference, msg("20%"))
        disconnected = not client.is_connected()
        server.silent = False
        after = await backend.edit(sent.reference, msg("30%"))
    finally:
        await backend.stop()

    assert lost.status == "failed"
    assert disconnected
    assert after.status == "delivered"


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_a_factory_taking_only_session_api_id_and_api_hash_still_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = StubTelegram()
    built: list[TelegramClient] = []

    def old_factory(session: Any, api_id: int, api_hash: str) -> TelegramClient:
        # Written for the first release: three arguments, telethon's defaults.
        client = TelegramClient(session, api_id, api_hash)
        client.session.set_dc(2, "127.0.0.1", 443)  # loopback; the sender is stubbed anyway
        client._sender = StubSender(server, client.session.auth_key)
        built.append(client)
        return client

    caplog.set_level(logging.WARNING, logger="processpype.communications.telegram")
    backend = backend_on(old_factory)
    await backend.start()
    try:
        result = await backend.deliver(msg())
        threshold = built[0].flood_sleep_threshold
    finally:
        await backend.stop()

    assert result.status == "delivered"
    assert threshold == 0  # flood waits still reach the backend instead of sleeping
    assert "the client_factory takes no catch_up" in caplog.text


@pytest.mark.asyncio
async def test_a_factory_gets_the_options_it_names() -> None:
    fake = FakeTelegramClient()
    received: dict[str, Any] = {}

    def factory(session: Any, api_id: int, api_hash: str, *, timeout: float) -> Any:
        received["timeout"] = timeout
        return fake.as_client_factory()(session, api_id, api_hash)

    backend = backend_on(factory, connect_timeout=7.5)
    await backend.start()
    await backend.stop()

    assert received == {"timeout": 7.5}


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_a_flood_wait_on_deleting_superfluous_pieces_is_forgotten(tmp_path: Path) -> None:
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    backend = listening(factory, tmp_path, max_parts=10)
    await backend.start()
    [client] = factory.clients
    long_text = "\n".join(f"line {i}" for i in range(40))  # two pieces (30 lines each)
    try:
        sent = await backend.deliver(msg(long_text))
        server.fail(functions.messages.DeleteMessagesRequest, 420, "FLOOD_WAIT_60")
        edited = await backend.edit(sent.reference, msg("short now"))
        memory = dict(client._flood_waited_requests)
    finally:
        await backend.stop()

    assert edited.status == "delivered"  # the edit itself went through
    assert functions.messages.DeleteMessagesRequest.CONSTRUCTOR_ID not in memory


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_answering_a_press_over_a_silent_link_gives_up_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from telethon.sessions import StringSession
    from telethon.tl import types

    from processpype.communications.backends import _telegram_interactive

    monkeypatch.setattr(_telegram_interactive, "_ANSWER_TIMEOUT", 0.1)
    server = StubTelegram()
    server.silent = True  # the answer request never gets a reply
    client = TelegramClient(StringSession(), 12345, "0123456789abcdef0123456789abcdef")
    client._sender = StubSender(server, None)
    await client._sender.connect(None)
    backend = backend_on(FakeTelegramClient().as_client_factory())
    update = types.UpdateBotCallbackQuery(
        query_id=994,
        user_id=42,
        peer=types.PeerChat(111),
        msg_id=5,
        chat_instance=1,
        data=b"pp:x:0",
    )
    event = press_event(client, update)
    caplog.set_level(logging.ERROR, logger="processpype.communications.telegram")

    await backend._interactions._on_callback(event)  # returns: the answer gave up

    assert "handling a button press failed: TimeoutError" in caplog.text
