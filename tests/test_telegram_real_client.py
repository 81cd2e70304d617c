"""The backend on telethon's real TelegramClient: on loopback servers, or a stubbed sender.

Nothing here leaves 127.0.0.1: sessions point at local servers (``set_dc``) or the
client's network sender is replaced, so telethon's own request logic (flood memory,
internal retries, error mapping) is what the backend meets.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from telegram_helpers import ClientsBuilt, LoopbackServer, StubTelegram, msg
from telethon import errors
from telethon.crypto import AuthKey
from telethon.sessions import StringSession
from telethon.tl import functions

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.errors import BackendStartError
from processpype.communications.models import IncomingMessage
from processpype.testing.telegram import FakeTelegramClient

TOKEN = "123456:TEST-token_for-the-fake"
CHAT_A = -111  # small groups: telethon needs no access hash (no lookup request)
CHAT_B = -222


def backend_on(factory: ClientsBuilt, **overrides: object) -> TelegramCommunicator:
    values: dict[str, object] = {
        "chats": {"default": {"chat_id": str(CHAT_A)}, "b": {"chat_id": str(CHAT_B)}},
        "retry_base_delay": 0.01,
        **overrides,
    }
    config = FakeTelegramClient.telegram_config(**values)
    return TelegramCommunicator("tg", config, client_factory=factory)


def session_with_key(port: int) -> str:
    session = StringSession()
    session.set_dc(2, "127.0.0.1", port)
    session.auth_key = AuthKey(b"\x01" * 256)
    return str(session.save())


def stored_session(folder: Path) -> tuple[int, str]:
    """The permission bits and text of the one session file the backend kept."""
    [stored] = folder.glob("bot123456.*session")
    return stored.stat().st_mode & 0o777, stored.read_text()


async def start_fails(backend: TelegramCommunicator) -> str:
    with pytest.raises(BackendStartError) as caught:
        await backend.start()
    text = str(caught.value)
    assert TOKEN not in text
    assert TOKEN.split(":")[1] not in text
    return text


# -- bounded start against broken paths -------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_silent_server_fails_start_within_connect_timeout_at_the_auth_key_exchange() -> None:
    async with LoopbackServer("silent") as server:
        factory = ClientsBuilt(port=server.port)
        backend = backend_on(factory, connect_timeout=0.5)

        text = await start_fails(backend)

    assert f"127.0.0.1:{server.port}" in text
    assert "(stuck in: the auth-key exchange)" in text
    assert "connect_timeout=0.5s" in text
    [client] = factory.clients
    assert not client.is_connected()


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_silent_server_with_a_session_string_times_out_and_leaves_no_half_open_client() -> (
    None
):
    async with LoopbackServer("silent") as server:
        factory = ClientsBuilt(port=server.port)
        backend = backend_on(
            factory, connect_timeout=0.5, session_string=session_with_key(server.port)
        )

        text = await start_fails(backend)

    # telethon's sender is connected by then: the first request is what hangs.
    assert "InitConnection" in text
    [client] = factory.clients
    assert not client.is_connected()


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_http_error_page_instead_of_telegram_fails_start_within_connect_timeout() -> None:
    # telethon reads "HTTP" as the length of a 1.3 GB frame and waits for it.
    async with LoopbackServer("http") as server:
        factory = ClientsBuilt(port=server.port)
        backend = backend_on(factory, connect_timeout=0.5)

        text = await start_fails(backend)

    assert f"127.0.0.1:{server.port}" in text
    assert "connect_timeout" in text
    assert not factory.clients[0].is_connected()


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_refused_connection_fails_start_saying_where_it_could_not_connect() -> None:
    async with LoopbackServer("refuse") as server:
        factory = ClientsBuilt(port=server.port, connection_retries=0, retry_delay=0)
        backend = backend_on(factory, connect_timeout=5)

        text = await start_fails(backend)

    assert f"could not connect to Telegram at 127.0.0.1:{server.port}" in text
    assert "ConnectionError" in text


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_garbage_from_the_server_fails_start_naming_the_server() -> None:
    async with LoopbackServer("garbage") as server:
        factory = ClientsBuilt(port=server.port, connection_retries=0, retry_delay=0)
        backend = backend_on(factory, connect_timeout=2)

        text = await start_fails(backend)

    assert f"the server at 127.0.0.1:{server.port} does not answer in Telegram's protocol" in text
    assert not factory.clients[0].is_connected()


# -- telethon's request logic with a stubbed sender -----------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_telethon_alone_refuses_every_chat_after_one_chats_flood_wait() -> None:
    # The fact the backend works around: telethon's per-request-type flood memory.
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    client = factory(StringSession(), 12345, "0123456789abcdef0123456789abcdef")
    await client.connect()
    await client.sign_in(bot_token=TOKEN)
    server.fail(functions.messages.SendMessageRequest, 420, "FLOOD_WAIT_6")
    try:
        with pytest.raises(errors.FloodWaitError):
            await client.send_message(CHAT_A, "a")
        with pytest.raises(errors.FloodWaitError):
            await client.send_message(CHAT_B, "b")  # refused locally, never sent
    finally:
        await client.disconnect()

    assert len(server.of_type(functions.messages.SendMessageRequest)) == 1


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_flood_wait_pauses_only_that_chat_on_real_telethon() -> None:
    server = StubTelegram()
    backend = backend_on(ClientsBuilt(server=server), stop_timeout=0.1)
    await backend.start()
    server.fail(functions.messages.SendMessageRequest, 420, "FLOOD_WAIT_60")
    try:
        await backend.send(msg("to A"))  # gets the flood wait: A pauses for a minute
        result = await backend.deliver(msg("to B", label="b"))
        pending = backend.pending
    finally:
        await backend.stop()

    assert result.status == "delivered"
    assert pending == 1  # A's message waits out its chat's flood wait
    peers = [r.peer for r in server.of_type(functions.messages.SendMessageRequest)]
    assert [getattr(p, "chat_id", None) for p in peers] == [111, 222]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_server_errors_through_telethons_retries_are_retried_by_the_backend() -> None:
    server = StubTelegram()
    backend = backend_on(ClientsBuilt(server=server))
    await backend.start()
    # telethon repeats once itself (sleeping 2 s), then raises the real error.
    server.fail(functions.messages.SendMessageRequest, 500, "INTERNAL", count=2)
    try:
        result = await backend.deliver(msg())
    finally:
        await backend.stop()

    assert (result.status, result.attempts) == ("delivered", 2)
    assert len(server.of_type(functions.messages.SendMessageRequest)) == 3


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_login_flood_wait_is_reported_and_a_later_start_waits_for_it(
    tmp_path: Path,
) -> None:
    server = StubTelegram()
    server.fail(functions.auth.ImportBotAuthorizationRequest, 420, "FLOOD_WAIT_2800")
    factory = ClientsBuilt(server=server)
    backend = backend_on(factory, persist_session=True, session_path=str(tmp_path))

    text = await start_fails(backend)
    again = await start_fails(backend_on(factory, persist_session=True, session_path=str(tmp_path)))

    assert "Telegram asks to wait 2800 s before logging in again" in text
    assert "before logging in again" in again
    assert len(factory.clients) == 1  # the later start did not even connect
    assert len(server.of_type(functions.auth.ImportBotAuthorizationRequest)) == 1


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_send_only_backend_logs_the_bot_in_once_across_restarts(tmp_path: Path) -> None:
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    for _ in range(3):
        backend = backend_on(factory, persist_session=True, session_path=str(tmp_path))
        await backend.start()
        result = await backend.deliver(msg())
        await backend.stop()
        assert result.status == "delivered"

    assert server.logins == 1
    mode, text = stored_session(tmp_path)
    assert mode == 0o600
    assert TOKEN.split(":")[1] not in text


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_send_only_client_is_built_without_updates() -> None:
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    backend = backend_on(factory)
    await backend.start()
    try:
        [client] = factory.clients
        no_updates = client._no_updates
    finally:
        await backend.stop()

    assert no_updates is True


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_send_without_an_answer_disconnects_telethon_and_the_next_send_reconnects() -> None:
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    backend = backend_on(factory, send_timeout=0.2)
    await backend.start()
    [client] = factory.clients
    try:
        server.silent = True
        lost = await backend.deliver(msg("unanswered"))
        disconnected = not client.is_connected()
        server.silent = False
        after = await backend.deliver(msg("after"))
    finally:
        await backend.stop()

    assert lost.status == "failed"
    assert disconnected
    assert after.status == "delivered"


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_reconnect_cut_by_connect_timeout_leaves_telethon_disconnected() -> None:
    # telethon's connect() is up once its sender is; it hangs on the first request, with
    # is_connected() True and no keepalive: the backend must disconnect it.
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    backend = backend_on(factory, connect_timeout=0.2, max_attempts=1)
    await backend.start()
    [client] = factory.clients
    try:
        await client.disconnect()  # the link drops
        server.silent = True
        result = await backend.deliver(msg())
        connected = client.is_connected()
    finally:
        server.silent = False
        await backend.stop()

    assert result.status == "failed"
    assert "took longer than connect_timeout (0.2s)" in (result.error or "")
    assert connected is False


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_listening_backend_catches_up_on_commands_sent_while_it_was_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = StubTelegram()
    factory = ClientsBuilt(server=server)
    chats = {"default": {"chat_id": str(CHAT_A), "command_authorized": True}}
    config = {"listen_to_commands": True, "session_path": str(tmp_path), "chats": chats}
    first = backend_on(factory, **config)
    await first.start()
    await first.stop()
    now = datetime.now(UTC)
    server.miss(CHAT_A, "/restart", date=now - timedelta(hours=2))  # too old to act on
    server.miss(CHAT_A, "/status", date=now - timedelta(seconds=30))

    second = backend_on(factory, **config)
    arrived = asyncio.Event()
    received: list[IncomingMessage] = []

    def on_message(message: IncomingMessage) -> None:
        received.append(message)
        arrived.set()

    second.set_incoming_handler(on_message)
    caplog.set_level(logging.INFO, logger="processpype.communications.telegram")
    await second.start()
    try:
        async with asyncio.timeout(5):
            await arrived.wait()
    finally:
        await second.stop()

    assert [m.text for m in received] == ["/status"]
    assert "older than max_command_age=300s" in caplog.text  # /restart, dropped
    assert server.logins == 1  # the session file kept the login
