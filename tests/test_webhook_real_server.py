"""Webhook backends against a real HTTP server on 127.0.0.1: the real network path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from http_helpers import serving, started_backend

from processpype.communications.backends import create_communicator
from processpype.communications.backends.webhook import SlackCommunicator
from processpype.communications.base import Communicator
from processpype.communications.errors import SendError
from processpype.communications.models import MessageSeverity, OutgoingMessage
from processpype.config.loader import config_from_mapping

TOKEN_PATH = "/services/T000/B000/real-server-token"


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    client_port: int


@dataclass
class Answer:
    status: int = 200
    text: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # answer only once this is set


class HookServer(ThreadingHTTPServer):
    """A webhook endpoint that records requests and plays scripted answers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.arrived = threading.Event()  # set once a request was received

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{TOKEN_PATH}"

    def next_answer(self) -> Answer:
        with self.lock:
            return self.answers.pop(0) if self.answers else Answer()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up on a held answer is expected here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real webhook endpoints do
    server: HookServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        with self.server.lock:
            self.server.received.append(
                Received(
                    method=self.command,
                    path=self.path,
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                    client_port=self.client_address[1],
                )
            )
        self.server.arrived.set()
        answer = self.server.next_answer()
        if answer.hold is not None:
            answer.hold.wait(5)
        data = answer.text.encode()
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server() -> Iterator[HookServer]:
    with serving(HookServer(), poll_interval=0.02) as hook_server:
        yield hook_server


def running(
    backend_type: str, url: str, **settings: Any
) -> contextlib.AbstractAsyncContextManager[Communicator]:
    return started_backend(backend_type, url, **{"retry_base_delay": 0.001, **settings})


@pytest.mark.asyncio
async def test_slack_message_reaches_a_real_http_server(server: HookServer) -> None:
    async with running("slack", server.url) as slack:
        result = await slack.deliver(
            OutgoingMessage(message="backup done", severity=MessageSeverity.INFO)
        )
    assert result.status == "delivered"
    [request] = server.received
    assert (request.method, request.path) == ("POST", TOKEN_PATH)
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"text": "\N{LARGE BLUE CIRCLE} *INFO* backup done"}


@pytest.mark.asyncio
async def test_one_connection_carries_every_message(server: HookServer) -> None:
    async with running("webhook", server.url) as hook:
        for number in range(3):
            await hook.deliver(OutgoingMessage(message=f"m{number}"))
    assert [r.body["message"] for r in server.received] == ["m0", "m1", "m2"]
    assert len({r.client_port for r in server.received}) == 1


@pytest.mark.asyncio
async def test_503_then_200_over_the_network_is_retried(server: HookServer) -> None:
    server.answers = [Answer(503, "busy", {"Retry-After": "0"}), Answer(503, "busy"), Answer()]
    async with running("discord", server.url) as discord:
        result = await discord.deliver(OutgoingMessage(message="hello"))
    assert result.attempts == 3
    assert [r.body["content"] for r in server.received] == [
        "\N{LARGE BLUE CIRCLE} **INFO** hello"
    ] * 3


@pytest.mark.asyncio
async def test_404_from_a_real_server_fails_without_the_token(server: HookServer) -> None:
    server.answers = [Answer(404, "no_service")]
    async with running("slack", server.url) as slack:
        with pytest.raises(SendError) as caught:
            await slack.deliver(OutgoingMessage(message="hello"))
    host, port = server.server_address[:2]
    assert str(caught.value) == f"HTTP 404 from http://{host!s}:{port}: no_service (not retried)"
    assert len(server.received) == 1


@pytest.mark.asyncio
async def test_closed_port_fails_after_every_attempt_with_the_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: every attempt is refused.
    async with running("webhook", f"http://127.0.0.1:{port}/hook", max_attempts=2) as hook:
        with pytest.raises(
            SendError, match=r"could not reach http://127\.0\.0\.1:\d+ after 2"
        ) as caught:
            await hook.deliver(OutgoingMessage(message="hello"))
    assert caught.value.attempts == 2
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.asyncio
async def test_server_that_answers_too_late_is_not_sent_the_message_twice(
    server: HookServer,
) -> None:
    release = threading.Event()
    server.answers = [Answer(hold=release)]
    try:
        async with running("slack", server.url, timeout=0.3) as slack:
            with pytest.raises(SendError, match=r"no response from .* within 0\.3 s; not retried"):
                await slack.deliver(OutgoingMessage(message="hello"))
    finally:
        release.set()
    assert len(server.received) == 1


@pytest.mark.asyncio
async def test_a_request_cut_off_by_stop_fails_at_once_saying_the_server_may_have_it(
    server: HookServer, caplog: pytest.LogCaptureFixture
) -> None:
    first_answer, second_answer = threading.Event(), threading.Event()
    server.answers = [Answer(hold=first_answer), Answer(hold=second_answer)]
    # stop() waits `timeout` (1 s) for what is in flight. The first message is answered
    # 0.3 s into that wait, so the second one is on the wire, unanswered, when the wait
    # ends and the client is closed under it.
    async with running("slack", server.url, timeout=1.0, retry_base_delay=5) as slack:
        first = asyncio.create_task(slack.deliver(OutgoingMessage(message="one")))
        second = asyncio.create_task(slack.deliver(OutgoingMessage(message="two")))
        assert await asyncio.to_thread(server.arrived.wait, 5)
        asyncio.get_running_loop().call_later(0.3, first_answer.set)
        started = time.monotonic()
        try:
            await slack.stop()
            outcomes = await asyncio.gather(first, second, return_exceptions=True)
        finally:
            second_answer.set()
        elapsed = time.monotonic() - started

    assert not isinstance(outcomes[0], BaseException)
    assert outcomes[0].status == "delivered"
    assert isinstance(outcomes[1], SendError)
    assert "stopped while the request" in str(outcomes[1])
    assert "may have received it" in str(outcomes[1])
    assert [r.body["text"].split()[-1] for r in server.received] == ["one", "two"]
    assert elapsed < 4, f"stop() and the cut-off send took {elapsed:.1f}s (a retry backoff?)"
    assert "try 2" not in caplog.text


@pytest.mark.asyncio
async def test_stop_cancelled_while_waiting_still_closes_the_client(server: HookServer) -> None:
    release = threading.Event()
    server.answers = [Answer(hold=release)]
    backend = {"type": "slack", "url": server.url, "timeout": 5.0}
    config = config_from_mapping({"backends": {"hook": backend}})
    slack = create_communicator("hook", config.backends["hook"])
    assert isinstance(slack, SlackCommunicator)
    await slack.start()
    client = slack._client
    assert client is not None
    sending = asyncio.create_task(slack.deliver(OutgoingMessage(message="held")))
    try:
        assert await asyncio.to_thread(server.arrived.wait, 5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):  # the caller's deadline ends stop()'s wait
                await slack.stop()
        assert client.is_closed
        with pytest.raises(SendError, match="stopped while the request"):
            await sending
    finally:
        release.set()
