"""A Notifier process for the lease proof: ``python outbox_listener_main.py SPEC_JSON``.

Its config has an outbox and one receiving backend of type ``chatroom``: a stand-in for
a Telegram bot whose "server" is the Redis stream ``chatroom:updates``. Like Telegram
after a reconnect, a newly connected chatroom receives again every update it cannot
know was confirmed (here: all of them, from the start). Every message that reaches this
Notifier's ``on_message`` handler is appended to ``out`` as one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from typing import Any

import redis.asyncio as aioredis

from processpype.communications.backends import register_backend
from processpype.communications.base import Communicator
from processpype.communications.models import IncomingMessage, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.config.models import CommunicatorBackendConfig

UPDATES = "chatroom:updates"


class Chatroom(Communicator):
    """Receives every entry of ``chatroom:updates`` (from the first) as an incoming message."""

    def __init__(self, name: str, config: CommunicatorBackendConfig) -> None:
        super().__init__(name, config)
        self._url = str((config.model_extra or {})["url"])
        self._task: asyncio.Task[None] | None = None

    @property
    def supports_receiving(self) -> bool:
        return True

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())
        self._started = True

    async def _listen(self) -> None:
        client: Any = aioredis.Redis.from_url(self._url, decode_responses=True)
        last = "0-0"
        try:
            while True:
                answer = await client.xread({UPDATES: last}, block=200)
                for _, entries in answer or ():
                    for entry_id, fields in entries:
                        last = entry_id
                        self._publish_incoming(
                            IncomingMessage(
                                text=fields["text"],
                                backend_name=self.name,
                                metadata={"chat_id": 7, "message_id": int(fields["number"])},
                            )
                        )
        finally:
            await client.aclose()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        """Not used by the proof."""


def main(spec: dict[str, Any]) -> None:
    register_backend("chatroom", Chatroom, replace=True)
    out = spec["out"]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def record(message: IncomingMessage) -> None:
        line = json.dumps({"pid": os.getpid(), "text": message.text}) + "\n"
        fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    with Notifier(spec["config"]) as notifier:
        notifier.on_message(record)
        print("ready", flush=True)
        stop.wait()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
