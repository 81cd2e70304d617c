"""``WebhookCapture``: catch every request httpx makes and answer it, with respx.

While a capture runs, no httpx request reaches the network: each one is recorded in
``requests`` and answered 200 (with a message id, as Discord does, for a post with
``?wait=true`` or an edit of ``.../messages/{id}``), or with a response scripted by
``respond()``. It works for requests made from any thread, so it also catches a
``Notifier``'s background loop.

Hostile servers on demand: ``respond(stall=...)`` answers late, ``respond(trickle=...)``
sends the body a byte at a time, ``respond(body_size=...)`` sends a huge body (made as
it is read; ``bytes_served`` says how much the client took), ``respond(drop=True)`` and
``drop_after(n)`` fail requests as a dropped connection.

Not reproduced (respx replaces httpx's transport): sockets, TLS, connection pooling
and keep-alive, and httpx's own connect/read/write timeouts, which never fire: a stall
or a trickle is ended only by a deadline of the caller's (``asyncio.timeout``).

Multipart bodies (Discord, ``attachments: multipart``) are parsed: ``files`` and ``form``
on each request, and ``files`` on the capture for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json as jsonlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
import respx

from processpype.testing._faults import DropAfter
from processpype.testing._lifecycle import StartStop
from processpype.testing._multipart import CapturedFile, parse_multipart
from processpype.testing._waiting import Signal, Until, at_least, running_loop

__all__ = ["CapturedFile", "CapturedHeaders", "CapturedRequest", "WebhookCapture"]

_DISCORD_MESSAGE = re.compile(r"/messages/(\d+)$")


class CapturedHeaders(dict[str, str]):
    """Request headers with lower-case names; lookups ignore case."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of header ``key`` (any case), or ``default``."""
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class CapturedRequest:
    """One request that httpx made while the capture ran."""

    method: str
    url: str
    headers: CapturedHeaders
    content: bytes
    json: Any = field(default=None)
    form: dict[str, str] = field(default_factory=dict)
    """The text fields of a multipart/form-data body (e.g. ``payload_json``)."""
    files: list[CapturedFile] = field(default_factory=list)
    """The files of a multipart/form-data body, in order."""

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode("utf-8", errors="replace")

    @classmethod
    def from_httpx(cls, request: httpx.Request) -> CapturedRequest:
        """Record ``request`` (its body parsed as JSON when it is JSON).

        A multipart/form-data body is split into ``form`` and ``files``; its
        ``payload_json`` field, when present, is parsed into ``json``.
        """
        content = request.content
        parsed: Any = None
        content_type = request.headers.get("content-type", "")
        multipart = None
        if content and content_type.lower().startswith("multipart/form-data"):
            # A malformed body is kept as plain bytes (content), without files.
            with contextlib.suppress(ValueError):
                multipart = parse_multipart(content, content_type)
        if multipart is not None:
            form, files = multipart
            with contextlib.suppress(ValueError):
                parsed = jsonlib.loads(form.get("payload_json", ""))
            return cls(
                method=request.method,
                url=str(request.url),
                headers=CapturedHeaders((k.lower(), v) for k, v in request.headers.items()),
                content=content,
                json=parsed,
                form=form,
                files=files,
            )
        if content:
            try:
                parsed = jsonlib.loads(content)
            except ValueError:
                parsed = None
        headers = CapturedHeaders((key.lower(), value) for key, value in request.headers.items())
        return cls(
            method=request.method,
            url=str(request.url),
            headers=headers,
            content=content,
            json=parsed,
        )


@dataclass
class _Rule:
    pattern: str | re.Pattern[str] | None
    status: int
    json: Any
    text: str | None
    headers: dict[str, str]
    error: BaseException | type[BaseException] | None
    times: int | None
    stall: float | None = None
    trickle: float | None = None
    body_size: int | None = None
    drop: bool = False

    def matches(self, url: str) -> bool:
        pattern = self.pattern
        if pattern is None:
            return True
        if isinstance(pattern, re.Pattern):
            return pattern.search(url) is not None
        if "*" in pattern:
            return fnmatch.fnmatchcase(url, pattern)
        return url == pattern or url.split("?", 1)[0] == pattern


