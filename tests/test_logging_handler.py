"""NotifierHandler: log records become messages, without blocking or raising into the caller."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from processpype.communications.logging import NotifierHandler, severity_for_level
from processpype.communications.models import IncomingMessage, MessageSeverity, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.testing.recording import RecordingCommunicator


class GateCommunicator(RecordingCommunicator):
    """A backend whose sends wait until ``open()``: a slow server."""

    def __init__(self, name: str = "gate") -> None:
        super().__init__(name)
        self._gate: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._gate = asyncio.Event()
        await super().start()

    async def send(self, message: OutgoingMessage) -> None:
        assert self._gate is not None
        await self._gate.wait()
        await super().send(message)

    def open(self) -> None:
        assert self._loop is not None
        assert self._gate is not None
        self._loop.call_soon_threadsafe(self._gate.set)


@pytest.fixture
def recorder() -> RecordingCommunicator:
    return RecordingCommunicator("ops-chat")


@pytest.fixture
def notifier(recorder: RecordingCommunicator) -> Iterator[Notifier]:
    notifier = Notifier({"enabled": True})
    notifier.add_communicator(recorder, labels=["ops"])
    yield notifier
    notifier.close(timeout=2)


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("myapp.jobs")
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True


def test_an_error_record_becomes_an_error_message_with_the_exception_text(
    notifier: Notifier, recorder: RecordingCommunicator, app_logger: logging.Logger
) -> None:
    app_logger.addHandler(NotifierHandler(notifier, label="ops"))

    try:
        raise ConnectionError("db1 refused the connection")
    except ConnectionError:
        app_logger.exception("nightly backup failed")

    (message,) = recorder.wait_for(1)
    assert message.label == "ops"
    assert message.severity is MessageSeverity.ERROR
    assert message.message.startswith("nightly backup failed")
    assert "Traceback" in message.message
    assert "ConnectionError: db1 refused the connection" in message.message
    assert message.subject == "[ERROR] myapp.jobs: nightly backup failed"
    assert message.source == "myapp.jobs"


def test_the_message_metadata_names_the_logger_and_the_location(
    notifier: Notifier, recorder: RecordingCommunicator, app_logger: logging.Logger
) -> None:
    app_logger.addHandler(NotifierHandler(notifier, label="ops"))

    app_logger.error("disk full")
    line = sys._getframe().f_lineno - 1

    (message,) = recorder.wait_for(1)
    metadata = message.metadata
    assert metadata["logger"] == "myapp.jobs"
    assert metadata["level"] == "ERROR"
    assert metadata["file"] == __file__
    assert metadata["line"] == line
    assert metadata["function"] == "test_the_message_metadata_names_the_logger_and_the_location"


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.DEBUG, MessageSeverity.DEBUG),
        (logging.INFO, MessageSeverity.INFO),
        (logging.WARNING, MessageSeverity.WARNING),
        (35, MessageSeverity.WARNING),
        (logging.ERROR, MessageSeverity.ERROR),
        (logging.CRITICAL, MessageSeverity.CRITICAL),
    ],
)
def test_levels_map_to_severities(level: int, severity: MessageSeverity) -> None:
    assert severity_for_level(level) is severity


def test_records_below_the_handler_level_are_not_sent(
    notifier: Notifier, recorder: RecordingCommunicator, app_logger: logging.Logger
) -> None:
    handler = NotifierHandler(notifier, label="ops")
    app_logger.addHandler(handler)

    app_logger.warning("only a warning")
    app_logger.critical("on fire")

    assert handler.level == logging.ERROR
    assert [m.message for m in recorder.wait_for(1)] == ["on fire"]
    assert notifier.flush(5)
    assert recorder.texts == ["on fire"]


def test_records_of_processpypes_own_loggers_are_ignored(
    notifier: Notifier, recorder: RecordingCommunicator
) -> None:
    handler = NotifierHandler(notifier, label="ops", level=logging.DEBUG)
    own = logging.getLogger("processpype.communications.dispatcher")
    own.addHandler(handler)
    try:
        own.error("ops-chat: message failed")
    finally:
        own.removeHandler(handler)

    assert notifier.flush(5)
    assert recorder.texts == []


def test_records_logged_on_the_notifiers_loop_thread_are_ignored(
    notifier: Notifier, recorder: RecordingCommunicator, app_logger: logging.Logger
) -> None:
    # A backend's library logging on the loop thread must not feed the backend itself.
    app_logger.addHandler(NotifierHandler(notifier, label="ops"))
    logged = threading.Event()

    async def log_on_loop(message: IncomingMessage) -> None:
        app_logger.error("logged by a library on the loop thread")
        logged.set()

    notifier.on_message(log_on_loop)
    recorder.inject("go")
    assert logged.wait(5)

    assert notifier.flush(5)
    assert recorder.texts == []


def test_emit_never_blocks_when_the_notifier_is_full_and_counts_what_it_dropped(
    app_logger: logging.Logger,
) -> None:
    gate = GateCommunicator()
    notifier = Notifier({"enabled": True}, max_in_flight=1)
    notifier.add_communicator(gate)
    handler = NotifierHandler(notifier)
    app_logger.addHandler(handler)
    try:
        started = time.monotonic()
        app_logger.error("fills the only slot")
        app_logger.error("no room for this one")
        elapsed = time.monotonic() - started

        assert elapsed < 1, f"logging blocked for {elapsed:.1f}s"
        assert handler.dropped == 1
        gate.open()
        assert [m.message for m in gate.wait_for(1)] == ["fills the only slot"]
    finally:
        notifier.close(timeout=2)


def test_emit_never_raises_into_the_caller_after_the_notifier_closed(
    notifier: Notifier, app_logger: logging.Logger
) -> None:
    handler = NotifierHandler(notifier)
    app_logger.addHandler(handler)
    notifier.close()

    app_logger.error("after close")

    assert handler.dropped == 1


def test_a_handler_error_goes_to_logging_handle_error_not_the_caller(
    notifier: Notifier, app_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = NotifierHandler(notifier)
    app_logger.addHandler(handler)
    handled: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", handled.append)
    monkeypatch.setattr(handler, "format", lambda record: 1 / 0)

    app_logger.error("cannot be formatted")

    assert [r.getMessage() for r in handled] == ["cannot be formatted"]


def test_dict_config_builds_the_handler_around_a_notifier(
    notifier: Notifier, recorder: RecordingCommunicator
) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "alerts": {
                    "()": "processpype.communications.logging.NotifierHandler",
                    "notifier": notifier,
                    "label": "ops",
                    "level": "CRITICAL",
                }
            },
            "loggers": {"myapp.dictconfig": {"handlers": ["alerts"], "propagate": False}},
        }
    )
    logger = logging.getLogger("myapp.dictconfig")
    try:
        logger.error("not critical enough")
        logger.critical("database down")

        assert [m.message for m in recorder.wait_for(1)] == ["database down"]
        assert recorder.messages[0].severity is MessageSeverity.CRITICAL
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)


def test_dict_config_can_name_a_yaml_file_and_the_handler_owns_that_notifier(
    tmp_path: Path,
) -> None:
    out = tmp_path / "alerts.jsonl"
    config = tmp_path / "notify.yaml"
    config.write_text(
        "communications:\n"
        "  enabled: true\n"
        "  backends:\n"
        "    file:\n"
        "      type: console\n"
        f"      path: {out}\n",
        encoding="utf-8",
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "alerts": {
                    "()": "processpype.communications.logging.NotifierHandler",
                    "notifier": str(config),
                }
            },
            "loggers": {"myapp.yaml": {"handlers": ["alerts"], "propagate": False}},
        }
    )
    logger = logging.getLogger("myapp.yaml")
    (handler,) = logger.handlers
    assert isinstance(handler, NotifierHandler)

    logger.error("from a yaml-configured handler")
    logger.removeHandler(handler)
    handler.close()

    assert handler.notifier.closed
    assert "from a yaml-configured handler" in out.read_text(encoding="utf-8")


def test_a_bad_notifier_argument_is_refused_naming_its_type() -> None:
    with pytest.raises(TypeError, match="not int"):
        NotifierHandler(42)  # type: ignore[arg-type]
