"""Notifier.on_message: where handlers run, their order, replies, errors, unsubscribing."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Iterator

import pytest

from processpype.communications.models import IncomingMessage
from processpype.communications.notifier import Notifier
from processpype.testing.recording import RecordingCommunicator


class Collected:
    """Thread-safe list of what handlers saw, with a wait for a count."""

    def __init__(self) -> None:
        self.items: list[object] = []
        self._condition = threading.Condition()

    def add(self, item: object) -> None:
        with self._condition:
            self.items.append(item)
            self._condition.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[object]:
        with self._condition:
            assert self._condition.wait_for(lambda: len(self.items) >= count, timeout), (
                f"expected {count} items, got {self.items!r}"
            )
            return list(self.items)


@pytest.fixture
def recorder() -> RecordingCommunicator:
    return RecordingCommunicator("chat")


@pytest.fixture
def notifier(recorder: RecordingCommunicator) -> Iterator[Notifier]:
    notifier = Notifier({"enabled": True}, name="incoming-test")
    notifier.add_communicator(recorder)
    yield notifier
    notifier.close(timeout=2)


def test_sync_handlers_run_in_arrival_order_on_one_worker_thread(
    notifier: Notifier, recorder: RecordingCommunicator
) -> None:
    seen = Collected()
    notifier.on_message(lambda m: seen.add((m.text, threading.current_thread().name)))

    for index in range(50):
        recorder.inject(f"m{index}")

    items = [item for item in seen.wait_for(50) if isinstance(item, tuple)]
    assert [text for text, _ in items] == [f"m{i}" for i in range(50)]
    threads = {name for _, name in items}
    assert len(threads) == 1
    assert threads != {threading.current_thread().name, "incoming-test"}


def test_async_handlers_run_on_the_notifiers_loop_thread(
    notifier: Notifier, recorder: RecordingCommunicator
) -> None:
    seen = Collected()

    async def handler(message: IncomingMessage) -> None:
        seen.add((message.text, notifier.in_loop_thread()))

    notifier.on_message(handler)
    recorder.inject("hello")

    assert seen.wait_for(1) == [("hello", True)]


def test_a_slow_sync_handler_never_stalls_sending(
    notifier: Notifier, recorder: RecordingCommunicator
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(message: IncomingMessage) -> None:
        entered.set()
        release.wait(5)

    notifier.on_message(slow)
    recorder.inject("takes a while")
    assert entered.wait(5)

    try:
        assert notifier.send("sent meanwhile", timeout=5).ok
    finally:
        release.set()


def test_a_sync_handler_can_reply_with_send_without_deadlock(
    notifier: Notifier, recorder: RecordingCommunicator
) -> None:
    replies: concurrent.futures.Future[bool] = concurrent.futures.Future()

    def reply(message: IncomingMessage) -> None:
        replies.set_result(notifier.send(f"re: {message.text}", timeout=5).ok)

    notifier.on_message(reply)
    recorder.inject("/status")

    assert replies.result(timeout=5)
    assert recorder.texts == ["re: /status"]


@pytest.mark.parametrize(
    "failure", [ValueError("handler bug"), SystemExit(3)], ids=["exception", "sys-exit"]
)
def test_a_failing_handler_is_logged_and_the_listener_goes_on(
    notifier: Notifier,
    recorder: RecordingCommunicator,
    caplog: pytest.LogCaptureFixture,
    failure: BaseException,
) -> None:
    seen = Collected()

    def handler(message: IncomingMessage) -> None:
        if message.text == "boom":
            raise failure
        seen.add(message.text)

    notifier.on_message(handler)
    with caplog.at_level(logging.ERROR, logger="processpype"):
        recorder.inject("boom")
        recorder.inject("after")
        assert seen.wait_for(1) == ["after"]

    assert type(failure).__name__ in caplog.text


def test_a_failing_async_handler_is_logged_and_the_listener_goes_on(
    notifier: Notifier, recorder: RecordingCommunicator, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Collected()

    async def handler(message: IncomingMessage) -> None:
        if message.text == "boom":
            raise ValueError("async handler bug")
        seen.add(message.text)

    notifier.on_message(handler)
    with caplog.at_level(logging.ERROR, logger="processpype"):
        recorder.inject("boom")
        recorder.inject("after")
        assert seen.wait_for(1) == ["after"]

    assert "async handler bug" in caplog.text


def test_unsubscribing_stops_the_handler(
    notifier: Notifier, recorder: RecordingCommunicator
) -> None:
    removed, kept = Collected(), Collected()
    unsubscribe = notifier.on_message(lambda m: removed.add(m.text))
    notifier.on_message(lambda m: kept.add(m.text))
    recorder.inject("before")
    kept.wait_for(1)

    unsubscribe()
    unsubscribe()  # a second call does nothing
    recorder.inject("after")

    # Sync handlers run in order on one thread: once the kept handler saw "after",
    # the removed one would have seen it too.
    assert kept.wait_for(2) == ["before", "after"]
    assert removed.items == ["before"]


def test_on_message_refuses_what_is_not_callable(notifier: Notifier) -> None:
    with pytest.raises(TypeError, match="callable"):
        notifier.on_message("not a function")  # type: ignore[arg-type]


def test_incoming_messages_carry_the_backend_and_sender(
    notifier: Notifier, recorder: RecordingCommunicator
) -> None:
    seen = Collected()
    notifier.on_message(seen.add)

    recorder.inject("/deploy", sender="alice", sender_id="42", chat_label="ops")

    (message,) = seen.wait_for(1)
    assert isinstance(message, IncomingMessage)
    assert (message.backend_name, message.sender, message.chat_label) == ("chat", "alice", "ops")


def test_sync_or_async_is_decided_once_as_the_handler_is_subscribed(
    notifier: Notifier, recorder: RecordingCommunicator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from processpype.communications import _handlers

    checks: list[object] = []
    decide = _handlers.is_async_handler

    def counting(handler: object) -> bool:
        checks.append(handler)
        return decide(handler)  # type: ignore[arg-type]

    monkeypatch.setattr(_handlers, "is_async_handler", counting)
    seen = Collected()

    async def on_async(message: IncomingMessage) -> None:
        seen.add(("async", message.text))

    notifier.on_message(lambda m: seen.add(("sync", m.text)))
    notifier.on_message(on_async)
    for index in range(3):
        recorder.inject(f"m{index}")

    items = seen.wait_for(6)
    expected = {(kind, f"m{i}") for kind in ("sync", "async") for i in range(3)}
    assert set(items) == expected
    assert len(items) == 6
    assert len(checks) == 2  # once per handler, never per message


def test_the_handler_type_names_are_importable_where_documented() -> None:
    from processpype.communications.base import IncomingHandler, IncomingSink
    from processpype.communications.models import MessageHandler, OnMessageHandler

    assert IncomingHandler is IncomingSink  # the former name, kept for compatibility
    assert MessageHandler is not OnMessageHandler
