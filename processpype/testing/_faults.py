"""Faults the test doubles script: failures to raise, and a server that goes away.

- ``scripted``: the failures a ``fail_next``/``fail_next_connect`` queues, one per call.
- ``DropAfter``: ``drop_after(n)`` of ``SMTPTestServer`` and ``WebhookCapture``: answer
  ``n`` more, then drop every later one until cleared.
"""

from __future__ import annotations

__all__ = ["DropAfter", "scripted"]


def scripted(exc: BaseException | None, count: int, default: str) -> list[BaseException]:
    """``count`` failures to raise: ``exc`` each time, or a new ``ConnectionError(default)``."""
    return [exc if exc is not None else ConnectionError(default) for _ in range(count)]


class DropAfter:
    """How many more a server answers before it drops every later one (None: never drops).

    Not locked: the server holding it calls it under its own lock.
    """

    def __init__(self) -> None:
        self.left: int | None = None

    def arm(self, count: int) -> None:
        """Answer ``count`` more, then drop every later one (until ``clear()``)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        self.left = count

    def clear(self) -> None:
        """Never drop again."""
        self.left = None

    def take(self) -> bool:
        """True when this one is to be dropped; else count it as answered."""
        left = self.left
        if left is None:
            return False
        if left > 0:
            self.left = left - 1
            return False
        return True
