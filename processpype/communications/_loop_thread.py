"""``LoopThread``: one daemon thread that owns one asyncio event loop.

Modelled on anyio's ``BlockingPortal``: a single owner of the loop, explicit start and
stop, futures handed back to the calling thread, calls from the loop's own thread refused
(they would deadlock), and a shutdown that stops, cancels leftovers and joins.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from processpype.communications._delivery_context import mark_delivery_thread

__all__ = ["LoopThread", "LoopWaker"]

logger = logging.getLogger("processpype.communications.notifier")

T = TypeVar("T")

_CANCEL_GRACE = 1.0
"""Seconds the leftover tasks get to finish after being cancelled at stop."""


class LoopWaker:
    """Call ``callback`` on the loop soon after ``wake()``, which any thread may call.

    On Linux it is an eventfd the loop watches: ``wake()`` is one ``write`` system call
    and the loop answers with one ``read``. ``call_soon_threadsafe`` does more on both
    sides for the same effect: a handle per call, a write to the loop's self-pipe, then
    reads of that pipe until it raises ``BlockingIOError``. Where eventfd is missing, or
    the loop cannot watch file descriptors, ``wake()`` uses ``call_soon_threadsafe``.

    Wakes are not counted: several before the loop answers give one ``callback`` call.
    Made on the loop's thread by ``LoopThread.waker()``, and closed when the loop ends.
    Callers must not wake it once its loop may have ended: the closed descriptor's
    number can be reused by another file (the Notifier wakes only while not closing,
    under the lock that closing takes).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        self._loop = loop
        self._callback = callback
        self._fd = _watched_eventfd(loop, self._on_wake)

    def __repr__(self) -> str:
        kind = "call_soon_threadsafe" if self._fd is None else "eventfd"
        return f"LoopWaker({kind}, callback={self._callback!r})"

    @property
    def uses_eventfd(self) -> bool:
        """True when ``wake()`` writes to an eventfd rather than calling the loop."""
        return self._fd is not None

    def wake(self) -> None:
        """Have the loop call the callback soon (RuntimeError once the loop is closed)."""
        fd = self._fd
        if fd is None:
            self._loop.call_soon_threadsafe(self._callback)
            return
        try:
            os.eventfd_write(fd, 1)
        except OSError as exc:  # closed with its loop
            raise RuntimeError("the event loop of this waker is closed") from exc

    def _on_wake(self) -> None:
        fd = self._fd
        if fd is not None:
            # Not contextlib.suppress: this runs once per wake, and try is free.
            try:  # noqa: SIM105
                os.eventfd_read(fd)
            except BlockingIOError:  # already read: a wake raced with the previous read
                pass
        self._callback()

    def close(self) -> None:
        """Stop watching and close the eventfd; on the loop's thread, or once it ended."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if not self._loop.is_closed():
            self._loop.remove_reader(fd)
        os.close(fd)


def _watched_eventfd(
    loop: asyncio.AbstractEventLoop, on_readable: Callable[[], object]
) -> int | None:
    """A non-blocking eventfd that ``loop`` watches, or None where that is not possible."""
    if not hasattr(os, "eventfd"):
        return None
    try:
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    except OSError:
        return None
    try:
        loop.add_reader(fd, on_readable)
    except (NotImplementedError, RuntimeError):  # a loop without add_reader
        os.close(fd)
        return None
    return fd


class LoopThread:
    """A daemon thread running an asyncio event loop until ``stop()``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ident: int | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._wakers: list[LoopWaker] = []

    def __repr__(self) -> str:
        return f"LoopThread(name={self._name!r}, running={self.running})"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop (raises RuntimeError before ``start()``)."""
        if self._loop is None:
            raise RuntimeError(f"{self._name}: the event loop thread is not started")
        return self._loop

    @property
    def running(self) -> bool:
        """True while the thread runs its loop."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._loop is not None

    def in_loop_thread(self) -> bool:
        """True when called from the thread that runs the loop."""
        return self._ident is not None and threading.get_ident() == self._ident

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the thread and return its loop once it runs; start-up errors are raised."""
        if self._thread is not None:
            return self.loop
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread = thread
        thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise RuntimeError(f"{self._name}: the event loop did not start") from (
                self._start_error
            )
        return self.loop

    def _run(self) -> None:
        mark_delivery_thread()  # records logged here never become notifications
        try:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.set_exception_handler(_log_loop_error)
            # Its worker threads (getaddrinfo, to_thread) are delivery work too.
            loop.set_default_executor(
                concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix=f"{self._name}-worker", initializer=mark_delivery_thread
                )
            )
        except BaseException as exc:  # reach the caller of start()
            self._start_error = exc
            self._ready.set()
            return
        self._loop = loop
        self._ident = threading.get_ident()
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                _cancel_leftovers(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                # Join the threads of to_thread()/getaddrinfo() instead of leaving them,
                # for a bounded time: a stuck thread must not hang close().
                if isinstance(loop, asyncio.BaseEventLoop):
                    loop.run_until_complete(loop.shutdown_default_executor(timeout=_CANCEL_GRACE))
            finally:
                asyncio.set_event_loop(None)
                for waker in self._wakers:
                    waker.close()
                loop.close()

    def waker(self, callback: Callable[[], object]) -> LoopWaker:
        """A ``LoopWaker`` for ``callback``, closed when the loop ends; on the loop's thread."""
        if not self.in_loop_thread():
            raise RuntimeError(f"{self._name}: waker() must be called on the loop's thread")
        waker = LoopWaker(self.loop, callback)
        self._wakers.append(waker)
        return waker

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Schedule ``callback(*args)`` on the loop, from any thread."""
        self.loop.call_soon_threadsafe(callback, *args)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; return a future for its result."""
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop)
        except BaseException:
            coro.close()
            raise

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout`` seconds for its result.

        Refused on the loop's own thread, where waiting would deadlock. On timeout the
        coroutine is cancelled and ``TimeoutError`` raised.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                f"{self._name}: a blocking call was made on the event loop's own thread, "
                "where it would deadlock"
            )
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop the loop (cancelling leftover tasks) and join the thread.

        Returns True when the thread ended within ``timeout`` seconds. Idempotent.
        """
        thread = self._thread
        loop = self._loop
        if thread is None or loop is None:
            return True
        if self.in_loop_thread():
            raise RuntimeError(f"{self._name}: stop() cannot be called from the loop's thread")
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        return not thread.is_alive()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=_CANCEL_GRACE))
    for task in pending:
        logger.warning("task %r ignored cancellation at shutdown", task.get_name())
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %r failed at shutdown", task.get_name(), exc_info=task.exception())


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exception = context.get("exception")
    logger.error(
        "notifier event loop: %s",
        context.get("message", "unhandled error"),
        exc_info=exception if isinstance(exception, BaseException) else None,
    )
