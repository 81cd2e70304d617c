"""Bot-wide Telegram limits across worker processes, enforced in Redis on the server's clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from outbox_helpers import Workers, read_lines, shared_limited_backend, wait_until

from processpype.communications.backends._telegram_limits import TelegramRateLimits
from processpype.communications.notifier import Notifier
from processpype.communications.outbox._redis import connect
from processpype.communications.outbox.limiter import SharedTelegramLimiter
from processpype.config.outbox import OutboxConfig
from processpype.testing.redis import RedisTestServer

CHATS = 8
MESSAGES = 40
BOT_PER_SECOND = 20
CHAT_PER_SECOND = 4


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    group = Workers(tmp_path)
    yield group
    group.close()


def telegram_settings(url: str) -> dict[str, Any]:
    labels = [f"c{n}" for n in range(CHATS)]
    return {
        "enabled": True,
        "backends": {
            "bot": {
                "type": "telegram",
                "api_id": 12345,
                "api_hash": "0123456789abcdef0123456789abcdef",
                "token": "123456:TEST-token_for-the-fake",
                "labels": labels,
                "chats": {label: {"chat_id": str(1000 + n)} for n, label in enumerate(labels)},
                "per_chat_per_second": CHAT_PER_SECOND,
                "global_per_second": BOT_PER_SECOND,
            }
        },
        "outbox": {"url": url},
    }


def most_in_any_window(times: list[float], width: float) -> int:
    """The most sends that fall in one window of ``width`` seconds."""
    times = sorted(times)
    most = 0
    start = 0
    for end, at in enumerate(times):
        while at - times[start] >= width:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_four_workers(
    url: str, workers: Workers, out: Path, *, shared_limits: bool
) -> list[dict[str, Any]]:
    settings = telegram_settings(url)
    for number in range(4):
        workers.start(
            {
                "config": settings,
                "out": str(out),
                "kind": "telegram",
                "concurrency": 8,
                "consumer": f"w{number}",
                "shared_limits": shared_limits,
            }
        )
    # Every worker is reading before the messages arrive, so all four share them.
    db: Any = redis.Redis.from_url(url, decode_responses=True)
    wait_until(lambda: _reading(db) == 4, timeout=10, what="four workers reading")
    db.close()
    with Notifier(settings) as notifier:
        for number in range(MESSAGES):
            notifier.send_nowait(f"alert {number}", label=f"c{number % CHATS}")
        assert notifier.flush(10)
    wait_until(lambda: len(read_lines(out)) >= MESSAGES, timeout=20, what="every send")
    return read_lines(out)


def _reading(db: Any) -> int:
    """Clients blocked in XREADGROUP: workers waiting for entries.

    (On Redis 7.0 a read that returned nothing does not create the consumer, so
    XINFO CONSUMERS cannot tell.)
    """
    return sum(1 for client in db.client_list() if client.get("cmd") == "xreadgroup")


def test_four_workers_together_stay_within_the_bots_limits(
    processpype_redis: RedisTestServer, workers: Workers, tmp_path: Path
) -> None:
    sends = run_four_workers(
        processpype_redis.url, workers, tmp_path / "sends.jsonl", shared_limits=True
    )
    assert len({line["pid"] for line in sends}) > 1  # the work really was shared
    assert sorted(line["text"] for line in sends) == sorted(f"alert {n}" for n in range(MESSAGES))
    assert most_in_any_window([s["time"] for s in sends], 1.0) <= BOT_PER_SECOND
    for chat in {s["chat"] for s in sends}:
        in_chat = [s["time"] for s in sends if s["chat"] == chat]
        assert most_in_any_window(in_chat, 1.0 / CHAT_PER_SECOND) <= 1, chat


def test_per_process_limits_overshoot_the_bots_limit(
    processpype_redis: RedisTestServer, workers: Workers, tmp_path: Path
) -> None:
    # The negative control: each worker paces itself alone, as processes without the
    # outbox do; together they send more than the bot may.
    sends = run_four_workers(
        processpype_redis.url, workers, tmp_path / "sends.jsonl", shared_limits=False
    )
    assert most_in_any_window([s["time"] for s in sends], 1.0) > BOT_PER_SECOND


def test_limiter_waits_for_room_in_a_chat_shared_by_two_clients(
    processpype_redis: RedisTestServer,
) -> None:
    config = OutboxConfig.model_validate({"url": processpype_redis.url})
    limits = TelegramRateLimits(per_chat_per_second=10, global_per_second=100)

    async def scenario() -> list[float]:
        first = SharedTelegramLimiter(connect(config), config, bot="1", limits=limits)
        second = SharedTelegramLimiter(connect(config), config, bot="1", limits=limits)
        stamps: list[float] = []
        try:
            for limiter in (first, second, first, second):
                await limiter.acquire(42, False)
                stamps.append(time.monotonic())
        finally:
            await first.aclose()
            await second.aclose()
        return stamps

    stamps = asyncio.run(scenario())
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    assert all(gap >= 0.1 for gap in gaps), gaps


@pytest.mark.parametrize("grouped", [True, False])
def test_group_window_applies_only_to_groups(
    processpype_redis: RedisTestServer, grouped: bool
) -> None:
    config = OutboxConfig.model_validate({"url": processpype_redis.url})
    # 2 per "minute" on a clock 600 times faster: 2 per 0.1 s in a group.
    limits = TelegramRateLimits(
        per_chat_per_second=1000, per_group_per_minute=2, global_per_second=1000, time_scale=1 / 600
    )

    async def third_send_waits() -> float:
        limiter = SharedTelegramLimiter(connect(config), config, bot="1", limits=limits, margin=0)
        try:
            await limiter.acquire(-100, grouped)
            await limiter.acquire(-100, grouped)
            started = time.monotonic()
            await limiter.acquire(-100, grouped)
            return time.monotonic() - started
        finally:
            await limiter.aclose()

    waited = asyncio.run(third_send_waits())
    db = redis.Redis.from_url(processpype_redis.url)
    group_window = db.exists("processpype:limit:1:group:-100")
    db.close()
    if grouped:
        assert waited >= 0.05  # the third send waited for the 0.1 s group window
        assert group_window
    else:
        assert not group_window


def test_telegram_backend_asks_the_shared_limiter_before_each_request(
    processpype_redis: RedisTestServer,
) -> None:
    from processpype.communications.models import OutgoingMessage
    from processpype.testing.telegram import FakeTelegramClient

    fake = FakeTelegramClient()
    config = fake.telegram_config(
        chats={"default": {"chat_id": "-1001234567890"}, "dm": {"chat_id": "42"}},
        labels=["default", "dm"],
        per_chat_per_second=1000.0,
        global_per_second=1000.0,
    )
    outbox = OutboxConfig.model_validate({"url": processpype_redis.url})

    async def scenario() -> None:
        async with shared_limited_backend(fake, config, outbox) as backend:
            await backend.deliver(OutgoingMessage(message="to the group"))
            await backend.deliver(OutgoingMessage(message="to a person", label="dm"))

    asyncio.run(scenario())
    db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    prefix = "processpype:limit:123456:"
    assert db.zcard(prefix + "bot") == 2
    assert db.zcard(prefix + "chat:-1001234567890") == 1
    assert db.zcard(prefix + "group:-1001234567890") == 1  # a group: its window counts
    assert db.zcard(prefix + "chat:42") == 1
    assert not db.exists(prefix + "group:42")  # a private chat has no group window
    db.close()
    assert fake.texts == ["to the group", "to a person"]
