"""init_communications and shutdown_communications on the global dispatcher."""

from __future__ import annotations

import asyncio

import pytest

from processpype.communications.dispatcher import emit_message, get_dispatcher
from processpype.communications.models import OutgoingMessage
from processpype.communications.setup import init_communications, shutdown_communications
from processpype.config.models import CommunicationsConfig
from processpype.testing.recording import RecordingCommunicator


def config(enabled: bool = True) -> CommunicationsConfig:
    return CommunicationsConfig.model_validate(
        {
            "enabled": enabled,
            "backends": {
                "rec": {"type": "recording", "labels": ["alerts"]},
                "off": {"type": "recording", "enabled": False},
            },
        }
    )


@pytest.mark.asyncio
async def test_init_registers_and_starts_every_enabled_backend() -> None:
    await init_communications(config())
    dispatcher = get_dispatcher()
    assert sorted(dispatcher.communicators) == ["rec"]
    rec = dispatcher.get("rec")
    assert isinstance(rec, RecordingCommunicator)
    assert rec.is_started

    await emit_message(OutgoingMessage(message="Hello", label="alerts"))
    assert rec.texts == ["Hello"]


@pytest.mark.asyncio
async def test_init_does_nothing_when_disabled() -> None:
    await init_communications(config(enabled=False))
    assert get_dispatcher().communicators == {}


@pytest.mark.asyncio
async def test_shutdown_flushes_stops_and_unregisters_every_backend() -> None:
    await init_communications(config())
    rec = get_dispatcher().get("rec")
    assert isinstance(rec, RecordingCommunicator)
    assert await shutdown_communications(timeout=1.0) is True
    assert rec.stop_count == 1
    assert not rec.is_started
    assert get_dispatcher().communicators == {}


@pytest.mark.asyncio
async def test_shutdown_does_not_wait_for_ever_on_a_backend_whose_stop_hangs() -> None:
    await init_communications(config())
    rec = get_dispatcher().get("rec")
    assert isinstance(rec, RecordingCommunicator)

    async def stop_that_hangs() -> None:
        await asyncio.Event().wait()

    rec.stop = stop_that_hangs  # type: ignore[method-assign]
    flushed = await asyncio.wait_for(shutdown_communications(timeout=0.1), timeout=5.0)

    assert flushed is True
    assert get_dispatcher().communicators == {}
