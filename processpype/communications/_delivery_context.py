"""Is this code delivering a message? For the logging handler, which must not feed itself.

A record logged while processpype delivers (by a backend, or by httpx, telethon or
aiosmtplib working for it) must never become a notification: with two
``NotifierHandler`` s on one logger, each would send the other's HTTP log lines, without
end. Two marks answer "is this delivery work?" wherever the record comes from:

- every thread processpype runs a loop on (each notifier's loop thread) and the worker
  threads of those loops (``getaddrinfo``, ``to_thread``) are marked for their lifetime;
- delivery work on any other event loop (the CLI, a dispatcher used directly) runs with
  a context variable set, which the tasks it starts inherit.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DELIVERING", "delivery_work", "in_delivery_work", "mark_delivery_thread"]

DELIVERING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "processpype_delivering", default=False
)
"""True while delivery work runs; set and reset it directly on hot paths."""
_delivering = DELIVERING
_threads = threading.local()


def mark_delivery_thread() -> None:
    """Mark the calling thread as one that only does processpype's delivery work."""
    _threads.delivering = True


def in_delivery_work() -> bool:
    """True on a processpype loop or worker thread, or inside ``delivery_work()``."""
    return getattr(_threads, "delivering", False) or _delivering.get()


@contextmanager
def delivery_work() -> Iterator[None]:
    """Mark what runs inside (and the tasks it creates) as delivery work."""
    token = _delivering.set(True)
    try:
        yield
    finally:
        _delivering.reset(token)
