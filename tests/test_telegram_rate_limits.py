"""Sends are scheduled within Telegram's limits; a flood wait pauses only its chat.

The limits keep Telegram's shape on a faster clock (``time_scale``), so the suite stays
quick. Assertions are about order, counts and lower bounds (a send can be late on a
loaded machine, never early), so they do not flake.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from telegram_helpers import BackendMaker, msg
from telethon import errors

from processpype.communications.backends.telegram import (
    TelegramCommunicator,
    TelegramRateLimits,
)
from processpype.testing.telegram import FakeTelegramClient

GROUP = -1001234567890
OTHER_GROUP = -1002222222222
PRIVATE = 42
CHATS = {
    "default": {"chat_id": str(GROUP)},
    "other": {"chat_id": str(OTHER_GROUP)},
    "ops": {"chat_id": str(PRIVATE)},
}
# Telegram's limits, 50 times faster: 1 message / 20 ms per chat, 20 per 1.2 s per
# group, 30 per 20 ms across chats.
LIMITS = TelegramRateLimits(time_scale=0.02)
# For scripted flood waits: sends barely limited, flood waits on a clock of our choice.
UNLIMITED = TelegramRateLimits(
    per_chat_per_second=1000.0, per_group_per_minute=100_000, global_per_second=10_000.0
)


@pytest.fixture
def fake() -> FakeTelegramClient:
    return FakeTelegramClient(enforce_rate_limits=True, rate_limits=LIMITS)


@pytest_asyncio.fixture
async def make_backend(fake: FakeTelegramClient) -> AsyncIterator[BackendMaker]:
    defaults = {"chats": CHATS, "retry_base_delay": 0.01}
    async with BackendMaker(fake, defaults, limits=LIMITS) as make:
        yield make


@pytest.mark.asyncio
async def test_messages_to_one_chat_are_spaced_by_the_per_chat_limit(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    for n in range(8):
        await backend.send(msg(f"m{n}", label="ops"))
    assert await backend.flush(timeout=10)

    times = [m.time for m in fake.sent]
    assert len(times) == 8
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= LIMITS.chat_interval - fake.rate_limit_tolerance
    assert fake.flood_waits == 0


@pytest.mark.asyncio
async def test_a_group_gets_no_more_than_its_per_minute_limit_in_one_window(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    count, window = LIMITS.group_window

    for n in range(count + 3):
        await backend.send(msg(f"m{n}"))
    assert await backend.flush(timeout=10)

    times = [m.time for m in fake.sent]
    assert len(times) == count + 3
    assert times[count] - times[0] >= window - fake.rate_limit_tolerance
    assert fake.flood_waits == 0


@pytest.mark.asyncio
async def test_many_chats_share_the_global_limit_without_a_flood_wait(
    fake: FakeTelegramClient,
) -> None:
    # 40 private chats, 3 messages each: 120 sends, at most 30 per global window.
    chats = {f"c{n}": {"chat_id": str(1000 + n)} for n in range(40)}
    config = fake.telegram_config(chats={"default": chats["c0"], **chats})
    backend = TelegramCommunicator(
        "tg", config, client_factory=fake.as_client_factory(), rate_limits=LIMITS
    )
    await backend.start()
    try:
        for round_ in range(3):
            for label in chats:
                await backend.send(msg(f"{label}-{round_}", label=label))
        assert await backend.flush(timeout=10)
    finally:
        await backend.stop()

    times = sorted(m.time for m in fake.sent)
    count, window = LIMITS.global_window
    assert len(times) == 120
    assert all(
        later - earlier >= window - fake.rate_limit_tolerance
        for earlier, later in zip(times, times[count:], strict=False)
    )
    assert fake.flood_waits == 0


@pytest.mark.asyncio
async def test_flood_wait_pauses_only_that_chat(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    fake.enforce_rate_limits = False
    # 6 s: telethon forgets waits of 3 s or less, and remembers this one for every
    # chat (the fake does too); on a clock 20 times faster it lasts 0.3 s.
    backend = await make_backend(limits=UNLIMITED.scaled(0.05))
    fake.fail_next(errors.FloodWaitError(request=None, capture=6), chat=GROUP)

    flooded = asyncio.ensure_future(backend.deliver(msg("to the flooded group")))
    others = [await backend.deliver(msg(f"other {n}", label="other")) for n in range(3)]
    result = await flooded

    assert [r.status for r in [*others, result]] == ["delivered"] * 4
    assert fake.texts == ["other 0", "other 1", "other 2", "to the flooded group"]
    assert [failure.chat for failure in fake.errors] == [GROUP]  # none refused locally


@pytest.mark.asyncio
async def test_flood_wait_lasts_the_seconds_telegram_named(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    fake.enforce_rate_limits = False
    backend = await make_backend(limits=UNLIMITED.scaled(0.1))
    fake.fail_next(errors.FloodWaitError(request=None, capture=3))

    result = await backend.deliver(msg("after the wait"))

    [flood] = fake.errors
    assert isinstance(flood.error, errors.FloodWaitError)
    assert result.status == "delivered"
    # 3 Telegram seconds on a clock 10 times faster: at least 0.3 s later.
    assert fake.sent[0].time - flood.time >= 0.3


@pytest.mark.asyncio
async def test_flood_waits_do_not_spend_attempts(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    fake.enforce_rate_limits = False
    backend = await make_backend(limits=UNLIMITED.scaled(0.001), max_attempts=1)
    fake.fail_next(errors.FloodWaitError(request=None, capture=1), count=3)

    result = await backend.deliver(msg("eventually"))

    assert (result.status, result.attempts) == ("delivered", 1)
    assert len(fake.errors) == 3


@pytest.mark.asyncio
async def test_slow_mode_wait_is_honoured_like_a_flood_wait(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    fake.enforce_rate_limits = False
    backend = await make_backend(limits=UNLIMITED.scaled(0.001), max_attempts=1)
    fake.fail_next(errors.SlowModeWaitError(request=None, capture=2))

    result = await backend.deliver(msg("slow mode"))

    assert (result.status, result.attempts) == ("delivered", 1)


def test_limits_from_config_follow_the_config_fields() -> None:
    config = FakeTelegramClient.telegram_config(
        per_chat_per_second=2.0, per_group_per_minute=10, global_per_second=45.5
    )

    limits = TelegramRateLimits.from_config(config)

    assert limits.chat_interval == 0.5
    assert limits.group_window == (10, 60.0)
    count, window = limits.global_window
    assert count == 45
    assert window == pytest.approx(45 / 45.5)


def test_drain_time_of_a_group_waits_for_the_next_window() -> None:
    limits = TelegramRateLimits()

    assert limits.drain_time(20, grouped=True) == 19.0
    assert limits.drain_time(21, grouped=True) == 60.0
    assert limits.drain_time(21, grouped=False) == 20.0
