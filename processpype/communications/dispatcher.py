"""Label routing: ``CommunicationDispatcher`` and the process-wide ``get_dispatcher``.

Outgoing messages go to every backend registered for their label, concurrently, so a
slow backend never delays the others and one backend's failure never stops the rest.
This is the one fan-out: ``fan_out`` starts a message's sends without waiting (the
``Notifier``'s loop uses it), ``deliver`` awaits it (``emit``, the CLI). Each backend has
a start gate: while its ``start()`` runs, its messages wait there in arrival order.
Incoming messages from backends are published on an eventspype ``EventPublisher``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from eventspype import EventPublication, EventPublisher, FunctionalEventSubscriber

from processpype.communications._delivery_context import DELIVERING, delivery_work
from processpype.communications.backends._retry import backoff_delay
from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryReport, DeliveryResult
from processpype.foundation.errors import describe_error
from processpype.foundation.models import IncomingMessage, MessageSeverity, OutgoingMessage

__all__ = [
    "INCOMING_MESSAGE_TAG",
    "CommunicationDispatcher",
    "emit_message",
    "get_dispatcher",
]

logger = logging.getLogger("processpype.communications.dispatcher")

INCOMING_MESSAGE_TAG = "incoming_message"
"""eventspype tag of the publication that carries ``IncomingMessage`` events."""

_START_RETRY_FIRST_DELAY = 1.0
_START_RETRY_MAX_DELAY = 60.0


class _StartFailure:
    """The last start() error of a backend and when a retry is allowed."""

    __slots__ = ("error", "failures", "retry_at")

    def __init__(self, error: BaseException, failures: int) -> None:
        self.error = error
        self.failures = failures
        delay = backoff_delay(failures, _START_RETRY_FIRST_DELAY, _START_RETRY_MAX_DELAY)
        self.retry_at = time.monotonic() + delay


class _StartGate:
    """Where the messages of one backend wait, in arrival order, while its start() runs.

    Once the start ended they pass one at a time, each letting the next through as it
    hands its message to the backend, so a message arriving meanwhile queues behind
    them instead of overtaking them. The gate is gone once the last one passed.
    """

    __slots__ = ("start", "turns")

    def __init__(self) -> None:
        self.start: asyncio.Task[bool] | None = None
        self.turns: deque[asyncio.Future[None]] = deque()


class CommunicationDispatcher:
    """Routes OutgoingMessage to registered Communicator backends by label."""

    def __init__(self) -> None:
        self._communicators: dict[str, Communicator] = {}
        self._labels: dict[str, list[Communicator]] = {}
        self._publication = EventPublication(INCOMING_MESSAGE_TAG, IncomingMessage)
        self._publisher = EventPublisher(self._publication)
        # eventspype holds subscribers weakly: keep every subscriber we create alive.
        self._subscribers: set[FunctionalEventSubscriber] = set()
        self._start_failures: dict[str, _StartFailure] = {}
        self._gates: dict[str, _StartGate] = {}  # by backend; loop thread only
        self._at_gate: set[asyncio.Task[Any]] = set()  # tasks waiting at a gate
        self._warned_labels: set[str] = set()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"CommunicationDispatcher(communicators={sorted(self._communicators)!r})"

    # -- registry -------------------------------------------------------------------

    @property
    def incoming_publisher(self) -> EventPublisher:
        """The eventspype publisher of ``IncomingMessage`` events from every backend."""
        return self._publisher

    @property
    def incoming_publication(self) -> EventPublication:
        """The publication (tag and event class) of incoming messages."""
        return self._publication

    @property
    def communicators(self) -> dict[str, Communicator]:
        """A copy of the registered communicators, by name."""
        with self._lock:
            return dict(self._communicators)

    def get(self, name: str) -> Communicator | None:
        """The communicator registered as ``name``, or None."""
        return self._communicators.get(name)

    def labels(self) -> dict[str, list[str]]:
        """Map every label to the names of its communicators."""
        with self._lock:
            return {label: [c.name for c in comms] for label, comms in self._labels.items()}

    def targets(self, label: str, *, warn: bool = False) -> list[Communicator]:
        """The communicators registered for ``label``, in registration order.

        With ``warn``, a label that no backend handles is logged as a warning, once.
        """
        targets = self._labels.get(label)
        if targets:
            return list(targets)
        if warn and label not in self._warned_labels:
            self._warned_labels.add(label)
            known = ", ".join(sorted(self._labels)) or "none"
            logger.warning(
                "no backend handles label %r; its messages go nowhere (labels with backends: %s)",
                label,
                known,
            )
        return []

    def register(self, communicator: Communicator, labels: list[str] | None = None) -> None:
        """Register a communicator for ``labels`` (default ``["default"]``).

        A communicator that supports receiving gets its incoming handler wired to the
        event publisher. A second communicator with the same name is refused.
        """
        labels = ["default"] if labels is None else list(labels)
        if not labels:
            raise ValueError(f"communicator {communicator.name!r}: labels cannot be empty")
        with self._lock:
            if communicator.name in self._communicators:
                raise ValueError(
                    f"a communicator named {communicator.name!r} is already registered"
                )
            self._communicators[communicator.name] = communicator
            for label in dict.fromkeys(labels):
                self._labels.setdefault(label, []).append(communicator)
                self._warned_labels.discard(label)
        if communicator.supports_receiving:
            communicator.set_incoming_handler(self.publish_incoming)

    def unregister(self, name: str) -> None:
        """Remove a communicator backend by name and all its label mappings."""
        with self._lock:
            communicator = self._communicators.pop(name, None)
            if communicator is None:
                return
            for label in list(self._labels):
                remaining = [c for c in self._labels[label] if c is not communicator]
                if remaining:
                    self._labels[label] = remaining
                else:
                    del self._labels[label]
            self._start_failures.pop(name, None)

    # -- incoming -------------------------------------------------------------------

    def publish_incoming(self, message: IncomingMessage) -> None:
        """Publish a received message to every subscriber (synchronously)."""
        self._publisher.publish(message)

    def subscribe(self, handler: Callable[[IncomingMessage], None]) -> Callable[[], None]:
        """Call ``handler`` for every incoming message; the return value unsubscribes.

        The dispatcher keeps the subscriber alive until unsubscribed (eventspype itself
        holds subscribers weakly).
        """
        subscriber = FunctionalEventSubscriber(handler, with_event_info=False)
        with self._lock:
            self._subscribers.add(subscriber)
        self._publisher.add_subscriber(subscriber)

        def unsubscribe() -> None:
            self._publisher.remove_subscriber(subscriber)
            with self._lock:
                self._subscribers.discard(subscriber)

        return unsubscribe

    # -- outgoing -------------------------------------------------------------------

    async def emit(self, message: OutgoingMessage) -> None:
        """Send ``message`` to every backend of its label, concurrently.

        Failures are logged; they never stop delivery to the remaining backends.
        """
        await self.deliver(message)

    async def deliver(
        self,
        message: OutgoingMessage,
        *,
        on_result: Callable[[DeliveryResult], None] | None = None,
    ) -> DeliveryReport:
        """Send ``message`` to every backend of its label and report each outcome.

        ``on_result``, if given, is called with each backend's result as it arrives (a
        progress line, say); the report lists the results in registration order.
        """
        targets = self.targets(message.label, warn=True)
        if not targets:
            return DeliveryReport(message=message)
        if len(targets) == 1:  # one backend: awaited here, no task, no future
            result = await self.deliver_to(targets[0], message)
            if on_result is not None:
                on_result(result)
            return DeliveryReport(message=message, results=(result,))
        results: list[DeliveryResult | None] = [None] * len(targets)
        done = asyncio.get_running_loop().create_future()
        left = len(targets)

        def collect(index: int, result: DeliveryResult | None) -> None:
            nonlocal left
            results[index] = result
            left -= 1
            try:
                if on_result is not None and result is not None:
                    on_result(result)
            except BaseException as exc:  # the caller's callback: raised from deliver
                if not done.done():
                    done.set_exception(exc)
                return
            if left == 0 and not done.done():
                done.set_result(None)

        sends = self.fan_out(message, targets, collect)
        try:
            await done  # raises what on_result raised (the other sends go on)
        except asyncio.CancelledError:
            for task in sends:
                if task is not None:
                    task.cancel()  # the caller gave up: so do the sends
            raise
        return DeliveryReport(
            message=message,
            results=tuple(
                DeliveryResult.failed(c.name, "the delivery was cancelled", attempts=0)
                if result is None
                else result
                for c, result in zip(targets, results, strict=True)
            ),
        )

    def fan_out(
        self,
        message: OutgoingMessage,
        targets: Sequence[Communicator],
        on_result: Callable[[int, DeliveryResult | None], None],
        *,
        context: contextvars.Context | None = None,
    ) -> list[asyncio.Task[DeliveryResult] | None]:
        """Loop thread: start sending ``message`` to each of ``targets``, without waiting.

        Each send is an eager task (``deliver_to``) run at once up to its first await,
        in ``targets`` order: backends fix each message's place in their order in the
        order messages are handed over, and an in-memory backend completes right here.
        Each runs in its own copy of ``context`` (default: the caller's), so the sender's
        contextvars show in the backend and one backend's changes never leak into
        another's. ``on_result(index, result)`` is called once per target: during this
        call for a send that completed at once, from the task's done callback otherwise;
        ``result`` is None for a send that was cancelled. Returns one entry per target:
        the task still sending, or None where the result was already handed over.
        """
        if context is None:
            context = contextvars.copy_context()
        sends: list[asyncio.Task[DeliveryResult] | None] = []
        for index, communicator in enumerate(targets):
            sent = self.send_one(communicator, message, context)
            if isinstance(sent, DeliveryResult):
                on_result(index, sent)
                sends.append(None)
            else:
                sent.add_done_callback(
                    functools.partial(_hand_back, on_result, index, communicator.name)
                )
                sends.append(sent)
        return sends

    def send_one(
        self, communicator: Communicator, message: OutgoingMessage, context: contextvars.Context
    ) -> DeliveryResult | asyncio.Task[DeliveryResult]:
        """Loop thread: the one step of ``fan_out`` for one backend.

        Runs ``deliver_to`` at once, as an eager task in a copy of ``context``: the
        result when it completed without waiting (an in-memory backend), else the task
        still sending. The Notifier calls it directly for a label with one backend.
        """
        task = asyncio.Task(
            self.deliver_to(communicator, message),
            loop=asyncio.get_running_loop(),
            eager_start=True,
            context=context.copy(),  # a context cannot be entered twice at once
        )
        if task.done():
            result = send_outcome(communicator.name, task)
            if result is not None:
                return result
        return task

    def at_gate(self, task: asyncio.Task[DeliveryResult]) -> bool:
        """True while ``task`` (from ``fan_out``) waits for its backend's start to end.

        Its message has not reached the backend: cancelled now, it was surely not sent.
        """
        return task in self._at_gate

    async def deliver_to(
        self, communicator: Communicator, message: OutgoingMessage
    ) -> DeliveryResult:
        """Deliver ``message`` to one backend; never raises, always returns a result."""
        # What the backend and its libraries log meanwhile is not an alert (set directly,
        # not with a context manager: this runs once per message and backend).
        token = DELIVERING.set(True)
        try:
            return await self._deliver_to(communicator, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug on our side: still a result, never an exception
            logger.exception("%s: delivering a message failed", communicator.name)
            return DeliveryResult.failed(communicator.name, exc, attempts=0)
        finally:
            DELIVERING.reset(token)

    async def _deliver_to(
        self, communicator: Communicator, message: OutgoingMessage
    ) -> DeliveryResult:
        name = communicator.name
        skipped = severity_skip(communicator, message)
        if skipped is not None:
            return skipped
        gate = self._gates.get(name)
        if gate is None and not communicator.is_started:
            failure = self._start_failures.get(name)
            if failure is None or time.monotonic() < failure.retry_at:
                return _not_started(name, failure)
            self.begin_start(communicator)  # retried, with backoff, on this message
            gate = self._gates[name]
        if gate is not None:
            await self._wait_at_gate(name, gate)
            if not communicator.is_started:
                return _not_started(name, self._start_failures.get(name))
        try:
            return await communicator.deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempts = getattr(exc, "attempts", 1)
            logger.error(
                "%s: message for label %r failed: %s", name, message.label, describe_error(exc)
            )
            return DeliveryResult.failed(
                name, exc, attempts=attempts if isinstance(attempts, int) else 1
            )

    async def edit(
        self, report: DeliveryReport, message: OutgoingMessage, *, resend: bool = False
    ) -> DeliveryReport:
        """Edit what ``report`` delivered into ``message``, on every backend of it that can.

        A backend that cannot edit is skipped, or, with ``resend``, sent ``message`` as
        a new message; a backend where the first message was not delivered is skipped.
        """
        results = await asyncio.gather(
            *(self.edit_one(result, message, resend=resend) for result in report.results)
        )
        return DeliveryReport(message=message, results=tuple(results))

    async def edit_one(
        self, earlier: DeliveryResult, message: OutgoingMessage, *, resend: bool = False
    ) -> DeliveryResult:
        """Edit the message ``earlier`` reports into ``message``; never raises."""
        name = earlier.backend
        communicator = self.get(name)
        if communicator is None:
            return DeliveryResult.skipped(name, "the backend is no longer registered")
        if (
            not communicator.supports_editing
            or earlier.status != "delivered"
            or not earlier.reference
        ):
            if resend:
                return await self.deliver_to(communicator, message)
            if earlier.status == "queued":
                # A worker delivers it: the id the service gave it is not known here.
                return DeliveryResult.skipped(
                    name, "nothing to edit here: the message was queued in the outbox"
                )
            if not communicator.supports_editing:
                return DeliveryResult.skipped(name, "this backend cannot edit messages")
            return DeliveryResult.skipped(
                name, "nothing to edit: the earlier message was not delivered there"
            )
        if message.attachments:
            # An edit changes the text only: the files stay as they were first sent.
            message = message.model_copy(update={"attachments": []})
        token = DELIVERING.set(True)  # what the edit logs is not an alert (as deliver_to)
        try:
            return await communicator.edit(earlier.reference, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempts = getattr(exc, "attempts", 1)
            logger.error("%s: editing a message failed: %s", name, describe_error(exc))
            return DeliveryResult.failed(
                name, exc, attempts=attempts if isinstance(attempts, int) else 1
            )
        finally:
            DELIVERING.reset(token)

    async def _wait_at_gate(self, name: str, gate: _StartGate) -> None:
        """Wait for this message's turn at ``gate``; returns letting the next one through."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gate.turns.append(turn)
        task = asyncio.current_task()
        if task is not None:
            self._at_gate.add(task)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._pass_gate(name, gate)  # it was its turn: the next one goes
            else:
                gate.turns.remove(turn)
            raise
        finally:
            self._at_gate.discard(task)
        self._pass_gate(name, gate)

    def _pass_gate(self, name: str, gate: _StartGate) -> None:
        """Let the next message through ``gate`` (after its start ended), or remove it."""
        if gate.start is not None and not gate.start.done():
            return
        while gate.turns:
            turn = gate.turns.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        if self._gates.get(name) is gate:
            del self._gates[name]

    # -- lifecycle ------------------------------------------------------------------

    async def _start_one(self, communicator: Communicator) -> bool:
        try:
            # Tasks a backend starts here (a client's receive loop) inherit the mark.
            with delivery_work():
                await communicator.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            previous = self._start_failures.get(communicator.name)
            failures = previous.failures + 1 if previous else 1
            self._start_failures[communicator.name] = _StartFailure(exc, failures)
            logger.error("%s: start failed: %s", communicator.name, describe_error(exc))
            return False
        self._start_failures.pop(communicator.name, None)
        return True

    def begin_start(self, communicator: Communicator) -> asyncio.Task[bool]:
        """Loop thread: start ``communicator`` in a task, its messages waiting meanwhile.

        Messages for the backend wait at its start gate, in arrival order, until the
        start ended (well or not); a backend already starting returns that start.
        """
        name = communicator.name
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = _StartGate()
        elif gate.start is not None and not gate.start.done():
            return gate.start
        task = asyncio.get_running_loop().create_task(
            self._start_one(communicator), name=f"start {name}"
        )
        gate.start = task
        task.add_done_callback(lambda _: self._pass_gate(name, gate))
        return task

    async def start_one(self, communicator: Communicator) -> bool:
        """Start one communicator; a failure is logged, kept and retried on its next message.

        Messages sent to it meanwhile wait for the start to end, in arrival order.
        """
        return await self.begin_start(communicator)

    async def start_all(self) -> None:
        """Start all registered communicators concurrently; failures are logged."""
        pending = [c for c in self.communicators.values() if not c.is_started]
        await asyncio.gather(*(self.begin_start(c) for c in pending))

    def start_errors(self) -> dict[str, BaseException]:
        """The last start() error of every backend that is not running because of it."""
        return {name: failure.error for name, failure in self._start_failures.items()}

    async def flush_all(self, timeout: float | None = None) -> bool:
        """Wait until every backend's queue is empty; True when all emptied in time."""
        results = await asyncio.gather(
            *(_flush_one(c, timeout) for c in self.communicators.values()),
        )
        return all(results)

    async def stop_all(self, timeout: float | None = None, *, log: bool = True) -> list[str]:
        """Stop every registered communicator concurrently, waiting up to ``timeout``.

        Failures are logged, never raised. A backend whose ``stop()`` has not returned
        when ``timeout`` runs out is cancelled and logged by name (a hung stop must not
        hang the caller; ``log=False`` leaves that line to the caller). Returns the names
        of those backends, sorted; None waits for all.
        """
        stopping = {
            asyncio.ensure_future(_stop_one(c)): name for name, c in self.communicators.items()
        }
        if not stopping:
            return []
        # One task per backend, so the log names those whose stop() did not return (a
        # backend clears is_started as its stop begins: that flag cannot tell).
        _, still = await asyncio.wait(stopping, timeout=timeout)
        if not still:
            return []
        for task in still:
            task.cancel()
        names = sorted(stopping[task] for task in still)
        if log:
            logger.error("backends still stopping after %ss: %s", timeout, ", ".join(names))
        return names


def severity_skip(communicator: Communicator, message: OutgoingMessage) -> DeliveryResult | None:
    """The skipped result of a message below the backend's ``min_severity``; else None."""
    min_severity = getattr(communicator.config, "min_severity", MessageSeverity.DEBUG)
    # Nothing ranks below DEBUG (the default): skip the comparison for it.
    if min_severity is not MessageSeverity.DEBUG and message.severity < min_severity:
        return DeliveryResult.skipped(
            communicator.name,
            f"severity {message.severity} is below min_severity {min_severity}",
        )
    return None


def _not_started(name: str, failure: _StartFailure | None) -> DeliveryResult:
    """The result of a message for a backend that is not running (its start failed)."""
    if failure is None:
        return DeliveryResult.skipped(name, "backend is not started")
    return DeliveryResult.failed(
        name, f"backend did not start: {describe_error(failure.error)}", attempts=0
    )


def send_outcome(name: str, task: asyncio.Task[DeliveryResult]) -> DeliveryResult | None:
    """The result of a finished send; None when it was cancelled."""
    try:
        return task.result()
    except asyncio.CancelledError:
        return None
    except BaseException as error:  # deliver_to never raises; a bug in it still reports
        return DeliveryResult.failed(name, error)


def _hand_back(
    on_result: Callable[[int, DeliveryResult | None], None],
    index: int,
    name: str,
    task: asyncio.Task[DeliveryResult],
) -> None:
    on_result(index, send_outcome(name, task))


async def _flush_one(communicator: Communicator, timeout: float | None) -> bool:
    try:
        with delivery_work():  # a flush sends what is queued
            return await communicator.flush(timeout)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.error("%s: flush failed: %s", communicator.name, describe_error(exc))
        return False


async def _stop_one(communicator: Communicator) -> None:
    try:
        with delivery_work():  # a stop drains what is in flight
            await communicator.stop()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.error("%s: stop failed: %s", communicator.name, describe_error(exc))


_global_dispatcher: CommunicationDispatcher | None = None
_global_lock = threading.Lock()


def get_dispatcher() -> CommunicationDispatcher:
    """Get or create the global CommunicationDispatcher singleton. Thread-safe."""
    global _global_dispatcher
    dispatcher = _global_dispatcher
    if dispatcher is None:
        with _global_lock:
            dispatcher = _global_dispatcher
            if dispatcher is None:
                dispatcher = _global_dispatcher = CommunicationDispatcher()
    return dispatcher


def reset_dispatcher() -> None:
    """Forget the global dispatcher (its backends are not stopped); for tests."""
    global _global_dispatcher
    with _global_lock:
        _global_dispatcher = None


async def emit_message(message: OutgoingMessage) -> None:
    """Emit a message via the global dispatcher."""
    await get_dispatcher().emit(message)
