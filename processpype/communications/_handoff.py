"""The hand-off between threads: how a message gets from its sender to the loop thread.

Senders on any thread put their message on one FIFO list under one lock; the first of a
batch wakes the notifier's loop (``LoopWaker``, an eventfd), which takes the whole list at
once and dispatches up to ``DRAIN_BATCH`` messages per loop callback. At most
``max_in_flight`` messages are in flight; beyond that, senders wait for room. A blocking
``send`` waits in two steps (``Handoff.wait``). This is where the notifier's speed work
lives; what a message does once it is dispatched is the dispatcher's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from processpype.communications._loop_thread import LoopThread, LoopWaker
from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryReport, DeliveryResult
from processpype.foundation.errors import (
    DeliveryTimeoutError,
    NotifierClosedError,
    QueueFullError,
)
from processpype.foundation.models import OutgoingMessage

__all__ = ["DRAIN_BATCH", "Delivery", "Handoff"]

logger = logging.getLogger("processpype.communications.notifier")

DRAIN_BATCH = 512
"""Messages dispatched per loop callback, so a flood never starves the loop's I/O."""


class Delivery:
    """One message on its way: where its outcome goes, and the results so far.

    Exactly one of ``future`` (send_nowait), ``lock`` (send) and ``afuture`` (asend)
    receives the report. ``targets``, ``results`` and ``sends`` are written on the loop
    thread only. A blocking send also has ``picked``, released as the loop picks the
    message up (see ``Handoff.wait``).
    """

    __slots__ = (
        "afuture",
        "aloop",
        "context",
        "future",
        "lock",
        "message",
        "picked",
        "remaining",
        "report",
        "results",
        "sends",
        "targets",
    )

    def __init__(self, message: OutgoingMessage) -> None:
        self.message = message
        # The sender's contextvars: backends run in them (a notebook's console output
        # lands under the sending cell; the caller's logging and tracing context shows).
        self.context = contextvars.copy_context()
        self.future: concurrent.futures.Future[DeliveryReport] | None = None
        self.lock: threading.Lock | None = None
        self.picked: threading.Lock | None = None
        self.afuture: asyncio.Future[DeliveryReport] | None = None
        self.aloop: asyncio.AbstractEventLoop | None = None
        self.targets: list[Communicator] | None = None
        self.results: list[DeliveryResult | None] | None = None
        # The dispatcher's sends still under way, one entry per target (close cancels them).
        self.sends: list[asyncio.Task[DeliveryResult] | None] = []
        self.remaining = 0
        self.report: DeliveryReport | None = None

    def withdrawn(self) -> bool:
        """True when the caller cancelled its future before the message reached a backend.

        Otherwise the future is marked running, so it can no longer be cancelled.
        """
        future = self.future
        return future is not None and not future.set_running_or_notify_cancel()

    def pending(self) -> tuple[str, ...] | None:
        """Backends without an outcome yet; None before the message was dispatched."""
        targets, results = self.targets, self.results
        if targets is None or results is None:
            return None
        return tuple(
            c.name for c, result in zip(targets, list(results), strict=True) if result is None
        )

    def mark_picked(self) -> None:
        """Release ``picked`` (once): the loop has the message, or it was settled without."""
        picked = self.picked
        if picked is not None:
            self.picked = None
            picked.release()

    def resolve(self, report: DeliveryReport, own_loop: asyncio.AbstractEventLoop | None) -> None:
        """Hand ``report`` to whoever waits for it."""
        self.report = report
        if self.picked is not None:
            self.mark_picked()
        if self.future is not None:
            # Not contextlib.suppress: this runs once per message, where a try is free
            # (bench_notifier: send_nowait throughput).
            try:  # noqa: SIM105
                self.future.set_result(report)
            except concurrent.futures.InvalidStateError:  # cancelled or settled at close
                pass
        elif self.lock is not None:
            self.lock.release()
        elif self.afuture is not None and self.aloop is not None:
            try:
                if self.aloop is own_loop and not self.aloop.is_closed():
                    _set_pending_result(self.afuture, report)
                else:
                    self.aloop.call_soon_threadsafe(_set_pending_result, self.afuture, report)
            except RuntimeError:  # the awaiting loop is closed: nobody waits any more
                pass


