"""A Notifier dropped without close(): collected, its thread and loop stopped, a warning."""

from __future__ import annotations

import gc
import threading
import warnings

from test_notifier import GateCommunicator

from processpype.communications.notifier import Notifier
from processpype.testing.recording import RecordingCommunicator

ENABLED = {"enabled": True}


def loop_threads(names: set[str]) -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name in names]


def test_ten_dropped_notifiers_leave_no_thread_and_warn_that_they_were_not_closed() -> None:
    names: set[str] = set()
    memories: list[RecordingCommunicator] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(10):
            notifier = Notifier(ENABLED, name=f"dropped-{index}")
            memory = RecordingCommunicator("memory")
            notifier.add_communicator(memory)
            assert notifier.send(f"hello {index}").ok
            names.add(notifier._name)
            memories.append(memory)
            del notifier
        gc.collect()

    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert len(unclosed) == 10
    assert all("was never closed" in str(w.message) for w in unclosed)
    assert loop_threads(names) == []
    assert all(not memory.is_started for memory in memories)  # backends were stopped


def test_a_dropped_notifier_delivers_what_it_holds_before_it_is_collected() -> None:
    gate = GateCommunicator()
    notifier = Notifier(ENABLED, name="dropped-busy")
    notifier.add_communicator(gate)
    futures = [notifier.send_nowait(f"queued {index}") for index in range(5)]
    (thread,) = [t for t in threading.enumerate() if t.name == "dropped-busy"]
    del notifier
    gc.collect()
    # Still alive: five messages are in flight, and the notifier holds on to them.
    assert thread.is_alive()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gate.open()
        reports = [future.result(timeout=5) for future in futures]
        # The last settle drops the last reference, on the loop thread, which then ends.
        thread.join(10)

    assert any("dropped-busy was never closed" in str(w.message) for w in caught)
    assert all(report.ok for report in reports)
    assert sorted(gate.texts) == [f"queued {index}" for index in range(5)]
    assert loop_threads({"dropped-busy"}) == []
