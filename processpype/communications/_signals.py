"""``SignalFlush``: on SIGTERM or SIGINT, close a Notifier, then pass the signal on.

SIGTERM's default action ends the process at once: no ``atexit``, no ``finally``, and
every queued message is lost. With ``Notifier(..., handle_signals=True)`` the notifier
installs this handler on the main thread. On a signal it closes the notifier (flushing
for up to its ``drain_timeout`` and reporting on stderr what it could not deliver), then
hands the signal to the handler that was installed before: a Python handler is called;
the default SIGINT handler raises ``KeyboardInterrupt``; the default SIGTERM action
becomes ``SystemExit(128 + SIGTERM)`` (exit status 143, as a shell reports it), so
``finally`` blocks and ``atexit`` still run; an ignored signal stays ignored.
``restore()`` (called by ``close()``) puts the previous handlers back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from processpype.communications._delivery_context import mark_delivery_thread

__all__ = ["HANDLED_SIGNALS", "SignalFlush"]

HANDLED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], Any] | int | None


class SignalFlush:
    """Signal handlers that run ``close_for_signal(signum)`` of an object held weakly."""

    def __init__(self, owner: object, close_for_signal: Callable[[Any, int], None]) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("signal handlers can only be installed on the main thread")
        self._owner = weakref.ref(owner)
        self._close = close_for_signal
        self._pid = os.getpid()
        self._previous: dict[int, _Handler] = {}
        self._closing = threading.Lock()
        for signum in HANDLED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def __repr__(self) -> str:
        names = ", ".join(signal.Signals(s).name for s in self._previous)
        return f"SignalFlush({names})"

    def restore(self) -> bool:
        """Put the previous handlers back where ours is still installed; True if all were.

        Off the main thread nothing can be changed: our handlers stay, and only pass
        the signal on from then.
        """
        if threading.current_thread() is not threading.main_thread() or self._pid != os.getpid():
            return False
        restored = True
        # The previous handlers stay known: a handler installed after ours may still
        # call ours, which then passes the signal on to them.
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            else:
                restored = False  # another handler replaced ours and may still call it
        return restored

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        owner = self._owner()
        if owner is not None and self._pid == os.getpid() and self._closing.acquire(False):
            # On a thread of its own: the signal may have interrupted the main thread
            # inside the notifier, holding a lock the close needs. The main thread waits
            # for it below (bounded); should it give up, the close still finishes before
            # the interpreter ends (the thread is not a daemon).
            closer = threading.Thread(
                target=self._close_marked, args=(owner, signum), name="processpype-signal-flush"
            )
            closer.start()
            del owner
            closer.join(_join_limit(self._owner()))
        self._pass_on(signum, frame)

    def _close_marked(self, owner: object, signum: int) -> None:
        mark_delivery_thread()  # what closing logs is never a notification
        self._close(owner, signum)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)


def _join_limit(owner: object | None) -> float | None:
    """How long the main thread waits for the close: the drain timeout and a grace."""
    drain = getattr(owner, "drain_timeout", None) if owner is not None else 0.0
    if drain is None:
        return None
    with contextlib.suppress(TypeError):
        return float(drain) + 10.0
    return 10.0
