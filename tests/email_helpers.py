"""Helpers shared by the email backend tests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from processpype.communications.backends.email import EmailCommunicator
from processpype.communications.models import MessageSeverity, OutgoingMessage
from processpype.testing.smtp import SMTPTestServer

EMAIL_LOGGER = "processpype.communications.email"


def message(text: str = "disk almost full", **fields: Any) -> OutgoingMessage:
    """An outgoing message with ``text`` as body and any other field given."""
    fields.setdefault("severity", MessageSeverity.WARNING)
    return OutgoingMessage(message=text, **fields)


def backend(server: SMTPTestServer, name: str = "mail", **overrides: Any) -> EmailCommunicator:
    """An EmailCommunicator pointed at ``server`` (not started)."""
    return EmailCommunicator(name, server.email_config(**overrides))


class _RetrySignal(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.retried = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if "retry" in record.getMessage():
            self.retried.set()


@contextmanager
def retry_signal() -> Iterator[threading.Event]:
    """An event set when the email backend announces its first retry."""
    handler = _RetrySignal()
    logger = logging.getLogger(EMAIL_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler.retried
    finally:
        logger.removeHandler(handler)
