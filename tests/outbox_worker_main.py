"""A worker process for the outbox proofs: ``python outbox_worker_main.py SPEC_JSON``.

The spec gives the config, a file where deliveries are recorded (one JSON line each,
with ``time.time()``, so the lines of several processes compare on one clock), and the
kind of backend: ``file`` (records each message after ``delay`` seconds) or
``telegram`` (the real Telegram backend on a FakeTelegramClient that records each
request as it arrives; ``shared_limiter: false`` takes the Redis limiter away).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from processpype.communications.base import Communicator
from processpype.communications.models import OutgoingMessage
from processpype.communications.outbox.worker import OutboxWorker
from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig


class FileRecorder(Communicator):
    """Appends one JSON line per delivered message to ``path``, after ``delay`` seconds."""

    def __init__(self, name: str, config: CommunicatorBackendConfig, path: str, delay: float):
        super().__init__(name, config)
        self._path = path
        self._delay = delay

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)
        _record(
            self._path, {"text": message.message, "key": message.metadata.get("idempotency_key")}
        )


def _record(path: str, fields: dict[str, Any]) -> None:
    line = json.dumps({"time": time.time(), "pid": os.getpid(), **fields}) + "\n"
    # One write per line on an O_APPEND file: lines of several processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _telegram_factory(spec: dict[str, Any]) -> Any:
    from processpype.communications.backends import telegram as telegram_backend
    from processpype.testing.telegram import FakeTelegramClient

    path = spec["out"]

    class RecordingFake(FakeTelegramClient):
        async def send_message(self, entity: Any, message: Any = "", **kwargs: Any) -> Any:
            _record(path, {"chat": entity, "text": message})
            return await super().send_message(entity, message, **kwargs)

    fake = RecordingFake()
    telegram_backend.set_default_client_factory(fake.as_client_factory())
    return telegram_backend


async def main(spec: dict[str, Any]) -> None:
    config = CommunicationsConfig.model_validate(spec["config"])
    kind = spec.get("kind", "file")

    def factory(name: str, backend: CommunicatorBackendConfig) -> Communicator:
        if kind == "file":
            return FileRecorder(name, backend, spec["out"], float(spec.get("delay", 0.0)))
        from processpype.communications.backends import create_communicator

        return create_communicator(name, backend)

    if kind == "telegram":
        _telegram_factory(spec)
    worker = OutboxWorker(
        config,
        concurrency=int(spec.get("concurrency", 1)),
        consumer=spec.get("consumer"),
        factory=factory,
        shared_limits=bool(spec.get("shared_limits", True)),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    print("ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
