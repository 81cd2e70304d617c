"""``Until``: what a ``wait_for_*`` method of the fake Telegram client waits for.

The fake's sync and async waits (``wait_for_sent``/``wait_for_sent_async``, files,
errors, the connection) differ only in how they wait; each names what it waits for
once, as an ``Until``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Until"]


class Until[T](NamedTuple):
    """When a wait is over, what it then returns, and what a timeout says arrived."""

    ready: Callable[[], bool]
    """True once the wait is over (called with the fake's lock held)."""
    result: Callable[[], T]
    """What the wait returns (called with the lock held, right after ``ready``)."""
    shortfall: Callable[[], str]
    """The ``TimeoutError`` message: what was expected, what did arrive."""
