"""``OutboxWorker``: delivers the outbox's entries with the configured backends.

Every worker of an outbox reads the stream through one consumer group, so each entry
goes to one worker at a time. An entry is acknowledged only once its outcome is final:

- delivered or skipped: acknowledged (and its outcome recorded when a sender waits);
- failed: left pending with its error; after ``claim_after`` seconds a worker (this one
  or another) claims it and tries again, up to ``max_deliveries`` tries in all; then it
  moves to the dead-letter stream with its last error. A permanent failure (a refused
  recipient, an HTTP 4xx) moves there at once;
- a worker killed mid-delivery leaves the entry pending: another worker claims it after
  ``claim_after`` seconds. That delivery may have reached the service already, so the
  next one carries the same idempotency key (email ``Message-ID``, webhook
  ``Idempotency-Key``) for the receiver to drop the duplicate.

The stream is trimmed with ``XTRIM MINID`` below the oldest pending entry only: an
unacknowledged entry is never trimmed. When Redis goes away the worker logs it,
reconnects with backoff and resumes where the group left off; a delivery that finished
meanwhile is acknowledged as soon as Redis answers again (kept fresh until then), so it
is not delivered a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from processpype.communications._delivery_context import delivery_work
from processpype.communications.backends import create_communicator
from processpype.communications.backends._retry import backoff_delay
from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryResult
from processpype.communications.dispatcher import CommunicationDispatcher, severity_skip
from processpype.communications.outbox._redis import (
    GROUP,
    OutboxKeys,
    Redis,
    RedisError,
    connect,
    decode_message,
    is_unavailable,
    outcome_fields,
)
from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig
from processpype.config.outbox import OutboxConfig
from processpype.foundation.errors import SendError, describe_error
from processpype.foundation.models import OutgoingMessage

__all__ = ["OutboxWorker"]

logger = logging.getLogger("processpype.communications.outbox.worker")

_READ_BLOCK_MS = 500
"""Longest blocking read: how soon a worker notices a stop request or a claimable entry."""
_RECONNECT_BASE = 0.2
_RECONNECT_CAP = 10.0
_TRIM_EVERY = 2.0
"""Seconds between two trims of acknowledged entries."""
# KEYS: the stream. ARGV: group, consumer, entry ids. Resets the idle time of the
# entries this consumer still owns.
_TOUCH = """
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if entry[1] and entry[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  end
end
return 0
"""
_CRASHED = "a delivery was interrupted (the worker stopped or crashed mid-send)"

BackendFactory = Callable[[str, CommunicatorBackendConfig], Communicator]


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class OutboxWorker:
    """Delivers outbox entries with the backends of ``config`` until stopped.

    ``concurrency``: entries delivered at once. ``consumer``: this worker's name in the
    consumer group (default ``host-pid``). ``factory`` builds each backend (default
    ``create_communicator``); a Telegram backend never listens for commands here (the
    update lease decides who does) and takes the limiter shared through Redis, unless
    ``shared_limits=False`` (each worker then paces Telegram on its own, as separate
    processes do without an outbox: together they exceed the bot's limits).
    """

    def __init__(
        self,
        config: CommunicationsConfig,
        *,
        concurrency: int = 1,
        consumer: str | None = None,
        factory: BackendFactory = create_communicator,
        shared_limits: bool = True,
    ) -> None:
        if config.outbox is None:
            raise ValueError(
                "this config has no communications.outbox section: a worker needs one "
                "(url: redis://host:6379/0)"
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, not {concurrency!r}")
        self._config = config
        self._outbox: OutboxConfig = config.outbox
        self._keys = OutboxKeys(self._outbox.name)
        self._concurrency = concurrency
        self._consumer = consumer or _consumer_name()
        self._factory = factory
        self._shared_limits = shared_limits
        self._dispatcher = CommunicationDispatcher()
        self._limiters: list[Any] = []
        self._owed: list[tuple[str, Mapping[str, str], DeliveryResult]] = []
        self._acks: list[tuple[str, Mapping[str, str], DeliveryResult, asyncio.Future[None]]] = []
        self._ack_task: asyncio.Task[None] | None = None
        self._client: Redis | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: set[str] = set()  # ids of the entries being delivered here
        # Read blocks short enough to claim and stop in time, even with a small claim_after.
        self._block_ms = max(10, min(_READ_BLOCK_MS, int(self._outbox.claim_after * 1000 / 3)))
        self._slots: asyncio.Semaphore | None = None
        self._last_trim = 0.0
        self._last_claim = -float("inf")
        self._claim_cursor = "0-0"
        self.delivered = 0
        """Entries this worker acknowledged (delivered or skipped)."""
        self.dead_lettered = 0
        """Entries this worker moved to the dead letters."""

    def __repr__(self) -> str:
        return (
            f"OutboxWorker(url={self._outbox.display_url!r}, name={self._outbox.name!r}, "
            f"consumer={self._consumer!r}, concurrency={self._concurrency})"
        )

    @property
    def consumer(self) -> str:
        """This worker's name in the consumer group."""
        return self._consumer

    @property
    def dispatcher(self) -> CommunicationDispatcher:
        """The worker's backends."""
        return self._dispatcher

    def stop(self) -> None:
        """Ask ``run`` to finish: no new entries are read; deliveries in flight complete."""
        self._stop.set()

    # -- backends -------------------------------------------------------------------

    def _build_backends(self) -> None:
        from processpype.communications.outbox.limiter import attach_shared_limiter

        for name, backend in self._config.backends.items():
            if not backend.enabled:
                continue
            if getattr(backend, "listen_to_commands", False):
                # One process per bot holds the update connection (the lease); not this one.
                backend = backend.model_copy(update={"listen_to_commands": False})
            communicator = self._factory(name, backend)
            if self._shared_limits:
                limiter = attach_shared_limiter(communicator, self._outbox, self._connect)
                if limiter is not None:
                    self._limiters.append(limiter)
            self._dispatcher.register(communicator, list(backend.labels))

    def _connect(self) -> Redis:
        return connect(self._outbox, socket_timeout=_READ_BLOCK_MS / 1000 + 5.0, retries=0)

    # -- the run loop ---------------------------------------------------------------

    async def run(self) -> None:
        """Deliver entries until ``stop()``; reconnects to Redis with backoff when it goes away.

        A worker runs once: make a new one to run again.
        """
        if self._slots is not None:
            raise RuntimeError(f"{self!r} has already run: create a new OutboxWorker")
        self._slots = asyncio.Semaphore(self._concurrency)
        # All of it is delivery work: what the worker, its backends and Redis log (an
        # outage, a retry) never becomes a notification of a NotifierHandler.
        with delivery_work():
            await self._run()

    async def _run(self) -> None:
        self._build_backends()
        await self._dispatcher.start_all()
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat())
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    await self._serve()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not is_unavailable(exc) and not _is_nogroup(exc):
                        logger.exception("outbox worker %s: unexpected error", self._consumer)
                    failures += 1
                    delay = backoff_delay(failures, _RECONNECT_BASE, _RECONNECT_CAP)
                    logger.warning(
                        "outbox worker %s: the outbox at %s is unavailable (%s); "
                        "reconnecting in %.1fs",
                        self._consumer,
                        self._outbox.display_url,
                        describe_error(exc),
                        delay,
                    )
                    await self._drop_client()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stop.wait()
        finally:
            try:
                await self._finish()
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)

    async def _heartbeat(self) -> None:
        """Keep the entries delivered here from looking abandoned (a long send, a backlog).

        ``XCLAIM ... JUSTID`` to ourselves resets an entry's idle time without counting a
        delivery (only for entries still ours: one another worker claimed stays his); a
        worker that dies stops doing it, and its entries are claimed after ``claim_after``.
        """
        interval = self._outbox.claim_after / 3
        while True:
            await asyncio.sleep(interval)
            # Delivered entries still owed an acknowledgement stay ours too.
            client = self._client
            held = [*self._held, *(entry_id for entry_id, _, _ in self._owed)]
            if client is None or not held:
                continue
            try:
                await client.register_script(_TOUCH)(
                    keys=[self._keys.stream], args=[GROUP, self._consumer, *held]
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the run loop deals with the connection
                logger.debug("outbox worker %s: heartbeat failed: %s", self._consumer, exc)

    async def _finish(self) -> None:
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=30.0)
        await self._dispatcher.flush_all(10.0)
        await self._dispatcher.stop_all()
        if self._owed:
            await self._settle_owed_on_exit()
        for limiter in self._limiters:
            with contextlib.suppress(Exception):
                await limiter.aclose()
        self._limiters.clear()
        await self._drop_client()

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _serve(self) -> None:
        client = self._client
        if client is None:
            client = self._client = self._connect()
        await self._ensure_group(client)
        await self._pay_owed_acks(client)
        logger.info(
            "outbox worker %s reading %s at %s",
            self._consumer,
            self._keys.stream,
            self._outbox.display_url,
        )
        slots = self._slots
        assert slots is not None
        while not self._stop.is_set():
            await slots.acquire()
            slots.release()
            free = self._free_slots()
            entries = await self._claim(client, free)
            if not entries:
                answer = await client.xreadgroup(
                    GROUP,
                    self._consumer,
                    {self._keys.stream: ">"},
                    count=free,
                    block=self._block_ms,
                )
                entries = [
                    (entry_id, fields, 1) for _, items in answer or () for entry_id, fields in items
                ]
            for entry_id, fields, deliveries in entries:
                await slots.acquire()
                self._held.add(entry_id)
                task = asyncio.get_running_loop().create_task(
                    self._handle(entry_id, fields, deliveries)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._owed:  # an acknowledgement failed while reads kept working
                await self._pay_owed_acks(client)
            if time.monotonic() - self._last_trim >= _TRIM_EVERY:
                await self._trim(client)

    async def _pay_owed_acks(self, client: Redis) -> None:
        """Acknowledge what was delivered while Redis was away (unknown ids are ignored)."""
        owed, self._owed = self._owed, []
        if not owed:
            return
        try:
            pipe = client.pipeline(transaction=True)
            pipe.xack(self._keys.stream, GROUP, *(entry_id for entry_id, _, _ in owed))
            pipe.hdel(self._keys.errors, *(entry_id for entry_id, _, _ in owed))
            for _, fields, result in owed:
                self._queue_outcome(pipe, fields, result)
            await pipe.execute()
        except BaseException:
            self._owed = owed + self._owed
            raise
        logger.info(
            "outbox worker %s: acknowledged %d entries delivered while Redis was away",
            self._consumer,
            len(owed),
        )

    async def _settle_owed_on_exit(self) -> None:
        """Last try at the acknowledgements owed; what stays owed is delivered again."""
        try:
            if self._client is None:
                self._client = self._connect()
            await self._pay_owed_acks(self._client)
        except Exception as exc:
            logger.warning(
                "outbox worker %s: %d delivered entries could not be acknowledged before "
                "stopping (%s); another worker delivers them again after claim_after",
                self._consumer,
                len(self._owed),
                describe_error(exc),
            )

    def _free_slots(self) -> int:
        slots = self._slots
        assert slots is not None
        return max(1, self._concurrency - len(self._tasks))

    async def _ensure_group(self, client: Redis) -> None:
        try:
            await client.xgroup_create(self._keys.stream, GROUP, id="0", mkstream=True)
        except RedisError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim(
        self, client: Redis, count: int
    ) -> list[tuple[str, Mapping[str, str] | None, int]]:
        """Entries idle longer than ``claim_after`` (a crashed worker's, or failed ones)."""
        now = time.monotonic()
        # Looked for a few times per claim_after (at most once a second), not per read.
        if now - self._last_claim < min(1.0, self._outbox.claim_after / 4):
            return []
        self._last_claim = now
        idle_ms = int(self._outbox.claim_after * 1000)
        answer = await client.xautoclaim(
            self._keys.stream,
            GROUP,
            self._consumer,
            min_idle_time=idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        cursor, claimed = answer[0], answer[1]
        self._claim_cursor = str(cursor)
        if len(answer) > 2 and answer[2]:
            # Entries deleted while pending (trimmed by someone else's XADD MAXLEN):
            # nothing left to deliver; acknowledge so they stop being claimed.
            await client.xack(self._keys.stream, GROUP, *answer[2])
            logger.error(
                "outbox: %d pending entries were deleted from %s before delivery (was the "
                "stream trimmed by MAXLEN?): %s",
                len(answer[2]),
                self._keys.stream,
                ", ".join(map(str, answer[2][:5])),
            )
        entries: list[tuple[str, Mapping[str, str] | None, int]] = []
        for entry_id, fields in claimed:
            detail = await client.xpending_range(
                self._keys.stream, GROUP, min=entry_id, max=entry_id, count=1
            )
            deliveries = int(detail[0]["times_delivered"]) if detail else 1
            entries.append((str(entry_id), fields, deliveries))
        return entries

    # -- one entry ------------------------------------------------------------------

    async def _handle(
        self, entry_id: str, fields: Mapping[str, str] | None, deliveries: int
    ) -> None:
        slots = self._slots
        assert slots is not None
        try:
            await self._handle_entry(entry_id, fields, deliveries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Redis went away between delivering and acknowledging: the entry stays
            # pending and is delivered again after claim_after (at least once).
            if is_unavailable(exc):
                logger.warning(
                    "outbox worker %s: entry %s could not be acknowledged (%s); it will be "
                    "delivered again after claim_after",
                    self._consumer,
                    entry_id,
                    describe_error(exc),
                )
            else:
                logger.exception(
                    "outbox worker %s: entry %s: bookkeeping failed", self._consumer, entry_id
                )
        finally:
            self._held.discard(entry_id)
            slots.release()

    async def _handle_entry(
        self, entry_id: str, fields: Mapping[str, str] | None, deliveries: int
    ) -> None:
        client = self._client
        if client is None:
            return
        if not fields or "message" not in fields or "backend" not in fields:
            await self._dead_letter(client, entry_id, fields or {}, "malformed entry", deliveries)
            return
        if deliveries > self._outbox.max_deliveries:
            last_error = await client.hget(self._keys.errors, entry_id)
            await self._dead_letter(
                client, entry_id, fields, last_error or _CRASHED, deliveries - 1
            )
            return
        result, permanent = await self._deliver(fields)
        if result.status == "failed":
            error = result.error or "failed"
            if permanent or deliveries >= self._outbox.max_deliveries:
                await self._dead_letter(client, entry_id, fields, error, deliveries)
                await self._record_outcome(client, fields, result)
                return
            await client.hset(self._keys.errors, entry_id, error)
            logger.warning(
                "outbox: entry %s for %s failed (delivery %d of %d), tried again in %gs: %s",
                entry_id,
                fields["backend"],
                deliveries,
                self._outbox.max_deliveries,
                self._outbox.claim_after,
                error,
            )
            return
        try:
            await self._acknowledge(entry_id, fields, result)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # Delivered, but Redis is away: acknowledge once reconnected, so the entry
            # is not delivered a second time after claim_after.
            self._owed.append((entry_id, fields, result))
            logger.warning(
                "outbox worker %s: entry %s was delivered; Redis is unavailable (%s), it "
                "is acknowledged once Redis is back",
                self._consumer,
                entry_id,
                describe_error(exc),
            )
        self.delivered += 1

    async def _acknowledge(
        self, entry_id: str, fields: Mapping[str, str], result: DeliveryResult
    ) -> None:
        """Acknowledge a final outcome; entries finishing together share one transaction."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.append((entry_id, fields, result, future))
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(self._flush_acks())
        await future

    async def _flush_acks(self) -> None:
        await asyncio.sleep(0)  # let the other deliveries of this loop turn join in
        while self._acks:
            batch, self._acks = self._acks, []
            try:
                client = self._client
                if client is None:
                    raise ConnectionError("the outbox connection is closed")
                ids = [entry_id for entry_id, _, _, _ in batch]
                pipe = client.pipeline(transaction=True)
                pipe.xack(self._keys.stream, GROUP, *ids)
                pipe.hdel(self._keys.errors, *ids)
                for _, fields, result, _ in batch:
                    self._queue_outcome(pipe, fields, result)
                await pipe.execute()
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for *_, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _deliver(self, fields: Mapping[str, str]) -> tuple[DeliveryResult, bool]:
        """The backend's outcome, and whether a failure is permanent."""
        name = fields["backend"]
        try:
            message = decode_message(fields["message"])
        except ValueError as exc:
            return DeliveryResult.failed(name, f"the entry's message is unreadable: {exc}"), True
        communicator = self._dispatcher.get(name)
        if communicator is None:
            known = ", ".join(sorted(self._dispatcher.communicators)) or "none"
            return (
                DeliveryResult.failed(
                    name, f"this worker's config has no enabled backend {name!r} (has: {known})"
                ),
                False,
            )
        skipped = severity_skip(communicator, message)
        if skipped is not None:
            return skipped, False
        if not communicator.is_started and not await self._dispatcher.start_one(communicator):
            error = self._dispatcher.start_errors().get(name)
            why = describe_error(error) if error is not None else "unknown error"
            return DeliveryResult.failed(name, f"backend did not start: {why}", attempts=0), False
        return await _deliver_one(communicator, message)

    def _queue_outcome(self, pipe: Any, fields: Mapping[str, str], result: DeliveryResult) -> None:
        if fields.get("outcome") != "1" or not fields.get("key"):
            return
        stream = self._keys.outcome(fields["key"])
        pipe.xadd(stream, outcome_fields(result))
        pipe.expire(stream, max(1, math.ceil(self._outbox.outcome_ttl)))

    async def _record_outcome(
        self, client: Redis, fields: Mapping[str, str], result: DeliveryResult
    ) -> None:
        pipe = client.pipeline(transaction=False)
        self._queue_outcome(pipe, fields, result)
        if len(pipe):
            await pipe.execute()

    async def _dead_letter(
        self,
        client: Redis,
        entry_id: str,
        fields: Mapping[str, str],
        error: str,
        deliveries: int,
    ) -> None:
        """Move an entry to the dead letters with its last error, in one transaction."""
        dead = {
            **{k: v for k, v in fields.items() if k != "outcome"},
            "entry": entry_id,
            "error": error,
            "deliveries": str(deliveries),
            "failed_at": str(time.time()),
        }
        pipe = client.pipeline(transaction=True)
        pipe.xadd(self._keys.dead, dead)
        pipe.xack(self._keys.stream, GROUP, entry_id)
        pipe.hdel(self._keys.errors, entry_id)
        await pipe.execute()
        self.dead_lettered += 1
        logger.error(
            "outbox: entry %s for %s moved to the dead letters after %d deliveries: %s",
            entry_id,
            fields.get("backend", "?"),
            deliveries,
            error,
        )

    # -- trimming -------------------------------------------------------------------

    async def _trim(self, client: Redis) -> None:
        """Delete acknowledged entries: ``XTRIM MINID`` up to the oldest pending one."""
        self._last_trim = time.monotonic()
        # The group's last delivered id is read before the pending summary: an entry
        # another worker reads in between is then either above that id or pending, so
        # the floor never passes an entry that is still pending.
        try:
            groups = await client.xinfo_groups(self._keys.stream)
        except RedisError as exc:
            if "no such key" not in str(exc).lower():
                raise
            return  # the stream is gone: the next read (NOGROUP) creates it again
        group = next((g for g in groups if g.get("name") == GROUP), None)
        if group is None:
            return
        summary = await client.xpending(self._keys.stream, GROUP)
        if summary.get("pending"):
            floor = str(summary["min"])
        else:
            floor = str(group.get("last-delivered-id", "0-0"))
        if floor and floor != "0-0":
            # Entries below the floor are acknowledged (or never existed); the floor
            # itself is kept. Never MAXLEN: trimmed pending entries would be lost.
            await client.xtrim(self._keys.stream, minid=floor, approximate=False)


async def _deliver_one(
    communicator: Communicator, message: OutgoingMessage
) -> tuple[DeliveryResult, bool]:
    try:
        return await communicator.deliver(message), False
    except asyncio.CancelledError:
        raise
    except SendError as exc:
        return DeliveryResult.failed(communicator.name, exc, attempts=exc.attempts), exc.permanent
    except Exception as exc:
        return DeliveryResult.failed(communicator.name, exc), False


def _is_nogroup(exc: BaseException) -> bool:
    # Redis restarted without its data: the stream and group are gone; create them again.
    return isinstance(exc, RedisError) and "NOGROUP" in str(exc)
