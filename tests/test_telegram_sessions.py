"""Start and connections bounded in time; one login per bot; only the token's bot posts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from telegram_helpers import msg
from telethon import errors

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.errors import BackendStartError
from processpype.testing.telegram import FakeTelegramClient

TOKEN_BOT_ID = 123456


@pytest.fixture
def fake() -> FakeTelegramClient:
    return FakeTelegramClient()


def make(fake: FakeTelegramClient, **overrides: Any) -> TelegramCommunicator:
    values: dict[str, Any] = {"retry_base_delay": 0.01, **overrides}
    return TelegramCommunicator(
        "tg", fake.telegram_config(**values), client_factory=fake.as_client_factory()
    )


def files_in(folder: Path) -> list[tuple[str, int]]:
    """(name, permission bits) of the files in ``folder``."""
    return sorted((p.name, p.stat().st_mode & 0o777) for p in folder.iterdir() if p.is_file())


# -- one login per bot ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_only_backend_keeps_its_login_between_runs(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    for _ in range(3):
        backend = make(fake, persist_session=True, session_path=str(tmp_path))
        await backend.start()
        await backend.stop()

    assert fake.logins == 1
    assert files_in(tmp_path) == [(f"bot{TOKEN_BOT_ID}.string-session", 0o600)]


@pytest.mark.asyncio
async def test_persist_session_false_logs_in_on_every_start_and_writes_nothing(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    for _ in range(2):
        backend = make(fake, persist_session=False, session_path=str(tmp_path))
        await backend.start()
        await backend.stop()

    assert fake.logins == 2
    assert files_in(tmp_path) == []


@pytest.mark.asyncio
async def test_stored_session_is_named_by_the_bot_id_never_the_token(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    backend = make(fake, persist_session=True, session_path=str(tmp_path))
    await backend.start()
    await backend.stop()

    secret = FakeTelegramClient.telegram_config().token.get_secret_value().split(":", 1)[1]
    [(name, _)] = files_in(tmp_path)
    assert secret not in name
    assert secret not in (tmp_path / name).read_text()


@pytest.mark.asyncio
async def test_login_flood_wait_is_reported_as_such_and_honoured_by_a_later_start(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    fake.fail_next_login(errors.FloodWaitError(request=None, capture=2800))
    backend = make(fake, persist_session=True, session_path=str(tmp_path))

    with pytest.raises(BackendStartError) as first:
        await backend.start()
    with pytest.raises(BackendStartError) as again:
        await make(fake, persist_session=True, session_path=str(tmp_path)).start()

    assert "Telegram asks to wait 2800 s before logging in again" in str(first.value)
    assert "refused the bot login" not in str(first.value)
    assert "before logging in again" in str(again.value)
    assert fake.start_count == 0
    assert fake.connect_count == 1  # the later start did not try


@pytest.mark.asyncio
async def test_login_flood_wait_is_honoured_by_the_same_backend_without_files(
    fake: FakeTelegramClient,
) -> None:
    fake.fail_next_login(errors.FloodWaitError(request=None, capture=600))
    backend = make(fake, persist_session=False)

    with pytest.raises(BackendStartError):
        await backend.start()
    with pytest.raises(BackendStartError, match="before logging in again"):
        await backend.start()

    assert fake.connect_count == 1


@pytest.mark.asyncio
async def test_kept_login_that_telegram_no_longer_knows_is_discarded(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    first = make(fake, persist_session=True, session_path=str(tmp_path))
    await first.start()
    await first.stop()
    fake.fail_next_connect(errors.AuthKeyNotFound())

    with pytest.raises(BackendStartError):
        await make(fake, persist_session=True, session_path=str(tmp_path)).start()
    kept = files_in(tmp_path)
    again = make(fake, persist_session=True, session_path=str(tmp_path))
    await again.start()
    await again.stop()

    assert kept == []
    assert fake.logins == 2


@pytest.mark.asyncio
async def test_user_account_session_is_refused(fake: FakeTelegramClient) -> None:
    backend = make(fake, session_string=fake.session_string_for(777, bot=False))

    with (
        pytest.warns(UserWarning, match="already had an authorized user"),
        pytest.raises(BackendStartError, match="user account"),
    ):
        await backend.start()

    assert not fake.is_connected()


@pytest.mark.asyncio
async def test_session_of_another_bot_is_refused(fake: FakeTelegramClient) -> None:
    backend = make(fake, session_string=fake.session_string_for(999, bot=True))

    with (
        pytest.warns(UserWarning, match="already had an authorized user"),
        pytest.raises(
            BackendStartError, match=f"belongs to bot 999, not to the token's bot {TOKEN_BOT_ID}"
        ),
    ):
        await backend.start()

    assert not fake.is_connected()


@pytest.mark.asyncio
async def test_session_string_of_the_tokens_bot_needs_no_new_login(
    fake: FakeTelegramClient, tmp_path: Path
) -> None:
    backend = make(
        fake,
        session_string=fake.session_string_for(TOKEN_BOT_ID),
        persist_session=True,
        session_path=str(tmp_path),
    )
    await backend.start()
    await backend.stop()

    assert fake.logins == 0
    assert files_in(tmp_path) == []  # the user keeps their session_string themselves


# -- every network step is bounded -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_start_against_a_silent_server_fails_within_connect_timeout(
    fake: FakeTelegramClient,
) -> None:
    fake.silent = True
    backend = make(fake, connect_timeout=0.2)

    with pytest.raises(BackendStartError) as caught:
        await backend.start()

    assert "did not answer within connect_timeout=0.2s (stuck in: connecting)" in str(caught.value)
    assert not fake.is_connected()
    assert backend.client is None


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_start_that_hangs_after_the_link_is_up_leaves_the_client_disconnected(
    fake: FakeTelegramClient,
) -> None:
    fake.silent = True  # with an auth key, connect() hangs with is_connected() True
    backend = make(fake, connect_timeout=0.2, session_string=fake.session_string_for(123456))

    with pytest.raises(BackendStartError):
        await backend.start()

    assert not fake.is_connected()


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_send_without_an_answer_disconnects_so_the_next_one_starts_clean(
    fake: FakeTelegramClient,
) -> None:
    backend = make(fake, send_timeout=0.2)
    await backend.start()
    try:
        fake.silent = True
        lost = await backend.deliver(msg("into the void"))
        disconnected = not fake.is_connected()
        fake.silent = False
        after = await backend.deliver(msg("after"))
    finally:
        await backend.stop()

    assert lost.status == "failed"
    assert "no answer within send_timeout" in (lost.error or "")
    assert disconnected
    assert after.status == "delivered"
    assert fake.connect_count == 2


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_reconnect_that_times_out_leaves_no_half_open_client(
    fake: FakeTelegramClient,
) -> None:
    backend = make(fake, connect_timeout=0.2, max_attempts=2)
    await backend.start()
    try:
        fake.drop_connection()
        fake.silent = True  # the link comes up, the first request is never answered
        result = await asyncio.wait_for(backend.deliver(msg()), 5)
        connected = fake.is_connected()
    finally:
        fake.silent = False
        await backend.stop()

    assert (result.status, result.attempts) == ("failed", 2)
    assert "took longer than connect_timeout (0.2s)" in (result.error or "")
    assert connected is False


def test_new_keys_have_the_documented_defaults() -> None:
    config = FakeTelegramClient.telegram_config()

    assert config.connect_timeout == 15
    assert config.max_flood_wait == 300
    assert config.max_command_age == 300
    assert config.link_preview is False
    assert type(config).model_fields["persist_session"].default is True


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_cancelled_start_is_cancelled_and_leaves_no_half_open_client(
    fake: FakeTelegramClient,
) -> None:
    fake.silent = True
    backend = make(fake, connect_timeout=30, session_string=fake.session_string_for(123456))

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(backend.start(), 0.1)

    assert not fake.is_connected()
    assert backend.client is None
