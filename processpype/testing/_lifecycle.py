"""``StartStop``: the context-manager face every test server shares.

``with server:`` calls ``start()`` (and hands back what it returns) and, on the way out,
``_finish``: ``stop()`` unless a server has more to do at the end of a ``with`` block.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Self

__all__ = ["StartStop"]


class StartStop:
    """Mixin: ``start()`` on entering a ``with`` block, ``stop()`` on leaving it."""

    if TYPE_CHECKING:

        def start(self) -> Self: ...

        def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finish(failed=exc_type is not None)

    def _finish(self, *, failed: bool) -> None:
        """End the ``with`` block; ``failed`` when it raised."""
        self.stop()
