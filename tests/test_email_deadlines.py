"""SMTP attempts against slow and broken relays: a deadline per attempt, fault modes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from email_helpers import backend, message

from processpype.communications.errors import SendError
from processpype.communications.models import Attachment
from processpype.testing.smtp import SMTPTestServer


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as running:
        yield running


@pytest.mark.asyncio
async def test_a_relay_that_trickles_its_reply_fails_at_the_attempt_deadline(
    server: SMTPTestServer,
) -> None:
    server.trickle_next(interval=0.05)  # a reply line every 50 ms, without end
    mail = backend(server, timeout=1, attempt_timeout=0.5, retry_base_delay=0.001)
    await mail.start()
    try:
        async with asyncio.timeout(10):
            with pytest.raises(SendError, match=r"within 0.5 s \(attempt_timeout\)") as info:
                await mail.deliver(message("slow relay"))
            after = await mail.deliver(message("next one"))
    finally:
        await mail.stop()

    assert not info.value.permanent
    assert info.value.attempts == 1  # not retried: the relay had the whole message
    assert after.status == "delivered"
    assert [m["Subject"] for m in server.messages] == ["[WARNING] Notification"]


@pytest.mark.asyncio
async def test_a_20_mib_attachment_to_a_trickling_relay_fails_at_the_attempt_deadline(
    server: SMTPTestServer,
) -> None:
    # Large enough for the direct path (send_prepared), not sendmail's.
    dump = Attachment.from_bytes(b"\x00" * (20 * 1024 * 1024), "dump.bin")
    server.trickle_next(interval=0.05)
    # The trickle never ends, so any deadline ends the first attempt; 5 s leaves the next
    # message room while the relay still reads the abandoned 20 MiB on a loaded machine.
    mail = backend(server, timeout=10, attempt_timeout=5, retry_base_delay=0.001)
    await mail.start()
    try:
        async with asyncio.timeout(40):
            with pytest.raises(SendError, match=r"within 5 s \(attempt_timeout\)") as info:
                await mail.deliver(message("nightly dump", attachments=[dump]))
            after = await mail.deliver(message("next one"))
    finally:
        await mail.stop()

    assert info.value.attempts == 1  # not retried: the relay had the whole message
    assert after.status == "delivered"
    assert server.message_count == 1


@pytest.mark.asyncio
async def test_a_relay_that_never_answers_data_fails_at_the_attempt_deadline(
    server: SMTPTestServer,
) -> None:
    server.stall_next()
    mail = backend(server, timeout=5, attempt_timeout=0.3)
    await mail.start()
    try:
        async with asyncio.timeout(10):
            with pytest.raises(SendError, match="attempt_timeout"):
                await mail.deliver(message("into the void"))
    finally:
        await mail.stop()
    assert server.message_count == 0


@pytest.mark.asyncio
async def test_a_slow_but_finite_trickle_is_accepted_within_the_deadline(
    server: SMTPTestServer,
) -> None:
    server.trickle_next(interval=0.01, lines=3)
    mail = backend(server, timeout=5)
    await mail.start()
    try:
        result = await mail.deliver(message("patience"))
    finally:
        await mail.stop()
    assert result.status == "delivered"
    assert server.message_count == 1


@pytest.mark.asyncio
async def test_a_huge_reply_is_refused_by_the_client_not_read_to_its_end(
    server: SMTPTestServer,
) -> None:
    server.huge_reply_next(size=200_000)
    mail = backend(server, timeout=5, max_attempts=1)
    await mail.start()
    try:
        with pytest.raises(SendError, match="too long"):
            await mail.deliver(message("flooded"))
    finally:
        await mail.stop()


@pytest.mark.asyncio
async def test_drop_after_accepts_that_many_messages_then_drops_every_later_one(
    server: SMTPTestServer,
) -> None:
    server.drop_after(2)
    mail = backend(server, timeout=5, max_attempts=2, retry_base_delay=0.001)
    await mail.start()
    try:
        results = [await mail.deliver(message(f"m{i}")) for i in range(2)]
        with pytest.raises(SendError, match=r"closed the connection|disconnect"):
            await mail.deliver(message("m2"))
    finally:
        await mail.stop()
    assert [r.status for r in results] == ["delivered", "delivered"]
    assert server.message_count == 2


def test_fault_modes_refuse_nonsense_counts_naming_the_argument(server: SMTPTestServer) -> None:
    with pytest.raises(ValueError, match="count"):
        server.stall_next(0)
    with pytest.raises(ValueError, match="interval"):
        server.trickle_next(interval=-1)
    with pytest.raises(ValueError, match="size"):
        server.huge_reply_next(size=0)
    with pytest.raises(ValueError, match="count"):
        server.drop_after(-1)
