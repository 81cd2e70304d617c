"""Flood waits pause what they concern: one chat, or the whole bot; too long ones fail.

Flood waits are scripted on a faster clock (``time_scale``): assertions are about order,
outcomes and lower bounds of the fake's own timestamps, so they do not flake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from telegram_helpers import BackendMaker, msg
from telethon import errors

from processpype.communications.backends.telegram import TelegramRateLimits
from processpype.testing.telegram import FakeTelegramClient

GROUP_A = -1001111111111
GROUP_B = -1002222222222
GROUP_C = -1003333333333
CHATS = {
    "default": {"chat_id": str(GROUP_A)},
    "b": {"chat_id": str(GROUP_B)},
    "c": {"chat_id": str(GROUP_C)},
}
# Limits out of the way; flood waits 20 times faster (6 Telegram seconds: 0.3 s).
FAST = TelegramRateLimits(
    per_chat_per_second=1000.0,
    per_group_per_minute=100_000,
    global_per_second=10_000.0,
    time_scale=0.05,
)


def flood(seconds: int) -> errors.FloodWaitError:
    return errors.FloodWaitError(request=None, capture=seconds)


@pytest.fixture
def fake() -> FakeTelegramClient:
    return FakeTelegramClient(rate_limits=FAST)


@pytest_asyncio.fixture
async def make_backend(fake: FakeTelegramClient) -> AsyncIterator[BackendMaker]:
    async with BackendMaker(fake, {"chats": CHATS, "retry_base_delay": 0.01}, limits=FAST) as make:
        yield make


@pytest.mark.asyncio
async def test_second_chat_flooded_inside_the_first_ones_wait_pauses_every_chat(
    make_backend: BackendMaker, fake: FakeTelegramClient, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await make_backend()
    fake.fail_next(flood(6), chat=GROUP_A)
    fake.fail_next(flood(6), chat=GROUP_B)

    first = asyncio.ensure_future(backend.deliver(msg("to A")))
    second = asyncio.ensure_future(backend.deliver(msg("to B", label="b")))
    await fake.wait_for_errors_async(2)  # both chats got their flood wait
    third = await backend.deliver(msg("to C", label="c"))
    results = [await first, await second, third]

    assert [r.status for r in results] == ["delivered"] * 3
    b_flooded_at = fake.errors[1].time
    sent_to_c = fake.sent_to(GROUP_C)[0].time
    assert sent_to_c - b_flooded_at >= 6 * FAST.time_scale  # C waited for the bot-wide pause
    assert "taken as bot-wide" in caplog.text


@pytest.mark.asyncio
async def test_single_flood_wait_does_not_pause_other_chats(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    fake.fail_next(flood(6), chat=GROUP_A)

    flooded = asyncio.ensure_future(backend.deliver(msg("to A")))
    other = await backend.deliver(msg("to C", label="c"))
    await flooded

    assert other.status == "delivered"
    assert fake.sent_to(GROUP_C)[0].time < fake.sent_to(GROUP_A)[0].time


@pytest.mark.asyncio
async def test_flood_wait_longer_than_max_flood_wait_fails_the_message_naming_the_wait(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(max_flood_wait=300)
    fake.fail_next(flood(2800), chat=GROUP_A)

    result = await backend.deliver(msg("to A"))
    later = await backend.deliver(msg("to A again"))
    other = await backend.deliver(msg("to B", label="b"))

    assert result.status == "failed"
    assert "Telegram asks to wait 2800 s" in (result.error or "")
    assert "longer than max_flood_wait=300s" in (result.error or "")
    assert result.attempts == 0  # a flood wait spends no attempt
    assert later.status == "failed"  # the chat is still under the wait: failed at once
    assert other.status == "delivered"
    assert fake.texts == ["to B"]


@pytest.mark.asyncio
async def test_flood_wait_within_max_flood_wait_is_waited_out(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(max_flood_wait=10)
    fake.fail_next(flood(6), chat=GROUP_A)

    result = await backend.deliver(msg("to A"))

    assert (result.status, result.attempts) == ("delivered", 1)


@pytest.mark.asyncio
async def test_chat_failed_for_a_too_long_wait_does_not_make_another_flood_bot_wide(
    make_backend: BackendMaker, fake: FakeTelegramClient, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await make_backend(max_flood_wait=300)
    fake.fail_next(flood(2800), chat=GROUP_A)
    fake.fail_next(flood(6), chat=GROUP_B)

    too_long = await backend.deliver(msg("to A"))
    waited = await backend.deliver(msg("to B", label="b"))
    other = await backend.deliver(msg("to C", label="c"))

    assert (too_long.status, waited.status, other.status) == ("failed", "delivered", "delivered")
    assert "bot-wide" not in caplog.text
