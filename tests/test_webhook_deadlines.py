"""Webhook attempts against hostile servers: a deadline per attempt, bounded body reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from http_helpers import FaultyServer, Reply, faulty_server, started_backend

from processpype.communications.base import Communicator
from processpype.communications.errors import SendError
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.config.loader import config_from_mapping


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with faulty_server() as running:
        yield running


def webhook(
    url: str, kind: str = "webhook", **settings: Any
) -> contextlib.AbstractAsyncContextManager[Communicator]:
    return started_backend(kind, url, **{"retry_base_delay": 0.001, **settings})


@pytest.mark.asyncio
async def test_a_trickling_response_fails_at_the_attempt_deadline_and_the_next_message_goes_out(
    server: FaultyServer,
) -> None:
    # Each byte comes well inside the per-read timeout: only a whole-attempt deadline ends it.
    server.replies.append(Reply(body=b"o" * 100, trickle=0.1))
    async with webhook(server.url, timeout=1, attempt_timeout=0.5) as hook:
        async with asyncio.timeout(10):
            with pytest.raises(SendError, match=r"no complete response .* within 0.5 s") as info:
                await hook.deliver(OutgoingMessage(message="first"))
            second = await hook.deliver(OutgoingMessage(message="second"))

    assert info.value.attempts == 1  # not retried: the server had the request
    assert second.status == "delivered"
    assert len(server.bodies) == 2


@pytest.mark.asyncio
async def test_a_slow_upload_of_a_large_file_to_discord_fails_at_the_attempt_deadline(
    server: FaultyServer,
) -> None:
    # 64 KiB every 50 ms: every write of the upload advances well inside the per-write
    # timeout, and the 8 MiB would take some 6 s. Only a deadline on the whole try ends it.
    server.replies.append(Reply(upload_pace=0.05))
    dump = Attachment.from_bytes(b"\x00" * (8 * 1024 * 1024), "dump.bin")
    async with webhook(server.url, "discord", timeout=5, attempt_timeout=0.5) as chat:
        async with asyncio.timeout(20):
            with pytest.raises(SendError, match=r"within 0.5 s \(attempt_timeout\)") as info:
                await chat.deliver(OutgoingMessage(message="nightly dump", attachments=[dump]))
            after = await chat.deliver(OutgoingMessage(message="next one"))

    assert info.value.attempts == 1  # not retried: the server may have the upload
    assert after.status == "delivered"
    assert len(server.bodies) == 1  # the upload never completed; the next message did
    assert b"next one" in server.bodies[0]


@pytest.mark.asyncio
async def test_a_server_that_never_answers_fails_at_the_attempt_deadline(
    server: FaultyServer,
) -> None:
    server.replies.append(Reply(stall=True))
    async with webhook(server.url, timeout=5, attempt_timeout=0.3) as hook:
        async with asyncio.timeout(10):
            with pytest.raises(SendError, match="attempt_timeout"):
                await hook.deliver(OutgoingMessage(message="lost in the void"))


@pytest.mark.asyncio
async def test_a_huge_error_page_is_read_only_up_to_a_few_kib_and_the_connection_dropped(
    server: FaultyServer,
) -> None:
    huge = 256 * 1024 * 1024
    server.replies.append(Reply(status=400, huge=huge))
    async with webhook(server.url, timeout=5) as hook:
        async with asyncio.timeout(20):
            with pytest.raises(SendError, match=r"HTTP 400") as info:
                await hook.deliver(OutgoingMessage(message="bad"))
            after = await hook.deliver(OutgoingMessage(message="next"))

    assert len(str(info.value)) < 400  # the error keeps a short excerpt only
    assert after.status == "delivered"
    # The client hung up long before the server could write the whole page.
    assert server.sent_bytes < huge // 4


@pytest.mark.asyncio
async def test_a_huge_2xx_reply_to_discord_is_read_only_up_to_its_bound(
    server: FaultyServer,
) -> None:
    # Discord's reply is read (for the message id), but not without end.
    server.replies.append(Reply(huge=256 * 1024 * 1024))
    async with webhook(server.url, "discord", timeout=5) as chat:
        async with asyncio.timeout(20):
            result = await chat.deliver(OutgoingMessage(message="posted"))

    assert result.status == "delivered"
    assert result.reference == ()  # no message id in that reply: nothing to edit later
    assert server.sent_bytes < 64 * 1024 * 1024


@pytest.mark.asyncio
async def test_a_retried_5xx_with_a_huge_body_keeps_memory_bounded(server: FaultyServer) -> None:
    server.replies.extend([Reply(status=503, huge=64 * 1024 * 1024), Reply()])
    async with webhook(server.url, timeout=5) as hook:
        async with asyncio.timeout(20):
            result = await hook.deliver(OutgoingMessage(message="retry me"))

    assert result.status == "delivered"
    assert result.attempts == 2
    assert server.sent_bytes < 16 * 1024 * 1024


def test_an_attempt_timeout_of_zero_or_infinity_is_refused_in_the_config() -> None:
    for value in (0, float("inf")):
        backend = {"type": "slack", "url": "https://h/x", "attempt_timeout": value}
        with pytest.raises(ValueError, match="attempt_timeout"):
            config_from_mapping({"backends": {"hook": backend}})


def test_closing_mid_request_never_reports_as_not_delivered_what_the_server_received(
    server: FaultyServer,
) -> None:
    import json as jsonlib

    from processpype.communications.notifier import Notifier

    server.default = Reply(body=b"okay!", trickle=0.02)  # about 0.1 s per request
    notifier = Notifier(
        {"enabled": True, "backends": {"hook": {"type": "webhook", "url": server.url}}}
    )
    futures = [notifier.send_nowait(f"message {index}") for index in range(30)]
    server.wait_for(2)
    notifier.close(timeout=0.2)
    reports = [future.result(timeout=10) for future in futures]

    received = {jsonlib.loads(body)["message"] for body in server.bodies}
    surely_not = {
        report.message.message
        for report in reports
        if report.results[0].status == "failed"
        and "may have been delivered" not in (report.results[0].error or "")
    }
    assert received
    assert not received & surely_not
    for report in reports:
        if report.message.message in received:
            result = report.results[0]
            assert result.status == "delivered" or "may have been delivered" in (result.error or "")
