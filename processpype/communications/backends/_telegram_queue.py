"""The Telegram backend's send queue: one lane per chat, scheduled within the rate limits.

A queued message (a ``Job``) holds the chunks of one ``OutgoingMessage`` for one chat.
Each chat is a lane: its jobs go out in order, one chunk at a time, so one message's
chunks are never interleaved with another's. A scheduler task starts the next chunk of
every lane whose windows allow it (per chat, per group) while the bot-wide window has
room, giving the slot to the lane with the most work left. A flood wait or a retry
delay pauses only its lane; a flood wait that reaches a second chat while the first
chat's wait runs is taken as bot-wide and pauses every lane. A flood wait longer than
``max_flood_wait`` fails the messages it would hold. Every job carries its outcome (a
``DeliveryResult``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from processpype.communications.backends._retry import backoff_delay
from processpype.communications.backends._telegram_limits import (
    SlidingWindow,
    TelegramRateLimits,
)
from processpype.communications.backends._telegram_text import Chunk
from processpype.communications.delivery import DeliveryResult
from processpype.foundation.errors import QueueFullError, SendError
from processpype.foundation.models import OutgoingMessage

__all__ = ["ChatTarget", "Job", "SendFailure", "SendQueue"]

logger = logging.getLogger("processpype.communications.telegram")

_TIMER_RESOLUTION = 0.002


@dataclass(frozen=True)
class ChatTarget:
    """Where a message goes: the chat (lane key), its topic, and its rate-limit class."""

    entity: int | str
    label: str
    topic_id: int | None = None
    grouped: bool = False

    @property
    def key(self) -> int | str:
        """The lane of this chat (usernames are case-insensitive)."""
        return self.entity.lower() if isinstance(self.entity, str) else self.entity

    def describe(self) -> str:
        """The chat as log lines and errors name it."""
        topic = f" topic {self.topic_id}" if self.topic_id is not None else ""
        return f"chat {self.entity}{topic} (label {self.label!r})"


@dataclass(frozen=True)
class SendFailure:
    """What a failed send means: pause the chat (flood), retry, or give up (fatal)."""

    kind: Literal["flood", "retry", "fatal"]
    reason: str
    delay: float = 0.0


class Job:
    """One outgoing message on its way to one chat, with its outcome."""

    __slots__ = (
        "chunk_tries",
        "chunks",
        "error",
        "message",
        "next_chunk",
        "outcome",
        "target",
        "warnings",
    )

    def __init__(
        self,
        message: OutgoingMessage,
        target: ChatTarget,
        chunks: list[Chunk],
        outcome: asyncio.Future[DeliveryResult],
    ) -> None:
        self.message = message
        self.target = target
        self.chunks = chunks
        self.outcome = outcome
        self.next_chunk = 0
        self.chunk_tries: list[int] = [0] * len(chunks)
        self.error: SendError | None = None
        self.warnings: tuple[str, ...] = ()
        """What of the message will not reach the chat (text cut at ``max_parts``); the
        outcome carries them."""

    @property
    def attempts(self) -> int:
        """Tries of the chunk that needed the most (flood waits not counted)."""
        return max(self.chunk_tries, default=0)

    @property
    def remaining(self) -> int:
        """Chunks not sent yet."""
        return len(self.chunks) - self.next_chunk


class _Lane:
    __slots__ = (
        "busy",
        "flood_until",
        "grouped",
        "jobs",
        "key",
        "paused_until",
        "remaining",
        "windows",
    )

    def __init__(self, key: int | str, grouped: bool, limits: TelegramRateLimits) -> None:
        self.key = key
        self.grouped = grouped
        self.jobs: deque[Job] = deque()
        self.windows: list[SlidingWindow] = limits.chat_windows(grouped)
        self.paused_until = -math.inf
        self.flood_until = -math.inf  # the end of this chat's last flood wait
        self.busy = False
        self.remaining = 0

    def ready_at(self, bot_paused_until: float) -> float:
        return max(self.paused_until, bot_paused_until, *(w.ready_at() for w in self.windows))


ChunkSender = Callable[[Job, Chunk], Awaitable[None]]
FailureClassifier = Callable[[BaseException], SendFailure]


class SendQueue:
    """Bounded queue of Telegram sends with per-chat lanes, rate limits and retries."""

    def __init__(
        self,
        name: str,
        *,
        limits: TelegramRateLimits,
        max_size: int,
        send_chunk: ChunkSender,
        classify: FailureClassifier,
        max_attempts: int,
        retry_base_delay: float,
        max_flood_wait: float = math.inf,
    ) -> None:
        self._name = name
        # In the limits' clock, like the flood delays the classifier hands back.
        self._max_flood_wait = max_flood_wait * limits.time_scale
        self._max_flood_seconds = max_flood_wait
        self._bot_paused_until = -math.inf  # a bot-wide flood wait pauses every lane
        self._limits = limits
        self._max_size = max_size
        self._send_chunk = send_chunk
        self._classify = classify
        self._max_attempts = max_attempts
        self._retry_base_delay = retry_base_delay
        self._lanes: dict[int | str, _Lane] = {}
        self._global = limits.new_global_window()
        self._admitted = 0
        self._waiting: deque[tuple[Job, asyncio.Future[None]]] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._closed = False
        self._scheduler: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        group_count, group_window = limits.group_window
        self._group_count = group_count
        self._group_window = group_window

    # -- admission ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages queued or waiting for room, not finished yet."""
        return self._admitted + len(self._waiting)

    def start(self) -> None:
        """Start the scheduler task on the running loop."""
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop().create_task(
                self._run(), name=f"processpype-telegram-{self._name}"
            )
            self._scheduler.add_done_callback(self._scheduler_done)

    def _scheduler_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        logger.error(
            "%s: the Telegram send scheduler stopped unexpectedly",
            self._name,
            exc_info=task.exception(),
        )
        # Nothing would send what is queued: give every message its outcome now.
        self._closed = True
        self._fail_pending("the send scheduler stopped unexpectedly")

    async def put(self, job: Job, timeout: float | None) -> None:
        """Queue ``job``; when full, wait up to ``timeout`` for room, then raise.

        The job's place in the order is fixed before this first waits.
        """
        if self._closed:
            raise SendError(
                f"{self._name}: the backend is stopping", backend=self._name, attempts=0
            )
        if not self._waiting and self._admitted < self._max_size:
            self._admit(job)
            return
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (job, ticket)
        self._waiting.append(entry)
        self._idle.clear()
        try:
            async with asyncio.timeout(timeout):
                await ticket
        except TimeoutError:
            if ticket.done() and not ticket.cancelled():
                ticket.result()  # admitted as time ran out (or refused at close)
                return
            self._forget_waiter(entry)
            raise QueueFullError(
                f"{self._name}: the send queue stayed full ({self._max_size} messages) "
                f"for {timeout}s; raise max_queue_size or send_timeout",
                backend=self._name,
                attempts=0,
            ) from None
        except asyncio.CancelledError:
            if not (ticket.done() and not ticket.cancelled()):
                self._forget_waiter(entry)
            raise

    def _forget_waiter(self, entry: tuple[Job, asyncio.Future[None]]) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(entry)
        self._update_idle()

    def _admit(self, job: Job) -> None:
        lane = self._lanes.get(job.target.key)
        if lane is None:
            lane = self._lanes[job.target.key] = _Lane(
                job.target.key, job.target.grouped, self._limits
            )
        lane.jobs.append(job)
        lane.remaining += job.remaining
        self._admitted += 1
        self._idle.clear()
        self._wake.set()

    def _admit_waiters(self) -> None:
        while self._waiting and self._admitted < self._max_size:
            job, ticket = self._waiting.popleft()
            if ticket.done():  # its sender gave up waiting
                continue
            self._admit(job)
            ticket.set_result(None)

    def _update_idle(self) -> None:
        if self._admitted == 0 and not self._waiting:
            self._idle.set()

    def _finish(self, job: Job, result: DeliveryResult) -> None:
        if job.warnings:
            result = result.model_copy(update={"warnings": (*result.warnings, *job.warnings)})
        if not job.outcome.done():
            job.outcome.set_result(result)
        self._admitted -= 1
        self._admit_waiters()
        self._update_idle()

    # -- draining -------------------------------------------------------------------

    async def join(self, timeout: float | None = None) -> bool:
        """Wait until every message has an outcome; False when ``timeout`` ran out."""
        if self._idle.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float | None) -> int:
        """Refuse new messages, drain for up to ``timeout``, fail the rest; return how many."""
        self._closed = True
        await self.join(timeout)
        tasks = [t for t in (self._scheduler, *self._sends) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._scheduler = None
        return self._fail_pending("the backend stopped")

    def _fail_pending(self, why: str) -> int:
        """Give every message without an outcome a failed one; return how many."""
        failed = 0
        while self._waiting:
            _, ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_exception(
                    SendError(
                        f"{self._name}: {why} before the message was queued",
                        backend=self._name,
                        attempts=0,
                    )
                )
                failed += 1
        for lane in self._lanes.values():
            while lane.jobs:
                job = lane.jobs.popleft()
                sent = job.next_chunk
                detail = f" ({sent} of {len(job.chunks)} parts were sent)" if sent else ""
                self._fail(job, f"{why} before the message was sent{detail}", log=False)
                failed += 1
            lane.remaining = 0
        self._update_idle()
        return failed

    # -- scheduling -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            delay = self._dispatch_ready()
            if delay is None:
                await self._wake.wait()
            elif delay <= _TIMER_RESOLUTION:
                # The loop's timers wake up to a millisecond late (epoll): for a slot
                # due sooner than that, yield instead, and take it the moment it frees.
                await asyncio.sleep(0)
            else:
                try:
                    async with asyncio.timeout(delay - _TIMER_RESOLUTION):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    def _dispatch_ready(self) -> float | None:
        """Start every send the limits allow now; return seconds until the next may."""
        now = time.monotonic()
        next_at = math.inf
        ready: list[_Lane] = []
        for lane in self._lanes.values():
            if lane.busy or not lane.jobs:
                continue
            flood_left = max(lane.flood_until, self._bot_paused_until) - now
            if flood_left > self._max_flood_wait:
                self._fail_flooded(lane, flood_left)
                continue
            at = lane.ready_at(self._bot_paused_until)
            if at <= now:
                ready.append(lane)
            else:
                next_at = min(next_at, at)
        if ready:
            ready.sort(key=self._critical_path, reverse=True)
            for lane in ready:
                # Each send is stamped with its own clock reading, taken in the step
                # that sends it, so the stamp matches when Telegram sees the request.
                sent_at = time.monotonic()
                at = self._global.ready_at()
                if at > sent_at:
                    next_at = min(next_at, at)
                    break
                self._start_send(lane, sent_at)
        if next_at == math.inf:
            return None
        return max(next_at - time.monotonic(), 0.0)

    def _critical_path(self, lane: _Lane) -> float:
        """Least time this lane still needs on its own: the busiest chat goes first."""
        rest = lane.remaining - 1
        interval = self._limits.chat_interval
        if not lane.grouped:
            return rest * interval
        windows, within = divmod(rest, self._group_count)
        return max(rest * interval, windows * self._group_window + within * interval)

    def _start_send(self, lane: _Lane, now: float) -> None:
        job = lane.jobs[0]
        index = job.next_chunk
        lane.busy = True
        for window in lane.windows:
            window.record(now)
        self._global.record(now)
        job.chunk_tries[index] += 1
        # Eager start: the request leaves in this very step, not a loop turn later.
        task = asyncio.Task(
            self._send(lane, job, index), loop=asyncio.get_running_loop(), eager_start=True
        )
        # It has left by now: stamp it with this reading, never earlier than the real
        # send even if the process was paused in between (a GC pass, a busy machine).
        left_at = time.monotonic()
        for window in (*lane.windows, self._global):
            window.restamp_last(left_at)
        if not task.done():
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send(self, lane: _Lane, job: Job, index: int) -> None:
        try:
            await self._send_chunk(job, job.chunks[index])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_failure(lane, job, index, exc)
        else:
            job.next_chunk += 1
            lane.remaining -= 1
            if job.next_chunk == len(job.chunks):
                lane.jobs.popleft()
                self._finish(job, DeliveryResult.delivered(self._name, attempts=job.attempts))
        finally:
            lane.busy = False
            self._wake.set()

    def _on_failure(self, lane: _Lane, job: Job, index: int, exc: BaseException) -> None:
        failure = self._classify(exc)
        now = time.monotonic()
        where = job.target.describe()
        part = f" (part {index + 1} of {len(job.chunks)})" if len(job.chunks) > 1 else ""
        if failure.kind == "flood":
            job.chunk_tries[index] -= 1  # a flood wait does not spend an attempt
            self._on_flood(lane, job, now, failure.delay)
            return
        tries = job.chunk_tries[index]
        if failure.kind == "retry" and tries < self._max_attempts:
            delay = backoff_delay(tries, self._retry_base_delay)
            lane.paused_until = max(lane.paused_until, now + delay)
            logger.warning(
                "%s: sending to %s failed%s, try %d of %d; retrying in %.1fs: %s",
                self._name,
                where,
                part,
                tries,
                self._max_attempts,
                delay,
                failure.reason,
            )
            return
        lane.jobs.popleft()
        lane.remaining -= job.remaining
        sent = f"; {index} of {len(job.chunks)} parts were sent" if index else ""
        give_up = "gave up" if failure.kind == "fatal" else "no tries left"
        self._fail(
            job,
            f"sending to {where} failed{part} after {tries} attempt(s) ({give_up}{sent}): "
            f"{failure.reason}",
            permanent=failure.kind == "fatal",
        )

    def _seconds(self, delay: float) -> float:
        """A delay of the limits' clock in Telegram's seconds."""
        return delay / self._limits.time_scale

    def _on_flood(self, lane: _Lane, job: Job, now: float, delay: float) -> None:
        until = now + delay
        where = job.target.describe()
        # Chats under a flood wait of their own; one too long to wait out (failed, not
        # held) says nothing about the bot as a whole and must not stretch its pause.
        others = [
            other
            for other in self._lanes.values()
            if other is not lane and now < other.flood_until <= now + self._max_flood_wait
        ]
        lane.flood_until = max(lane.flood_until, until)
        lane.paused_until = max(lane.paused_until, until)
        if delay > self._max_flood_wait:
            return  # the dispatcher fails what this wait would hold (_fail_flooded)
        if others:
            # A second chat flooded inside the first one's window: the bot as a whole
            # is over its limit. Pause every chat until both waits have ended.
            self._bot_paused_until = max(
                self._bot_paused_until, until, *(other.flood_until for other in others)
            )
            logger.warning(
                "%s: Telegram asked to wait %.0f s before sending more to %s while another "
                "chat's flood wait runs; taken as bot-wide: every chat pauses for %.0f s",
                self._name,
                self._seconds(delay),
                where,
                self._seconds(self._bot_paused_until - now),
            )
            return
        logger.warning(
            "%s: Telegram asked to wait %.0f s before sending more to %s; that chat "
            "pauses, the others go on",
            self._name,
            self._seconds(delay),
            where,
        )

    def _fail_flooded(self, lane: _Lane, left: float) -> None:
        """Fail every message of ``lane``: its flood wait is longer than max_flood_wait."""
        while lane.jobs:
            job = lane.jobs.popleft()
            sent = job.next_chunk
            detail = f"; {sent} of {len(job.chunks)} parts were sent" if sent else ""
            self._fail(
                job,
                f"not sent to {job.target.describe()}: Telegram asks to wait "
                f"{self._seconds(left):.0f} s before sending more, longer than "
                f"max_flood_wait={self._max_flood_seconds:g}s{detail}",
            )
        lane.remaining = 0

    def _fail(self, job: Job, reason: str, *, permanent: bool = False, log: bool = True) -> None:
        error = SendError(
            f"{self._name}: {reason}",
            backend=self._name,
            attempts=job.attempts,
            permanent=permanent,
        )
        job.error = error
        if log:
            logger.error("%s", error)
        self._finish(job, DeliveryResult.failed(self._name, error, attempts=job.attempts))
