"""Starting, sessions, login errors, reconnects, secrets and the client factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from telethon import errors
from telethon.crypto import AuthKey
from telethon.sessions import StringSession

from processpype.communications.backends import create_communicator
from processpype.communications.backends import telegram as telegram_backend
from processpype.communications.backends.telegram import (
    TelegramCommunicator,
    set_default_client_factory,
)
from processpype.communications.errors import BackendStartError, ConfigError
from processpype.communications.models import OutgoingMessage
from processpype.config.loader import config_from_mapping
from processpype.testing.telegram import FakeTelegramClient

TOKEN = "123456:TEST-token_for-the-fake"
API_HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def fake() -> FakeTelegramClient:
    return FakeTelegramClient()


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_DATA_HOME in a temporary folder; the cwd elsewhere."""
    home = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return home


@pytest.fixture
def restore_default_factory() -> Iterator[None]:
    previous = set_default_client_factory(None)
    set_default_client_factory(previous)
    yield
    set_default_client_factory(previous)


def make(fake: FakeTelegramClient, **overrides: object) -> TelegramCommunicator:
    # Fast limits: a retry is a send like any other and waits for the chat's next slot.
    config = fake.telegram_config(
        retry_base_delay=0.01, per_chat_per_second=1000.0, global_per_second=10_000.0, **overrides
    )
    return TelegramCommunicator("tg", config, client_factory=fake.as_client_factory())


def _valid_session_string() -> str:
    session = StringSession()
    session.set_dc(2, "149.154.167.51", 443)
    session.auth_key = AuthKey(b"\x01" * 256)
    return str(session.save())


@pytest.mark.asyncio
async def test_client_raises_flood_waits_instead_of_sleeping(fake: FakeTelegramClient) -> None:
    backend = make(fake)

    await backend.start()
    await backend.stop()

    assert fake.flood_sleep_threshold == 0


def test_default_client_is_telethons_with_flood_sleep_disabled() -> None:
    client = telegram_backend.telethon_client(StringSession(), 12345, API_HASH)

    assert type(client).__name__ == "TelegramClient"
    assert client.flood_sleep_threshold == 0
    assert client._raise_last_call_error is True  # the real RPC error, not a ValueError


def test_backend_builds_its_client_with_the_options_it_relies_on() -> None:
    config = FakeTelegramClient.telegram_config(connect_timeout=7.0)
    backend = TelegramCommunicator("tg", config)

    client = telegram_backend.telethon_client(
        StringSession(), 12345, API_HASH, **backend.client_options()
    )

    assert client._timeout == 7.0
    assert client._request_retries == 1
    assert client._no_updates is True  # send-only: no updates
    assert client._catch_up is False


@pytest.mark.asyncio
async def test_send_only_backend_uses_an_ephemeral_string_session(
    fake: FakeTelegramClient,
) -> None:
    backend = make(fake)

    await backend.start()
    await backend.stop()

    [session] = fake.sessions
    assert isinstance(session, StringSession)  # in memory: nothing written to disk


@pytest.mark.asyncio
async def test_session_string_is_used_when_given(fake: FakeTelegramClient) -> None:
    backend = make(fake, session_string=_valid_session_string(), listen_to_commands=True)

    await backend.start()
    await backend.stop()

    [session] = fake.sessions
    assert isinstance(session, StringSession)
    assert session.auth_key.key == b"\x01" * 256


