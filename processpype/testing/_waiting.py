"""Waiting in the test doubles, from a test's thread or from an event loop.

- ``Until``: what a ``wait_for_*`` method of the fake Telegram client waits for. Its
  sync and async waits (``wait_for_sent``/``wait_for_sent_async``, files, errors, the
  connection) differ only in how they wait; each names what it waits for once.
- ``running_loop`` and ``resolve``: the loop of this thread, and waking a waiter on
  another thread's loop (``loop.call_soon_threadsafe(resolve, future)``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Until", "resolve", "running_loop"]


class Until[T](NamedTuple):
    """When a wait is over, what it then returns, and what a timeout says arrived."""

    ready: Callable[[], bool]
    """True once the wait is over (called with the fake's lock held)."""
    result: Callable[[], T]
    """What the wait returns (called with the lock held, right after ``ready``)."""
    shortfall: Callable[[], str]
    """The ``TimeoutError`` message: what was expected, what did arrive."""


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def resolve(future: asyncio.Future[None]) -> None:
    """Wake whoever awaits ``future`` (once; a cancelled waiter stays cancelled)."""
    if not future.done():
        future.set_result(None)
