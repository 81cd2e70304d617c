"""LoopThread and LoopWaker: the loop a Notifier owns, and how other threads wake it."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator

import pytest

from processpype.communications._loop_thread import LoopThread, LoopWaker
from processpype.communications.notifier import Notifier
from processpype.testing.recording import RecordingCommunicator


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread("test-loop")
    thread.start()
    yield thread
    thread.stop()


class Calls:
    """Counts callback calls and records the thread each ran on."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.called = threading.Event()

    def __call__(self) -> None:
        self.threads.append(threading.get_ident())
        self.called.set()


async def _make_waker(loop_thread: LoopThread, calls: Calls) -> LoopWaker:
    return loop_thread.waker(calls)


def _ident_of(loop_thread: LoopThread) -> int:
    async def ident() -> int:
        return threading.get_ident()

    return loop_thread.call(ident(), timeout=5)


def test_wake_from_another_thread_runs_the_callback_on_the_loop_thread(
    loop_thread: LoopThread,
) -> None:
    calls = Calls()
    waker = loop_thread.call(_make_waker(loop_thread, calls), timeout=5)

    waker.wake()

    assert calls.called.wait(5)
    assert calls.threads == [_ident_of(loop_thread)]


def test_wakes_before_the_loop_answers_give_one_callback(loop_thread: LoopThread) -> None:
    calls = Calls()
    waker = loop_thread.call(_make_waker(loop_thread, calls), timeout=5)
    if not waker.uses_eventfd:
        pytest.skip("call_soon_threadsafe does not coalesce wakes")
    release = threading.Event()
    # Keep the loop busy while three wakes arrive.
    loop_thread.call_soon(release.wait, 5)

    for _ in range(3):
        waker.wake()
    release.set()
    # A call scheduled after the wakes ran once the loop handled them.
    _ident_of(loop_thread)
    _ident_of(loop_thread)

    assert len(calls.threads) == 1


def test_waker_outside_the_loop_thread_is_refused(loop_thread: LoopThread) -> None:
    with pytest.raises(RuntimeError, match="loop's thread"):
        loop_thread.waker(Calls())


def test_without_eventfd_the_waker_calls_the_loop_threadsafe(
    loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    if hasattr(os, "eventfd"):
        monkeypatch.delattr(os, "eventfd")
    calls = Calls()
    waker = loop_thread.call(_make_waker(loop_thread, calls), timeout=5)

    waker.wake()

    assert not waker.uses_eventfd
    assert "call_soon_threadsafe" in repr(waker)
    assert calls.called.wait(5)


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="eventfd is Linux-only")
def test_the_eventfd_is_closed_when_the_loop_ends() -> None:
    thread = LoopThread("test-loop")
    thread.start()
    waker = thread.call(_make_waker(thread, Calls()), timeout=5)
    fd = waker._fd
    assert fd is not None
    os.fstat(fd)  # open while the loop runs

    assert thread.stop(timeout=5)

    assert not waker.uses_eventfd
    with pytest.raises(RuntimeError, match="closed"):
        waker.wake()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_notifiers_opened_and_closed_leave_no_file_descriptor_behind() -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with Notifier({"enabled": True}) as warm_up:  # imports and lazy set-up happen once
        warm_up.add_communicator(RecordingCommunicator())
        warm_up.send("warm-up", timeout=5)
    before = open_fds()

    for index in range(20):
        with Notifier({"enabled": True}) as notifier:
            notifier.add_communicator(RecordingCommunicator())
            assert notifier.send(f"message {index}", timeout=5).ok

    assert open_fds() == before


def test_the_loop_thread_refuses_blocking_calls_from_its_own_thread(
    loop_thread: LoopThread,
) -> None:
    async def call_itself() -> None:
        async def inner() -> None:
            return None

        loop_thread.call(inner())

    with pytest.raises(RuntimeError, match="deadlock"):
        loop_thread.call(call_itself(), timeout=5)


def test_stop_is_idempotent_and_ends_the_thread() -> None:
    thread = LoopThread("test-loop")
    loop = thread.start()
    ran = thread.running

    assert thread.stop(timeout=5)
    assert thread.stop(timeout=5)

    assert ran
    assert not thread.running
    assert loop.is_closed()
    with pytest.raises(RuntimeError, match="closed"):
        thread.submit(asyncio.sleep(0))