@pytest.mark.asyncio
async def test_invalid_session_string_is_a_config_error_without_its_value(
    fake: FakeTelegramClient,
) -> None:
    backend = make(fake, session_string="not-a-session-AAAA")

    with pytest.raises(ConfigError, match="session_string") as caught:
        await backend.start()

    assert "not-a-session-AAAA" not in str(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.asyncio
async def test_listening_without_session_string_keeps_a_file_in_the_data_directory(
    fake: FakeTelegramClient, data_home: Path
) -> None:
    backend = make(fake, listen_to_commands=True)

    await backend.start()
    await backend.stop()

    [session] = fake.sessions
    assert session == str(data_home / "processpype" / "telegram" / "tg.session")
    assert (data_home / "processpype" / "telegram").is_dir()
    assert list(Path.cwd().iterdir()) == []


@pytest.mark.asyncio
async def test_session_path_names_the_session_file(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    target = tmp_path / "state" / "bot.session"
    backend = make(fake, listen_to_commands=True, session_path=str(target))

    await backend.start()
    await backend.stop()

    assert fake.sessions == [str(target)]
    assert target.parent.is_dir()


@pytest.mark.asyncio
async def test_session_file_is_owner_only_before_the_login(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    target = tmp_path / "state" / "bot"  # telethon adds the .session suffix
    backend = make(fake, listen_to_commands=True, session_path=str(target))
    fake.fail_next_connect(ConnectionError("network down"))

    with pytest.raises(BackendStartError):
        await backend.start()

    stored = tmp_path / "state" / "bot.session"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert not target.exists()


def test_empty_token_is_refused_by_the_config() -> None:
    mapping = {
        "enabled": True,
        "backends": {
            "tg": {"type": "telegram", "api_id": 1, "api_hash": API_HASH, "token": " "},
        },
    }

    with pytest.raises(ConfigError, match=r"backends\.tg\.token: cannot be empty"):
        config_from_mapping(mapping)


@pytest.mark.asyncio
async def test_token_that_is_not_a_bot_token_fails_before_any_login(
    fake: FakeTelegramClient,
) -> None:
    with pytest.raises(ValidationError, match="does not look like a bot token") as caught:
        make(fake, token="no-colon-here")

    assert caught.value.errors()[0]["loc"] == ("token",)
    assert "no-colon-here" not in str(caught.value)
    assert fake.sessions == []
    assert fake.connect_count == 0


@pytest.mark.asyncio
async def test_rejected_login_is_a_start_error_without_the_token(
    fake: FakeTelegramClient,
) -> None:
    backend = make(fake, token="bad:token")

    with pytest.raises(BackendStartError, match="refused the bot login") as caught:
        await backend.start()

    assert isinstance(caught.value.__cause__, errors.AccessTokenInvalidError)
    assert "bad:token" not in str(caught.value)
    assert not fake.is_connected()
    assert not backend.is_started


@pytest.mark.asyncio
async def test_unreachable_telegram_is_a_start_error(fake: FakeTelegramClient) -> None:
    fake.fail_next_connect(ConnectionError("network unreachable"))
    backend = make(fake)

    with pytest.raises(BackendStartError, match="could not connect to Telegram") as caught:
        await backend.start()

    assert isinstance(caught.value, ConnectionError)


@pytest.mark.asyncio
async def test_send_reconnects_after_the_connection_dropped(fake: FakeTelegramClient) -> None:
    backend = make(fake)
    await backend.start()
    try:
        fake.drop_connection()

        result = await backend.deliver(OutgoingMessage(message="after the drop"))
    finally:
        await backend.stop()

    assert (result.status, result.attempts) == ("delivered", 1)
    assert fake.connect_count == 2


@pytest.mark.asyncio
async def test_failed_reconnect_is_retried(fake: FakeTelegramClient) -> None:
    backend = make(fake)
    await backend.start()
    try:
        fake.drop_connection()
        fake.fail_next_connect()

        result = await backend.deliver(OutgoingMessage(message="after two tries"))
    finally:
        await backend.stop()

    assert (result.status, result.attempts) == ("delivered", 2)


@pytest.mark.asyncio
async def test_a_reconnect_that_hangs_fails_the_send_within_connect_timeout(
    fake: FakeTelegramClient,
) -> None:
    backend = make(fake, connect_timeout=0.2, max_attempts=2, stop_timeout=1.0)
    await backend.start()
    try:
        fake.drop_connection()
        fake.connect_latency = 60.0  # a network that never answers

        result = await asyncio.wait_for(backend.deliver(OutgoingMessage(message="x")), 10)
    finally:
        fake.connect_latency = 0.0
        await backend.stop()

    assert (result.status, result.attempts) == ("failed", 2)
    assert "took longer than connect_timeout (0.2s)" in (result.error or "")
    assert fake.sent == []


@pytest.mark.asyncio
async def test_listening_backend_reconnects_by_itself(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    chats = {"default": {"chat_id": "-1001234567890", "command_authorized": True}}
    backend = make(fake, listen_to_commands=True, session_path=str(tmp_path), chats=chats)
    received: list[str] = []
    backend.set_incoming_handler(lambda message: received.append(message.text))
    await backend.start()
    try:
        fake.drop_connection()

        await fake.wait_for_connected_async(timeout=5)
        await fake.inject_message_async(-1001234567890, "/status")
    finally:
        await backend.stop()

    assert fake.connect_count == 2
    assert received == ["/status"]


@pytest.mark.asyncio
async def test_secrets_never_reach_logs_or_errors(
    fake: FakeTelegramClient, caplog: pytest.LogCaptureFixture
) -> None:
    session_string = _valid_session_string()
    backend = make(fake, session_string=session_string, max_attempts=2)
    fake.fail_next(ConnectionError(f"refused {TOKEN} {API_HASH} {session_string}"), count=2)

    with caplog.at_level(logging.DEBUG):
        await backend.start()
        result = await backend.deliver(OutgoingMessage(message="hello"))
        await backend.stop()

    assert result.status == "failed"
    for secret in (TOKEN, API_HASH, session_string):
        assert secret not in caplog.text
        assert secret not in (result.error or "")
        assert secret not in repr(backend)


@pytest.mark.asyncio
async def test_default_client_factory_serves_backends_created_afterwards(
    fake: FakeTelegramClient, restore_default_factory: None
) -> None:
    previous = set_default_client_factory(fake.as_client_factory())
    backend = create_communicator("tg", fake.telegram_config())

    assert isinstance(backend, TelegramCommunicator)
    await backend.start()
    await backend.deliver(OutgoingMessage(message="via the registry"))
    await backend.stop()

    assert fake.texts == ["via the registry"]
    assert set_default_client_factory(previous) is not None


def test_config_of_another_type_is_refused(fake: FakeTelegramClient) -> None:
    from processpype.config.models import ConsoleCommunicatorConfig

    with pytest.raises(TypeError, match="TelegramCommunicatorConfig"):
        TelegramCommunicator("tg", ConsoleCommunicatorConfig())  # type: ignore[arg-type]
