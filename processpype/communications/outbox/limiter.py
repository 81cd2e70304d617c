"""Placeholder, replaced below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def attach_shared_limiter(communicator: Any, config: Any, connect: Callable[[], Any]) -> None:
    """Give a Telegram backend the limiter shared through Redis."""
