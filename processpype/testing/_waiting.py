"""Waiting in the test doubles, from a test's thread or from an event loop.

A double keeps what arrived under one ``Signal``: its ``condition`` guards the double's
state, ``notify()`` after a change wakes the threads blocked in ``block`` and every
loop awaiting in ``wait`` (whichever thread the change came from). What a
``wait_for_*`` method waits for is named once, as an ``Until``; its sync and async
forms differ only in which of the two waits they call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Signal", "Until", "at_least", "resolve", "running_loop"]


class Until[T](NamedTuple):
    """When a wait is over, what it then returns, and what a timeout says arrived."""

    ready: Callable[[], bool]
    """True once the wait is over (called with the condition held)."""
    result: Callable[[], T]
    """What the wait returns (called with the condition held, right after ``ready``)."""
    shortfall: Callable[[], str]
    """The ``TimeoutError`` message: what was expected, what did arrive."""


def at_least[T](items: list[T], count: int, shortfall: Callable[[], str]) -> Until[list[T]]:
    """Until ``items`` (a list the double appends to) holds ``count``; then a copy of it."""
    return Until(lambda: len(items) >= count, lambda: list(items), shortfall)


class Signal:
    """A condition that threads block on and event loops await."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def notify(self) -> None:
        """Wake every waiter to look again (call after a change, from any thread)."""
        with self.condition:
            self.condition.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(resolve, waiter)

    def block[T](self, until: Until[T], timeout: float | None) -> T:
        """Block this thread until ``until.ready()``; its result, or ``TimeoutError``."""
        with self.condition:
            if not self.condition.wait_for(until.ready, timeout):
                raise TimeoutError(until.shortfall())
            return until.result()

    async def wait[T](self, until: Until[T], timeout: float | None) -> T:
        """``block`` without blocking the event loop (None: no timeout)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self.condition:
                if until.ready():
                    return until.result()
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, waiter))
            remaining = None if deadline is None else deadline - loop.time()
            try:
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                with self.condition:
                    if until.ready():
                        return until.result()
                    raise TimeoutError(until.shortfall()) from None
            finally:
                with self.condition:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))


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
