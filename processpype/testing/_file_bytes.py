"""``FileBytes``: what every record of a received file says about its bytes.

Shared by ``CapturedFile`` (webhooks), ``ReceivedAttachment`` (email) and ``SentFile``
(Telegram), each a frozen dataclass with a ``data`` field.
"""

from __future__ import annotations

__all__ = ["FileBytes"]


class FileBytes:
    """Mixin for a record with ``data``: its ``size``."""

    data: bytes

    @property
    def size(self) -> int:
        """Size of ``data`` in bytes."""
        return len(self.data)
