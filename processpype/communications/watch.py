"""``Watch``: report how a job ends, as a context manager or a decorator.

``Notifier.watch(name, ...)`` returns one. Used with ``with`` or ``async with`` it times
the block; used as a decorator it times every call of the function (the wrapper of an
async function is async). When the job ends it sends one message to ``label``:

- success: severity info, the job's name and duration (and, with ``include_result``, a
  shortened repr of the return value, or of ``watch.result`` set inside a block);
- an exception: severity error, its type and message and the last ``traceback_lines``
  lines of its traceback; the exception is then re-raised unchanged;
- ``KeyboardInterrupt``, ``SystemExit`` or a cancelled task: severity warning,
  "interrupted", and the exception is re-raised.

The message is handed to the notifier (and waited for up to ``send_timeout``) before
the exception goes on, so a script that ends right there still reports why. A failure to
notify is logged and never replaces the job's own outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import reprlib
import time
import traceback
from collections.abc import Awaitable, Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, cast

from processpype.communications._jobtext import format_duration, shorten
from processpype.foundation._masking import redact
from processpype.foundation.errors import describe_error
from processpype.foundation.models import MessageSeverity

if TYPE_CHECKING:
    from processpype.communications.notifier import Notifier

__all__ = ["Watch", "note_loop_left"]

logger = logging.getLogger("processpype.communications.watch")

_SOURCE = "processpype.watch"
_RESULT_CHARS = 300
_ERROR_CHARS = 1000
_SEND_TIMEOUT = 10.0
_UNSET: Any = object()

Outcome = Literal["started", "finished", "failed", "interrupted"]

_watching: contextvars.ContextVar[tuple[Watch, ...]] = contextvars.ContextVar(
    "processpype_watches", default=()
)
"""The watches whose block runs in this context, innermost last."""

Amend = Callable[[BaseException], None]


def note_loop_left(frame: FrameType, amend: Amend) -> bool:
    """Tell the innermost running watch that a loop in ``frame`` was left without a reason.

    A ``progress`` iterated by a plain ``for`` loop is only closed when the loop is left,
    whether by ``break`` or by an exception, and cannot tell which. When the watch
    around it then ends with an exception that passed through ``frame`` at the line
    that was running when the loop was left, that exception ended the loop, and the
    watch calls ``amend(exception)``. False when no watch runs.
    """
    watches = _watching.get()
    if not watches:
        return False
    watches[-1]._left_loops.append((frame, frame.f_lineno, amend))
    return True


class Watch:
    """Times a job and reports its end (see the module docstring); made by ``Notifier.watch``."""

    def __init__(
        self,
        notifier: Notifier,
        name: str,
        *,
        label: str = "default",
        notify_start: bool = False,
        include_result: bool = False,
        traceback_lines: int = 20,
        send_timeout: float = _SEND_TIMEOUT,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"watch() needs a job name, got {name!r}")
        if isinstance(traceback_lines, bool) or not isinstance(traceback_lines, int):
            raise TypeError(f"traceback_lines must be an int, not {traceback_lines!r}")
        if traceback_lines < 0:
            raise ValueError(f"traceback_lines must be >= 0, not {traceback_lines}")
        self._notifier = notifier
        self.name = name
        self.label = label
        self.notify_start = notify_start
        self.include_result = include_result
        self.traceback_lines = traceback_lines
        self.send_timeout = send_timeout
        self.result: Any = _UNSET
        """Set it inside a ``with`` block to report it (with ``include_result``)."""
        self._started: list[float] = []
        self._tokens: list[contextvars.Token[tuple[Watch, ...]]] = []
        self._left_loops: list[tuple[FrameType, int, Amend]] = []

    def __repr__(self) -> str:
        return f"Watch(name={self.name!r}, label={self.label!r})"

    def _copy(self) -> Watch:
        """A fresh watch with the same settings: one per call of a decorated function."""
        return Watch(
            self._notifier,
            self.name,
            label=self.label,
            notify_start=self.notify_start,
            include_result=self.include_result,
            traceback_lines=self.traceback_lines,
            send_timeout=self.send_timeout,
        )

    # -- the context manager ----------------------------------------------------------

    def __enter__(self) -> Self:
        self._started.append(time.monotonic())
        self._push()
        if self.notify_start:
            self._send(*self._message("started", None, 0.0))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.monotonic() - self._started.pop()
        for amend in self._pop(exc):
            amend(cast(BaseException, exc))
        self._send(*self._message(_outcome(exc), exc, elapsed))

    async def __aenter__(self) -> Self:
        self._started.append(time.monotonic())
        self._push()
        if self.notify_start:
            await self._asend(*self._message("started", None, 0.0))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.monotonic() - self._started.pop()
        for amend in self._pop(exc):
            # It waits for an edit: on a worker thread, so this loop keeps running.
            await asyncio.to_thread(amend, cast(BaseException, exc))
        await self._asend(*self._message(_outcome(exc), exc, elapsed))

    def _push(self) -> None:
        self._tokens.append(_watching.set((*_watching.get(), self)))

    def _pop(self, exc: BaseException | None) -> list[Amend]:
        """Leave the watch's context; the loops that ``exc`` ended, to be told so."""
        token = self._tokens.pop()
        try:
            _watching.reset(token)
        except ValueError:  # left in another context than entered: drop it from this one
            _watching.set(tuple(w for w in _watching.get() if w is not self))
        left, self._left_loops = self._left_loops, []
        if not isinstance(exc, Exception) or not left:
            return []
        passed: set[tuple[int, int]] = set()
        tb = exc.__traceback__
        while tb is not None:
            passed.add((id(tb.tb_frame), tb.tb_lineno))
            tb = tb.tb_next
        return [amend for frame, line, amend in left if (id(frame), line) in passed]

    # -- the decorator ----------------------------------------------------------------

    def __call__[F: Callable[..., Any]](self, func: F) -> F:
        """Watch every call of ``func`` (a sync or an async function)."""
        if not callable(func):
            raise TypeError(f"watch() decorates a function, not {type(func).__name__}")
        if inspect.iscoroutinefunction(func):
            coroutine_function = cast(Callable[..., Awaitable[Any]], func)

            @functools.wraps(func)
            async def watched_async(*args: Any, **kwargs: Any) -> Any:
                watch = self._copy()
                async with watch:
                    watch.result = await coroutine_function(*args, **kwargs)
                    return watch.result

            return cast(F, watched_async)

        @functools.wraps(func)
        def watched(*args: Any, **kwargs: Any) -> Any:
            watch = self._copy()
            with watch:
                watch.result = func(*args, **kwargs)
                return watch.result

        return cast(F, watched)

    # -- the message ------------------------------------------------------------------

    def _message(
        self, outcome: Outcome, exc: BaseException | None, elapsed: float
    ) -> tuple[str, MessageSeverity, str, dict[str, Any]]:
        name = self.name
        took = format_duration(elapsed)
        metadata: dict[str, Any] = {"job": name, "status": outcome}
        if outcome == "started":
            text = f"\N{BLACK RIGHT-POINTING TRIANGLE} {name} started"
            return text, MessageSeverity.INFO, f"{name} started", metadata
        metadata["duration"] = round(elapsed, 3)
        if outcome == "finished":
            text = f"\N{WHITE HEAVY CHECK MARK} {name} finished in {took}"
            if self.include_result and self.result is not _UNSET:
                text += f"\nresult: {shorten(reprlib.repr(self.result), _RESULT_CHARS)}"
            return text, MessageSeverity.INFO, f"{name} finished", metadata
        assert exc is not None
        what = shorten(_describe(exc), _ERROR_CHARS)
        metadata["error"] = type(exc).__name__
        if outcome == "interrupted":
            text = f"\N{WARNING SIGN} {name} interrupted after {took} ({what})"
            return text, MessageSeverity.WARNING, f"{name} interrupted", metadata
        text = f"\N{CROSS MARK} {name} failed after {took}: {what}"
        lines = self._traceback_tail(exc)
        if lines:
            text += "\n\n" + "\n".join(lines)
        return text, MessageSeverity.ERROR, f"{name} failed", metadata

    def _traceback_tail(self, exc: BaseException) -> list[str]:
        if self.traceback_lines == 0:
            return []
        # Masked as the summary line is: its last line repeats the exception's text.
        formatted = redact("".join(traceback.format_exception(exc))).rstrip("\n").splitlines()
        return formatted[-self.traceback_lines :]

    def _send(
        self, text: str, severity: MessageSeverity, subject: str, metadata: dict[str, Any]
    ) -> None:
        try:
            report = self._notifier.send(
                text,
                label=self.label,
                severity=severity,
                subject=subject,
                source=_SOURCE,
                metadata=metadata,
                timeout=self.send_timeout,
            )
        except Exception as exc:  # the job's own outcome matters more than ours
            logger.warning("watch %r: could not notify: %s", self.name, _describe(exc))
            return
        if not report.ok:
            logger.warning("watch %r: the notification was not delivered: %s", self.name, report)

    async def _asend(
        self, text: str, severity: MessageSeverity, subject: str, metadata: dict[str, Any]
    ) -> None:
        try:
            report = await self._notifier.asend(
                text,
                label=self.label,
                severity=severity,
                subject=subject,
                source=_SOURCE,
                metadata=metadata,
                timeout=self.send_timeout,
            )
        except Exception as exc:
            logger.warning("watch %r: could not notify: %s", self.name, _describe(exc))
            return
        if not report.ok:
            logger.warning("watch %r: the notification was not delivered: %s", self.name, report)


def _outcome(exc: BaseException | None) -> Outcome:
    if exc is None:
        return "finished"
    if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError | GeneratorExit):
        return "interrupted"
    return "failed"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return describe_error(exc)
