"""Several NotifierHandlers on one logger settle: no handler forwards delivery log lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from http_helpers import FaultyServer, faulty_server

from processpype.communications.logging import NotifierHandler
from processpype.communications.notifier import Notifier


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


def test_records_logged_inside_a_delivery_on_another_loop_are_not_sent() -> None:
    import asyncio

    from processpype.communications._delivery_context import delivery_work, in_delivery_work

    async def deliver() -> tuple[bool, bool]:
        with delivery_work():
            inner = asyncio.create_task(asyncio.sleep(0, result=in_delivery_work()))
            return in_delivery_work(), await inner

    assert asyncio.run(deliver()) == (True, True)
    assert not in_delivery_work()
