"""Telegram's send limits as sliding windows (shared by the backend and the fake client).

Telegram documents about 1 message per second in one chat, 20 messages per minute in
one group and about 30 messages per second across all chats of a bot. Each limit is a
sliding window "at most ``count`` sends in any ``window`` seconds"; the backend
schedules within them and ``FakeTelegramClient`` enforces the very same windows.
``forget_flood_memory`` clears the flood wait telethon stores per request type, which
the backend schedules around per chat instead.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from processpype.config.models import TelegramCommunicatorConfig

__all__ = [
    "SendLimiter",
    "SlidingWindow",
    "TelegramRateLimits",
    "forget_flood_memory",
    "is_grouped",
]

ChatKind = Literal["private", "group", "channel"]


@dataclass(frozen=True)
class TelegramRateLimits:
    """The limits one bot sends within; ``time_scale`` < 1 runs Telegram's clock faster.

    ``time_scale`` multiplies every window and every flood wait, so a benchmark or a
    test can run the real shape of the limits in a fraction of the time.
    """

    per_chat_per_second: float = 1.0
    per_group_per_minute: int = 20
    global_per_second: float = 30.0
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        for field in ("per_chat_per_second", "global_per_second", "time_scale"):
            value = getattr(self, field)
            if not value > 0 or math.isinf(value):
                raise ValueError(f"{field} must be a positive number, got {value!r}")
        if self.per_group_per_minute < 1:
            raise ValueError(
                f"per_group_per_minute must be at least 1, got {self.per_group_per_minute!r}"
            )

    @classmethod
    def from_config(cls, config: TelegramCommunicatorConfig) -> TelegramRateLimits:
        """The limits a backend config asks for."""
        return cls(
            per_chat_per_second=config.per_chat_per_second,
            per_group_per_minute=config.per_group_per_minute,
            global_per_second=config.global_per_second,
        )

    def scaled(self, time_scale: float) -> TelegramRateLimits:
        """The same limits on a clock running ``1 / time_scale`` times faster."""
        return replace(self, time_scale=time_scale)

    @property
    def chat_interval(self) -> float:
        """Seconds between two messages in one chat."""
        return self.time_scale / self.per_chat_per_second

    @property
    def group_window(self) -> tuple[int, float]:
        """(messages, seconds) allowed in one group."""
        return self.per_group_per_minute, 60.0 * self.time_scale

    @property
    def global_window(self) -> tuple[int, float]:
        """(messages, seconds) allowed across every chat."""
        count = max(1, math.floor(self.global_per_second))
        return count, count / self.global_per_second * self.time_scale

    def chat_windows(self, grouped: bool) -> list[SlidingWindow]:
        """Fresh windows that one chat's sends must fit (per chat, and per group)."""
        windows = [SlidingWindow(1, self.chat_interval)]
        if grouped:
            windows.append(SlidingWindow(*self.group_window))
        return windows

    def new_global_window(self) -> SlidingWindow:
        """A fresh window for every send of one bot."""
        return SlidingWindow(*self.global_window)

    def drain_time(self, messages: int, grouped: bool) -> float:
        """Least time from the first to the last of ``messages`` sends in one idle chat."""
        if messages <= 1:
            return 0.0
        times: deque[float] = deque(maxlen=self.per_group_per_minute)
        count, window = self.group_window
        last = -math.inf
        for _ in range(messages):
            at = max(0.0, last + self.chat_interval)
            if grouped and len(times) == count:
                at = max(at, times[0] + window)
            times.append(at)
            last = at
        return last


class SendLimiter(Protocol):
    """Windows kept outside the process (e.g. in Redis), checked before each request."""

    async def acquire(self, chat: int | str, grouped: bool) -> None:
        """Wait until one more send to ``chat`` fits, and count it."""
        ...


class SlidingWindow:
    """At most ``count`` events in any ``window`` seconds."""

    __slots__ = ("count", "times", "window")

    def __init__(self, count: int, window: float) -> None:
        self.count = count
        self.window = window
        self.times: deque[float] = deque(maxlen=count)

    def ready_at(self) -> float:
        """The earliest time the next event fits (-inf when it fits at once)."""
        if len(self.times) < self.count:
            return -math.inf
        return self.times[0] + self.window

    def record(self, at: float) -> None:
        """Count an event that happened at ``at``."""
        self.times.append(at)

    def restamp_last(self, at: float) -> None:
        """Move the latest event to ``at`` when that is later (a surer reading)."""
        if self.times and self.times[-1] < at:
            self.times[-1] = at


def is_grouped(entity: int | str, kind: ChatKind | None = None) -> bool:
    """True when the per-group limit applies to a chat.

    ``kind`` wins when given; otherwise negative ids are groups or channels, positive
    ids private chats, and an ``@username`` counts as a group (the stricter choice).
    """
    if kind is not None:
        return kind != "private"
    if isinstance(entity, int):
        return entity < 0
    return True


def forget_flood_memory(client: Any, exc: BaseException) -> None:
    """Make telethon forget the flood wait it just stored for this request type.

    telethon keeps ``_flood_waited_requests[request.CONSTRUCTOR_ID]`` and refuses every
    later request of that type (``send_message`` to *any* chat) until the wait ends.
    Telegram's flood waits concern one chat (or the bot, which the queue sees when a
    second chat gets one): the queue schedules around them, so the memory must go.
    """
    memory = getattr(client, "_flood_waited_requests", None)
    request = getattr(exc, "request", None)
    constructor = getattr(request, "CONSTRUCTOR_ID", None)
    if isinstance(memory, dict) and constructor is not None:
        memory.pop(constructor, None)
