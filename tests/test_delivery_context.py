"""A delivery runs in the sender's contextvars, whichever thread or loop sent it."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from processpype.communications import Notifier
from processpype.communications.models import OutgoingMessage
from processpype.testing.recording import RecordingCommunicator

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class _Seeing(RecordingCommunicator):
    """Records, with each message, the request id its send saw."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[tuple[str, str | None]] = []
        self._seen_lock = threading.Lock()

    async def send(self, message: OutgoingMessage) -> None:
        with self._seen_lock:
            self.seen.append((message.message, request_id.get()))
        # Changing the context here must not reach the sender or the other backend.
        request_id.set("changed by a backend")


def test_each_backend_sees_the_context_of_the_thread_that_sent() -> None:
    first, second = _Seeing("a"), _Seeing("b")
    with Notifier({"enabled": True}) as notifier:
        notifier.add_communicator(first)
        notifier.add_communicator(second)

        def sender(index: int) -> None:
            request_id.set(f"req-{index}")
            assert notifier.send(f"m{index}", timeout=10).ok
            assert request_id.get() == f"req-{index}"

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    expected = sorted((f"m{i}", f"req-{i}") for i in range(4))
    assert sorted(first.seen) == expected
    assert sorted(second.seen) == expected


def test_asend_delivers_in_the_awaiting_task_s_context() -> None:
    backend = _Seeing("a")
    with Notifier({"enabled": True}) as notifier:
        notifier.add_communicator(backend)

        async def handle(index: int) -> None:
            request_id.set(f"task-{index}")
            report = await notifier.asend(f"t{index}", timeout=10)
            assert report.ok

        async def main() -> None:
            await asyncio.gather(*(handle(i) for i in range(3)))

        asyncio.run(main())

    assert sorted(backend.seen) == sorted((f"t{i}", f"task-{i}") for i in range(3))
