"""The outbox with the other features: attachments, max_parts warnings, references, edits.

A worker runs the real Telegram backend on the fake client; what a producer sends reaches
it through a real redis-server, and what the backend reports comes back to the sender.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis
from outbox_helpers import outbox_config, running_worker, shared_limited_backend, wait_until

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.base import Communicator
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.config.models import CommunicatorBackendConfig, TelegramCommunicatorConfig
from processpype.config.outbox import OutboxConfig
from processpype.testing.recording import RecordingCommunicator
from processpype.testing.redis import RedisTestServer
from processpype.testing.telegram import FakeTelegramClient

BINARY = bytes(range(256)) * 4  # every byte value: not text, survives only as bytes
GROUP_CHAT = "-1001234567890"


def telegram_backend(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "telegram",
        "api_id": 12345,
        "api_hash": "0123456789abcdef0123456789abcdef",
        "token": "123456:TEST-token_for-the-fake",
        "chats": {"default": {"chat_id": GROUP_CHAT}},
        "persist_session": False,
        "per_chat_per_second": 1000,
        "global_per_second": 1000,
        **overrides,
    }


def fake_factory(fake: FakeTelegramClient) -> Any:
    def factory(name: str, config: CommunicatorBackendConfig) -> Communicator:
        if isinstance(config, TelegramCommunicatorConfig):
            return TelegramCommunicator(name, config, client_factory=fake.as_client_factory())
        return RecordingCommunicator(name, config)

    return factory


def test_attachment_bytes_cross_the_outbox_and_reach_telegram_intact(
    processpype_redis: RedisTestServer,
) -> None:
    fake = FakeTelegramClient()
    config = outbox_config(processpype_redis.url, {"tg": telegram_backend()})
    with running_worker(config, factory=fake_factory(fake)), Notifier(config) as notifier:
        report = notifier.send(
            OutgoingMessage(
                message="nightly dump",
                attachments=[Attachment(filename="dump.bin", data=BINARY)],
            ),
            wait_for_delivery=True,
            timeout=15,
        )
    assert [(r.backend, r.status) for r in report.results] == [("tg", "delivered")]
    (sent,) = fake.sent_files
    assert (sent.filename, sent.data, str(sent.chat)) == ("dump.bin", BINARY, GROUP_CHAT)
    db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    # The file request counted in the bot's shared window like any other request.
    assert db.zcard("processpype:limit:123456:bot") >= 1
    db.close()


def test_max_parts_warning_and_reference_come_back_with_the_outcome(
    processpype_redis: RedisTestServer,
) -> None:
    fake = FakeTelegramClient()
    config = outbox_config(processpype_redis.url, {"tg": telegram_backend(max_parts=2)})
    with running_worker(config, factory=fake_factory(fake)), Notifier(config) as notifier:
        report = notifier.send("word " * 3000, wait_for_delivery=True, timeout=15)
    (result,) = report.results
    assert result.status == "delivered"
    assert len(fake.texts) == 2  # capped at max_parts
    assert result.warnings
    assert "max_parts" in " ".join(result.warnings)
    # The reference names the posted pieces: a later edit in the worker's process finds them.
    assert result.reference
    assert all(piece for piece in result.reference)


def test_files_and_edits_each_count_in_the_shared_bot_window(
    processpype_redis: RedisTestServer,
) -> None:
    fake = FakeTelegramClient()
    config = fake.telegram_config(per_chat_per_second=1000.0, global_per_second=1000.0)
    outbox = OutboxConfig.model_validate({"url": processpype_redis.url})

    async def scenario() -> None:
        async with shared_limited_backend(fake, config, outbox) as backend:
            posted = await backend.deliver(OutgoingMessage(message="progress 10%"))
            await backend.edit(posted.reference, OutgoingMessage(message="progress 90%"))
            await backend.deliver(
                OutgoingMessage(message="", attachments=[Attachment(filename="a.txt", data=b"a")])
            )

    asyncio.run(scenario())
    db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    prefix = "processpype:limit:123456:"
    # One text, one edit, one file: three requests in the bot's and the group's windows.
    wait_until(lambda: db.zcard(prefix + "bot") == 3, what="three counted requests")
    # The group window keeps them all (20 a minute); the chat window, one interval wide,
    # holds only the latest.
    assert db.zcard(prefix + f"group:{GROUP_CHAT}") == 3
    db.close()
    assert [f.filename for f in fake.sent_files] == ["a.txt"]
