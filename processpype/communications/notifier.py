"""``Notifier``: the blocking facade over a threaded asyncio core.

How a message travels::

    send / send_nowait / asend  (any thread, any event loop)
        │  one FIFO hand-off list, one loop wake-up for many messages
        ▼
    the notifier's loop thread: CommunicationDispatcher.fan_out, one eager task
    per backend of the label, created in hand-off order
        │  every backend reaches an outcome: delivered, failed or skipped
        ▼
    DeliveryReport → the caller's future, lock or awaitable

A ``Notifier`` owns a daemon thread running an asyncio loop and its own
``CommunicationDispatcher``, so two notifiers in one process are independent. At most
``max_in_flight`` messages are in flight; beyond that, senders wait for room (nothing is
dropped). At interpreter exit every notifier still open is flushed for up to its
``drain_timeout``, and whatever could not be delivered is written to stderr and the log;
the same happens when a forked ``multiprocessing`` child ends, and on SIGTERM or SIGINT
with ``handle_signals=True`` (``_signals``). A notifier dropped without ``close()`` is
finalized once idle (its loop thread holds it only weakly).

This module is the public facade and its lifecycle (start, send, edit, flush, close).
The hand-off between threads is ``_handoff``; the fan-out to the backends and their
start gate are the dispatcher's; the exit, fork and garbage-collection hooks and the
close/exit report are ``_process_hooks``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from processpype.communications._handlers import IncomingHandlers
from processpype.communications._handoff import Delivery, Handoff, validated
from processpype.communications._loop_thread import LoopThread
from processpype.communications._process_hooks import (
    Undelivered,
    abandon,
    close_for_signal,
    mark_busy,
    report_undelivered,
    track,
    untrack,
)

if TYPE_CHECKING:
    from processpype.communications._signals import SignalFlush
from processpype.communications._timeouts import check_timeout
from processpype.communications.backends import create_communicator
from processpype.communications.base import Communicator, NoOpCommunicator
from processpype.communications.delivery import (
    COMMUNICATIONS_DISABLED,
    DeliveryReport,
    DeliveryResult,
)
from processpype.communications.dispatcher import CommunicationDispatcher, send_outcome
from processpype.communications.setup import register_backends
from processpype.config.loader import config_from_mapping, load_config
from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig
from processpype.foundation.errors import (
    ConfigError,
    DeliveryTimeoutError,
    NotifierClosedError,
    QueueFullError,
)
from processpype.foundation.models import (
    Attachment,
    MessageSeverity,
    OnMessageHandler,
    OutgoingMessage,
    coerce_attachments,
)

if TYPE_CHECKING:
    from processpype.communications.outbox.producer import OutboxProducer
    from processpype.communications.progress import Progress
    from processpype.communications.watch import Watch

__all__ = ["Notifier"]

logger = logging.getLogger("processpype.communications.notifier")

_CLOSE_GRACE = 5.0
"""Seconds close() allows, after its flush, to cancel leftovers, stop backends and join."""
_EXIT_GRACE = 1.0
"""The same allowance at interpreter exit, where nobody should wait long."""
_LOOP_RESPONSE = 10.0
"""Seconds a quick call into the loop (registering a backend) may take before giving up."""
_ASK_GRACE = 60.0
"""Seconds ``ask()`` allows beyond its timeout for posting and editing the question."""
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_names = itertools.count(1)


class Notifier:
    """Send messages by label to every backend of a ``CommunicationsConfig``.

    Usable from scripts, threads, notebooks and async applications: ``send`` blocks until
    every backend of the label reached an outcome, ``send_nowait`` returns a future at
    once, ``asend`` can be awaited from any event loop.
    """

    def __init__(
        self,
        config: CommunicationsConfig | Mapping[str, Any],
        *,
        start: bool = True,
        drain_timeout: float | None = 10.0,
        max_in_flight: int = 10_000,
        start_timeout: float | None = 10.0,
        name: str | None = None,
        handle_signals: bool = False,
    ) -> None:
        """Create the backends of ``config``; with ``start`` also start them.

        ``drain_timeout``: how long ``close()`` and the exit-time flush wait for messages
        in flight (None: no limit). ``max_in_flight``: beyond this many undelivered
        messages, senders wait. ``start_timeout``: how long starting waits for backends to
        connect (backends still connecting after it keep trying; their messages wait for
        them). ``handle_signals``: on SIGTERM and SIGINT, flush and report what could not
        be delivered, then hand the signal to the handler installed before (main thread
        only; the previous handlers are restored at close).
        """
        drain = check_timeout(drain_timeout, "drain_timeout")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an int, not {type(max_in_flight).__name__}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        start_timeout = check_timeout(start_timeout, "start_timeout")
        if handle_signals and threading.current_thread() is not threading.main_thread():
            raise ValueError(
                "handle_signals=True needs the main thread (Python runs signal handlers "
                "there only): create this Notifier on the main thread, or call close() "
                "from your own signal handler"
            )
        self._config = _coerce_config(config)
        self._name = name or f"processpype-notifier-{next(_names)}"
        self._drain_timeout = drain
        self._start_timeout = start_timeout
        self._enabled = self._config.enabled
        self._dispatcher = CommunicationDispatcher()
        self._loop_thread = LoopThread(self._name)
        self._handlers = IncomingHandlers(self._name, self._loop_thread)
        self._outbox: OutboxProducer | None = None  # set with communications.outbox
        # The hand-off list, the count in flight and the closing flag, between threads.
        self._handoff = Handoff(self._name, max_in_flight, self._loop_thread, mark_busy(self))

        # Lifecycle (start/close), guarded by _lifecycle.
        self._lifecycle = threading.RLock()
        self._started = False
        self._closed = False
        self._close_result = True
        self._exit_budget: float | None = None  # drain_timeout left after the exit flush

        # Loop-thread state: touched only on the notifier's loop thread.
        # Edits under way (edit, progress): flush waits for them, close reports them.
        self._edits: dict[asyncio.Task[DeliveryReport], tuple[DeliveryReport, OutgoingMessage]] = {}
        self._cut_edits: set[asyncio.Task[DeliveryReport]] = set()
        self._abort_reason = "not delivered: the notifier was closed"
        self._in_flight_reason = (
            "the notifier closed while this backend was sending it: it may have been delivered"
        )

        if not self._enabled:
            warnings.warn(
                "communications.enabled is false in this config: every message is reported "
                "as skipped. Set `enabled: true` under `communications` to send.",
                UserWarning,
                skip_file_prefixes=(_PACKAGE_DIR,),
            )
        self._register_configured_backends()
        self._signals: SignalFlush | None = None
        if handle_signals:
            from processpype.communications._signals import SignalFlush

            self._signals = SignalFlush(self, close_for_signal)  # holds self weakly
        self._finalizer = weakref.finalize(
            self,
            abandon,
            self._name,
            self._loop_thread,
            self._dispatcher,
            self._handlers,
            self._signals,
            _CLOSE_GRACE,
            _EXIT_GRACE,
        )
        self._finalizer.atexit = False  # the exit-time flush closes live notifiers instead
        track(self)
        if start:
            self.start()

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Notifier:
        """A Notifier for the YAML file at ``path`` (``${VAR}`` resolved from ``env``)."""
        config = load_config(path, env=env)
        try:
            return cls(config, **kwargs)
        except ConfigError as exc:  # a backend refused its settings: name the file too
            raise exc.with_source(os.fspath(path)) from exc.__cause__

    @classmethod
    def from_config(
        cls, config: CommunicationsConfig | Mapping[str, Any], **kwargs: Any
    ) -> Notifier:
        """A Notifier for a ``CommunicationsConfig`` or a mapping of the same shape."""
        return cls(config, **kwargs)

    def _register_configured_backends(self) -> None:
        # With communications disabled, every backend is a no-op that says why.
        factory = create_communicator if self._enabled else _disabled_backend
        if self._enabled and self._config.outbox is not None:
            # Every backend becomes a stand-in that puts its messages in the Redis outbox.
            from processpype.communications.outbox.producer import OutboxProducer

            self._outbox = OutboxProducer(self._config.outbox)
            factory = self._outbox.communicator_factory
        register_backends(self._config, self._dispatcher, factory=factory)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "not started"
        return f"Notifier(name={self._name!r}, backends={sorted(self.communicators)!r}, {state})"

    # -- properties -----------------------------------------------------------------

    @property
    def config(self) -> CommunicationsConfig:
        """The validated configuration."""
        return self._config

    @property
    def dispatcher(self) -> CommunicationDispatcher:
        """This notifier's own dispatcher (not the process-wide one)."""
        return self._dispatcher

    @property
    def communicators(self) -> dict[str, Communicator]:
        """The registered backends, by name."""
        return self._dispatcher.communicators

    def communicator(self, name: str) -> Communicator:
        """The backend named ``name``; ``KeyError`` naming the known ones otherwise."""
        communicator = self._dispatcher.get(name)
        if communicator is None:
            known = ", ".join(sorted(self._dispatcher.communicators)) or "none"
            raise KeyError(f"no backend named {name!r} (backends: {known})")
        return communicator

    @property
    def closed(self) -> bool:
        """True once ``close()`` has finished."""
        return self._closed

    @property
    def started(self) -> bool:
        """True once ``start()`` ran (and until close)."""
        return self._started and not self._closed

    @property
    def drain_timeout(self) -> float | None:
        """Seconds close() and the exit-time flush wait for messages in flight (None: no limit)."""
        return self._drain_timeout

    @property
    def in_flight(self) -> int:
        """Messages handed to the notifier whose outcome is not known yet."""
        return self._handoff.inflight

    def in_loop_thread(self) -> bool:
        """True when called on this notifier's event loop thread (blocking calls refused)."""
        return self._loop_thread.in_loop_thread()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and the backends (idempotent).

        Waits up to ``start_timeout`` for the backends to connect. A backend whose start
        fails is logged and retried, with backoff, when a message is sent to it.
        """
        with self._lifecycle:
            if self._handoff.closing:
                raise self._closed_error()
            if self._started:
                return
            self._handoff.loop = self._loop_thread.start()
            tasks = self._loop_thread.call(self._start_on_loop(list(self.communicators.values())))
            self._started = True
        self._wait_for_starts(tasks)

    async def _start_on_loop(self, communicators: list[Communicator]) -> list[asyncio.Task[bool]]:
        # Weakly: the loop thread must not keep a dropped notifier alive (its finalizer
        # would never run, and its thread and loop would stay).
        self._handoff.waker = self._loop_thread.waker(_weak_call(self._drain))
        return [task for c in communicators if (task := self._begin_start(c)) is not None]

    def _begin_start(self, communicator: Communicator) -> asyncio.Task[bool] | None:
        # Loop thread. Its messages wait at the dispatcher's start gate until start() ends.
        if communicator.is_started:
            return None
        return self._dispatcher.begin_start(communicator)

    def _wait_for_starts(self, tasks: list[asyncio.Task[bool]]) -> None:
        if not tasks:
            return

        async def wait() -> list[str]:
            _, pending = await asyncio.wait(tasks, timeout=self._start_timeout)
            return sorted(task.get_name().removeprefix("start ") for task in pending)

        if self._loop_thread.in_loop_thread():
            return
        limit = None if self._start_timeout is None else self._start_timeout + _LOOP_RESPONSE
        try:
            still_starting = self._loop_thread.call(wait(), timeout=limit)
        except TimeoutError:
            logger.warning("%s: the event loop did not answer while backends started", self._name)
            return
        if still_starting:
            logger.warning(
                "%s: still starting after %ss: %s; their messages wait until they start",
                self._name,
                self._start_timeout,
                ", ".join(still_starting),
            )

    def add_communicator(self, communicator: Communicator, labels: list[str] | None = None) -> None:
        """Register an already-built backend for ``labels`` (default ``["default"]``).

        On a started notifier it is started too; this waits up to ``start_timeout``.
        """
        with self._lifecycle:
            if self._handoff.closing:
                raise self._closed_error()
            if not self._started:
                self._dispatcher.register(communicator, labels)
                return
            if self._loop_thread.in_loop_thread():
                self._register_and_start(communicator, labels)
                return

            async def register() -> asyncio.Task[bool] | None:
                return self._register_and_start(communicator, labels)

            try:
                task = self._loop_thread.call(register(), timeout=_LOOP_RESPONSE)
            except TimeoutError:
                raise TimeoutError(
                    f"{self._name}: the event loop did not answer within {_LOOP_RESPONSE}s "
                    f"(is an async on_message handler blocking it?); {communicator.name!r} "
                    "was not added"
                ) from None
        if task is not None:
            self._wait_for_starts([task])

    def _register_and_start(
        self, communicator: Communicator, labels: list[str] | None
    ) -> asyncio.Task[bool] | None:
        # Loop thread: registering and holding happen in one step, so no message can
        # reach the backend before its start() began.
        self._dispatcher.register(communicator, labels)
        return self._begin_start(communicator)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------

    def send(
        self,
        message: str | OutgoingMessage,
        *,
        label: str = "default",
        severity: MessageSeverity | str = MessageSeverity.INFO,
        subject: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: float | None = 30.0,
        attachments: Iterable[Any] | None = None,
        wait_for_delivery: bool = False,
    ) -> DeliveryReport:
        """Send and wait until every backend of ``label`` reached an outcome.

        ``attachments``: ``Attachment`` objects, paths, matplotlib figures or Pillow
        images, read (or drawn) now; a path that cannot be read raises here and nothing
        is sent. Raises ``DeliveryTimeoutError`` (a ``TimeoutError``) naming the backends
        still pending after ``timeout`` seconds; the message stays queued and is still sent.
        With an outbox the outcome is ``queued`` once Redis has the message;
        ``wait_for_delivery=True`` waits for the workers' real outcomes instead.
        """
        self._refuse_on_loop_thread("send()")
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        if self._started:
            self._handoff.wake_early()
        outgoing = _outgoing(message, label, severity, subject, source, metadata, attachments)
        if self._outbox is not None:
            outgoing = self._outbox.prepare(outgoing, wait=wait_for_delivery)
        deadline = None if timeout is None else time.monotonic() + timeout
        delivery = Delivery(outgoing)
        delivery.lock = done = threading.Lock()
        delivery.picked = picked = threading.Lock()
        done.acquire()
        picked.acquire()
        self._submit(delivery, block=True, deadline=deadline)
        report = self._handoff.wait(delivery, (picked, done), deadline)
        if report is None:
            raise self._timeout_error(delivery, timeout)
        if wait_for_delivery and self._outbox is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            limit = None if left is None else left + _LOOP_RESPONSE
            waiting = self._outbox.wait_for_outcomes(report, left, shown_timeout=timeout)
            return self._loop_thread.call(waiting, timeout=limit)
        return report

    def send_nowait(
        self,
        message: str | OutgoingMessage,
        *,
        label: str = "default",
        severity: MessageSeverity | str = MessageSeverity.INFO,
        subject: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        block: bool = True,
        attachments: Iterable[Any] | None = None,
    ) -> concurrent.futures.Future[DeliveryReport]:
        """Queue the message and return a future of its ``DeliveryReport`` at once.

        ``attachments`` are converted before this returns (as for ``send``), so a file
        deleted or a figure redrawn afterwards changes nothing. With ``max_in_flight``
        messages in flight, waits for room (``block=False`` raises ``QueueFullError``
        instead). Cancelling the future before the message reached the backends
        withdraws it.
        """
        outgoing = _outgoing(message, label, severity, subject, source, metadata, attachments)
        if self._outbox is not None:
            outgoing = self._outbox.prepare(outgoing)
        delivery = Delivery(outgoing)
        future: concurrent.futures.Future[DeliveryReport] = concurrent.futures.Future()
        delivery.future = future
        self._submit(delivery, block=block, deadline=None)
        return future

    async def asend(
        self,
        message: str | OutgoingMessage,
        *,
        label: str = "default",
        severity: MessageSeverity | str = MessageSeverity.INFO,
        subject: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: float | None = 30.0,
        attachments: Iterable[Any] | None = None,
        wait_for_delivery: bool = False,
    ) -> DeliveryReport:
        """``send`` for async code: awaitable from any event loop, this notifier's included.

        Files among ``attachments`` are read on a worker thread. Cancelling the await
        stops waiting; the message is still delivered.
        """
        timeout = check_timeout(timeout, "timeout")
        if attachments is not None and not _all_ready(attachments):
            attachments = await asyncio.to_thread(coerce_attachments, attachments)
        outgoing = _outgoing(message, label, severity, subject, source, metadata, attachments)
        if self._outbox is not None:
            outgoing = self._outbox.prepare(outgoing, wait=wait_for_delivery)
        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        delivery = Delivery(outgoing)
        delivery.afuture = loop.create_future()
        delivery.aloop = loop
        if not self._started:
            await asyncio.to_thread(self.start)
        try:
            self._submit(delivery, block=False, deadline=deadline)
        except QueueFullError:
            # Wait for room on a worker thread: the caller's loop must keep running.
            await asyncio.to_thread(self._submit, delivery, block=True, deadline=deadline)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                report = await asyncio.shield(delivery.afuture)
        except TimeoutError:
            raise self._timeout_error(delivery, timeout) from None
        if wait_for_delivery and self._outbox is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            waiting = self._outbox.wait_for_outcomes(report, left, shown_timeout=timeout)
            if self._loop_thread.in_loop_thread():
                return await waiting
            return await asyncio.wrap_future(self._loop_thread.submit(waiting))
        return report

    # -- editing, watching, progress, questions (watch.py, progress.py, ask.py) -------

    def edit(
        self,
        report: DeliveryReport,
        message: str | OutgoingMessage,
        *,
        timeout: float | None = 30.0,
        **fields: Any,
    ) -> DeliveryReport:
        """Edit what ``report`` delivered into ``message``, on every backend that can edit.

        ``fields`` (``severity``, ``subject``, ``source``, ``metadata``) replace those of
        the original message; the label stays. The text changes, attachments stay as
        they were sent (other files are a ``ValueError``). Backends that cannot edit, or
        where the original was not delivered (or only queued in an outbox), are reported
        as skipped.
        """
        self._refuse_on_loop_thread("edit()")
        timeout = check_timeout(timeout, "timeout")  # an infinite one would overflow the wait
        future = self._edit_future(report, _edited(report, message, fields))
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            pending = tuple(r.backend for r in report.results)
            raise DeliveryTimeoutError(
                f"editing the message for label {report.message.label!r} did not finish "
                f"within {timeout}s (backends: {', '.join(pending) or 'none'})",
                pending=pending,
            ) from None

    async def aedit(
        self,
        report: DeliveryReport,
        message: str | OutgoingMessage,
        *,
        timeout: float | None = 30.0,
        **fields: Any,
    ) -> DeliveryReport:
        """``edit`` for async code: awaitable from any event loop, this notifier's included."""
        timeout = check_timeout(timeout, "timeout")
        outgoing = _edited(report, message, fields)
        # On this notifier's own loop (an async on_message handler) the edit is a task of
        # its own there, tracked as one from another thread is: flush waits for it,
        # close reports it.
        future: asyncio.Future[DeliveryReport] | concurrent.futures.Future[DeliveryReport]
        if self.in_loop_thread():
            if self._handoff.closing:
                raise self._closed_error()
            future = asyncio.ensure_future(self._tracked_edit(report, outgoing, False))
        else:
            future = self._edit_future(report, outgoing)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise DeliveryTimeoutError(
                f"editing the message for label {report.message.label!r} did not finish "
                f"within {timeout}s",
                pending=tuple(r.backend for r in report.results),
            ) from None

    def _edit_future(
        self, report: DeliveryReport, message: OutgoingMessage, *, resend: bool = False
    ) -> concurrent.futures.Future[DeliveryReport]:
        """Start editing on the loop; the future has the report of the edit."""
        if not self._started:
            self.start()
        if self._handoff.closing:
            raise self._closed_error()
        return self._loop_thread.submit(self._tracked_edit(report, message, resend))

    async def _tracked_edit(
        self, report: DeliveryReport, message: OutgoingMessage, resend: bool
    ) -> DeliveryReport:
        """Loop thread: the edit, known to ``flush`` and ``close`` while it runs.

        Cut short by close, it still has a report: what may have been edited is failed
        as "may have been applied", the rest skipped.
        """
        task = asyncio.current_task()
        assert task is not None  # run_coroutine_threadsafe runs it as a task
        self._edits[task] = (report, message)
        try:
            return await self._dispatcher.edit(report, message, resend=resend)
        except asyncio.CancelledError:
            if not self._handoff.closing:
                raise  # the caller stopped waiting (its timeout)
            self._cut_edits.add(task)
            reason = (
                "the notifier closed while this backend was making the edit: it may have "
                "been applied"
            )
            return DeliveryReport(
                message=message,
                results=tuple(
                    DeliveryResult.failed(r.backend, reason, attempts=1)
                    if _edit_reaches(r, resend)
                    else DeliveryResult.skipped(r.backend, "the notifier closed before the edit")
                    for r in report.results
                ),
            )
        finally:
            self._edits.pop(task, None)

    async def _flush_on_loop(self, timeout: float | None) -> bool:
        """Loop thread: wait for the edits under way, then for every backend's queue."""
        edits = list(self._edits)
        if edits:
            loop = asyncio.get_running_loop()
            began = loop.time()
            _, running = await asyncio.wait(edits, timeout=timeout)
            if running:
                return False
            if timeout is not None:
                timeout = max(0.0, timeout - (loop.time() - began))
        return await self._dispatcher.flush_all(timeout)

    def watch(
        self,
        name: str,
        *,
        label: str = "default",
        notify_start: bool = False,
        include_result: bool = False,
        traceback_lines: int = 20,
    ) -> Watch:
        """Report how a job ends: a context manager (``with``/``async with``) and a decorator.

        On success one info message names the job and its duration (with the result's
        shortened repr when ``include_result``); an exception sends an error with its
        type, message and the last ``traceback_lines`` lines of its traceback, and is
        re-raised unchanged; ``KeyboardInterrupt``/``SystemExit`` send "interrupted".
        """
        from processpype.communications.watch import Watch

        return Watch(
            self,
            name,
            label=label,
            notify_start=notify_start,
            include_result=include_result,
            traceback_lines=traceback_lines,
        )

    def progress[T = Any](
        self,
        iterable: Iterable[T] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        label: str = "default",
        min_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> Progress[T]:
        """One message kept up to date as a loop advances, like ``tqdm``.

        Iterate it (``for x in notifier.progress(items)``) or update it by hand (``with
        notifier.progress(total=n) as p: p.update(k)``). Editing backends see the message
        change at most once per ``min_interval`` seconds (of ``clock``); the others get
        the first message and the final one.
        """
        from processpype.communications.progress import Progress

        return Progress(
            self,
            iterable,
            total=total,
            desc=desc,
            label=label,
            min_interval=min_interval,
            clock=clock,
        )

    def ask(
        self,
        question: str,
        *,
        choices: Sequence[str],
        label: str = "default",
        timeout: float,
        default: str | None = None,
    ) -> str | None:
        """Post ``question`` with a button per choice and return the first authorized answer.

        A text reply equal to a choice (any case) answers too. After ``timeout`` seconds
        without an answer the question says so and ``default`` is returned. Raises
        ``ValueError`` when no backend of ``label`` can ask. The first backend of the
        label that can ask is used (one question, one answer). With an outbox, the
        process holding the bot's update lease asks; elsewhere ``RuntimeError``.
        """
        from processpype.communications.ask import Question, ask_on

        self._refuse_on_loop_thread("ask()")
        asked = Question.build(question, choices=choices, label=label, timeout=timeout)
        if not self._started:
            self.start()
        if self._handoff.closing:
            raise self._closed_error()
        answer = self._loop_thread.call(
            ask_on(self._dispatcher, asked), timeout=asked.timeout + _ASK_GRACE
        )
        return default if answer is None else answer.choice

    async def aask(
        self,
        question: str,
        *,
        choices: Sequence[str],
        label: str = "default",
        timeout: float,
        default: str | None = None,
    ) -> str | None:
        """``ask`` for async code: awaitable from any event loop, this notifier's included."""
        from processpype.communications.ask import Question, ask_on

        asked = Question.build(question, choices=choices, label=label, timeout=timeout)
        if not self._started:
            await asyncio.to_thread(self.start)
        if self._handoff.closing:
            raise self._closed_error()
        coro = ask_on(self._dispatcher, asked)
        # Bounded as ask() is: a backend stuck posting or editing must not hang the caller.
        async with asyncio.timeout(asked.timeout + _ASK_GRACE):
            if self.in_loop_thread():
                answer = await coro
            else:
                answer = await asyncio.wrap_future(self._loop_thread.submit(coro))
        return default if answer is None else answer.choice

    def _submit(self, delivery: Delivery, *, block: bool, deadline: float | None) -> None:
        """Hand ``delivery`` over to the loop (starting the notifier first if needed)."""
        if not self._started:
            self.start()
        self._handoff.submit(delivery, block=block, deadline=deadline, targets=self._target_names)

    def _target_names(self, label: str) -> tuple[str, ...]:
        return tuple(c.name for c in self._dispatcher.targets(label))

    def _timeout_error(self, delivery: Delivery, timeout: float | None) -> DeliveryTimeoutError:
        pending = delivery.pending()
        if pending is None:
            pending = self._target_names(delivery.message.label)
        names = ", ".join(pending) or "none"
        return DeliveryTimeoutError(
            f"message for label {delivery.message.label!r} not delivered within {timeout}s: "
            f"still pending at {names} (it stays queued and will still be sent)",
            pending=pending,
        )

    def _closed_error(self) -> NotifierClosedError:
        return self._handoff.closed_error()

    def _disown_after_fork(self) -> None:
        """In a forked child: refuse every use (the loop thread exists only in the parent)."""
        # Locks may have been held by a parent thread at the moment of the fork.
        self._handoff.reset_after_fork()
        self._lifecycle = threading.RLock()
        self._closed = True
        self._close_result = False
        self._finalizer.detach()

    def _refuse_on_loop_thread(self, call: str) -> None:
        if self._loop_thread.in_loop_thread():
            raise RuntimeError(
                f"Notifier.{call} was called on the notifier's own event loop thread (from an "
                "async on_message handler?), where it would deadlock: use "
                "`await notifier.asend(...)` (and `await notifier.aflush()`) there"
            )

    # -- the loop side --------------------------------------------------------------

    def _drain(self) -> None:
        """Loop thread: dispatch what was handed over, in order (``Handoff.drain``)."""
        self._handoff.drain(self._dispatch, self._fail_rest)

    def _dispatch(self, delivery: Delivery) -> None:
        """Loop thread: hand ``delivery`` to the dispatcher's fan-out; results come back."""
        if delivery.picked is not None:  # a blocking send: its caller starts waking now
            delivery.mark_picked()
        future = delivery.future
        if future is not None and not future.set_running_or_notify_cancel():
            self._handoff.settled += 1  # cancelled by the caller before it reached a backend
            return
        message = delivery.message
        targets = self._dispatcher.targets(message.label, warn=True)
        delivery.targets = targets
        if not targets:
            delivery.results = []
            self._handoff.finish(delivery)
            return
        if not self._enabled:
            skipped: list[DeliveryResult | None] = [
                DeliveryResult.skipped(c.name, COMMUNICATIONS_DISABLED) for c in targets
            ]
            delivery.results = skipped
            self._handoff.finish(delivery)
            return
        if len(targets) == 1:
            # The common case, through the fan-out's one step without its bookkeeping:
            # an in-memory backend's result settles the message right here.
            sent = self._dispatcher.send_one(targets[0], message, delivery.context)
            if isinstance(sent, DeliveryResult):
                self._handoff.finish(delivery, (sent,))
                return
            delivery.results = [None]
            delivery.remaining = 1
            delivery.sends = [sent]
            sent.add_done_callback(functools.partial(self._send_done, delivery, targets[0].name))
            self._handoff.active[delivery] = None
            return
        delivery.results = [None] * len(targets)
        delivery.remaining = len(targets)
        delivery.sends = self._dispatcher.fan_out(
            message,
            targets,
            functools.partial(self._delivery_done, delivery),
            context=delivery.context,
        )
        if delivery.report is None:
            self._handoff.active[delivery] = None

    def _send_done(self, delivery: Delivery, name: str, task: asyncio.Task[DeliveryResult]) -> None:
        """The one backend of ``delivery`` finished sending (``send_one``'s task)."""
        self._delivery_done(delivery, 0, send_outcome(name, task))

    def _delivery_done(self, delivery: Delivery, index: int, result: DeliveryResult | None) -> None:
        # A cancelled send (None: only close() cancels them) is settled by close.
        results = delivery.results
        if result is not None and results is not None and results[index] is None:
            results[index] = result
            delivery.remaining -= 1
            if delivery.remaining == 0:
                self._handoff.finish(delivery)
        if not self._handoff.draining:
            self._handoff.flush_settled()

    def _fail_rest(
        self, delivery: Delivery, reason: str, *, in_flight: Collection[str] = ()
    ) -> None:
        """Settle every backend of ``delivery`` that has no outcome yet as failed.

        Backends named in ``in_flight`` were sending it: their result says it may have
        been delivered.
        """
        if delivery.report is not None:
            return
        if delivery.targets is None:
            delivery.targets = self._dispatcher.targets(delivery.message.label)
        results = delivery.results
        if results is None:
            results = [None] * len(delivery.targets)
        delivery.results = [
            (
                DeliveryResult.failed(
                    c.name,
                    self._in_flight_reason if c.name in in_flight else reason,
                    attempts=1 if c.name in in_flight else 0,
                )
                if result is None
                else result
            )
            for c, result in zip(delivery.targets, results, strict=True)
        ]
        self._handoff.finish(delivery)

    # -- incoming -------------------------------------------------------------------

    def on_message(self, handler: OnMessageHandler) -> Callable[[], None]:
        """Call ``handler`` for every incoming message; the return value unsubscribes.

        ``handler`` is a sync function or an async one (``OnMessageHandler``). Sync
        handlers run in arrival order on one worker thread of the notifier (they may
        block, and may call ``send`` to reply); async handlers run on the notifier's loop.
        A handler's exception is logged and never stops the listener.
        """
        if not callable(handler):
            raise TypeError(f"on_message needs a callable, not {type(handler).__name__}")
        unsubscribe = self._dispatcher.subscribe(self._handlers.runner(handler))
        done = False

        def unsubscribe_once() -> None:
            nonlocal done
            if not done:
                done = True
                unsubscribe()

        return unsubscribe_once

    # -- flush and close ------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message sent so far reached an outcome and backend queues are empty.

        ``timeout`` defaults to ``drain_timeout`` (None there: no limit); an infinite or
        negative value is refused. Returns True when all was done in time.
        """
        self._refuse_on_loop_thread("flush()")
        limit = self._drain_timeout if timeout is None else check_timeout(timeout, "timeout")
        if not self._started or self._closed:
            return True
        deadline = None if limit is None else time.monotonic() + limit
        if not self._handoff.wait_idle(deadline):
            return False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return self._loop_thread.call(
                self._flush_on_loop(remaining),
                timeout=None if remaining is None else remaining + 1.0,
            )
        except (TimeoutError, RuntimeError):
            return False

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``, default ``drain_timeout``), stop the backends and the thread.

        Idempotent. Messages still undelivered are reported as failed to whoever waits
        for them and listed in a warning. Returns True when everything was delivered.
        Should closing itself fail (or be interrupted), the loop is stopped and every
        message still waiting is settled as failed before the error propagates.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        return self._close(timeout, at_exit=False)

    async def aflush(self, timeout: float | None = None) -> bool:
        """``flush`` for async code: waits without blocking the running event loop."""
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        return await asyncio.to_thread(self.flush, timeout)

    async def aclose(self, timeout: float | None = None) -> bool:
        """``close`` for async code (e.g. a FastAPI lifespan): the running loop keeps running.

        Not from the notifier's own loop (an async ``on_message`` handler), which it stops.
        """
        self._refuse_on_loop_thread("aclose()")
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        return await asyncio.to_thread(self.close, timeout)

    def _close(self, timeout: float | None, *, at_exit: bool, when: str | None = None) -> bool:
        self._refuse_on_loop_thread("close()")
        with self._lifecycle:
            if self._handoff.closing:
                return self._close_result
            if self._signals is not None:
                self._signals.restore()
            self._handoff.close()  # senders waiting for room get NotifierClosedError
            untrack(self)
            self._finalizer.detach()
            try:
                self._close_result = self._shutdown(timeout, at_exit=at_exit, when=when)
            except BaseException:
                # Interrupted (Ctrl-C during the flush) or a bug: nothing may be left
                # running or waiting forever.
                self._close_result = False
                self._abandon_everything()
                raise
            finally:
                self._closed = True
            return self._close_result

    def _shutdown(self, timeout: float | None, *, at_exit: bool, when: str | None) -> bool:
        limit = self._drain_timeout if timeout is None else timeout
        if not self._started:
            self._handlers.close(0)
            return True
        flushed = self.flush(limit)
        if not flushed:
            self._abort_reason = f"not delivered: the notifier closed after waiting {limit}s"
            self._in_flight_reason = (
                f"the notifier closed after waiting {limit}s while this backend was sending "
                "it: it may have been delivered"
            )
        # Everything after the flush shares one short allowance, so close() takes at most
        # its timeout plus the grace, even when a backend or the loop is stuck.
        grace = time.monotonic() + (_EXIT_GRACE if at_exit else _CLOSE_GRACE)
        undelivered: list[Undelivered] = []
        try:
            undelivered = self._loop_thread.call(self._abort_pending(grace), timeout=_left(grace))
        except (TimeoutError, RuntimeError) as exc:
            logger.error("%s: could not cancel what was in flight: %r", self._name, exc)
        try:
            self._loop_thread.call(self._stop_backends(grace), timeout=_left(grace) + 0.1)
        except (TimeoutError, RuntimeError) as exc:
            logger.error("%s: stopping the backends failed: %r", self._name, exc)
        if not self._handlers.close(_left(grace)):
            logger.warning("%s: an on_message handler was still running at close", self._name)
        if not self._loop_thread.stop(max(_left(grace), 0.1)):
            logger.error("%s: the event loop thread did not stop", self._name)
        # Handed over while the loop stopped: it will never dispatch them.
        stranded = self._handoff.take_stranded()
        for delivery in stranded:
            undelivered.append(
                Undelivered(delivery.message, self._target_names(delivery.message.label))
            )
            self._fail_rest(delivery, self._abort_reason)
        self._handoff.flush_settled()
        if undelivered:
            # The wait the caller chose: close(timeout) when given, else drain_timeout.
            waited = (
                f"drain_timeout={self._drain_timeout}s"
                if at_exit or timeout is None
                else f"close timeout={timeout:g}s"
            )
            report_undelivered(undelivered, at_exit=at_exit, when=when, waited=waited)
        return flushed and not undelivered

    def _abandon_everything(self) -> None:
        """After a failed close: stop the loop (bounded) and settle every message as failed."""
        reason = "not delivered: closing the notifier failed"
        with contextlib.suppress(BaseException):
            self._loop_thread.stop(_EXIT_GRACE)
        handoff = self._handoff
        stranded = handoff.take_stranded()
        # The loop has stopped (or is stuck past its grace): its state is ours now.
        for delivery in [*handoff.local, *stranded]:  # never dispatched
            if delivery.withdrawn():
                handoff.settled += 1
            else:
                with contextlib.suppress(Exception):
                    self._fail_rest(delivery, reason)
        for delivery in list(handoff.active):  # dispatched: their futures are running
            if delivery.report is None:
                with contextlib.suppress(Exception):
                    self._fail_rest(delivery, reason, in_flight=delivery.pending() or ())
        handoff.local.clear()
        handoff.active.clear()
        self._handoff.flush_settled()

    async def _abort_pending(self, grace: float) -> list[Undelivered]:
        """Loop thread: settle everything still in flight as failed; list what it was.

        A message no backend had started on is listed as not delivered. One a backend was
        working on when it was cancelled is listed as in flight: the request may have
        reached the service, and resending it could deliver it twice.
        """
        waiting = self._handoff.take_waiting()
        undelivered: list[Undelivered] = []
        for delivery in waiting:
            if delivery.withdrawn():
                self._handoff.settled += 1
                continue
            undelivered.append(
                Undelivered(delivery.message, self._target_names(delivery.message.label))
            )
            self._fail_rest(delivery, self._abort_reason)
        active = list(self._handoff.active)
        # Waiting at the start gate of a backend still starting: surely not sent.
        held: set[tuple[int, int]] = set()
        tasks: list[asyncio.Task[Any]] = []
        for delivery in active:
            for index, send in enumerate(delivery.sends):
                if send is not None and not send.done():
                    if self._dispatcher.at_gate(send):
                        held.add((id(delivery), index))
                    tasks.append(send)
        edits = list(self._edits.items())
        tasks += (task for task, _ in edits)
        for task in tasks:
            task.cancel()
        if tasks:
            # A request that completes while being cancelled still reports its outcome.
            await asyncio.wait(tasks, timeout=_left(grace) / 2)
        for task, (earlier, edited) in edits:
            if task in self._cut_edits or not task.done():
                names = tuple(r.backend for r in earlier.results if _edit_reaches(r, True))
                undelivered.append(Undelivered(edited, names, True, edit=True))
        self._cut_edits.clear()
        for delivery in active:
            targets, results = delivery.targets or [], delivery.results or []
            not_sent: list[str] = []
            in_flight: list[str] = []
            for index, (communicator, result) in enumerate(zip(targets, results, strict=False)):
                if (id(delivery), index) in held:
                    if result is None:
                        not_sent.append(communicator.name)
                elif result is None or result.error == self._in_flight_reason:
                    in_flight.append(communicator.name)
            if not_sent:
                undelivered.append(Undelivered(delivery.message, tuple(not_sent)))
            if in_flight:
                undelivered.append(Undelivered(delivery.message, tuple(in_flight), True))
            self._fail_rest(delivery, self._abort_reason, in_flight=in_flight)
        self._handoff.flush_settled()
        return undelivered

    async def _stop_backends(self, grace: float) -> None:
        still = await self._dispatcher.stop_all(_left(grace), log=False)
        if still:
            logger.error("%s: backends still stopping at close: %s", self._name, ", ".join(still))


def _edit_reaches(earlier: DeliveryResult, resend: bool) -> bool:
    """True when an edit of ``earlier`` makes a request (``edit_one``'s choice, in short)."""
    return earlier.status == "delivered" and (bool(earlier.reference) or resend)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _disabled_backend(name: str, config: CommunicatorBackendConfig) -> Communicator:
    return NoOpCommunicator(name, config, reason=COMMUNICATIONS_DISABLED)


def _coerce_config(config: CommunicationsConfig | Mapping[str, Any]) -> CommunicationsConfig:
    if isinstance(config, CommunicationsConfig):
        return config
    if isinstance(config, Mapping):
        if "communications" in config:
            section = config["communications"]
            if not isinstance(section, Mapping):
                raise ConfigError(
                    f"must be a mapping of settings, not {type(section).__name__}",
                    source="<config>",
                    key="communications",
                )
            return config_from_mapping(section, prefix=("communications",))
        return config_from_mapping(config)
    raise TypeError(
        f"config must be a CommunicationsConfig or a mapping, not {type(config).__name__} "
        "(use Notifier.from_yaml(path) for a YAML file)"
    )


def _outgoing(
    message: str | OutgoingMessage,
    label: str,
    severity: MessageSeverity | str,
    subject: str | None,
    source: str | None,
    metadata: Mapping[str, Any] | None,
    attachments: Iterable[Any] | None = None,
) -> OutgoingMessage:
    if isinstance(message, OutgoingMessage):
        if (
            label != "default"
            or MessageSeverity.coerce(severity) is not MessageSeverity.INFO
            or subject is not None
            or source is not None
            or metadata
            or attachments
        ):
            raise TypeError(
                "pass label, severity, subject, source, metadata and attachments inside "
                "the OutgoingMessage, not as keywords next to it"
            )
        return message
    if not isinstance(message, str):
        raise TypeError(
            f"message must be a str or an OutgoingMessage, not {type(message).__name__}"
        )
    if not message or message.isspace():
        # Services refuse an empty text (Telegram, Slack, Discord), and so does the CLI.
        raise ValueError("the message is empty: give the text to send")
    # Only non-default fields are passed: validation is the cost of a send.
    fields: dict[str, Any] = {"message": message}
    if label != "default":
        fields["label"] = label
    if severity is not MessageSeverity.INFO:  # the default, left to the model
        level = MessageSeverity.coerce(severity)
        if level is not MessageSeverity.INFO:
            fields["severity"] = level
    if subject is not None:
        fields["subject"] = subject
    if source is not None:
        fields["source"] = source
    if metadata:
        fields["metadata"] = dict(metadata)
    if attachments is not None:
        # Converted here, before anything is queued: a bad path raises at the call.
        files = coerce_attachments(attachments)
        if files:
            fields["attachments"] = files
    return validated(OutgoingMessage, fields)


def _all_ready(attachments: Iterable[Any]) -> bool:
    """True when ``attachments`` needs no file reading (only ``Attachment`` objects)."""
    if isinstance(attachments, Attachment):
        return True
    if isinstance(attachments, str | os.PathLike) or not isinstance(attachments, list | tuple):
        return False
    return all(isinstance(item, Attachment) for item in attachments)


def _edited(
    report: DeliveryReport, message: str | OutgoingMessage, fields: Mapping[str, Any]
) -> OutgoingMessage:
    """The new version of ``report``'s message: ``message``, with ``fields`` replaced."""
    if not isinstance(report, DeliveryReport):
        raise TypeError(f"edit() needs the DeliveryReport of a send, not {type(report).__name__}")
    if isinstance(message, OutgoingMessage):
        if fields:
            raise TypeError("pass the fields inside the OutgoingMessage, not as keywords")
        if message.label != report.message.label:
            raise ValueError(
                f"an edit keeps the label {report.message.label!r}; got {message.label!r}"
            )
        if message.attachments and message.attachments != report.message.attachments:
            raise ValueError(
                "an edit changes the text only: the files stay as they were sent (send "
                "a new message for other files)"
            )
        return message.model_copy(update={"attachments": []}) if message.attachments else message
    if not isinstance(message, str):
        raise TypeError(
            f"message must be a str or an OutgoingMessage, not {type(message).__name__}"
        )
    allowed = {"severity", "subject", "source", "metadata"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise TypeError(
            f"edit() got unexpected field(s) {', '.join(unknown)}: it can change "
            f"{', '.join(sorted(allowed))} (the label stays)"
        )
    values = report.message.model_dump()
    values.update(fields)
    values["message"] = message
    values["attachments"] = []  # an edit changes the text only: the files stay as sent
    if "severity" in fields:
        values["severity"] = MessageSeverity.coerce(fields["severity"])
    return OutgoingMessage.model_validate(values)


def _weak_call(method: Callable[[], None]) -> Callable[[], None]:
    """``method()`` through a weak reference to its object (nothing once it is collected)."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call
