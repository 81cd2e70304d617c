"""Incoming messages with many processes: one holder of a bot's update connection.

``UpdateLease``: the processes that run a receiving backend (a Telegram bot with
``listen_to_commands``) compete for a lease in Redis (``SET NX PX``); the holder runs the
backend, renews the lease every third of ``lease_time`` and publishes what it receives
to the backend's incoming stream. When the holder dies, its lease expires and another
process takes over within ``lease_time`` (plus one poll, a tenth of it). Each message is
published once: a key per update (chat id and message id) is set with ``NX`` in the same
Lua script that appends it, so an update the new holder receives again (a catch-up
after reconnecting) is dropped.

``IncomingReader``: every Notifier reads that stream from where it stood when it
started and hands each message to its ``on_message`` handlers, once.

Known limit: an update the holder received but had not yet appended when it was killed
is not in the stream; it is recovered only if the service sends it again to the next
holder (Telegram resends updates a client has not confirmed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from processpype.communications.backends._retry import backoff_delay
from processpype.communications.base import Communicator
from processpype.communications.outbox._redis import OutboxKeys, Redis, is_unavailable
from processpype.config.outbox import OutboxConfig
from processpype.foundation.errors import describe_error
from processpype.foundation.models import IncomingMessage

__all__ = ["IncomingReader", "UpdateLease", "update_key"]

logger = logging.getLogger("processpype.communications.outbox.lease")

_SEEN_TTL = 7 * 24 * 3600
"""Seconds an update's "already published" key lives (Telegram keeps updates 24 hours)."""
_INCOMING_MAXLEN = 10_000
"""About this many incoming messages are kept (the stream has no pending entries)."""
_RETRY_BASE = 0.1
_RETRY_CAP = 5.0
_READ_BLOCK_MS = 1000

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_PUBLISH = """
if ARGV[2] ~= '' then
  if not redis.call('SET', KEYS[2] .. ARGV[2], '1', 'NX', 'EX', ARGV[3]) then
    return false
  end
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'message', ARGV[1])
"""


def update_key(message: IncomingMessage) -> str:
    """What identifies one update of a backend ("" when nothing does)."""
    metadata = message.metadata
    update = metadata.get("update_id")
    if update is not None:
        return f"u{update}"
    chat, number = metadata.get("chat_id"), metadata.get("message_id")
    if chat is not None and number is not None:
        return f"{chat}:{number}"
    return ""


