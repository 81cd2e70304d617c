"""WebhookCapture's fault modes, seen through a real webhook backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_helpers import started_backend

from processpype.communications.base import Communicator
from processpype.communications.errors import SendError
from processpype.communications.models import OutgoingMessage
from processpype.testing.webhooks import WebhookCapture

URL = "https://hooks.example.com/services/T0/B0/secret"


@pytest.fixture
def capture() -> Iterator[WebhookCapture]:
    with WebhookCapture() as running:
        yield running


def webhook(**settings: Any) -> contextlib.AbstractAsyncContextManager[Communicator]:
    return started_backend("webhook", URL, **{"retry_base_delay": 0.001, **settings})


@pytest.mark.asyncio
async def test_stall_holds_the_answer_until_the_clients_deadline(capture: WebhookCapture) -> None:
    capture.respond(stall=30, times=1)
    async with webhook(attempt_timeout=0.2) as hook:
        async with asyncio.timeout(10):
            with pytest.raises(SendError, match="attempt_timeout"):
                await hook.deliver(OutgoingMessage(message="late"))
            assert (await hook.deliver(OutgoingMessage(message="on time"))).status == "delivered"
    assert len(capture) == 2


@pytest.mark.asyncio
async def test_trickle_sends_the_body_a_byte_at_a_time(capture: WebhookCapture) -> None:
    capture.respond(text="slow answer", trickle=0.01, times=1)
    async with httpx.AsyncClient() as client:
        response = await client.post(URL, json={})
    assert response.text == "slow answer"

    capture.respond(text="o" * 200, trickle=0.05, times=1)
    async with webhook(attempt_timeout=0.3) as hook:
        async with asyncio.timeout(10):
            with pytest.raises(SendError, match="no complete response"):
                await hook.deliver(OutgoingMessage(message="trickled"))


@pytest.mark.asyncio
async def test_a_huge_body_is_made_as_it_is_read_and_a_bounded_client_reads_little(
    capture: WebhookCapture,
) -> None:
    capture.respond(status=500, body_size=256 * 1024 * 1024)
    async with webhook(max_attempts=1) as hook:
        with pytest.raises(SendError, match="HTTP 500"):
            await hook.deliver(OutgoingMessage(message="boom"))
    assert capture.bytes_served < 1024 * 1024


@pytest.mark.asyncio
async def test_drop_after_answers_that_many_then_fails_as_a_dropped_connection(
    capture: WebhookCapture,
) -> None:
    capture.drop_after(2)
    async with webhook(max_attempts=2) as hook:
        first = await hook.deliver(OutgoingMessage(message="1"))
        second = await hook.deliver(OutgoingMessage(message="2"))
        with pytest.raises(SendError, match="could not reach"):
            await hook.deliver(OutgoingMessage(message="3"))
    assert (first.status, second.status) == ("delivered", "delivered")
    assert len(capture) == 4  # the third was tried twice
    capture.clear()
    async with webhook() as hook:
        assert (await hook.deliver(OutgoingMessage(message="4"))).status == "delivered"


def test_fault_modes_refuse_values_that_make_no_sense(capture: WebhookCapture) -> None:
    with pytest.raises(ValueError, match="stall"):
        capture.respond(stall=-1)
    with pytest.raises(ValueError, match="trickle"):
        capture.respond(trickle=float("inf"))
    with pytest.raises(ValueError, match="body_size"):
        capture.respond(body_size=-5)
    with pytest.raises(ValueError, match="count"):
        capture.drop_after(-1)
