"""Notifier under many threads: exactly-once delivery, per-thread order, event loops."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from processpype.communications.notifier import Notifier
from processpype.testing.recording import RecordingCommunicator

THREADS = 16
PER_THREAD = 1000


def test_sixteen_threads_deliver_every_message_exactly_once_in_each_threads_order() -> None:
    first, second = RecordingCommunicator("first"), RecordingCommunicator("second")
    notifier = Notifier({"enabled": True})
    notifier.add_communicator(first)
    notifier.add_communicator(second)
    start = threading.Barrier(THREADS)

    def sender(thread: int) -> None:
        start.wait()
        for index in range(PER_THREAD):
            notifier.send_nowait(f"{thread}:{index}")

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert notifier.flush(timeout=60)
    finally:
        notifier.close()

    expected = {f"{t}:{i}" for t in range(THREADS) for i in range(PER_THREAD)}
    for backend in (first, second):
        texts = backend.texts
        assert len(texts) == THREADS * PER_THREAD, f"{backend.name}: {len(texts)} messages"
        assert set(texts) == expected, f"{backend.name}: a message is missing or duplicated"
        per_thread: dict[str, list[int]] = defaultdict(list)
        for text in texts:
            sender_id, index = text.split(":")
            per_thread[sender_id].append(int(index))
        for sender_id, indexes in per_thread.items():
            assert indexes == list(range(PER_THREAD)), f"{backend.name}: {sender_id} reordered"


def test_blocking_sends_from_many_threads_each_get_their_own_report() -> None:
    recorder = RecordingCommunicator()
    notifier = Notifier({"enabled": True})
    notifier.add_communicator(recorder)
    reports: dict[str, str] = {}
    lock = threading.Lock()

    def sender(thread: int) -> None:
        for index in range(50):
            text = f"{thread}:{index}"
            report = notifier.send(text)
            with lock:
                reports[text] = report.message.message

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        notifier.close()

    assert len(reports) == 400
    assert all(text == sent for text, sent in reports.items())


def test_asend_from_several_event_loops_at_once() -> None:
    recorder = RecordingCommunicator()
    notifier = Notifier({"enabled": True})
    notifier.add_communicator(recorder)

    async def burst(loop_index: int) -> list[bool]:
        reports = await asyncio.gather(*(notifier.asend(f"{loop_index}:{i}") for i in range(100)))
        return [report.ok for report in reports]

    outcomes: list[list[bool]] = []

    def run_loop(index: int) -> None:
        outcomes.append(asyncio.run(burst(index)))

    threads = [threading.Thread(target=run_loop, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        notifier.close()

    assert [all(o) for o in outcomes] == [True] * 4
    assert len(recorder.texts) == 400
