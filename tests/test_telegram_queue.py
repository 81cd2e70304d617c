"""Nothing silently lost: backpressure, flush, stop with a queue, outcomes of queued messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from telegram_helpers import FAST_LIMITS, BackendMaker, msg
from telethon import errors

from processpype.communications.errors import QueueFullError, SendError
from processpype.testing.telegram import FakeTelegramClient

GROUP = -1001234567890
PRIVATE = 42
FAST: dict[str, Any] = {
    **FAST_LIMITS,
    "retry_base_delay": 0.01,
    "chats": {"default": {"chat_id": str(GROUP)}, "ops": {"chat_id": str(PRIVATE)}},
}
LONG_FLOOD = errors.FloodWaitError(request=None, capture=60)


@pytest.fixture
def fake() -> FakeTelegramClient:
    return FakeTelegramClient()


@pytest_asyncio.fixture
async def make_backend(fake: FakeTelegramClient) -> AsyncIterator[BackendMaker]:
    async with BackendMaker(fake, {**FAST, "stop_timeout": 0.1}) as make:
        yield make


@pytest.mark.asyncio
async def test_full_queue_makes_send_wait_then_raise_queue_full(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(max_queue_size=2, send_timeout=0.2)
    fake.fail_next(LONG_FLOOD)  # the chat pauses for a minute: nothing leaves the queue
    await backend.send(msg("one"))
    await backend.send(msg("two"))

    with pytest.raises(QueueFullError, match=r"stayed full \(2 messages\)"):
        await backend.send(msg("three"))

    assert backend.pending == 2


@pytest.mark.asyncio
async def test_backpressure_admits_waiting_messages_in_order_as_room_frees(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(max_queue_size=1)

    results = await asyncio.gather(*(backend.deliver(msg(f"m{n}")) for n in range(6)))

    assert [r.status for r in results] == ["delivered"] * 6
    assert fake.texts == [f"m{n}" for n in range(6)]


@pytest.mark.asyncio
async def test_sender_who_gave_up_waiting_does_not_get_its_message_sent(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(max_queue_size=1, send_timeout=0.05)
    fake.latency = 0.3  # "first" holds the only place for 0.3 s
    await backend.send(msg("first"))
    with pytest.raises(QueueFullError):
        await backend.send(msg("refused"))

    assert await backend.flush(timeout=5)

    assert fake.texts == ["first"]


@pytest.mark.asyncio
async def test_flush_returns_true_once_every_message_is_sent(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    for n in range(10):
        await backend.send(msg(f"m{n}", label="ops" if n % 2 else "default"))

    assert await backend.flush(timeout=5)

    assert len(fake.sent) == 10
    assert backend.pending == 0


@pytest.mark.asyncio
async def test_flush_returns_false_when_time_runs_out(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    fake.fail_next(LONG_FLOOD)
    await backend.send(msg("stuck behind a flood wait"))

    assert not await backend.flush(timeout=0.05)


@pytest.mark.asyncio
async def test_stop_delivers_the_queue_before_disconnecting(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(stop_timeout=5.0)
    for n in range(5):
        await backend.send(msg(f"m{n}"))

    await backend.stop()

    assert fake.texts == [f"m{n}" for n in range(5)]
    assert backend.undelivered_on_stop == 0
    assert not fake.is_connected()


@pytest.mark.asyncio
async def test_stop_reports_messages_it_could_not_deliver(
    make_backend: BackendMaker, fake: FakeTelegramClient, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await make_backend(stop_timeout=0.05)
    fake.fail_next(LONG_FLOOD)
    waiting = [asyncio.ensure_future(backend.deliver(msg(f"m{n}"))) for n in range(3)]
    await asyncio.sleep(0)  # one loop step: each deliver() queues its message
    assert backend.pending == 3

    with caplog.at_level(logging.WARNING, logger="processpype.communications.telegram"):
        await backend.stop()

    assert backend.undelivered_on_stop == 3
    assert "stopped with 3 message(s) not delivered" in caplog.text
    results = await asyncio.gather(*waiting)
    assert [r.status for r in results] == ["failed"] * 3
    assert "stopped before the message was sent" in (results[0].error or "")


@pytest.mark.asyncio
async def test_cancelled_deliver_leaves_the_message_queued(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    fake.latency = 0.05

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await backend.deliver(msg("still goes out"))
    assert await backend.flush(timeout=5)

    assert fake.texts == ["still goes out"]


@pytest.mark.asyncio
async def test_send_after_stop_is_refused(make_backend: BackendMaker) -> None:
    backend = await make_backend()
    await backend.stop()

    with pytest.raises(SendError, match="not started"):
        await backend.send(msg("late"))


@pytest.mark.asyncio
async def test_backend_restarts_after_stop(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    await backend.stop()

    await backend.start()
    result = await backend.deliver(msg("again"))

    assert result.status == "delivered"
    assert fake.texts == ["again"]
