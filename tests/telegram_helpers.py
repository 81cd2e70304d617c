"""Shared pieces of the Telegram tests: started backends on a fake client, stopped after."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from processpype.communications.backends.telegram import (
    TelegramCommunicator,
    TelegramRateLimits,
)
from processpype.communications.models import OutgoingMessage
from processpype.testing.telegram import FakeTelegramClient


class BackendMaker:
    """``await make(**overrides)`` starts a backend on ``fake``; leaving stops them all."""

    def __init__(
        self,
        fake: FakeTelegramClient,
        defaults: dict[str, Any],
        *,
        limits: TelegramRateLimits | None = None,
    ) -> None:
        self._fake = fake
        self._defaults = defaults
        self._limits = limits
        self._made: list[TelegramCommunicator] = []

    async def __call__(
        self, *, limits: TelegramRateLimits | None = None, **overrides: Any
    ) -> TelegramCommunicator:
        config = self._fake.telegram_config(**{**self._defaults, **overrides})
        chosen = limits or self._limits
        extra = {} if chosen is None else {"rate_limits": chosen}
        backend = TelegramCommunicator(
            "tg", config, client_factory=self._fake.as_client_factory(), **extra
        )
        await backend.start()
        self._made.append(backend)
        return backend

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for backend in self._made:
            await backend.stop()


def msg(text: str = "disk full", label: str = "default") -> OutgoingMessage:
    """A message for ``label``."""
    return OutgoingMessage(message=text, label=label)
