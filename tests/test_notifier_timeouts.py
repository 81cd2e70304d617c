"""Notifier timeouts: None is no limit, values no clock can honour are refused up front."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from test_notifier import GateCommunicator

from processpype.communications import notifier as notifier_module
from processpype.communications.errors import NotifierClosedError
from processpype.communications.notifier import Notifier
from processpype.testing.recording import RecordingCommunicator

ENABLED = {"enabled": True}
REFUSED = [math.inf, -math.inf, math.nan, -1.0]


@pytest.fixture
def notifier() -> Iterator[Notifier]:
    made = Notifier(ENABLED)
    made.add_communicator(RecordingCommunicator("memory"))
    yield made
    made.close(timeout=1)


@pytest.mark.parametrize("value", REFUSED)
def test_a_drain_timeout_no_clock_can_honour_is_refused_naming_it(value: float) -> None:
    with pytest.raises(ValueError, match=r"drain_timeout must be a finite number"):
        Notifier(ENABLED, drain_timeout=value)


@pytest.mark.parametrize("value", REFUSED)
def test_a_start_timeout_no_clock_can_honour_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match=r"start_timeout must be a finite number"):
        Notifier(ENABLED, start_timeout=value)


@pytest.mark.parametrize("value", REFUSED)
def test_send_refuses_an_infinite_timeout_before_anything_is_sent(
    notifier: Notifier, value: float
) -> None:
    memory = notifier.communicator("memory")
    assert isinstance(memory, RecordingCommunicator)
    with pytest.raises(ValueError, match=r"timeout must be a finite number .* None for no limit"):
        notifier.send("hello", timeout=value)
    assert notifier.flush(5)
    assert memory.texts == []


@pytest.mark.parametrize("value", REFUSED)
def test_flush_and_close_refuse_an_infinite_timeout_and_the_notifier_keeps_working(
    notifier: Notifier, value: float
) -> None:
    with pytest.raises(ValueError, match="timeout"):
        notifier.flush(value)
    with pytest.raises(ValueError, match="timeout"):
        notifier.close(value)
    assert not notifier.closed
    assert notifier.send("still works", timeout=5).ok


@pytest.mark.asyncio
async def test_asend_aflush_and_aclose_refuse_an_infinite_timeout(notifier: Notifier) -> None:
    with pytest.raises(ValueError, match="timeout"):
        await notifier.asend("x", timeout=math.inf)
    with pytest.raises(ValueError, match="timeout"):
        await notifier.aflush(math.inf)
    with pytest.raises(ValueError, match="timeout"):
        await notifier.aclose(math.nan)
    assert (await notifier.asend("fine", timeout=5)).ok


def test_a_timeout_of_the_wrong_type_is_refused_naming_its_type(notifier: Notifier) -> None:
    with pytest.raises(TypeError, match=r"timeout must be a number of seconds or None.*str"):
        notifier.send("x", timeout="10")  # type: ignore[arg-type]


def test_none_means_no_limit_for_send_flush_close_and_drain_timeout() -> None:
    notifier = Notifier(ENABLED, drain_timeout=None)
    memory = RecordingCommunicator("memory")
    notifier.add_communicator(memory)
    assert notifier.drain_timeout is None
    assert notifier.send("a", timeout=None).ok
    notifier.send_nowait("b")
    assert notifier.flush(None)
    assert notifier.close(None)
    assert memory.texts == ["a", "b"]


def test_start_after_close_raises_notifier_closed_error(notifier: Notifier) -> None:
    notifier.close(timeout=1)
    with pytest.raises(NotifierClosedError, match="is closed"):
        notifier.start()


def test_a_close_that_fails_still_stops_the_loop_and_settles_every_future() -> None:
    gate = GateCommunicator()
    notifier = Notifier(ENABLED)
    notifier.add_communicator(gate)
    futures = [notifier.send_nowait(f"m{i}") for i in range(5)]
    assert gate.arrived.wait(5)

    def interrupted_flush(timeout: float | None = None) -> bool:
        raise KeyboardInterrupt

    notifier.flush = interrupted_flush  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        notifier.close(timeout=1)

    assert notifier.closed
    loop_threads = [t for t in threading.enumerate() if t.name == notifier._name]
    assert loop_threads == []
    for future in futures:
        report = future.result(timeout=5)
        assert not report.ok
    with pytest.raises(NotifierClosedError):
        notifier.send_nowait("after")


@pytest.mark.parametrize("key", ["timeout", "max_retry_delay", "retry_base_delay"])
def test_an_infinite_backend_timeout_in_the_config_is_refused_naming_the_key(key: str) -> None:
    from processpype.communications.errors import ConfigError

    config = {
        "enabled": True,
        "backends": {"hook": {"type": "webhook", "url": "http://127.0.0.1:1/x", key: math.inf}},
    }
    with pytest.raises((ConfigError, ValueError), match=rf"hook.*{key}"):
        Notifier(config, start=False)


def test_a_failed_close_settles_every_future_even_when_the_loop_is_stuck() -> None:
    import asyncio

    from processpype.communications.models import OutgoingMessage

    release = threading.Event()

    class BlocksTheLoop(RecordingCommunicator):
        async def send(self, message: OutgoingMessage) -> None:
            await asyncio.sleep(0)
            release.wait(10)  # a backend that blocks the loop thread (a bug)

    notifier = Notifier(ENABLED)
    notifier.add_communicator(BlocksTheLoop("stuck"))
    futures = [notifier.send_nowait(f"m{i}") for i in range(3)]

    def interrupted_flush(timeout: float | None = None) -> bool:
        raise KeyboardInterrupt

    notifier.flush = interrupted_flush  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            notifier.close(timeout=1)
        reports = [future.result(timeout=5) for future in futures]
    finally:
        release.set()
    assert all(not report.ok for report in reports)


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_edit_refuses_a_timeout_no_clock_can_honour_before_editing(
    notifier: Notifier, value: float
) -> None:
    memory = notifier.communicator("memory")
    assert isinstance(memory, RecordingCommunicator)
    report = notifier.send("first", timeout=5)
    with pytest.raises(ValueError, match=r"timeout must be a finite number"):
        notifier.edit(report, "second", timeout=value)
    assert notifier.flush(5)
    assert memory.texts == ["first"]


class _StuckAsker(RecordingCommunicator):
    """Can ask, but its ask never returns (a service that never answers the post)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.asked = threading.Event()

    @property
    def supports_asking(self) -> bool:
        return True

    async def ask(self, question: Any) -> Any:
        self.asked.set()
        await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_aask_gives_up_like_ask_when_the_backend_never_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notifier_module, "_ASK_GRACE", 0.2)
    made = Notifier(ENABLED)
    stuck = _StuckAsker("stuck")
    made.add_communicator(stuck)
    try:
        # The outer bound only keeps the test bounded: expiring, it fails the test.
        async with asyncio.timeout(10):
            with pytest.raises(TimeoutError):
                await made.aask("Go?", choices=["go"], timeout=0.1)
        assert stuck.asked.is_set()
    finally:
        await made.aclose(timeout=1)
