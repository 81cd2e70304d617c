"""What a ``Notifier`` hooks into the process: exit, fork, signals and garbage collection.

- At interpreter exit every notifier still open is flushed, in two steps: first in
  threading's exit hooks, before Python stops its thread pools (backends need worker
  threads; the private ``threading._register_atexit``), then closed from ``atexit``
  with what is left of its ``drain_timeout``.
- A ``multiprocessing`` child started with fork leaves through ``os._exit``: a
  ``multiprocessing.util.Finalize`` closes its notifiers there.
- In a child forked from a process with notifiers, those notifiers refuse every use
  (their loop thread stays in the parent).
- A notifier with messages in flight is kept alive (``mark_busy``); one dropped
  without ``close()`` is finalized once idle (``abandon``).
- ``report_undelivered`` writes the close/exit report of what was not delivered.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours
import contextlib
import logging
import os
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from processpype.communications._handlers import IncomingHandlers
from processpype.communications._loop_thread import LoopThread
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.foundation.models import OutgoingMessage

if TYPE_CHECKING:
    from processpype.communications._signals import SignalFlush
    from processpype.communications.notifier import Notifier

__all__ = [
    "Undelivered",
    "abandon",
    "close_for_signal",
    "mark_busy",
    "report_undelivered",
    "track",
    "untrack",
]

logger = logging.getLogger("processpype.communications.notifier")

_PREVIEW = 60
"""Characters of an undelivered message shown in the close/exit report."""

_live: weakref.WeakSet[Notifier] = weakref.WeakSet()
_busy: set[Notifier] = set()
"""Notifiers with messages in flight, kept alive until those settle (a dropped notifier
is collected only once idle, so collecting it never loses a message)."""


def track(notifier: Notifier) -> None:
    """Close ``notifier`` at interpreter exit (and when a multiprocessing child ends)."""
    _live.add(notifier)
    _close_when_multiprocessing_exits()


def untrack(notifier: Notifier) -> None:
    """``notifier`` is closing: the exit hooks leave it alone."""
    _live.discard(notifier)


def mark_busy(notifier: Notifier) -> Callable[[bool], None]:
    """A switch that keeps ``notifier`` alive while messages are in flight (held weakly)."""
    ref = weakref.ref(notifier)

    def busy(in_flight: bool) -> None:
        owner = ref()
        if owner is None:
            return
        if in_flight:
            _busy.add(owner)
        else:
            _busy.discard(owner)

    return busy


# -- the close/exit report -------------------------------------------------------------


class Undelivered(NamedTuple):
    """A message without an outcome at close, and the backends that did not give one."""

    message: OutgoingMessage
    backends: tuple[str, ...]
    in_flight: bool = False
    """True when a backend was sending it: it may have reached the service."""
    edit: bool = False
    """True for an edit of ``message`` (``Notifier.edit``, progress) cut short."""


def report_undelivered(
    undelivered: list[Undelivered], *, at_exit: bool, waited: str, when: str | None = None
) -> None:
    """Report what close could not deliver: stderr and the log at exit, a warning otherwise.

    "Not delivered" (never reached a backend) and "may have been delivered" (a backend
    was sending it) are listed apart: resending the latter could deliver them twice.
    """
    if when is None:
        when = "at interpreter exit" if at_exit else "when the notifier closed"
    lines: list[str] = []
    not_sent = [entry for entry in undelivered if not entry.in_flight]
    in_flight = [entry for entry in undelivered if entry.in_flight]
    if not_sent:
        lines.append(
            f"processpype: {len(not_sent)} message(s) were not delivered {when} ({waited}):"
        )
        lines += _report_lines(not_sent, "")
    if in_flight:
        lines.append(
            f"processpype: {len(in_flight)} message(s) were being sent {when} and may "
            f"have been delivered ({waited}); resending them "
            "could deliver them twice:"
        )
        lines += _report_lines(in_flight, " (may have been delivered)")
    text = "\n".join(lines)
    if at_exit:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr already closed
            pass
        if logger.hasHandlers():
            logger.error("%s", text)
    else:
        logger.warning("%s", text)


def _report_lines(entries: list[Undelivered], note: str) -> list[str]:
    lines = []
    for message, backends, _, edit in entries[:20]:
        text = message.message
        preview = text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"
        what = " (an edit into this text)" if edit else ""
        lines.append(
            f"  label {message.label!r} -> {', '.join(backends) or 'no backend'}{note}{what}: "
            f"{preview!r}"
        )
    if len(entries) > 20:
        lines.append(f"  ... and {len(entries) - 20} more")
    return lines


# -- signals and garbage collection ----------------------------------------------------


def close_for_signal(notifier: Notifier, signum: int) -> None:
    """SIGTERM or SIGINT with ``handle_signals``: flush, close, report on stderr."""
    import signal

    name = signal.Signals(signum).name
    try:
        notifier._close(None, at_exit=True, when=f"on {name}")
    except Exception as exc:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"processpype: closing {notifier!r} on {name} failed: {exc!r}\n")


def abandon(
    name: str,
    loop_thread: LoopThread,
    dispatcher: CommunicationDispatcher,
    handlers: IncomingHandlers,
    signals: SignalFlush | None,
    grace: float,
    exit_grace: float,
) -> None:
    """A notifier was garbage-collected without close(): stop its backends and thread.

    It is collected only once nothing is in flight (``mark_busy``), so there is nothing
    to report; backends still get their own stop (bounded by ``grace``), which flushes
    what they queued; the thread gets ``exit_grace`` more.
    """
    warnings.warn(
        f"{name} was never closed: call close() (or use `with Notifier(...)`); "
        "its backends and thread were stopped when it was collected",
        ResourceWarning,
        stacklevel=2,
    )
    if signals is not None:
        signals.restore()  # on the main thread; elsewhere its handlers only pass signals on
    handlers.close(0)
    if not loop_thread.running:
        return

    async def stop() -> None:
        try:
            await dispatcher.stop_all(grace)
        finally:
            loop_thread.request_stop()

    try:
        stopping = loop_thread.submit(stop())
    except RuntimeError:  # the loop closed meanwhile
        return
    if loop_thread.in_loop_thread():  # collected on its own loop: it ends by itself
        return
    with contextlib.suppress(Exception):
        stopping.result(grace + exit_grace)
    loop_thread.stop(exit_grace)


# -- fork, multiprocessing and interpreter exit ----------------------------------------

_multiprocessing_exit_pid: int | None = None


def _close_when_multiprocessing_exits() -> None:
    """Have multiprocessing close this process's notifiers when the process ends.

    A ``multiprocessing`` child started with fork leaves through ``os._exit`` after
    ``multiprocessing.util._exit_function``: ``atexit`` never runs there, its
    ``Finalize`` callbacks do. Registered once per process, and only where
    multiprocessing is already imported (its children always import it).
    """
    global _multiprocessing_exit_pid
    util = sys.modules.get("multiprocessing.util")
    pid = os.getpid()
    if util is None or _multiprocessing_exit_pid == pid:
        return
    _multiprocessing_exit_pid = pid
    # A high priority: before multiprocessing's own finalizers close its queues.
    util.Finalize(None, _close_at_exit, exitpriority=100)


def _disown_all_after_fork() -> None:
    for notifier in list(_live):
        notifier._disown_after_fork()
    _live.clear()
    _busy.clear()  # their messages are the parent's to deliver


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_disown_all_after_fork)


def _flush_before_thread_pools_stop() -> None:
    """At exit, before Python stops its thread pools: flush every notifier still open.

    Backends need worker threads (asyncio resolves host names on one), which Python
    refuses once its pools stop, before ``atexit`` runs. ``_close_at_exit`` then gets
    what is left of each notifier's drain_timeout.
    """
    for notifier in list(_live):
        started = time.monotonic()
        with contextlib.suppress(Exception):
            notifier.flush()
        limit = notifier.drain_timeout
        if limit is not None:
            notifier._exit_budget = max(0.0, limit - (time.monotonic() - started))


# Run in threading's exit hooks, in reverse order of registration: ours before the one
# of concurrent.futures (imported above), which stops the thread pools.
with contextlib.suppress(AttributeError, RuntimeError):  # private API; or at shutdown
    threading._register_atexit(_flush_before_thread_pools_stop)  # type: ignore[attr-defined]


@atexit.register
def _close_at_exit() -> None:
    """Flush every notifier still open, each bounded by its drain_timeout."""
    for notifier in list(_live):
        try:
            notifier._close(notifier._exit_budget, at_exit=True)
        except Exception as exc:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"processpype: closing {notifier!r} at exit failed: {exc!r}\n")