def holder_name() -> str:
    """A lease holder's name: ``host-pid-tag``, the tag telling two Notifiers of a process apart."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class UpdateLease:
    """Runs ``backend`` (a receiving one) only while this process holds its lease."""

    def __init__(
        self,
        backend: Communicator,
        config: OutboxConfig,
        connect: Callable[[], Redis],
        *,
        holder: str | None = None,
    ) -> None:
        self._backend = backend
        self._config = config
        self._keys = OutboxKeys(config.name)
        self._lease_key = self._keys.lease(backend.name)
        self._stream = self._keys.incoming(backend.name)
        self._connect = connect
        self._holder = holder or holder_name()
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[IncomingMessage] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self.holding = False
        """True while this process holds the lease and runs the backend."""

    def __repr__(self) -> str:
        return f"UpdateLease(backend={self._backend.name!r}, holding={self.holding})"

    @property
    def holder(self) -> str:
        """This process's name in the lease."""
        return self._holder

    async def start(self) -> None:
        """Start competing for the lease (returns at once)."""
        if self._task is None:
            self._stopping.clear()
            loop = self._loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"lease {self._backend.name}")
            self._relay_task = loop.create_task(self._relay(), name=f"relay {self._backend.name}")

    async def stop(self) -> None:
        """Stop the backend if held, release the lease, stop competing."""
        self._stopping.set()
        tasks = [t for t in (self._task, self._relay_task) if t is not None]
        self._task = self._relay_task = None
        if tasks:
            # The run task stops the backend and releases the lease on its way out.
            # Bounded well inside a Notifier's close allowance, whatever lease_time is.
            await asyncio.wait(tasks, timeout=min(self._config.lease_time, 3.0))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def _client_now(self) -> Redis:
        if self._client is None:
            self._client = self._connect()
        return self._client

    async def _run(self) -> None:
        lease_ms = int(self._config.lease_time * 1000)
        poll = self._config.lease_time / 10
        failures = 0
        while not self._stopping.is_set():
            try:
                client = self._client_now()
                if await client.set(self._lease_key, self._holder, nx=True, px=lease_ms):
                    failures = 0
                    await self._hold(client, lease_ms)
                    continue
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if not is_unavailable(exc):
                    logger.exception("%s: update lease failed", self._backend.name)
                await self._drop_client()
                await self._pause(backoff_delay(failures, _RETRY_BASE, _RETRY_CAP))
                continue
            await self._pause(poll)

    async def _hold(self, client: Redis, lease_ms: int) -> None:
        """Run the backend until the lease is lost or the lease is stopped."""
        logger.info(
            "%s: this process (%s) holds the update connection", self._backend.name, self._holder
        )
        self.holding = True
        self._backend.set_incoming_handler(self._accept)
        renew = client.register_script(_RENEW)
        # Renewed from the moment it is won, also while the backend starts: a start
        # longer than lease_time (a slow login) must not let a second process in.
        keeper = asyncio.ensure_future(self._keep(renew, lease_ms))
        # Eager: a start that needs no wait is done before anyone sees ``holding``.
        starting = asyncio.Task(
            self._backend.start(), loop=asyncio.get_running_loop(), eager_start=True
        )
        try:
            await asyncio.wait({keeper, starting}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed start: _run logs it and competes again
            await keeper  # returns once the lease is lost or we stop
        finally:
            for task in (starting, keeper):  # the lease lost while starting, or a stop
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.holding = False
            with contextlib.suppress(Exception):
                await self._backend.stop()
            with contextlib.suppress(Exception):
                await client.register_script(_RELEASE)(keys=[self._lease_key], args=[self._holder])

    async def _keep(self, renew: Any, lease_ms: int) -> None:
        """Renew the lease every third of ``lease_time``; return once it is lost or we stop."""
        while not self._stopping.is_set():
            await self._pause(self._config.lease_time / 3)
            if self._stopping.is_set():
                return
            if not await renew(keys=[self._lease_key], args=[self._holder, lease_ms]):
                logger.warning(
                    "%s: the update lease was lost (%s); another process takes over",
                    self._backend.name,
                    self._holder,
                )
                return

    def _accept(self, message: IncomingMessage) -> None:
        """The backend's incoming handler: queue ``message`` for the relay (any thread)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._queue.put_nowait(message)
        else:
            loop.call_soon_threadsafe(self._queue.put_nowait, message)

    async def _relay(self) -> None:
        """Append what the backend received to the incoming stream, in order, once each."""
        failures = 0
        pending: IncomingMessage | None = None
        while not self._stopping.is_set() or pending is not None or not self._queue.empty():
            if pending is None:
                if self._stopping.is_set():
                    pending = self._queue.get_nowait()
                else:
                    getter = asyncio.ensure_future(self._queue.get())
                    stopper = asyncio.ensure_future(self._stopping.wait())
                    await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
                    stopper.cancel()
                    if not getter.done():
                        getter.cancel()
                        continue
                    pending = getter.result()
            try:
                client = self._client_now()
                await client.register_script(_PUBLISH)(
                    keys=[self._stream, self._keys.seen(self._backend.name)],
                    args=[
                        pending.model_dump_json(),
                        update_key(pending),
                        _SEEN_TTL,
                        _INCOMING_MAXLEN,
                    ],
                )
                pending = None
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                logger.warning(
                    "%s: could not publish an incoming message (try %d): %s",
                    self._backend.name,
                    failures,
                    describe_error(exc),
                )
                await self._drop_client()
                if self._stopping.is_set() and failures >= 3:
                    return
                await asyncio.sleep(backoff_delay(failures, _RETRY_BASE, _RETRY_CAP))

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


class IncomingReader:
    """Reads a backend's incoming stream and hands each new message to ``handler``."""

    def __init__(
        self,
        backend: str,
        config: OutboxConfig,
        connect: Callable[[], Redis],
        handler: Callable[[IncomingMessage], None],
    ) -> None:
        self._name = backend
        self._config = config
        self._stream = OutboxKeys(config.name).incoming(backend)
        self._connect = connect
        self._handler = handler
        self._task: asyncio.Task[None] | None = None
        self._last: str | None = None

    async def start(self) -> None:
        """Read from the stream's present end on (messages from now on)."""
        if self._task is None:
            client = self._connect()
            try:
                self._last = await _last_id(client, self._stream)
            except Exception as exc:
                # Redis is down: start from what arrives once it is back.
                logger.warning(
                    "%s: incoming stream not reachable yet: %s", self._name, describe_error(exc)
                )
                self._last = None
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"incoming {self._name}"
            )

    async def stop(self) -> None:
        """Stop reading."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        failures = 0
        client: Redis | None = None
        try:
            while True:
                try:
                    if client is None:
                        client = self._connect()
                        if self._last is None:
                            self._last = await _last_id(client, self._stream)
                        elif _newer(self._last, await _last_id(client, self._stream)):
                            # Redis came back without its data: the stream starts over.
                            self._last = "0-0"
                    answer = await client.xread({self._stream: self._last}, block=_READ_BLOCK_MS)
                    failures = 0
                    for _, entries in answer or ():
                        for entry_id, fields in entries:
                            self._last = str(entry_id)
                            self._deliver(fields.get("message"))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    if client is not None:
                        with contextlib.suppress(Exception):
                            await client.aclose()
                        client = None
                    if failures == 1:
                        logger.warning(
                            "%s: reading incoming messages failed: %s",
                            self._name,
                            describe_error(exc),
                        )
                    await asyncio.sleep(backoff_delay(failures, _RETRY_BASE, _RETRY_CAP))
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _deliver(self, text: Any) -> None:
        if not isinstance(text, str):
            return
        try:
            message = IncomingMessage.model_validate_json(text)
        except ValueError as exc:
            logger.error("%s: an unreadable incoming message was skipped: %s", self._name, exc)
            return
        self._handler(message)


async def _last_id(client: Redis, stream: str) -> str:
    last = await client.xrevrange(stream, count=1)
    return str(last[0][0]) if last else "0-0"


def _newer(ours: str, theirs: str) -> bool:
    """True when stream id ``ours`` is beyond ``theirs``."""
    a, _, b = ours.partition("-")
    c, _, d = theirs.partition("-")
    return (int(a), int(b or 0)) > (int(c), int(d or 0))
