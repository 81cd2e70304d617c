"""``Progress``: one message kept up to date as a loop advances, like ``tqdm``.

``Notifier.progress(...)`` returns one. It sends one message when the loop starts, then
edits it in place on the backends that can edit (count, total, percentage, rate, time
elapsed and left), at most once per ``min_interval`` seconds and never while the
previous edit is still on its way, so a fast loop cannot outrun the backend's rate
limits (and the backend schedules each edit within them). When the loop ends, a final
edit shows how: done (totals and duration), failed at k of n (with the exception), or
stopped (``break``, an interrupt). Backends that cannot edit get the first message and
the final one, as a new message.

Progress is driven from one thread. ``update`` never blocks: edits are handed to the
notifier's loop and their outcome is not waited for; only the final edit waits (up to
``final_timeout``). An exception raised in the body of a plain ``for`` loop is not seen
by the iterator (Python only closes it, as after a ``break``), so the final message says
"stopped"; inside a ``Notifier.watch`` block that the exception ends, the watch edits
it into "failed at k of n" with the exception. Elsewhere, use ``with
notifier.progress(...) as p: for x in p: ...`` to have the final message name it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from processpype.communications._jobtext import format_duration, format_rate, shorten
from processpype.communications.delivery import DeliveryReport
from processpype.foundation.errors import describe_error
from processpype.foundation.models import MessageSeverity, OutgoingMessage

if TYPE_CHECKING:
    from processpype.communications.notifier import Notifier

__all__ = ["Progress"]

logger = logging.getLogger("processpype.communications.progress")

_SOURCE = "processpype.progress"
_FINAL_TIMEOUT = 30.0
_ERROR_CHARS = 500

State = Literal["running", "done", "failed", "stopped"]


class Progress[T = Any]:
    """Iterates like ``tqdm`` (or is updated by hand) and reports through one message."""

    def __init__(
        self,
        notifier: Notifier,
        iterable: Iterable[T] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        label: str = "default",
        min_interval: float = 5.0,
        clock: Callable[[], float],
        final_timeout: float = _FINAL_TIMEOUT,
    ) -> None:
        if isinstance(min_interval, bool) or not isinstance(min_interval, int | float):
            raise TypeError(f"min_interval must be a number of seconds, not {min_interval!r}")
        if not min_interval >= 0:
            raise ValueError(f"min_interval must be >= 0 seconds, not {min_interval!r}")
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int | float) or total < 0
        ):
            raise ValueError(f"total must be a number >= 0 or None, not {total!r}")
        self._notifier = notifier
        self._iterable = iterable
        self.total = total
        self.desc = desc
        self.label = label
        self.min_interval = float(min_interval)
        self.final_timeout = final_timeout
        self._clock = clock
        self.n: float = 0
        """How far the loop got."""
        self.state: State = "running"
        self.edits = 0
        """How many edits were handed to the notifier (the final one included)."""
        self.final_report: DeliveryReport | None = None
        """The report of the final message or edit, once the loop ended."""
        self._started_at: float | None = None
        self._last_edit_at = -math.inf
        self._first: concurrent.futures.Future[DeliveryReport] | None = None
        self._report: DeliveryReport | None = None
        self._editing: concurrent.futures.Future[DeliveryReport] | None = None
        self._entered = False
        self._left_early = False
        self._ended_at: float | None = None

    def __repr__(self) -> str:
        total = "?" if self.total is None else _count(self.total)
        return f"Progress(desc={self.desc!r}, n={_count(self.n)}, total={total}, {self.state})"

    # -- driving it -------------------------------------------------------------------

    def __iter__(self) -> Iterator[T]:
        if self._iterable is None:
            raise TypeError("this progress has no iterable: call update() instead")
        self._begin()
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        except GeneratorExit:  # the loop was left early (break, or an exception in it)
            if self._entered:
                self._left_early = True  # __exit__ knows why, and reports it
            else:
                self._end("stopped", None)
                self._offer_amend(sys._getframe(1))
            raise
        except BaseException as exc:  # the iterable itself failed
            self._end(_state_for(exc), exc)
            raise
        self._end("done", None)

    def __enter__(self) -> Self:
        self._entered = True
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        if exc is not None:
            self._end(_state_for(exc), exc)
        else:
            self._end("stopped" if self._left_early else "done", None)

    def update(self, n: float = 1) -> None:
        """Count ``n`` more done; edit the message when ``min_interval`` has passed."""
        if self.state != "running":
            return
        if self._started_at is None:
            self._begin()
        self.n += n
        now = self._clock()
        if now - self._last_edit_at < self.min_interval:
            return
        report = self._ready_report()
        if report is None:
            return  # the first message (or the previous edit) is still on its way
        if not _editable(report):
            return  # nothing can be edited (e.g. queued in an outbox): the final one only
        self._last_edit_at = now
        try:
            self._editing = self._notifier._edit_future(report, self._message("running", None))
        except Exception as exc:  # e.g. the notifier was closed: the loop goes on, unreported
            logger.warning("progress %r: could not edit the message: %s", self.desc, exc)
            self.state = "stopped"
            return
        self.edits += 1

    def close(self) -> None:
        """End it now as done (``with`` and iteration do this themselves)."""
        if self.state == "running":
            self._end("done", None)

    def _offer_amend(self, frame: FrameType) -> None:
        """Let a watch around the loop say it failed, if an exception ended it (frame)."""
        from processpype.communications.watch import note_loop_left

        if self.final_report is not None and _editable(self.final_report):
            note_loop_left(frame, self._amend_failed)

    def _amend_failed(self, exc: BaseException) -> None:
        """Edit the final "stopped" message into "failed at k of n" with ``exc``."""
        report = self.final_report
        if self.state != "stopped" or report is None:
            return
        self.state = "failed"
        message = self._message("failed", exc, at=self._ended_at)
        try:
            future = self._notifier._edit_future(report, message)
            self.final_report = future.result(self.final_timeout)
        except Exception as exc_edit:
            logger.warning("progress %r: could not name the failure: %s", self.desc, exc_edit)
        else:
            self.edits += 1

    # -- the messages -----------------------------------------------------------------

    def _begin(self) -> None:
        if self._started_at is not None:
            return
        self._started_at = self._clock()
        self._last_edit_at = self._started_at
        try:
            self._first = self._notifier.send_nowait(self._message("running", None))
        except Exception as exc:  # a notification problem never stops the loop
            logger.warning("progress %r: could not send the first message: %s", self.desc, exc)
            self.state = "stopped"

    def _ready_report(self) -> DeliveryReport | None:
        """The report to edit, once the first message and the last edit are out."""
        editing = self._editing
        if editing is not None and not editing.done():
            return None
        if self._report is None:
            first = self._first
            if first is None or not first.done():
                return None
            try:
                self._report = first.result()
            except Exception as exc:
                logger.warning("progress %r: the first message failed: %s", self.desc, exc)
                self.state = "stopped"
                return None
        return self._report

    def _end(self, state: State, exc: BaseException | None) -> None:
        if self.state != "running":
            return
        if self._started_at is None:
            self._begin()
        self.state = state
        self._ended_at = self._clock()
        message = self._message(state, exc, at=self._ended_at)
        try:
            report = self._wait_first()
            if self._editing is not None:
                # The last edit must land before the final one, or it could overwrite it.
                concurrent.futures.wait([self._editing], timeout=self.final_timeout)
            self.edits += 1
            future = self._notifier._edit_future(report, message, resend=True)
            self.final_report = future.result(self.final_timeout)
        except Exception as exc_final:  # never hide the loop's own outcome
            logger.warning("progress %r: the final message failed: %s", self.desc, exc_final)

    def _wait_first(self) -> DeliveryReport:
        if self._report is None:
            if self._first is None:
                raise RuntimeError("the first message was never sent")
            self._report = self._first.result(self.final_timeout)
        return self._report

    def _message(
        self, state: State, exc: BaseException | None, *, at: float | None = None
    ) -> OutgoingMessage:
        name = self.desc or "progress"
        assert self._started_at is not None
        elapsed = max(0.0, (self._clock() if at is None else at) - self._started_at)
        n, total = self.n, self.total
        done = f"{_count(n)}/{_count(total)}" if total is not None else _count(n)
        rate = n / elapsed if elapsed > 0 else 0.0
        severity = MessageSeverity.INFO
        if state == "running":
            parts = [f"\N{HOURGLASS WITH FLOWING SAND} {name}: {done}"]
            if total:
                parts[0] += f" ({min(n / total, 1.0):.0%})"
            if n:
                parts.append(format_rate(rate))
            parts.append(f"elapsed {format_duration(elapsed)}")
            if total is not None and n and rate > 0:
                parts.append(f"left {format_duration(max(total - n, 0) / rate)}")
            text = " \N{MIDDLE DOT} ".join(parts)
            subject = f"{name}: started"
        elif state == "done":
            text = f"\N{WHITE HEAVY CHECK MARK} {name}: done, {done} in {format_duration(elapsed)}"
            if n and elapsed > 0:
                text += f" ({format_rate(rate)})"
            subject = f"{name}: done"
        else:
            of = f"{_count(n)} of {_count(total)}" if total is not None else _count(n)
            if state == "failed":
                assert exc is not None
                severity = MessageSeverity.ERROR
                error = shorten(describe_error(exc), _ERROR_CHARS)
                text = (
                    f"\N{CROSS MARK} {name}: failed at {of} after {format_duration(elapsed)}: "
                    f"{error}"
                )
                subject = f"{name}: failed"
            else:
                severity = MessageSeverity.WARNING
                why = f" ({describe_error(exc)})" if exc is not None else ""
                text = (
                    f"\N{WARNING SIGN} {name}: stopped at {of} after "
                    f"{format_duration(elapsed)}{why}"
                )
                subject = f"{name}: stopped"
        metadata: dict[str, Any] = {"progress": name, "n": n, "total": total, "status": state}
        return OutgoingMessage(
            message=text,
            label=self.label,
            severity=severity,
            subject=subject,
            source=_SOURCE,
            metadata=metadata,
        )


def _editable(report: DeliveryReport) -> bool:
    """True when a backend delivered the message and can find it again to edit it."""
    return any(r.status == "delivered" and r.reference for r in report.results)


def _state_for(exc: BaseException) -> State:
    if isinstance(exc, Exception):
        return "failed"
    return "stopped"  # KeyboardInterrupt, SystemExit, cancellation


def _count(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"
