"""The producer side of the outbox: ``OutboxProducer`` and ``QueuedCommunicator``.

A Notifier with ``communications.outbox`` registers one ``QueuedCommunicator`` per
configured backend instead of the backend itself. Its ``deliver`` appends one entry per
(message, backend) to the outbox stream and reports ``queued`` once Redis has it; a
worker process delivers it later with the real backend. Entries handed over together
go to Redis in one pipelined round trip, in the order they were handed over.

Redis unreachable: the result is ``failed`` at once with an ``OutboxUnavailableError``
naming the URL without its password, or, with ``fallback: direct``, the message is
delivered in this process by the real backend and the result says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from processpype.communications.backends import create_communicator
from processpype.communications.backends._retry import backoff_delay
from processpype.communications.base import Communicator
from processpype.communications.delivery import IDEMPOTENCY_KEY, DeliveryReport, DeliveryResult
from processpype.communications.outbox._redis import (
    OutboxKeys,
    Redis,
    connect,
    entry_fields,
    is_unavailable,
    outcome_result,
    unavailable_error,
)
from processpype.communications.outbox.lease import IncomingReader, UpdateLease
from processpype.config.models import CommunicatorBackendConfig
from processpype.config.outbox import OutboxConfig
from processpype.foundation.errors import (
    DeliveryTimeoutError,
    OutboxUnavailableError,
    SendError,
)
from processpype.foundation.models import OutgoingMessage, format_size

if TYPE_CHECKING:
    from processpype.communications.ask import Answer, Question

__all__ = ["OutboxProducer", "QueuedCommunicator"]

logger = logging.getLogger("processpype.communications.outbox")

_BLOCK_MS = 1000
"""Longest single blocking read while waiting for outcomes (the socket timeout is longer)."""
_WAIT_RETRY_BASE = 0.1
_WAIT_RETRY_CAP = 2.0
"""Pauses between reads of a waited outcome while Redis is away (seconds)."""

_LEASE_POLL = 0.05
"""Seconds between looks at the update lease while a question waits for it."""
_LEASE_WAIT_CAP = 30.0
"""Longest wait of a question for the update lease."""

BackendFactory = Callable[[str, CommunicatorBackendConfig], Communicator]


class OutboxProducer:
    """Puts messages in one outbox; shared by every ``QueuedCommunicator`` of a Notifier.

    ``prepare`` may be called from any thread; the rest runs on the Notifier's loop.
    ``receive=False``: its receiving backends neither read incoming messages nor compete
    for the update lease (a one-shot sender such as ``processpype-notify send``).
    """

    def __init__(
        self,
        config: OutboxConfig,
        *,
        factory: BackendFactory = create_communicator,
        receive: bool = True,
    ) -> None:
        self._config = config
        self._receive = receive
        self._keys = OutboxKeys(config.name)
        self._factory = factory
        self._client: Redis | None = None
        self._users = 0
        self._batch: list[tuple[Mapping[str, Any], asyncio.Future[str]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._waited: set[str] = set()
        self._down_since: float | None = None
        self._last_encoded: tuple[OutgoingMessage, str, str] | None = None

    def __repr__(self) -> str:
        return f"OutboxProducer(url={self._config.display_url!r}, name={self._config.name!r})"

    @property
    def config(self) -> OutboxConfig:
        """The outbox configuration."""
        return self._config

    @property
    def receives(self) -> bool:
        """Whether its receiving backends take part in incoming messages."""
        return self._receive

    @property
    def keys(self) -> OutboxKeys:
        """The outbox's Redis key names."""
        return self._keys

    def communicator_factory(self, name: str, config: CommunicatorBackendConfig) -> Communicator:
        """A ``QueuedCommunicator`` for backend ``name`` (a backend factory for a Notifier)."""
        return QueuedCommunicator(name, config, self)

    def create_direct(self, name: str, config: CommunicatorBackendConfig) -> Communicator:
        """The real backend ``name``, built in this process (not started)."""
        return self._factory(name, config)

    # -- ids and waiting ------------------------------------------------------------

    def prepare(self, message: OutgoingMessage, *, wait: bool = False) -> OutgoingMessage:
        """``message`` with a stable idempotency key in its metadata (a copy when added).

        With ``wait``, workers also record its outcomes for ``wait_for_outcomes``.
        """
        key = message.metadata.get(IDEMPOTENCY_KEY)
        if not isinstance(key, str) or not key:
            key = uuid.uuid4().hex
            message = message.model_copy(
                update={"metadata": {**message.metadata, IDEMPOTENCY_KEY: key}}
            )
        if wait:
            self._waited.add(key)
        return message

    async def wait_for_outcomes(
        self,
        report: DeliveryReport,
        timeout: float | None,
        *,
        shown_timeout: float | None = None,
    ) -> DeliveryReport:
        """``report`` with each ``queued`` result replaced by the worker's final outcome.

        Raises ``DeliveryTimeoutError`` naming the backends still without an outcome
        after ``timeout`` seconds (``shown_timeout``, when given, is the one it names).
        """
        key = report.message.metadata.get(IDEMPOTENCY_KEY)
        queued = {r.backend for r in report.results if r.status == "queued"}
        if not isinstance(key, str):
            return report
        if not queued:  # nothing to wait for: forget the key prepare() remembered
            self._waited.discard(key)
            return report
        outcomes: dict[str, DeliveryResult] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        stream = self._keys.outcome(key)
        last = "0"
        away: BaseException | None = None  # why the last read failed, while Redis is away
        failures = 0
        try:
            while not queued <= outcomes.keys():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if away is not None:
                        raise unavailable_error(self._config, away) from away
                    pending = sorted(queued - outcomes.keys())
                    raise DeliveryTimeoutError(
                        f"message for label {report.message.label!r} not delivered within "
                        f"{shown_timeout if shown_timeout is not None else timeout}s: "
                        f"still pending at {', '.join(pending)} (it stays in the "
                        "outbox and will still be delivered)",
                        pending=pending,
                    )
                block = _BLOCK_MS if left is None else max(1, min(_BLOCK_MS, int(left * 1000)))
                try:
                    client = await self._ensure_client()
                    answer = await client.xread({stream: last}, block=block)
                except Exception as exc:
                    if not is_unavailable(exc):
                        raise
                    # The message is queued already: a Redis restart while waiting is
                    # waited out until the deadline (reads again with backoff).
                    away, failures = exc, failures + 1
                    pause = backoff_delay(failures, _WAIT_RETRY_BASE, _WAIT_RETRY_CAP)
                    await asyncio.sleep(pause if left is None else min(pause, left))
                    continue
                away, failures = None, 0
                for _, entries in answer or ():
                    for entry_id, fields in entries:
                        last = entry_id
                        result = outcome_result(fields)
                        if result is not None:
                            outcomes[result.backend] = result
        except DeliveryTimeoutError:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable_error(self._config, exc) from exc
            raise
        finally:
            self._waited.discard(key)
        results = tuple(outcomes.get(r.backend, r) for r in report.results)
        return DeliveryReport(message=report.message, results=results)

    # -- enqueueing -----------------------------------------------------------------

    async def enqueue(self, backend: str, message: OutgoingMessage) -> str:
        """Append one entry for ``backend``; return its stream id once Redis has it."""
        key = message.metadata.get(IDEMPOTENCY_KEY)
        if not isinstance(key, str) or not key:
            key = uuid.uuid4().hex
            # Outside a Notifier (no prepare): every backend of this message shares the key.
            message.metadata[IDEMPOTENCY_KEY] = key
        last = self._last_encoded
        encoded = last[2] if last is not None and last[0] is message and last[1] == key else None
        fields = entry_fields(backend, message, key, outcome=key in self._waited, encoded=encoded)
        # The backends of one message share its JSON (one copy of its files, not one each).
        self._last_encoded = (message, key, fields["message"])
        self._check_size(backend, message, fields["message"])
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # The entry's place in the order is fixed here, before the first await.
        self._batch.append((fields, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    def _check_size(self, backend: str, message: OutgoingMessage, encoded: str) -> None:
        """Refuse an entry over ``max_entry_bytes`` (raises a permanent ``SendError``)."""
        limit = self._config.max_entry_bytes
        # Base64 text is ASCII: len() is the byte count unless the text has non-ASCII.
        size = len(encoded) if encoded.isascii() else len(encoded.encode())
        if size <= limit:
            return
        files = sum(a.size for a in message.attachments)
        why = f", {format_size(files)} of attachments" if files else ""
        raise SendError(
            f"{backend}: the message is {format_size(size)} ({size} bytes{why}) as an outbox "
            f"entry, over communications.outbox.max_entry_bytes ({format_size(limit)}, "
            f"{limit} bytes); nothing was queued",
            backend=backend,
            attempts=0,
            permanent=True,
        )

    async def _flush(self) -> None:
        # Let every delivery task created in this loop turn add its entry first.
        await asyncio.sleep(0)
        self._last_encoded = None  # a message's JSON is not kept past its batch
        while self._batch:
            batch, self._batch = self._batch, []
            try:
                ids = await self._append(batch)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                error: BaseException = (
                    unavailable_error(self._config, exc) if is_unavailable(exc) else exc
                )
                self._note_down(error)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._note_up()
            for (_, future), entry_id in zip(batch, ids, strict=True):
                if not future.done():
                    future.set_result(str(entry_id))

    async def _append(self, batch: list[tuple[Mapping[str, Any], asyncio.Future[str]]]) -> Any:
        """XADD every entry of ``batch`` in one round trip; their ids."""
        retried = self._down_since is not None
        while True:
            client = await self._ensure_client()
            pipe = client.pipeline(transaction=False)
            for fields, _ in batch:
                pipe.xadd(self._keys.stream, dict(fields))
            try:
                return await pipe.execute()
            except Exception as exc:
                # A pooled connection a restarted Redis closed fails its first command;
                # redis-py drops it, and one more try on a new connection tells a stale
                # connection from a Redis that is down (then the error stands).
                if retried or not is_unavailable(exc):
                    raise
                retried = True

    def _note_down(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.error("%s", error)

    def _note_up(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "the outbox at %s is reachable again after %.1fs",
                self._config.display_url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    async def _ensure_client(self) -> Redis:
        if self._client is None:
            self._client = connect(
                self._config, socket_timeout=max(5.0, self._config.connect_timeout + 1.0)
            )
        return self._client

    # -- lifecycle ------------------------------------------------------------------

    def acquire(self) -> None:
        """Count one more backend using this producer (its ``start``)."""
        self._users += 1

    async def release(self) -> None:
        """Count one backend less; the last one closes the Redis client."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            await asyncio.wait([flusher], timeout=self._config.connect_timeout + 1.0)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class QueuedCommunicator(Communicator):
    """Stands for one configured backend in a producer: its messages go to the outbox.

    ``deliver`` reports ``queued`` once Redis has the entry. The backend itself runs in
    the workers; with ``fallback: direct`` it is also built here, on first need, to send
    in-process while Redis cannot be reached. A receiving backend (Telegram with
    ``listen_to_commands``) runs in whichever process holds its update lease, and every
    Notifier gets its incoming messages from Redis (see ``lease``).
    """

    def __init__(
        self, name: str, config: CommunicatorBackendConfig, producer: OutboxProducer
    ) -> None:
        super().__init__(name, config)
        self._producer = producer
        self._direct: Communicator | None = None
        receiver = producer.create_direct(name, config) if producer.receives else None
        self._receiver = receiver if receiver is not None and receiver.supports_receiving else None
        self._lease: UpdateLease | None = None
        self._reader: IncomingReader | None = None

    @property
    def supports_receiving(self) -> bool:
        """True when the configured backend receives messages."""
        return self._receiver is not None

    @property
    def supports_asking(self) -> bool:
        """True when the configured backend can ask (in the holder of its update lease)."""
        return self._receiver is not None and self._receiver.supports_asking

    async def ask(self, question: Question) -> Answer | None:
        """Ask with the real backend, which runs here only while this process holds its lease.

        Button presses and replies reach only the process holding the bot's update
        connection, so the question is posted from there. Waits for the lease (up to
        ``lease_time`` plus ``connect_timeout``, at most 30 s or the question's timeout);
        raises ``RuntimeError`` when another process holds it.
        """
        receiver, lease = self._receiver, self._lease
        if receiver is None or lease is None:
            raise RuntimeError(f"{self._name}: this Notifier does not receive, so it cannot ask")
        config = self._producer.config
        # Bounded well inside the grace Notifier.ask allows beyond the question's timeout.
        deadline = time.monotonic() + min(
            question.timeout, config.lease_time + config.connect_timeout, _LEASE_WAIT_CAP
        )
        while not (lease.holding and receiver.is_started):
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{self._name}: cannot ask from this process: another process holds the "
                    "bot's update connection (the outbox's update lease), and only that one "
                    "sees button presses and replies; ask from the process that listens"
                )
            await asyncio.sleep(_LEASE_POLL)
        return await receiver.ask(question)

    @property
    def lease(self) -> UpdateLease | None:
        """The update lease of a receiving backend (None for the others, or before start)."""
        return self._lease

    def __repr__(self) -> str:
        return (
            f"QueuedCommunicator(name={self._name!r}, type={self._config.type!r}, "
            f"outbox={self._producer.config.display_url!r}, started={self._started})"
        )

    @property
    def producer(self) -> OutboxProducer:
        """The outbox producer this backend enqueues with."""
        return self._producer

    async def start(self) -> None:
        """Nothing connects here for sending: Redis is reached on the first message.

        A receiving backend starts reading incoming messages and competing for its lease.
        """
        if not self._started:
            self._producer.acquire()
            receiver = self._receiver
            if receiver is not None:
                config = self._producer.config

                def client() -> Any:
                    return connect(config, socket_timeout=config.connect_timeout + 5.0)

                self._reader = IncomingReader(self._name, config, client, self._publish_incoming)
                await self._reader.start()
                self._lease = UpdateLease(receiver, config, client)
                await self._lease.start()
        self._started = True

    async def stop(self) -> None:
        """Stop the in-process fallback backend, if one was started; release the producer."""
        was_started, self._started = self._started, False
        direct, self._direct = self._direct, None
        lease, self._lease = self._lease, None
        reader, self._reader = self._reader, None
        try:
            if lease is not None:
                await lease.stop()
            if reader is not None:
                await reader.stop()
            if direct is not None and direct.is_started:
                await direct.stop()
        finally:
            if was_started:
                await self._producer.release()

    async def send(self, message: OutgoingMessage) -> None:
        """Put ``message`` in the outbox (raises when that fails)."""
        result = await self._queue(message)
        if result.status == "failed":
            raise OutboxUnavailableError(result.error or "the outbox is unreachable")

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Report ``queued`` once Redis has the entry; fall back or fail when it cannot."""
        try:
            return await self._queue(message)
        except SendError as exc:  # too large for an entry: no worker could ever deliver it
            return DeliveryResult.failed(self._name, exc, attempts=0)

    async def _queue(self, message: OutgoingMessage) -> DeliveryResult:
        """``deliver``, raising ``SendError`` for a message too large for an entry."""
        try:
            await self._producer.enqueue(self._name, message)
        except OutboxUnavailableError as exc:
            if self._producer.config.fallback != "direct":
                return DeliveryResult.failed(self._name, exc, attempts=0)
            return await self._deliver_directly(message, exc)
        return DeliveryResult.queued(self._name)

    async def _deliver_directly(
        self, message: OutgoingMessage, why: OutboxUnavailableError
    ) -> DeliveryResult:
        direct = self._direct
        if direct is None:
            config = self._config
            if getattr(config, "listen_to_commands", False):
                # Sending only: the update connection belongs to the lease holder.
                config = config.model_copy(update={"listen_to_commands": False})
            direct = self._direct = self._producer.create_direct(self._name, config)
        note = f"sent in-process (fallback: direct): the outbox at {why.url} is unreachable"
        try:
            if not direct.is_started:
                await direct.start()
            result = await direct.deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result = DeliveryResult.failed(
                self._name, exc, attempts=getattr(exc, "attempts", 1) or 1
            )
        error = note if result.error is None else f"{result.error}; {note}"
        return result.model_copy(update={"error": error})
