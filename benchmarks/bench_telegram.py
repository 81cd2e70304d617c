"""Telegram pacing: M messages across K chats against a fake that enforces the limits.

``FakeTelegramClient(enforce_rate_limits=True)`` answers ``FloodWaitError`` to any send
that breaks Telegram's limits (1 message/s per chat, 20/min per group, 30/s per bot).
Both the backend and the fake run those limits on a clock ``1 / time_scale`` times
faster, so a minute of Telegram time takes a few seconds; every figure is reported in
Telegram seconds.

The minimum is computed from the same limits: the longest of (a) each chat on its own,
sent as early as its per-chat and per-group windows allow, and (b) every message
through the bot-wide window. Target: completion within 1.1x that minimum and no flood
wait. Beside it, a fixed-pacing sender (one message every 0.1 s, honouring the flood
waits it meets, as simple senders do) sends the same messages in the same order.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from telethon import errors

from benchmarks._common import Row, Sample, print_rows
from processpype.communications.backends.telegram import (
    TelegramCommunicator,
    TelegramRateLimits,
)
from processpype.communications.models import OutgoingMessage
from processpype.testing.telegram import FakeTelegramClient

FIXED_PACING = 0.1  # seconds between two messages of the fixed-pacing sender
TOKEN = "123456:BENCH-token"


@dataclass(frozen=True)
class Scenario:
    """Who gets how many messages, and how fast Telegram's clock runs."""

    name: str
    private_chats: int
    group_chats: int
    per_chat: int
    time_scale: float
    repeats: int

    @property
    def chats(self) -> dict[str, int]:
        """Label -> marked chat id (positive: private, -100...: group)."""
        chats = {f"p{n}": 10_000 + n for n in range(self.private_chats)}
        chats.update({f"g{n}": -1_001_000_000_000 - n for n in range(self.group_chats)})
        return chats

    @property
    def total(self) -> int:
        """Messages sent in one run."""
        return (self.private_chats + self.group_chats) * self.per_chat

    @property
    def limits(self) -> TelegramRateLimits:
        """Telegram's documented limits on this scenario's clock."""
        return TelegramRateLimits(time_scale=self.time_scale)

    def order(self) -> list[str]:
        """Labels in sending order: every chat's messages, shuffled (bursty, reproducible)."""
        labels = [label for label in self.chats for _ in range(self.per_chat)]
        random.Random(7).shuffle(labels)
        return labels

    def minimum(self) -> float:
        """Least completion time the limits allow (seconds on the scaled clock)."""
        limits = self.limits
        slowest_chat = max(
            (
                limits.drain_time(self.per_chat, grouped=chat_id < 0)
                for chat_id in self.chats.values()
            ),
            default=0.0,
        )
        count, window = limits.global_window
        bot_wide = (self.total - 1) // count * window
        return max(slowest_chat, bot_wide)


SCENARIOS = {
    "tiny": [
        Scenario("private and group chats", 2, 2, 25, 1 / 60, 1),
        Scenario("many private chats (bot-wide limit)", 40, 0, 4, 1 / 30, 1),
    ],
    "full": [
        Scenario("private and group chats", 20, 20, 30, 1 / 20, 3),
        Scenario("many private chats (bot-wide limit)", 100, 0, 5, 1 / 20, 3),
    ],
}


def _fake(scenario: Scenario) -> FakeTelegramClient:
    return FakeTelegramClient(enforce_rate_limits=True, rate_limits=scenario.limits)


async def _ours(scenario: Scenario) -> tuple[float, int]:
    """Completion time (scaled seconds) and flood waits of the backend."""
    fake = _fake(scenario)
    config = FakeTelegramClient.telegram_config(
        token=TOKEN,
        chats={
            "default": {"chat_id": str(next(iter(scenario.chats.values())))},
            **{label: {"chat_id": str(chat_id)} for label, chat_id in scenario.chats.items()},
        },
        max_queue_size=scenario.total,
        stop_timeout=60.0,
    )
    backend = TelegramCommunicator(
        "bench", config, client_factory=fake.as_client_factory(), rate_limits=scenario.limits
    )
    await backend.start()
    try:
        started = time.monotonic()
        for n, label in enumerate(scenario.order()):
            await backend.send(OutgoingMessage(message=f"alert {n}", label=label))
        if not await backend.flush(timeout=600):
            raise RuntimeError("the backend did not drain its queue")
    finally:
        await backend.stop()
    if len(fake.sent) != scenario.total:
        raise RuntimeError(f"{len(fake.sent)} of {scenario.total} messages arrived")
    return fake.sent[-1].time - started, fake.flood_waits


async def _fixed_pacing(scenario: Scenario) -> tuple[float, int]:
    """Completion time and flood waits of one message every 0.1 s, in the same order."""
    fake = _fake(scenario)
    await fake.start(bot_token=TOKEN)
    interval = FIXED_PACING * scenario.time_scale
    chats = scenario.chats
    started = time.monotonic()
    next_at = started
    for n, label in enumerate(scenario.order()):
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        while True:
            try:
                await fake.send_message(chats[label], f"alert {n}", parse_mode=None)
                break
            except errors.FloodWaitError as exc:
                await asyncio.sleep(exc.seconds * scenario.time_scale)
        next_at = max(next_at + interval, time.monotonic())
    await fake.disconnect()
    return fake.sent[-1].time - started, fake.flood_waits


def _row(scenario: Scenario) -> dict[str, Any]:
    scale = scenario.time_scale
    runs = [asyncio.run(_ours(scenario)) for _ in range(scenario.repeats)]
    ours = Sample([seconds / scale for seconds, _ in runs])
    floods = max(count for _, count in runs)
    paced_seconds, paced_floods = asyncio.run(_fixed_pacing(scenario))
    paced = paced_seconds / scale
    minimum = scenario.minimum() / scale
    ratio = ours.median / minimum
    chats = scenario.private_chats + scenario.group_chats
    return Row(
        benchmark=(
            f"Telegram {scenario.name}: {scenario.total} messages to {chats} chats "
            f"({scenario.private_chats} private, {scenario.group_chats} groups), "
            f"limits enforced (clock x{1 / scale:.0f})"
        ),
        figure=ours.median,
        unit="s to complete (Telegram time)",
        baselines={
            "minimum the limits allow (s)": minimum,
            "fixed pacing, 1 message / 0.1 s (s)": paced,
        },
        ratios={"ours/minimum": ratio, "fixed pacing/ours": paced / ours.median},
        target=(
            f"≤ 1.1x the minimum the limits allow, 0 flood waits (flood waits: ours "
            f"{floods}, fixed pacing {paced_floods})"
        ),
        met=ratio <= 1.1 and floods == 0,
        spread=ours.spread_text(),
    ).as_dict()


def run(size: str = "full") -> list[dict[str, Any]]:
    """One row per scenario: completion time against the minimum, and fixed pacing."""
    return [_row(scenario) for scenario in SCENARIOS[size]]


if __name__ == "__main__":
    print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
