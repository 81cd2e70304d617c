"""Every request that posts or edits takes its slot of the limits shared through Redis."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import redis
from outbox_helpers import shared_limited_backend

from processpype.communications.models import Attachment, OutgoingMessage
from processpype.config.models import TelegramCommunicatorConfig
from processpype.config.outbox import OutboxConfig
from processpype.testing.redis import RedisTestServer
from processpype.testing.telegram import FakeTelegramClient

GROUP = "-1001234567890"
PREFIX = "processpype:limit:123456:"


def test_file_pieces_and_edits_are_counted_by_the_shared_limiter(
    processpype_redis: RedisTestServer,
) -> None:
    fake = FakeTelegramClient()
    config = fake.telegram_config(
        chats={"default": {"chat_id": GROUP}},
        per_chat_per_second=1000.0,
        global_per_second=1000.0,
    )
    outbox = OutboxConfig.model_validate({"url": processpype_redis.url})
    files = [Attachment.from_bytes(b"a", "a.txt"), Attachment.from_bytes(b"b", "b.txt")]

    async def scenario() -> None:
        async with shared_limited_backend(fake, config, outbox) as backend:
            # The text rides on the first document as its caption: two pieces.
            sent = await backend.deliver(OutgoingMessage(message="backup", attachments=files))
            text = await backend.deliver(OutgoingMessage(message="10%"))
            edited = await backend.edit(text.reference, OutgoingMessage(message="20%"))
        assert (sent.status, text.status, edited.status) == ("delivered",) * 3

    asyncio.run(scenario())
    db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    try:
        # The group's window lasts a minute: it still holds every send of the test.
        counted = db.zcard(PREFIX + f"group:{GROUP}")
    finally:
        db.close()
    assert counted == 4  # two documents, one text, one edit
    assert len(fake.sent_files) == 2
    assert [e.text for e in fake.edits] == ["20%"]


@pytest.mark.parametrize(
    "key",
    ["send_timeout", "stop_timeout", "connect_timeout", "max_flood_wait", "max_command_age"],
)
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_an_infinite_or_nan_telegram_timeout_is_refused_naming_the_key(
    key: str, value: float
) -> None:
    values = FakeTelegramClient.telegram_config().model_dump()
    values.update(
        api_hash="0123456789abcdef0123456789abcdef",
        token="123456:TEST-token_for-the-fake",
        **{key: value},
    )
    with pytest.raises(ValueError, match=key):
        TelegramCommunicatorConfig.model_validate(values)


@pytest.mark.timeout(20)
def test_a_silent_redis_fails_the_send_instead_of_holding_it() -> None:
    from telegram_helpers import LoopbackServer

    fake = FakeTelegramClient()
    config = fake.telegram_config(max_attempts=1)

    async def scenario() -> str:
        async with LoopbackServer("silent") as silent:  # accepts, never answers
            outbox = OutboxConfig.model_validate(
                {"url": f"redis://127.0.0.1:{silent.port}/0", "connect_timeout": 0.2}
            )
            async with shared_limited_backend(fake, config, outbox) as backend:
                result = await backend.deliver(OutgoingMessage(message="held?"))
        return result.error or ""

    error = asyncio.run(scenario())
    assert "is unreachable" in error
    assert fake.texts == []
