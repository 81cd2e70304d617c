"""Several NotifierHandlers on one logger settle: no handler forwards delivery log lines."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from http_helpers import FaultyServer, faulty_server
from outbox_helpers import outbox_config, running_worker, wait_until

from processpype.communications._delivery_context import delivery_work, in_delivery_work
from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryResult
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.logging import NotifierHandler
from processpype.communications.models import OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.config.models import CommunicatorBackendConfig
from processpype.testing.recording import RecordingCommunicator
from processpype.testing.redis import RedisTestServer


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with faulty_server() as running:
        yield running


@pytest.fixture
def root_with_http_logs() -> Iterator[logging.Logger]:
    """The root logger, with httpx and httpcore logging at DEBUG, restored afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    libraries = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    for name in libraries:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG)
    yield root
    root.setLevel(saved[0])
    for handler in list(root.handlers):
        if handler not in saved[1]:
            root.removeHandler(handler)
    for name, level in libraries.items():
        logging.getLogger(name).setLevel(level)


def webhook_notifier(url: str) -> Notifier:
    return Notifier(
        {"enabled": True, "backends": {"hook": {"type": "webhook", "url": url}}},
        name="handler-notifier",
    )


@pytest.mark.parametrize("count", [2, 5, 10])
def test_handlers_on_one_logger_send_one_record_once_each_and_settle(
    server: FaultyServer, root_with_http_logs: logging.Logger, count: int
) -> None:
    handlers = [
        NotifierHandler(webhook_notifier(server.url), level=logging.DEBUG) for _ in range(count)
    ]
    for handler in handlers:
        root_with_http_logs.addHandler(handler)
    try:
        logging.getLogger("myapp.billing").error("invoice run failed")
        for handler in handlers:
            assert handler.notifier.flush(10)
        # Settled: every handler's notifier is idle, nothing more was sent.
        assert len(server.bodies) == count
        assert all(b"invoice run failed" in body for body in server.bodies)
    finally:
        for handler in handlers:
            root_with_http_logs.removeHandler(handler)
            handler.notifier.close(timeout=2)


def test_a_debug_handler_ignores_another_notifiers_http_log_lines(
    server: FaultyServer, root_with_http_logs: logging.Logger
) -> None:
    handler = NotifierHandler(webhook_notifier(server.url + "/alerts"), level=logging.DEBUG)
    root_with_http_logs.addHandler(handler)
    other = webhook_notifier(server.url + "/metrics")
    try:
        for index in range(3):
            assert other.send(f"metric {index}").ok
        assert other.flush(5)
        assert handler.notifier.flush(5)
        assert len(server.bodies) == 3  # the three sends, no HTTP log line forwarded
    finally:
        root_with_http_logs.removeHandler(handler)
        handler.notifier.close(timeout=2)
        other.close(timeout=2)


class ChattyCommunicator(RecordingCommunicator):
    """Logs a warning on the app's logger in every step, as a library working for it might."""

    def __init__(self, logger: logging.Logger, name: str = "chatty") -> None:
        super().__init__(name)
        self._logger = logger

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        self._logger.warning("chatty: delivering")
        return await super().deliver(message)

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        self._logger.warning("chatty: editing")
        return await super().edit(reference, message)

    async def flush(self, timeout: float | None = None) -> bool:
        self._logger.warning("chatty: flushing")
        return await super().flush(timeout)

    async def stop(self) -> None:
        self._logger.warning("chatty: stopping")
        await super().stop()


@pytest.fixture
def handled() -> Iterator[tuple[logging.Logger, RecordingCommunicator, Notifier]]:
    """A logger with a NotifierHandler; the handler's notifier records what it sends."""
    logger = logging.getLogger("myapp.delivery-loops")
    logger.propagate = False
    recorder = RecordingCommunicator("alerts")
    notifier = Notifier({"enabled": True}, name="alerts")
    notifier.add_communicator(recorder)
    handler = NotifierHandler(notifier, level=logging.WARNING)
    logger.addHandler(handler)
    try:
        yield logger, recorder, notifier
    finally:
        logger.removeHandler(handler)
        notifier.close(timeout=2)
        logger.propagate = True


def test_records_logged_by_deliveries_edits_flushes_and_stops_on_another_loop_are_not_sent(
    handled: tuple[logging.Logger, RecordingCommunicator, Notifier],
) -> None:
    logger, recorder, notifier = handled

    async def work() -> None:  # a dispatcher on the application's own loop (as the CLI)
        dispatcher = CommunicationDispatcher()
        dispatcher.register(ChattyCommunicator(logger))
        await dispatcher.start_all()
        report = await dispatcher.deliver(OutgoingMessage(message="deploying"))
        await dispatcher.edit(report, OutgoingMessage(message="deployed"))
        await dispatcher.flush_all(5)
        await dispatcher.stop_all()

    asyncio.run(work())
    logger.warning("the application's own line")
    assert notifier.flush(5)

    assert recorder.texts == ["the application's own line"]


def test_records_logged_by_progress_edits_and_asks_on_the_notifiers_loop_are_not_sent(
    handled: tuple[logging.Logger, RecordingCommunicator, Notifier],
) -> None:
    logger, recorder, alerts = handled
    with Notifier({"enabled": True}, name="work") as work:
        chatty = ChattyCommunicator(logger)
        work.add_communicator(chatty)
        for _ in work.progress(range(3), desc="rows", min_interval=0.0):
            pass
        assert work.flush(5)
        logger.warning("the application's own line")
        assert alerts.flush(5)

    assert chatty.edits  # progress edited its message
    assert recorder.texts == ["the application's own line"]


def test_records_logged_while_an_outbox_worker_delivers_are_not_sent(
    handled: tuple[logging.Logger, RecordingCommunicator, Notifier],
    processpype_redis: RedisTestServer,
) -> None:
    logger, recorder, alerts = handled
    config = outbox_config(processpype_redis.url)
    built: list[ChattyCommunicator] = []

    def factory(name: str, _: CommunicatorBackendConfig) -> Communicator:
        built.append(ChattyCommunicator(logger, name))
        return built[-1]

    with running_worker(config, factory=factory), Notifier(config, name="producer") as producer:
        assert producer.send("through the outbox").ok
        wait_until(lambda: bool(built and built[0].messages), what="the worker's delivery")
    logger.warning("the application's own line")
    assert alerts.flush(5)

    assert [m.message for m in built[0].messages] == ["through the outbox"]
    assert recorder.texts == ["the application's own line"]


def test_records_logged_inside_a_delivery_on_another_loop_are_not_sent() -> None:
    async def deliver() -> tuple[bool, bool]:
        with delivery_work():
            inner = asyncio.create_task(asyncio.sleep(0, result=in_delivery_work()))
            return in_delivery_work(), await inner

    assert asyncio.run(deliver()) == (True, True)
    assert not in_delivery_work()
