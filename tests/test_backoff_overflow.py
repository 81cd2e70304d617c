"""Backoff over a very long outage: delays stay capped, errors stay the backend's own."""

from __future__ import annotations

import pytest

from processpype.communications.backends._retry import backoff_delay
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.models import OutgoingMessage
from processpype.testing.recording import RecordingCommunicator


class NeverStarts(RecordingCommunicator):
    async def start(self) -> None:
        self.start_count += 1
        raise ConnectionError("smtp.example.com:587 refused the connection")


@pytest.mark.parametrize("attempt", [1, 64, 1025, 10_000, 10**9])
def test_backoff_delay_never_overflows_and_stays_at_its_cap(attempt: int) -> None:
    delay = backoff_delay(attempt, 1.0, 60.0)
    assert 1.0 <= delay <= 60.0


def test_backoff_delay_without_a_cap_stays_a_finite_number() -> None:
    assert backoff_delay(5000, 0.5) > 0
    assert backoff_delay(5000, 0.5) < float("inf")


@pytest.mark.asyncio
async def test_two_thousand_failed_starts_keep_reporting_the_backends_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("processpype.communications.dispatcher.time.monotonic", lambda: now[0])
    dispatcher = CommunicationDispatcher()
    backend = NeverStarts("mail")
    dispatcher.register(backend)
    await dispatcher.start_all()
    for _ in range(2000):  # about a day and a half of outage at one retry a minute
        now[0] += 61.0  # past the longest backoff: every delivery retries the start
        result = await dispatcher.deliver_to(backend, OutgoingMessage(message="x"))
        assert result.status == "failed"
        assert "refused the connection" in (result.error or "")
        assert "Overflow" not in (result.error or "")
    assert backend.start_count == 2001


class BrokenState(RecordingCommunicator):
    """A third-party backend whose state check itself raises (a bug of its own)."""

    @property
    def is_started(self) -> bool:
        raise RuntimeError("state unavailable")


@pytest.mark.asyncio
async def test_deliver_to_returns_a_failed_result_even_when_the_backend_itself_is_broken() -> None:
    dispatcher = CommunicationDispatcher()
    backend = BrokenState("odd")
    dispatcher.register(backend)
    result = await dispatcher.deliver_to(backend, OutgoingMessage(message="x"))
    assert result.status == "failed"
    assert "state unavailable" in (result.error or "")
