"""A real HTTP server on 127.0.0.1 that misbehaves on request: trickles, stalls, floods.

Also the HTTP backends' tests' way to build one: ``build_backend`` from its config, as a
user's would be, and ``started_backend`` around a test's sends.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from processpype.communications.backends import create_communicator
from processpype.communications.base import Communicator
from processpype.config.loader import config_from_mapping


@dataclass
class Reply:
    """How the server answers one request."""

    status: int = 200
    body: bytes = b"ok"
    trickle: float | None = None  # seconds between body bytes, sent after the headers
    huge: int | None = None  # send this many bytes of body (Content-Length says so)
    stall: bool = False  # read the request, then never answer (until the server stops)
    upload_pace: float | None = None  # seconds between 64 KiB reads of the request body


class FaultyServer(ThreadingHTTPServer):
    """Counts requests and answers each with the next scripted ``Reply`` (default 200)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies: list[Reply] = []
        self.default = Reply()
        self.bodies: list[bytes] = []
        self.sent_bytes = 0  # body bytes written to clients (huge replies)
        self.aborted = 0  # replies cut short because the client hung up
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.arrived = threading.Condition(self.lock)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/hook/secret-token"

    def next_reply(self) -> Reply:
        with self.lock:
            return self.replies.pop(0) if self.replies else self.default

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout):
                raise TimeoutError(f"{len(self.bodies)} of {count} requests arrived")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-reply is what these tests provoke."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultyServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        reply = self.server.next_reply()
        if reply.upload_pace is None:
            body = self.rfile.read(length)
        else:  # a slow link: the client's upload advances 64 KiB at a time
            pieces: list[bytes] = []
            left = length
            while left > 0 and not self.server.stopping.wait(reply.upload_pace):
                piece = self.rfile.read1(min(left, 65536))
                if not piece:  # the client gave up and hung up
                    with self.server.lock:
                        self.server.aborted += 1
                    self.close_connection = True
                    return
                pieces.append(piece)
                left -= len(piece)
            body = b"".join(pieces)
        with self.server.arrived:
            self.server.bodies.append(body)
            self.server.arrived.notify_all()
        if reply.stall:
            self.server.stopping.wait(30)
            return
        size = reply.huge if reply.huge is not None else len(reply.body)
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.flush()
        try:
            if reply.huge is not None:
                chunk = b"x" * 65536
                left = reply.huge
                while left > 0 and not self.server.stopping.is_set():
                    piece = chunk[: min(left, len(chunk))]
                    self.wfile.write(piece)
                    left -= len(piece)
                    with self.server.lock:
                        self.server.sent_bytes += len(piece)
            elif reply.trickle is not None:
                for index in range(len(reply.body)):
                    if self.server.stopping.wait(reply.trickle):
                        return
                    self.wfile.write(reply.body[index : index + 1])
                    self.wfile.flush()
            else:
                self.wfile.write(reply.body)
        except OSError:  # the client dropped the connection: what a bounded read does
            with self.server.lock:
                self.server.aborted += 1
            self.close_connection = True

    do_PUT = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def serving[S: ThreadingHTTPServer](server: S, *, poll_interval: float = 0.5) -> Iterator[S]:
    """``server`` answering on a daemon thread; shut down, closed and joined on leaving."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def faulty_server() -> Iterator[FaultyServer]:
    """A running ``FaultyServer``; stopped (stalled replies released) at the end."""
    with serving(FaultyServer(), poll_interval=0.02) as server:
        try:
            yield server
        finally:
            server.stopping.set()  # before the shutdown: it waits for the stalled replies


def build_backend(kind: str, url: str, *, name: str = "hook", **settings: Any) -> Communicator:
    """A backend ``name`` of type ``kind`` posting to ``url``, made from its config."""
    config = config_from_mapping({"backends": {name: {"type": kind, "url": url, **settings}}})
    return create_communicator(name, config.backends[name])


@asynccontextmanager
async def started_backend(
    kind: str, url: str, *, name: str = "hook", **settings: Any
) -> AsyncIterator[Communicator]:
    """``build_backend``, started; stopped on leaving."""
    communicator = build_backend(kind, url, name=name, **settings)
    await communicator.start()
    try:
        yield communicator
    finally:
        await communicator.stop()
