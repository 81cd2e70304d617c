"""Where ``Notifier.on_message`` handlers run.

Sync handlers run on one worker thread of the notifier, in arrival order, so a slow
handler never stalls the event loop that sends messages, and a handler may block on
``Notifier.send`` to reply. Async handlers run as tasks on the notifier's loop. A
handler's exception is logged; it never stops the listener. Whether a handler is sync or
async is decided once, as it is subscribed (``IncomingHandlers.runner``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from processpype.communications._loop_thread import LoopThread
from processpype.foundation.models import IncomingMessage, OnMessageHandler

__all__ = ["IncomingHandlers", "is_async_handler"]

logger = logging.getLogger("processpype.communications.notifier")


def is_async_handler(handler: Callable[..., Any]) -> bool:
    """True for ``async def`` functions and objects whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an async __call__ counts too
    return call is not None and inspect.iscoroutinefunction(call)


class IncomingHandlers:
    """Runs handlers: sync ones in order on one worker thread, async ones on the loop."""

    def __init__(self, name: str, loop_thread: LoopThread) -> None:
        self._name = name
        self._loop_thread = loop_thread
        self._queue: queue.SimpleQueue[tuple[OnMessageHandler, IncomingMessage] | None] = (
            queue.SimpleQueue()
        )
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    def runner(self, handler: OnMessageHandler) -> Callable[[IncomingMessage], None]:
        """What hands each message to ``handler`` on the right thread, returning at once.

        Sync or async is decided here, once, not on every message.
        """
        if is_async_handler(handler):

            def run_async(message: IncomingMessage) -> None:
                if self._open():
                    self._run_on_loop(handler, message)

            return run_async

        def run_sync(message: IncomingMessage) -> None:
            if self._open():
                self._ensure_worker()
                self._queue.put((handler, message))

        return run_sync

    def _open(self) -> bool:
        if self._closed:
            logger.debug("%s: incoming message dropped: the notifier is closed", self._name)
            return False
        return True

    def _ensure_worker(self) -> None:
        if self._worker is not None:
            return
        with self._lock:
            if self._worker is None and not self._closed:
                worker = threading.Thread(
                    target=self._work, name=f"{self._name}-handlers", daemon=True
                )
                worker.start()
                self._worker = worker

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:  # close()
                return
            handler, message = item
            try:
                result = handler(message)
            except BaseException:  # even SystemExit: this worker must outlive any handler
                logger.exception("%s: on_message handler %r failed", self._name, handler)
                continue
            if inspect.isawaitable(result):
                # A sync callable that returned a coroutine: run it where async code runs.
                self._run_awaitable_on_loop(handler, result)

    def _run_on_loop(self, handler: OnMessageHandler, message: IncomingMessage) -> None:
        if self._loop_thread.in_loop_thread():
            self._spawn(handler, message)
            return
        try:
            self._loop_thread.call_soon(self._spawn, handler, message)
        except RuntimeError:
            logger.warning(
                "%s: incoming message dropped: the notifier's loop is not running", self._name
            )

    def _run_awaitable_on_loop(self, handler: OnMessageHandler, awaitable: Awaitable[None]) -> None:
        async def run() -> None:
            await awaitable

        try:
            self._loop_thread.call_soon(self._spawn_coroutine, handler, run)
        except RuntimeError:
            logger.warning(
                "%s: handler %r not run: the notifier's loop is not running", self._name, handler
            )

    def _spawn(self, handler: OnMessageHandler, message: IncomingMessage) -> None:
        async def run() -> None:
            await handler(message)  # type: ignore[misc]

        self._spawn_coroutine(handler, run)

    def _spawn_coroutine(
        self, handler: OnMessageHandler, run: Callable[[], Awaitable[None]]
    ) -> None:
        async def guarded() -> None:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: on_message handler %r failed", self._name, handler)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self, timeout: float | None) -> bool:
        """Let the worker finish the handlers already queued (up to ``timeout``), then stop it.

        Returns True when the worker ended in time. Called from the worker itself (a
        handler that closes the notifier), it does not wait for itself.
        """
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is None:
            return True
        self._queue.put(None)
        if worker is threading.current_thread():
            return True
        worker.join(timeout)
        return not worker.is_alive()