class WebhookCapture(StartStop):
    """Captures what httpx sends (webhook backends included) and answers 200 by default.

    Use it as a context manager or call ``start()`` and ``stop()``. Script answers with
    ``respond()``; read what arrived in ``requests`` and ``json_bodies``.
    """

    def __init__(self) -> None:
        self._router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        self._router.route().mock(side_effect=self._answer)
        self._requests: list[CapturedRequest] = []
        self._rules: list[_Rule] = []
        self._signal = Signal()
        self._condition = self._signal.condition
        self._running = False
        self._drop = DropAfter()  # drop_after()
        self._bytes_served = 0
        self._message_ids = 1_000_000_000_000_000_000  # snowflake-sized message ids

    def __repr__(self) -> str:
        return f"WebhookCapture(running={self._running}, requests={len(self._requests)})"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start capturing every httpx request in the process."""
        if not self._running:
            self._router.start()
            self._running = True
        return self

    def stop(self) -> None:
        """Stop capturing; httpx reaches the network again."""
        if self._running:
            self._running = False
            self._router.stop(clear=False, reset=False, quiet=True)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._running

    # -- scripting ----------------------------------------------------------------------

    def respond(
        self,
        url_or_pattern: str | re.Pattern[str] | None = None,
        *,
        status: int = 200,
        json: Any = None,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        error: BaseException | type[BaseException] | None = None,
        times: int | None = None,
        stall: float | None = None,
        trickle: float | None = None,
        body_size: int | None = None,
        drop: bool = False,
    ) -> None:
        """Answer matching requests with ``status`` (and ``json``, ``text``, ``headers``).

        ``url_or_pattern``: None for every request; a URL (its query string ignored); a
        glob with ``*``; or a compiled regex, searched in the URL. ``error`` raises that
        exception instead (e.g. ``httpx.ConnectTimeout``). ``times`` limits how many
        requests the answer serves (None: all). Answers are tried in the order they were
        given, so ``respond(status=503, times=2)`` then ``respond(status=200)`` gives
        503, 503, 200, 200, ...; requests nothing matches get 200.

        Fault modes: ``stall`` waits that many seconds before answering (a server that
        never answers, for a client whose deadline is shorter); ``trickle`` sends the
        body one byte every that many seconds, after the headers; ``body_size`` sends a
        body of that many bytes (``x``), made as it is read; ``drop`` fails the request
        as a connection the server closed without answering (``RemoteProtocolError``).
        """
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 or None, not {times}")
        if json is not None and text is not None:
            raise ValueError("give json or text, not both")
        for name, seconds in (("stall", stall), ("trickle", trickle)):
            if seconds is not None and not 0 <= seconds < float("inf"):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {seconds}")
        if body_size is not None and body_size < 0:
            raise ValueError(f"body_size must be >= 0 bytes, not {body_size}")
        rule = _Rule(
            url_or_pattern,
            status,
            json,
            text,
            dict(headers or {}),
            error,
            times,
            stall=stall,
            trickle=trickle,
            body_size=body_size,
            drop=drop,
        )
        with self._condition:
            self._rules.append(rule)

    def drop_after(self, count: int) -> None:
        """Answer ``count`` more requests, then fail every later one as a dropped connection.

        Until ``clear()``: a server that goes away mid-run.
        """
        with self._condition:
            self._drop.arm(count)

    @property
    def bytes_served(self) -> int:
        """Body bytes of ``body_size`` answers that clients actually read."""
        with self._condition:
            return self._bytes_served

    def _served(self, size: int) -> None:
        with self._condition:
            self._bytes_served += size

    def _answer(self, request: httpx.Request) -> Any:
        captured = CapturedRequest.from_httpx(request)
        with self._condition:
            self._requests.append(captured)
            dropping = self._drop.take()
            rule = next((r for r in self._rules if r.matches(captured.url)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
                if rule.times == 0:
                    self._rules.remove(rule)
            self._signal.notify()
        if dropping or (rule is not None and rule.drop):
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if rule is None:
            return self._default_answer(request)
        response = self._response(rule, request)
        if rule.stall:
            if running_loop() is not None:
                return _later(rule.stall, response)
            time.sleep(rule.stall)
        return response

    def _response(self, rule: _Rule, request: httpx.Request) -> httpx.Response:
        if rule.error is not None:
            error = rule.error
            if isinstance(error, type) and issubclass(error, httpx.RequestError):
                raise error("WebhookCapture scripted error", request=request)
            raise error
        if rule.body_size is not None:
            return httpx.Response(
                rule.status,
                headers={"Content-Length": str(rule.body_size), **rule.headers},
                stream=_HugeBody(rule.body_size, self._served),
            )
        if rule.json is not None:
            response = httpx.Response(rule.status, json=rule.json, headers=rule.headers)
        else:
            response = httpx.Response(rule.status, text=rule.text or "", headers=rule.headers)
        if rule.trickle is not None:
            body = response.content
            return httpx.Response(
                rule.status,
                headers={**response.headers, "Content-Length": str(len(body))},
                stream=_Trickle(body, rule.trickle),
            )
        return response

    def _default_answer(self, request: httpx.Request) -> httpx.Response:
        """200, with the message Discord would return for a post or edit that waits for it.

        Discord answers ``POST ...?wait=true`` and ``PATCH .../messages/{id}`` with the
        message; its ``id`` is what a later edit names.
        """
        url = request.url
        if request.method == "POST" and url.params.get("wait") == "true":
            with self._condition:
                self._message_ids += 1
                message_id = str(self._message_ids)
            return httpx.Response(200, json={"id": message_id})
        edited = _DISCORD_MESSAGE.search(url.path)
        if request.method == "PATCH" and edited is not None:
            return httpx.Response(200, json={"id": edited.group(1)})
        return httpx.Response(200)

    # -- reading ------------------------------------------------------------------------

    @property
    def requests(self) -> list[CapturedRequest]:
        """Every request captured so far, in order (a copy)."""
        with self._condition:
            return list(self._requests)

    @property
    def files(self) -> list[CapturedFile]:
        """Every file posted in a multipart body so far, in order."""
        return [f for r in self.requests for f in r.files]

    @property
    def json_bodies(self) -> list[Any]:
        """The parsed JSON body of every captured request that had one, in order."""
        return [r.json for r in self.requests if r.json is not None]

    def __iter__(self) -> Iterator[CapturedRequest]:
        return iter(self.requests)

    def __len__(self) -> int:
        with self._condition:
            return len(self._requests)

    def clear(self) -> None:
        """Forget captured requests and scripted answers."""
        with self._condition:
            self._requests.clear()
            self._rules.clear()
            self._drop.clear()
            self._bytes_served = 0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[CapturedRequest]:
        """Block until ``count`` requests arrived; return them all (TimeoutError if not).

        Inside a running event loop use ``await wait_for_async(...)``: blocking the loop
        would stop the very requests being waited for.
        """
        until = self._until(count, timeout)
        with self._condition:
            if until.ready():
                return until.result()
        if running_loop() is not None:
            raise RuntimeError(
                "WebhookCapture.wait_for() blocks, and this thread runs an event loop whose "
                "requests it would stop: use 'await capture.wait_for_async(...)'"
            )
        return self._signal.block(until, timeout)

    async def wait_for_async(self, count: int, timeout: float = 5.0) -> list[CapturedRequest]:
        """Wait, without blocking the event loop, until ``count`` requests arrived."""
        return await self._signal.wait(self._until(count, timeout), timeout)

    def _until(self, count: int, timeout: float) -> Until[list[CapturedRequest]]:
        return at_least(self._requests, count, lambda: self._shortfall(count, timeout))

    def _shortfall(self, count: int, timeout: float) -> str:
        arrived = self.requests
        lines = [f"expected {count} request(s) within {timeout:g} s, got {len(arrived)}"]
        lines += [f"  {r.method} {r.url} {r.text[:200]}" for r in arrived]
        return "\n".join(lines)


async def _later(seconds: float, response: httpx.Response) -> httpx.Response:
    await asyncio.sleep(seconds)
    return response


class _Trickle(httpx.AsyncByteStream, httpx.SyncByteStream):
    """A body sent one byte every ``interval`` seconds."""

    def __init__(self, body: bytes, interval: float) -> None:
        self._body = body
        self._interval = interval

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(len(self._body)):
            await asyncio.sleep(self._interval)
            yield self._body[index : index + 1]

    def __iter__(self) -> Iterator[bytes]:
        for index in range(len(self._body)):
            time.sleep(self._interval)
            yield self._body[index : index + 1]


class _HugeBody(httpx.AsyncByteStream, httpx.SyncByteStream):
    """``size`` bytes of body, made 64 KiB at a time as the client reads them."""

    _CHUNK = b"x" * 65536

    def __init__(self, size: int, served: Any) -> None:
        self._size = size
        self._served = served

    def _chunks(self) -> Iterator[bytes]:
        left = self._size
        while left > 0:
            chunk = self._CHUNK[: min(left, len(self._CHUNK))]
            left -= len(chunk)
            self._served(len(chunk))
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks()