def _set_pending_result(future: asyncio.Future[DeliveryReport], report: DeliveryReport) -> None:
    if not future.done():
        future.set_result(report)


class Handoff:
    """The hand-off list between senders and the loop thread, and the count in flight.

    ``on_busy(True)`` is called (under the lock) as the first message goes in flight,
    ``on_busy(False)`` as the last one settles: the process hooks keep a notifier with
    messages in flight alive.
    """

    def __init__(
        self,
        name: str,
        max_in_flight: int,
        loop_thread: LoopThread,
        on_busy: Callable[[bool], None],
    ) -> None:
        self._name = name
        self._max_in_flight = max_in_flight
        self._loop_thread = loop_thread
        self._on_busy = on_busy
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waker: LoopWaker | None = None  # wakes the loop to drain; set as it starts

        # Shared between threads, guarded by lock. cond (on the same lock) is only for
        # the rare waits (room under max_in_flight, flush); _waiters counts them so the
        # loop thread notifies only when somebody waits.
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._waiters = 0
        self._pending: list[Delivery] = []
        self._wake_pending = False
        self.inflight = 0
        self.closing = False
        self.forked = False

        # Loop-thread state: touched only on the notifier's loop thread.
        self.local: deque[Delivery] = deque()
        # Dispatched, still waiting for a backend; a dict keeps the hand-off order.
        self.active: dict[Delivery, None] = {}
        self.draining = False
        self.settled = 0

    # -- the senders' side ----------------------------------------------------------

    def closed_error(self) -> NotifierClosedError:
        """The error of a use after close (or, in a forked child, of any use)."""
        if self.forked:
            return NotifierClosedError(
                f"{self._name} was created before os.fork(): its thread and connections stay "
                "in the parent process; create a new Notifier in this process"
            )
        return NotifierClosedError(
            f"{self._name} is closed: messages can no longer be sent through it; "
            "create a new Notifier"
        )

    def submit(
        self,
        delivery: Delivery,
        *,
        block: bool,
        deadline: float | None,
        targets: Callable[[str], tuple[str, ...]],
    ) -> None:
        """Put ``delivery`` on the hand-off list and wake the loop if it is idle.

        Waits for room under ``max_in_flight`` (until ``deadline``) when ``block``;
        ``targets(label)`` names the backends a timeout reports as pending.
        """
        with self.lock:
            while True:
                if self.closing:
                    raise self.closed_error()
                # The loop thread never waits for room: it is the one that makes room.
                if self.inflight < self._max_in_flight or self._loop_thread.in_loop_thread():
                    break
                if not block:
                    raise QueueFullError(
                        f"{self._name}: {self._max_in_flight} messages are in flight "
                        "(max_in_flight)"
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeliveryTimeoutError(
                        f"{self._name}: no room to queue the message in time: "
                        f"{self._max_in_flight} messages are in flight (max_in_flight)",
                        pending=targets(delivery.message.label),
                    )
                self._waiters += 1
                try:
                    self.cond.wait(remaining)
                finally:
                    self._waiters -= 1
            self.inflight += 1
            if self.inflight == 1:
                self._on_busy(True)
            self._pending.append(delivery)
            if not self._wake_pending:
                self._wake_pending = True
                self._wake()

    def wake_early(self) -> None:
        """Wake the loop before the message is even built (blocking ``send``).

        The loop thread takes tens of microseconds to wake on some machines; started now,
        its wake-up overlaps the caller's validation. The loop then waits for the caller
        to release the interpreter, which happens once the message is on the hand-off
        list and the caller waits. Should the drain run first anyway, it resets
        ``_wake_pending`` and ``submit`` wakes the loop again: no message waits.
        """
        if self._wake_pending:  # a hint read without the lock: a drain is on its way
            return
        with self.lock:
            if not self._wake_pending and not self.closing:
                self._wake_pending = True
                self._wake()

    def _wake(self) -> None:
        # Under self.lock, with closing false: the waker's eventfd is closed with the
        # loop, which ends only after closing was set under the same lock, so a wake
        # never writes to a closed (or reused) file descriptor.
        waker = self.waker
        assert waker is not None
        # RuntimeError: the loop closed meanwhile; close() settles the stranded.
        with contextlib.suppress(RuntimeError):
            waker.wake()

    @staticmethod
    def wait(
        delivery: Delivery,
        locks: tuple[threading.Lock, threading.Lock],
        deadline: float | None,
    ) -> DeliveryReport | None:
        """Wait for the report of a blocking ``send``, in two steps; None on timeout.

        The loop releases ``picked`` (the first lock) as it dispatches the message,
        before the backends run. Waking a sleeping thread takes tens of microseconds on
        some machines; woken this early, the caller's wake-up overlaps the delivery, and
        it then waits for the interpreter, which the loop gives up once it has nothing
        left to do. When the report is not there yet (a backend that waits on the
        network), it waits again, on ``lock`` (the second), released with the report.
        """
        for lock in locks:
            wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            if not lock.acquire(timeout=wait):
                return None
            report = delivery.report
            if report is not None:
                return report
        raise AssertionError("a blocking send was woken without its report")

    def wait_idle(self, deadline: float | None) -> bool:
        """Wait until nothing is in flight; False when ``deadline`` passed first."""
        with self.cond:
            while self.inflight > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._waiters += 1
                try:
                    self.cond.wait(remaining)
                finally:
                    self._waiters -= 1
        return True

    def close(self) -> None:
        """Refuse further messages; senders waiting for room get ``NotifierClosedError``."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()

    def take_stranded(self) -> list[Delivery]:
        """Empty the hand-off list: what was handed over but never taken by the loop."""
        with self.lock:
            stranded = self._pending
            self._pending = []
        return stranded

    def take_waiting(self) -> list[Delivery]:
        """Loop thread, at close: everything not dispatched yet; no drain follows."""
        with self.lock:
            batch = self._pending
            self._pending = []
            self._wake_pending = True  # nothing more will be dispatched
        waiting = [*self.local, *batch]
        self.local.clear()
        return waiting

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks (a parent thread may have held them) and closed."""
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._waiters = 0
        self._pending = []
        self.forked = True
        self.closing = True

    # -- the loop side --------------------------------------------------------------

    def drain(
        self,
        dispatch: Callable[[Delivery], None],
        fail: Callable[[Delivery, str], None],
    ) -> None:
        """Loop thread: take the hand-off list and ``dispatch`` it in order, in batches.

        A message whose dispatch raised is settled with ``fail`` (a bug there must not
        strand the other messages).
        """
        with self.lock:
            batch = self._pending
            self._pending = []
            self._wake_pending = False
        local = self.local
        local.extend(batch)
        self.draining = True
        try:
            for _ in range(DRAIN_BATCH):
                if not local:
                    break
                delivery = local.popleft()
                try:
                    dispatch(delivery)
                except Exception as exc:
                    logger.exception("%s: dispatching a message failed", self._name)
                    fail(delivery, f"internal error: {exc!r}")
        finally:
            self.draining = False
            if local:
                asyncio.get_running_loop().call_soon(self.drain, dispatch, fail)
            self.flush_settled()

    def finish(self, delivery: Delivery, results: tuple[DeliveryResult, ...] | None = None) -> None:
        """Report ``delivery``: with ``results``, or with those gathered in it so far."""
        if results is None:
            # filter(None, ...) drops the Nones: a DeliveryResult is always truthy.
            results = tuple(filter(None, delivery.results or ()))
            self.active.pop(delivery, None)
            delivery.remaining = 0
        report = validated(DeliveryReport, {"message": delivery.message, "results": results})
        delivery.resolve(report, self.loop)
        self.settled += 1

    def flush_settled(self) -> None:
        """Count the messages settled since the last call out of flight; wake waiters."""
        settled = self.settled
        if settled:
            self.settled = 0
            with self.lock:
                self.inflight -= settled
                if self.inflight <= 0:
                    self._on_busy(False)  # may drop the last reference: finalized then
                if self._waiters:
                    self.cond.notify_all()


def validated[M: BaseModel](model: type[M], fields: dict[str, Any]) -> M:
    """``model(**fields)``, fully validated, for less: the model's own validator is called
    with the dict (the same validation and errors, without the keyword packing and the
    Python ``__init__`` around it). Runs twice per message, for the message and its
    report (bench_notifier: send_nowait throughput and the send round trip)."""
    instance: M = model.__pydantic_validator__.validate_python(fields)
    return instance
