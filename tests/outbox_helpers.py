"""Helpers for the outbox tests: configs, a worker on its own thread, a sync Redis view."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.base import Communicator
from processpype.communications.outbox._redis import connect
from processpype.communications.outbox.limiter import SharedTelegramLimiter
from processpype.communications.outbox.worker import OutboxWorker
from processpype.config.models import (
    CommunicationsConfig,
    CommunicatorBackendConfig,
    TelegramCommunicatorConfig,
)
from processpype.config.outbox import OutboxConfig
from processpype.testing.recording import RecordingCommunicator
from processpype.testing.redis import find_redis_server
from processpype.testing.telegram import FakeTelegramClient

needs_redis_server = pytest.mark.skipif(
    find_redis_server() is None,
    reason="redis-server is not installed (apt-get install redis-server)",
)
"""For a test that starts its own RedisTestServer (the fixture skips by itself)."""


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


@asynccontextmanager
async def shared_limited_backend(
    fake: FakeTelegramClient, config: TelegramCommunicatorConfig, outbox: OutboxConfig
) -> AsyncIterator[TelegramCommunicator]:
    """A started backend on ``fake`` whose sends take their slots of the limits in Redis.

    The backend is stopped, then the limiter closed, on exit.
    """
    backend = TelegramCommunicator("tg", config, client_factory=fake.as_client_factory())
    limiter = SharedTelegramLimiter(
        connect(outbox), outbox, bot="123456", limits=backend.rate_limits
    )
    backend.send_limiter = limiter
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()
        await limiter.aclose()


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


WORKER_MAIN = Path(__file__).with_name("outbox_worker_main.py")
ROOT = Path(__file__).resolve().parents[1]


class Workers:
    """Worker processes of one test; every one still running is killed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, spec: dict[str, Any]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(WORKER_MAIN), json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()  # "ready": the worker is about to read
        assert line.strip() == "ready", process.stderr.read() if process.stderr else line
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def pending(db: Any) -> dict[str, int]:
    """Entries pending per consumer ({} before any worker created the group)."""
    try:
        summary = db.xpending("processpype:outbox", "workers")
    except redis.ResponseError:
        return {}
    return {c["name"]: int(c["pending"]) for c in summary["consumers"] or ()}
