"""Helpers for the outbox tests: configs, a worker on its own thread, a sync Redis view."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from processpype.communications.base import Communicator
from processpype.communications.outbox.worker import OutboxWorker
from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig
from processpype.testing.recording import RecordingCommunicator


def outbox_config(
    url: str,
    backends: Mapping[str, Any] | None = None,
    **outbox: Any,
) -> CommunicationsConfig:
    """An enabled config with an outbox at ``url`` and (default) one recording backend."""
    return CommunicationsConfig.model_validate(
        {
            "enabled": True,
            "backends": dict(backends or {"rec": {"type": "recording", "receiving": False}}),
            "outbox": {"url": url, **outbox},
        }
    )


class WorkerThread:
    """An ``OutboxWorker`` running on its own thread and loop; ``stop()`` joins it."""

    def __init__(self, worker: OutboxWorker) -> None:
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="outbox-worker", daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.worker.run())
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self.loop.close()

    def start(self) -> WorkerThread:
        """Start the worker thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the worker and wait for it; re-raise what it died of."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.worker.stop)
            self._thread.join(timeout)
        assert not self._thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error


@contextmanager
def running_worker(
    config: CommunicationsConfig,
    *,
    factory: Callable[[str, CommunicatorBackendConfig], Communicator] | None = None,
    **kwargs: Any,
) -> Iterator[OutboxWorker]:
    """A started worker for ``config``, stopped on exit."""
    worker = (
        OutboxWorker(config, factory=factory, **kwargs)
        if factory
        else OutboxWorker(config, **kwargs)
    )
    thread = WorkerThread(worker).start()
    try:
        yield worker
    finally:
        thread.stop()


def recorder_of(
    worker: OutboxWorker, name: str = "rec", timeout: float = 5.0
) -> RecordingCommunicator:
    """The worker's recording backend ``name`` (waits for the worker to build it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        communicator = worker.dispatcher.get(name)
        if communicator is not None:
            assert isinstance(communicator, RecordingCommunicator)
            return communicator
        time.sleep(0.005)
    raise AssertionError(f"the worker has no backend {name!r} after {timeout}s")


def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
