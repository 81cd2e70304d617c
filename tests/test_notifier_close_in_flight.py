"""What close, the exit flush and the signal flush make of edits and files still under way."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Iterator

import pytest
from http_helpers import FaultyServer, Reply, faulty_server

from processpype.communications.delivery import DeliveryReport, DeliveryResult
from processpype.communications.models import Attachment, IncomingMessage, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.testing.recording import RecordingCommunicator


class HeldEdits(RecordingCommunicator):
    """Edits wait until ``release()``: a chat service slow to answer an edit."""

    def __init__(self) -> None:
        super().__init__("chat")
        self.editing = threading.Event()
        self._gate: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._gate = asyncio.Event()
        await super().start()

    def release(self) -> None:
        if self._loop is not None and self._gate is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._gate.set)

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        assert self._gate is not None
        self.editing.set()
        await self._gate.wait()
        return await super().edit(reference, message)


@pytest.fixture
def held() -> HeldEdits:
    return HeldEdits()


@pytest.fixture
def notifier(held: HeldEdits) -> Iterator[Notifier]:
    made = Notifier({"enabled": True}, name="edits")
    made.add_communicator(held)
    try:
        yield made
    finally:
        held.release()
        made.close(timeout=2)


def edit_in_background(notifier: Notifier, report: DeliveryReport) -> dict[str, object]:
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["report"] = notifier.edit(report, "deployed", timeout=None)
        except BaseException as exc:  # the test looks at it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


def test_flush_waits_for_an_edit_under_way(notifier: Notifier, held: HeldEdits) -> None:
    report = notifier.send("deploying")
    outcome = edit_in_background(notifier, report)
    assert held.editing.wait(5)

    assert notifier.flush(0.2) is False  # the edit is still being made
    held.release()
    assert notifier.flush(5) is True
    thread = outcome["thread"]
    assert isinstance(thread, threading.Thread)
    thread.join(5)
    edited = outcome["report"]
    assert isinstance(edited, DeliveryReport)
    assert edited.ok
    assert held.current_text(report.results[0].reference) == "deployed"


def test_close_during_an_edit_reports_it_as_may_have_been_applied(
    notifier: Notifier, held: HeldEdits, caplog: pytest.LogCaptureFixture
) -> None:
    report = notifier.send("deploying")
    outcome = edit_in_background(notifier, report)
    assert held.editing.wait(5)

    with caplog.at_level(logging.WARNING, logger="processpype.communications.notifier"):
        assert notifier.close(timeout=0.2) is False
    thread = outcome["thread"]
    assert isinstance(thread, threading.Thread)
    thread.join(5)

    edited = outcome.get("report")
    assert isinstance(edited, DeliveryReport), outcome  # a report, not a cancellation
    [result] = edited.results
    assert result.status == "failed"
    assert "may have been applied" in (result.error or "")
    text = caplog.text
    assert "may have been delivered" in text
    assert "-> chat (may have been delivered) (an edit into this text): 'deployed'" in text


def edit_from_a_handler(
    notifier: Notifier, held: HeldEdits, report: DeliveryReport
) -> concurrent.futures.Future[DeliveryReport]:
    """An async on_message handler that edits ``report``: on the notifier's own loop."""
    outcome: concurrent.futures.Future[DeliveryReport] = concurrent.futures.Future()

    async def on_command(message: IncomingMessage) -> None:
        try:
            outcome.set_result(await notifier.aedit(report, "deployed", timeout=None))
        except BaseException as exc:  # the test looks at it
            outcome.set_exception(exc)

    notifier.on_message(on_command)
    held.inject("/deployed")
    return outcome


def test_flush_waits_for_an_edit_made_on_the_notifiers_own_loop(
    notifier: Notifier, held: HeldEdits
) -> None:
    report = notifier.send("deploying")
    outcome = edit_from_a_handler(notifier, held, report)
    assert held.editing.wait(5)

    assert notifier.flush(0.2) is False  # the edit is still being made
    held.release()
    assert outcome.result(5).ok
    assert notifier.flush(5) is True
    assert held.current_text(report.results[0].reference) == "deployed"


def test_close_reports_an_edit_made_on_the_notifiers_own_loop(
    notifier: Notifier, held: HeldEdits, caplog: pytest.LogCaptureFixture
) -> None:
    report = notifier.send("deploying")
    outcome = edit_from_a_handler(notifier, held, report)
    assert held.editing.wait(5)

    with caplog.at_level(logging.WARNING, logger="processpype.communications.notifier"):
        assert notifier.close(timeout=0.2) is False
    [result] = outcome.result(5).results  # a report, not a cancellation
    assert result.status == "failed"
    assert "may have been applied" in (result.error or "")
    assert "-> chat (may have been delivered) (an edit into this text): 'deployed'" in caplog.text


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with faulty_server() as running:
        yield running


def test_a_file_being_uploaded_at_close_is_reported_as_may_have_been_delivered(
    server: FaultyServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.replies.append(Reply(stall=True))  # takes the upload, never answers
    notifier = Notifier(
        {
            "enabled": True,
            "backends": {
                "hook": {"type": "webhook", "url": server.url, "attachments": "multipart"}
            },
        }
    )
    upload = Attachment.from_bytes(b"\x00" * 2_000_000, "dump.bin")
    future = notifier.send_nowait("nightly dump", attachments=[upload])
    server.wait_for(1)
    with caplog.at_level(logging.WARNING, logger="processpype.communications.notifier"):
        assert notifier.close(timeout=0.2) is False
    report = future.result(timeout=10)

    [result] = report.results
    assert result.status == "failed"
    assert "may have been delivered" in (result.error or "")
    assert "-> hook (may have been delivered): 'nightly dump'" in caplog.text
