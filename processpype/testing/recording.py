"""``RecordingCommunicator``: an in-memory backend that records what it is sent."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any, NamedTuple

from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryResult
from processpype.config.models import CommunicatorBackendConfig
from processpype.foundation.models import Attachment, IncomingMessage, OutgoingMessage
from processpype.testing._faults import scripted

__all__ = ["RecordedEdit", "RecordingCommunicator"]


class RecordedEdit(NamedTuple):
    """One edit the recorder received: which message (its reference) and the new one."""

    reference: tuple[str, ...]
    message: OutgoingMessage


class RecordingCommunicator(Communicator):
    """Keeps every ``OutgoingMessage`` it is sent in ``messages`` (backend type ``recording``).

    Messages keep their attachments as sent (``message.attachments``; all of them in
    order in ``attachments``).

    Thread-safe to read from a test while a Notifier's loop thread writes. Config extras:
    ``delay`` (seconds per send), ``receiving`` (default True) and ``editing`` (default
    True: each delivered message gets the reference ``(str(index),)``, its place in
    ``messages``, and edits are kept in ``edits``).
    """

    def __init__(
        self,
        name: str = "recorder",
        config: CommunicatorBackendConfig | None = None,
        *,
        delay: float | None = None,
    ) -> None:
        if config is None:
            config = CommunicatorBackendConfig(type="recording")
        super().__init__(name, config)
        extra: dict[str, Any] = config.model_extra or {}
        self.delay: float = float(delay if delay is not None else extra.get("delay", 0.0))
        self._receiving = bool(extra.get("receiving", True))
        self._editing = bool(extra.get("editing", True))
        self.messages: list[OutgoingMessage] = []
        self.edits: list[RecordedEdit] = []
        """Every edit received, in order."""
        self._failures: deque[BaseException] = deque()
        self._condition = threading.Condition()
        self.start_count = 0
        self.stop_count = 0

    @property
    def supports_receiving(self) -> bool:
        """True unless the config sets ``receiving: false``."""
        return self._receiving

    @property
    def supports_editing(self) -> bool:
        """True unless the config sets ``editing: false``."""
        return self._editing

    async def start(self) -> None:
        """Mark the recorder started."""
        self.start_count += 1
        self._started = True

    async def stop(self) -> None:
        """Mark the recorder stopped (messages are kept)."""
        self.stop_count += 1
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        """Record ``message``, after ``delay`` seconds, or raise a scripted failure."""
        with self._condition:
            failure = self._failures.popleft() if self._failures else None
        if self.delay:
            await asyncio.sleep(self.delay)
        if failure is not None:
            raise failure
        with self._condition:
            self.messages.append(message)
            self._condition.notify_all()

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Record ``message`` and report it delivered, with its reference when editing."""
        await self.send(message)
        if not self._editing:
            return DeliveryResult.delivered(self.name)
        with self._condition:
            # The latest record of this very object (a subclass's send may record later).
            index = next(
                (i for i in range(len(self.messages) - 1, -1, -1) if self.messages[i] is message),
                None,
            )
        if index is None:
            return DeliveryResult.delivered(self.name)
        return DeliveryResult.delivered(self.name, reference=(str(index),))

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        """Record an edit of the message sent as ``reference`` (or a scripted failure)."""
        if not self._editing:
            return await super().edit(reference, message)
        with self._condition:
            failure = self._failures.popleft() if self._failures else None
            if failure is None:
                known = len(self.messages)
                if len(reference) != 1 or not reference[0].isdigit() or int(reference[0]) >= known:
                    raise ValueError(
                        f"{self.name}: no recorded message has reference {reference!r}"
                    )
                self.edits.append(RecordedEdit(tuple(reference), message))
                self._condition.notify_all()
        if failure is not None:
            raise failure
        return DeliveryResult.delivered(self.name, reference=tuple(reference))

    def current_text(self, reference: tuple[str, ...]) -> str:
        """The text of the message ``reference`` as it reads now, after its edits."""
        with self._condition:
            text = self.messages[int(reference[0])].message
            for edit in self.edits:
                if edit.reference == tuple(reference):
                    text = edit.message.message
            return text

    def wait_for_edits(self, count: int, timeout: float = 5.0) -> list[RecordedEdit]:
        """Block until at least ``count`` edits are recorded; return them."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.edits) >= count, timeout):
                raise TimeoutError(
                    f"{self.name}: expected {count} edits within {timeout}s, got {len(self.edits)}"
                )
            return list(self.edits)

    def fail_next(self, exc: BaseException | None = None, *, count: int = 1) -> None:
        """Make the next ``count`` sends or edits raise ``exc`` (default a ``ConnectionError``)."""
        with self._condition:
            self._failures.extend(scripted(exc, count, "scripted failure"))

    def clear(self) -> None:
        """Forget every recorded message."""
        with self._condition:
            self.messages.clear()
            self.edits.clear()

    @property
    def attachments(self) -> list[Attachment]:
        """Every attachment of the recorded messages, in order (bytes included)."""
        with self._condition:
            return [a for m in self.messages for a in m.attachments]

    @property
    def texts(self) -> list[str]:
        """The bodies of the recorded messages, in order."""
        with self._condition:
            return [m.message for m in self.messages]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[OutgoingMessage]:
        """Block until at least ``count`` messages are recorded; return them.

        Raises ``TimeoutError`` saying how many arrived (and what) when time runs out.
        """
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.messages) >= count, timeout):
                got = [m.message for m in self.messages]
                raise TimeoutError(
                    f"{self.name}: expected {count} messages within {timeout}s, got "
                    f"{len(got)}: {got[:10]!r}"
                )
            return list(self.messages)

    async def wait_for_async(self, count: int, timeout: float = 5.0) -> list[OutgoingMessage]:
        """``wait_for`` for async tests: waits without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, count, timeout)

    def inject(
        self,
        text: str,
        *,
        sender: str | None = None,
        sender_id: str | None = None,
        chat_label: str = "default",
        metadata: dict[str, Any] | None = None,
    ) -> IncomingMessage:
        """Deliver an incoming message to the dispatcher's subscribers, as a chat would."""
        message = IncomingMessage(
            text=text,
            sender=sender,
            sender_id=sender_id,
            chat_label=chat_label,
            backend_name=self.name,
            timestamp=datetime.now(UTC),
            metadata=dict(metadata or {}),
        )
        self._publish_incoming(message)
        return message
