"""The backend interface: ``Communicator``, and the ``NoOpCommunicator`` fallback."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

from processpype.communications.delivery import DeliveryResult
from processpype.foundation._masking import config_secrets, register_secrets
from processpype.foundation.models import IncomingMessage, OutgoingMessage

if TYPE_CHECKING:
    from processpype.communications.ask import Answer, Question
    from processpype.config.models import CommunicatorBackendConfig

__all__ = ["Communicator", "IncomingHandler", "IncomingSink", "NoOpCommunicator"]

logger = logging.getLogger("processpype.communications")

IncomingSink = Callable[[IncomingMessage], None]
"""Where a backend hands each message it receives (the dispatcher sets it).

Not to be confused with the handlers users give ``Notifier.on_message``
(``OnMessageHandler``, sync or async) or ``MessageHandler`` (async)."""
IncomingHandler = IncomingSink
"""The former name of ``IncomingSink``, kept for compatibility."""


class Communicator(ABC):
    """Abstract base for communication backends.

    A backend implements ``start``, ``stop`` and ``send``. Who calls whom is one rule
    for every backend:

    - The library (the dispatcher, ``emit()``, the Notifier) calls ``deliver()``, which
      returns a ``DeliveryResult``. Upstream code calls ``send()``, which returns nothing
      and raises when the message was not taken.
    - A backend writes its sending once. A backend with nothing to report but success
      implements ``send()`` only: the default ``deliver()`` calls it and reports the
      message delivered (``RecordingCommunicator`` does the same, adding a reference).
      So a subclass that overrides only ``send()`` of such a backend (or of
      ``NoOpCommunicator``) is what ``deliver()`` runs.
    - A backend that reports more (attempts, skips, references, warnings) implements
      ``deliver()``, and its ``send()`` is ``await self.deliver(message)`` (console,
      email, the webhooks).
    - A queueing backend (Telegram, the outbox) hands the message to its queue in one
      step that both share: ``send()`` returns once the message is queued, ``deliver()``
      also waits for (Telegram) or reports (the outbox) its outcome. Such a backend also
      overrides ``flush`` (wait for the queue to empty).

    Ordering contract: a backend fixes a message's place in its order (appends it to its
    queue, or takes its send lock) before its first ``await``, so messages handed over
    in order are sent in order.
    """

    def __init__(self, name: str, config: CommunicatorBackendConfig) -> None:
        self._name = name
        self._config = config
        self._started = False
        self._incoming_handler: IncomingSink | None = None
        # Every configured secret is masked in logs, reports and errors while this
        # backend lives, whoever wrote the backend.
        register_secrets(self, config_secrets(config))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, started={self._started})"

    @property
    def name(self) -> str:
        """The communicator instance name."""
        return self._name

    @property
    def config(self) -> CommunicatorBackendConfig:
        """The backend configuration this communicator was created with."""
        return self._config

    @property
    def is_started(self) -> bool:
        """True after start() has completed successfully."""
        return self._started

    @property
    def supports_receiving(self) -> bool:
        """False by default; backends that can receive messages return True."""
        return False

    @property
    def supports_editing(self) -> bool:
        """False by default; backends that can edit a message they sent return True.

        Such a backend puts a ``reference`` in the ``DeliveryResult`` of what it sent,
        and ``edit`` changes that message in place.
        """
        return False

    @property
    def supports_asking(self) -> bool:
        """False by default; backends that can post a question with buttons return True."""
        return False

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        """Replace the message sent earlier as ``reference`` with ``message``.

        The result's ``reference`` names the edited message (it may change, when the new
        text needs a different number of pieces). The default reports a skip.
        """
        return DeliveryResult.skipped(self._name, f"{type(self).__name__} cannot edit messages")

    async def ask(self, question: Question) -> Answer | None:
        """Post ``question`` with a button per choice and wait for the first valid answer.

        Returns None when ``question.timeout`` passed without one. Only backends whose
        ``supports_asking`` is True implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot ask questions")

    def set_incoming_handler(self, handler: IncomingSink) -> None:
        """Set by the dispatcher to route incoming messages to the event publisher."""
        self._incoming_handler = handler

    def _publish_incoming(self, message: IncomingMessage) -> None:
        """Hand a received message to the dispatcher (dropped if none is wired)."""
        handler = self._incoming_handler
        if handler is None:
            logger.debug("%s: incoming message dropped: no handler is set", self._name)
            return
        handler(message)

    def _on_incoming(self, message: IncomingMessage) -> None:
        """Upstream processpype's name for ``_publish_incoming`` (backends written for it)."""
        self._publish_incoming(message)

    @abstractmethod
    async def start(self) -> None:
        """Initialize and connect the backend. Must set ``self._started = True``."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect and clean up resources. Must set ``self._started = False``."""

    @abstractmethod
    async def send(self, message: OutgoingMessage) -> None:
        """Send an outgoing message through the backend."""

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Send ``message`` and wait for its outcome at this backend.

        The default sends and reports one attempt; an exception means failure. Backends
        that queue, retry or skip override it to report what really happened.
        """
        await self.send(message)
        return DeliveryResult.delivered(self._name)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued messages are sent; True when nothing is left waiting."""
        return True


class NoOpCommunicator(Communicator):
    """Silent fallback when a backend is unavailable.

    ``reason`` says why (the missing package and the extra to install, or the unknown
    type); every message it receives is reported as skipped with that reason.
    ``NoOpCommunicator()`` with no arguments (as upstream code writes it) is named
    ``"noop"`` with a default config. A subclass that overrides ``send`` is a real
    backend: its ``send`` is called and the message reported delivered.
    """

    def __init__(
        self,
        name: str = "noop",
        config: CommunicatorBackendConfig | None = None,
        *,
        reason: str = "no-op backend",
    ) -> None:
        if config is None:
            from processpype.config.models import CommunicatorBackendConfig

            config = CommunicatorBackendConfig(type="noop")
        super().__init__(name, config)
        self._started = True
        self.reason = reason

    @property
    def is_started(self) -> bool:
        """Always True."""
        return True

    async def start(self) -> None:
        """Do nothing."""
        self._started = True

    async def stop(self) -> None:
        """Do nothing."""

    async def send(self, message: OutgoingMessage) -> None:
        """Drop the message."""

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Report the message as skipped, with the reason this backend is a no-op.

        A subclass's own ``send`` is called instead, and the message reported delivered.
        """
        if type(self).send is not NoOpCommunicator.send:
            await self.send(message)
            return DeliveryResult.delivered(self._name)
        return DeliveryResult.skipped(self._name, self.reason)
