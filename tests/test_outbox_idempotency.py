"""Resends through the outbox carry a stable id: email Message-ID, webhook Idempotency-Key."""

from __future__ import annotations

import asyncio

import pytest
from email_helpers import backend, message
from outbox_helpers import outbox_config, running_worker

from processpype.communications.delivery import IDEMPOTENCY_KEY
from processpype.communications.notifier import Notifier
from processpype.testing.redis import RedisTestServer
from processpype.testing.smtp import SMTPTestServer
from processpype.testing.webhooks import WebhookCapture


def test_email_resent_with_the_same_key_keeps_its_message_id(
    processpype_smtp_server: SMTPTestServer,
) -> None:
    mail = backend(processpype_smtp_server, from_address="alerts@example.com", use_tls=False)
    outgoing = message(metadata={IDEMPOTENCY_KEY: "3f2a9c"})

    async def send_twice() -> None:
        await mail.start()
        try:
            await mail.deliver(outgoing)
            await mail.deliver(outgoing)  # a worker's redelivery after a crash
        finally:
            await mail.stop()

    asyncio.run(send_twice())
    first, second = processpype_smtp_server.wait_for_messages(2)
    assert first["Message-ID"] == second["Message-ID"] == "<3f2a9c@example.com>"


def test_email_without_a_key_gets_a_fresh_message_id_each_time(
    processpype_smtp_server: SMTPTestServer,
) -> None:
    mail = backend(processpype_smtp_server, use_tls=False)

    async def send_twice() -> None:
        await mail.start()
        try:
            await mail.deliver(message())
            await mail.deliver(message())
        finally:
            await mail.stop()

    asyncio.run(send_twice())
    first, second = processpype_smtp_server.wait_for_messages(2)
    assert first["Message-ID"] != second["Message-ID"]


def test_webhook_redelivered_by_the_outbox_repeats_its_idempotency_key(
    processpype_redis: RedisTestServer, processpype_webhooks: WebhookCapture
) -> None:
    url = "https://hooks.example.com/alert"
    config = outbox_config(
        processpype_redis.url,
        {"hook": {"type": "webhook", "url": url, "max_attempts": 1}},
        claim_after=0.2,
    )
    processpype_webhooks.respond(url, status=503, times=1)  # the first delivery fails
    with running_worker(config), Notifier(config) as notifier:
        report = notifier.send("db down", wait_for_delivery=True, timeout=10)
    assert report.results[0].status == "delivered"
    first, second = processpype_webhooks.requests
    key = report.message.metadata[IDEMPOTENCY_KEY]
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == key


@pytest.mark.parametrize("key", ["plain-key-1", "ключ with spaces\n"])
def test_webhook_header_is_always_a_valid_value(
    processpype_webhooks: WebhookCapture, key: str
) -> None:
    config = {
        "enabled": True,
        "backends": {"hook": {"type": "webhook", "url": "https://hooks.example.com/x"}},
    }
    with Notifier(config) as notifier:
        report = notifier.send("hello", metadata={IDEMPOTENCY_KEY: key})
    assert report.ok
    (request,) = processpype_webhooks.requests
    header = request.headers["Idempotency-Key"]
    assert header.isascii()
    assert header.isprintable()
    assert (header == key) == key.isascii()


def test_discord_delivery_carries_the_idempotency_key_like_a_send(
    processpype_webhooks: WebhookCapture,
) -> None:
    url = "https://discord.com/api/webhooks/1/tok3n"
    config = {"enabled": True, "backends": {"discord": {"type": "discord", "url": url}}}
    processpype_webhooks.respond(status=200, json={"id": "1100000000000000001"})
    with Notifier(config) as notifier:
        report = notifier.send("hello", metadata={IDEMPOTENCY_KEY: "job-42-done"})
    assert report.ok
    (request,) = processpype_webhooks.requests
    assert request.headers["Idempotency-Key"] == "job-42-done"
