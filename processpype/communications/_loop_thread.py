"""``LoopThread``: one daemon thread that owns one asyncio event loop.

Modelled on anyio's ``BlockingPortal``: a single owner of the loop, explicit start and
stop, futures handed back to the calling thread, calls from the loop's own thread refused
(they would deadlock), and a shutdown that stops, cancels leftovers and joins.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from processpype.communications._delivery_context import mark_delivery_thread

__all__ = ["LoopThread", "LoopWaker"]

logger = logging.getLogger("processpype.communications.notifier")

T = TypeVar("T")
P = ParamSpec("P")

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
            # Already read: a wake raced with the previous read.
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(fd)
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
        self._stop_requested = False

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
            loop.set_default_executor(_DaemonExecutor(self._name))
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
            # A stop requested from now on would end the clean-up below half-way.
            self._stop_requested = True
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

    def request_stop(self) -> None:
        """On the loop's thread: end ``run_forever`` (once; later requests do nothing)."""
        if not self._stop_requested and self._loop is not None:
            self._stop_requested = True
            self._loop.stop()

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
                loop.call_soon_threadsafe(self.request_stop)
            thread.join(timeout)
        return not thread.is_alive()


class _DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's executor (``getaddrinfo``, ``to_thread``): one daemon thread per job.

    A ``ThreadPoolExecutor``'s workers are joined at interpreter exit: a resolver that
    hangs for 15 s would hold the exit that long after ``close()`` returned. These
    threads are daemons, marked as delivery work (their log records never become
    notifications), and ``shutdown`` waits for them for ``_CANCEL_GRACE`` at most. A
    ``ThreadPoolExecutor`` only because asyncio accepts nothing else: its pool is unused.
    """

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=1, thread_name_prefix=f"{name}-unused")
        self._name = name
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._numbers = itertools.count(1)
        self._shut_down = False

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` on a new daemon thread; a future of its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            mark_delivery_thread()
            try:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
            thread = threading.Thread(
                target=run, name=f"{self._name}-worker-{next(self._numbers)}", daemon=True
            )
            self._threads.add(thread)
        thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new jobs; with ``wait``, give running ones ``_CANCEL_GRACE`` to end."""
        with self._lock:
            self._shut_down = True
            threads = list(self._threads)
        if wait:
            deadline = time.monotonic() + _CANCEL_GRACE / 2
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))


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
