"""Code written for upstream processpype 2.x runs here: the names and calls it relies on."""

from __future__ import annotations

import asyncio

from processpype.communications.base import Communicator, NoOpCommunicator
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.models import IncomingMessage, OutgoingMessage
from processpype.config.models import CommunicatorBackendConfig


def test_noop_communicator_needs_no_arguments() -> None:
    noop = NoOpCommunicator()

    assert noop.name == "noop"
    assert isinstance(noop.config, CommunicatorBackendConfig)
    assert noop.config.labels == ["default"]
    assert noop.is_started


class _Collecting(NoOpCommunicator):
    """An upstream-style backend: a NoOpCommunicator subclass that overrides send()."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    async def send(self, message: OutgoingMessage) -> None:
        self.sent.append(message.message)


def test_emit_calls_the_send_of_a_noop_subclass() -> None:
    backend = _Collecting()
    dispatcher = CommunicationDispatcher()
    dispatcher.register(backend)

    async def emit() -> None:
        await dispatcher.emit(OutgoingMessage(message="disk full"))

    asyncio.run(emit())

    assert backend.sent == ["disk full"]


def test_a_noop_subclass_that_sends_is_reported_delivered() -> None:
    backend = _Collecting()
    dispatcher = CommunicationDispatcher()
    dispatcher.register(backend)

    report = asyncio.run(dispatcher.deliver(OutgoingMessage(message="disk full")))

    assert report.ok
    assert [r.status for r in report.results] == ["delivered"]


def test_a_plain_noop_still_skips_with_its_reason() -> None:
    dispatcher = CommunicationDispatcher()
    dispatcher.register(NoOpCommunicator(reason="package not installed"))

    report = asyncio.run(dispatcher.deliver(OutgoingMessage(message="disk full")))

    assert [(r.status, r.error) for r in report.results] == [("skipped", "package not installed")]


class _Receiving(Communicator):
    """A receiving backend written from upstream's guide: it calls self._on_incoming."""

    @property
    def supports_receiving(self) -> bool:
        return True

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        """Sends nothing: only receiving matters here."""

    def hear(self, text: str) -> None:
        self._on_incoming(IncomingMessage(text=text, backend_name=self.name))


def test_on_incoming_publishes_like_publish_incoming() -> None:
    backend = _Receiving("chat", CommunicatorBackendConfig(type="chat"))
    dispatcher = CommunicationDispatcher()
    dispatcher.register(backend)
    heard: list[str] = []
    dispatcher.subscribe(lambda message: heard.append(message.text))

    backend.hear("/status")

    assert heard == ["/status"]
