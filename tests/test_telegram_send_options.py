"""What each send asks of telethon: General topic, link previews, updates, server errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from telegram_helpers import BackendMaker, msg, quick_fake
from telethon import errors

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.testing.telegram import FakeTelegramClient

GROUP = -1001234567890
CHATS = {
    "default": {"chat_id": str(GROUP)},
    "general": {"chat_id": str(GROUP), "topic_id": 1},
    "topic": {"chat_id": str(GROUP), "topic_id": 7},
}
FAST: dict[str, Any] = {"chats": CHATS, "retry_base_delay": 0.01, "per_chat_per_second": 1000.0}


@pytest.fixture
def fake() -> FakeTelegramClient:
    return quick_fake()


@pytest_asyncio.fixture
async def make_backend(fake: FakeTelegramClient) -> AsyncIterator[BackendMaker]:
    async with BackendMaker(fake, FAST) as make:
        yield make


@pytest.mark.asyncio
async def test_general_topic_is_a_plain_post_not_a_reply_to_message_1(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    await backend.deliver(msg("into General", label="general"))
    await backend.deliver(msg("into topic 7", label="topic"))

    assert [m.reply_to for m in fake.sent] == [None, 7]


@pytest.mark.asyncio
async def test_link_previews_are_off_unless_configured(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    quiet = await make_backend()
    await quiet.deliver(msg("see https://example.com"))
    await quiet.stop()
    loud = await make_backend(link_preview=True)
    await loud.deliver(msg("see https://example.com"))

    assert [m.link_preview for m in fake.sent] == [False, True]


@pytest.mark.asyncio
async def test_send_only_client_receives_no_updates(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    await make_backend()

    assert fake.client_options["receive_updates"] is False
    assert fake.client_options["catch_up"] is False
    assert fake.client_options["flood_sleep_threshold"] == 0


@pytest.mark.asyncio
async def test_listening_client_catches_up_on_missed_updates(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    config = fake.telegram_config(listen_to_commands=True, session_path=str(tmp_path))
    backend = TelegramCommunicator("tg", config, client_factory=fake.as_client_factory())
    await backend.start()
    await backend.stop()

    assert fake.client_options["receive_updates"] is True
    assert fake.client_options["catch_up"] is True


@pytest.mark.asyncio
async def test_server_error_after_telethons_own_retry_is_retried_by_the_backend(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(max_attempts=3)
    # telethon repeats a request once itself (request_retries=1): two 500s per attempt.
    fake.fail_next(errors.ServerError(request=None, message="INTERNAL", code=500), count=4)

    result = await backend.deliver(msg())

    assert (result.status, result.attempts) == ("delivered", 3)


@pytest.mark.asyncio
async def test_telethons_request_was_unsuccessful_error_is_retried_too(
    fake: FakeTelegramClient,
) -> None:
    # A factory that builds the client with telethon's default raise_last_call_error.
    base = fake.as_client_factory()

    def factory(session: Any, api_id: int, api_hash: str, **options: Any) -> Any:
        return base(session, api_id, api_hash, **{**options, "raise_last_call_error": False})

    config = fake.telegram_config(**FAST)
    backend = TelegramCommunicator("tg", config, client_factory=factory)
    await backend.start()
    fake.fail_next(errors.TimedOutError(request=None, message="Timeout", code=-503), count=2)
    try:
        result = await backend.deliver(msg())
    finally:
        await backend.stop()

    assert (result.status, result.attempts) == ("delivered", 2)
    [failure] = fake.errors  # one send_message call, two tries inside telethon
    assert "Request was unsuccessful 2 time(s)" in str(failure.error)


@pytest.mark.asyncio
async def test_server_errors_on_every_attempt_fail_the_message_with_the_real_error(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(max_attempts=2)
    fake.fail_next(errors.ServerError(request=None, message="INTERNAL", code=500), count=4)

    result = await backend.deliver(msg())

    assert (result.status, result.attempts) == ("failed", 2)
    assert "ServerError" in (result.error or "")
