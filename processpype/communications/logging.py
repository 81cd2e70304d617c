"""``NotifierHandler``: a ``logging.Handler`` that sends log records through a Notifier.

Example, with ``logging.config.dictConfig``::

    logging.config.dictConfig({
        "version": 1,
        "handlers": {
            "alerts": {
                "()": "processpype.communications.logging.NotifierHandler",
                "notifier": "notify.yaml",      # a YAML path, or a Notifier (ext://...)
                "label": "ops",
                "level": "ERROR",
            },
        },
        "root": {"handlers": ["alerts"]},
    })
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from processpype.communications._delivery_context import in_delivery_work
from processpype.communications.notifier import Notifier
from processpype.foundation.errors import NotifierClosedError, QueueFullError
from processpype.foundation.models import MessageSeverity

__all__ = ["NotifierHandler", "severity_for_level"]

_SUBJECT_LENGTH = 120

_LEVELS: tuple[tuple[int, MessageSeverity], ...] = (
    (logging.CRITICAL, MessageSeverity.CRITICAL),
    (logging.ERROR, MessageSeverity.ERROR),
    (logging.WARNING, MessageSeverity.WARNING),
    (logging.INFO, MessageSeverity.INFO),
)


def severity_for_level(level: int) -> MessageSeverity:
    """The message severity of a logging level (a level between two maps to the lower)."""
    for threshold, severity in _LEVELS:
        if level >= threshold:
            return severity
    return MessageSeverity.DEBUG


def _is_own_logger(name: str) -> bool:
    return name == "processpype" or name.startswith("processpype.")


class NotifierHandler(logging.Handler):
    """Send log records as messages to ``label``; never blocks, never raises into the caller.

    ``notifier`` is a ``Notifier``, or the path of a YAML config for a Notifier that the
    handler owns (and closes with itself). Records of processpype's own loggers, and
    records logged while any processpype delivery runs (on any notifier's loop thread,
    in any backend, in the libraries they call), are ignored, so no handler can feed
    itself or another one. When the notifier
    already holds ``max_in_flight`` messages, or is not running, a record is dropped and
    counted in ``dropped`` instead of making the caller wait.
    """

    def __init__(
        self,
        notifier: Notifier | str | os.PathLike[str],
        *,
        label: str = "default",
        level: int | str = logging.ERROR,
    ) -> None:
        super().__init__(level)
        if isinstance(notifier, Notifier):
            self._notifier = notifier
            self._owns_notifier = False
        elif isinstance(notifier, (str, os.PathLike)):
            self._notifier = Notifier.from_yaml(notifier)
            self._owns_notifier = True
        else:
            raise TypeError(
                f"notifier must be a Notifier or the path of a YAML config, "
                f"not {type(notifier).__name__}"
            )
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"label must be a non-empty string, not {label!r}")
        self.label = label
        self.dropped = 0
        self._emitting = threading.local()

    def __repr__(self) -> str:
        return (
            f"NotifierHandler(label={self.label!r}, level={logging.getLevelName(self.level)}, "
            f"notifier={self._notifier!r})"
        )

    @property
    def notifier(self) -> Notifier:
        """The notifier that records go through."""
        return self._notifier

    def filter(self, record: logging.LogRecord) -> bool:
        """Refuse processpype's own records and any logged while a delivery runs.

        "While a delivery runs" covers every notifier's loop and worker threads and any
        task delivering for processpype on another loop: the HTTP lines of httpx, the
        SMTP chatter of aiosmtplib, telethon's reconnects. Without it, two handlers on
        one logger would send each other's log lines back and forth without end.
        """
        if _is_own_logger(record.name):
            return False
        if in_delivery_work() or self._notifier.in_loop_thread():
            return False
        return bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` as a message and return at once."""
        if getattr(self._emitting, "active", False):
            return  # a record logged while this thread was sending one: no recursion
        self._emitting.active = True
        try:
            notifier = self._notifier
            if not notifier.started:
                self.dropped += 1
                return
            text = self.format(record)
            notifier.send_nowait(
                text,
                label=self.label,
                severity=severity_for_level(record.levelno),
                subject=_subject(record),
                source=record.name,
                metadata=_metadata(record),
                block=False,
            )
        except (QueueFullError, NotifierClosedError):
            self.dropped += 1
        except Exception:
            self.handleError(record)
        finally:
            self._emitting.active = False

    def flush(self) -> None:
        """Wait (up to the notifier's drain_timeout) until queued records are sent."""
        notifier = self._notifier
        if notifier.started and not notifier.in_loop_thread():
            notifier.flush()

    def close(self) -> None:
        """Detach the handler; a notifier it created from a YAML path is closed too."""
        try:
            if self._owns_notifier and not self._notifier.in_loop_thread():
                self._notifier.close()
        finally:
            super().close()


def _subject(record: logging.LogRecord) -> str:
    lines = record.getMessage().strip().splitlines()
    first_line = lines[0] if lines else ""
    subject = f"[{record.levelname}] {record.name}: {first_line}"
    if len(subject) > _SUBJECT_LENGTH:
        subject = subject[: _SUBJECT_LENGTH - 1] + "…"
    return subject


def _metadata(record: logging.LogRecord) -> dict[str, Any]:
    return {
        "logger": record.name,
        "level": record.levelname,
        "file": record.pathname,
        "line": record.lineno,
        "function": record.funcName,
        "module": record.module,
        "thread": record.threadName,
        "process": record.process,
        "created": record.created,
    }
