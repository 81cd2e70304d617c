"""Discord edits against a local HTTP server that answers like Discord's webhook API."""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from http_helpers import serving

from processpype import Notifier

TOKEN = "webhook-token-that-is-secret"
HOOK_PATH = f"/api/webhooks/1234/{TOKEN}"
MESSAGE_PATH = re.compile(rf"^{re.escape(HOOK_PATH)}/messages/(\d+)$")


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


class DiscordServer(ThreadingHTTPServer):
    """Discord's webhook semantics on 127.0.0.1.

    A post answers 204 without a body, or 200 with the message (``id`` as a string
    snowflake) when the URL says ``?wait=true``; ``PATCH``/``DELETE .../messages/{id}``
    edit or delete a message, and answer 404 ``Unknown Message`` (code 10008) for one
    the webhook did not post. Not reproduced: rate limits, embeds, threads.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.messages: dict[str, str] = {}
        self.ids = itertools.count(1_100_000_000_000_000_001)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{HOOK_PATH}"


class _Handler(BaseHTTPRequestHandler):
    server: DiscordServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _answer(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        server = self.server
        with server.lock:
            server.seen.append(Seen(self.command, parts.path, parse_qs(parts.query), body))
            if self.command == "POST" and parts.path == HOOK_PATH:
                if parse_qs(parts.query).get("wait") != ["true"]:
                    self._answer(204)
                    return
                message_id = str(next(server.ids))
                server.messages[message_id] = body["content"]
                self._answer(200, {"id": message_id, "content": body["content"]})
                return
            match = MESSAGE_PATH.match(parts.path)
            if match is None:
                self._answer(404, {"message": "404: Not Found", "code": 0})
                return
            message_id = match.group(1)
            if message_id not in server.messages:
                self._answer(404, {"message": "Unknown Message", "code": 10008})
                return
            if self.command == "PATCH":
                server.messages[message_id] = body["content"]
                self._answer(200, {"id": message_id, "content": body["content"]})
            else:
                del server.messages[message_id]
                self._answer(204)

    do_POST = do_PATCH = do_DELETE = _handle


@pytest.fixture
def discord() -> Iterator[DiscordServer]:
    with serving(DiscordServer()) as server:
        yield server


@pytest.fixture
def notifier(discord: DiscordServer, processpype_notifier: Any) -> Notifier:
    made: Notifier = processpype_notifier(
        {
            "enabled": True,
            "backends": {"chat": {"type": "discord", "url": discord.url, "username": "ci"}},
        }
    )
    return made


def test_a_post_waits_for_discords_message_id(notifier: Notifier, discord: DiscordServer) -> None:
    report = notifier.send("deploying")

    [message_id] = discord.messages
    assert report.results[0].reference == (message_id,)
    assert discord.seen[0].query == {"wait": ["true"]}


def test_edit_patches_the_posted_message(notifier: Notifier, discord: DiscordServer) -> None:
    report = notifier.send("deploying")

    edited = notifier.edit(report, "deployed")

    assert edited.ok
    [(message_id, content)] = discord.messages.items()
    assert content.endswith("deployed")
    patch = discord.seen[-1]
    assert (patch.method, patch.path) == ("PATCH", f"{HOOK_PATH}/messages/{message_id}")
    assert "username" not in patch.body  # an edit cannot rename the poster


def test_an_edit_that_needs_fewer_pieces_deletes_the_rest(
    notifier: Notifier, discord: DiscordServer
) -> None:
    report = notifier.send("word " * 700)  # 3,500 characters: two pieces
    first, _ = report.results[0].reference

    edited = notifier.edit(report, "short")

    assert edited.results[0].reference == (first,)
    assert list(discord.messages) == [first]
    assert discord.seen[-1].method == "DELETE"


def test_a_post_and_an_edit_past_max_parts_both_say_what_was_cut(
    discord: DiscordServer, processpype_notifier: Any
) -> None:
    notifier: Notifier = processpype_notifier(
        {
            "enabled": True,
            "backends": {"chat": {"type": "discord", "url": discord.url, "max_parts": 2}},
        }
    )
    report = notifier.send("word " * 2000)  # 10,000 characters: five pieces uncapped

    edited = notifier.edit(report, "more words " * 2000)

    for result in (report.results[0], edited.results[0]):
        assert result.status == "delivered"
        (warning,) = result.warnings
        assert "cut after 2 part(s)" in warning
    assert len(edited.results[0].reference) == 2
    assert all("more characters cut" in text for text in list(discord.messages.values())[-1:])


def test_a_long_non_ascii_post_is_still_referenced_and_editable(
    notifier: Notifier, discord: DiscordServer
) -> None:
    # Discord answers with the whole message: 1,900 "é" are some 11 KiB of JSON escapes.
    report = notifier.send("é" * 1900)
    [message_id] = report.results[0].reference

    edited = notifier.edit(report, "short")

    assert edited.ok
    assert discord.messages[message_id].endswith("short")


def test_editing_a_message_discord_does_not_know_fails(
    notifier: Notifier, discord: DiscordServer
) -> None:
    report = notifier.send("x")
    discord.messages.clear()

    edited = notifier.edit(report, "y")

    assert edited.results[0].status == "failed"
    assert "Unknown Message" in (edited.results[0].error or "")


def test_progress_on_discord_is_one_message_edited(
    notifier: Notifier, discord: DiscordServer
) -> None:
    for _ in notifier.progress(range(20), desc="upload", min_interval=0.0):
        pass

    posts = [s for s in discord.seen if s.method == "POST"]
    assert len(posts) == 1
    [content] = discord.messages.values()
    assert "upload: done, 20/20" in content


def test_the_webhook_token_never_appears_in_httpx_logs_of_an_edit(
    notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="httpx"):
        report = notifier.send("a")
        notifier.edit(report, "b")

    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines
    assert not any(TOKEN in line for line in lines)


def test_webhook_capture_answers_discord_posts_with_ids_so_progress_edits(
    processpype_webhooks: Any, processpype_notifier: Any
) -> None:
    url = "https://discord.com/api/webhooks/1/secret-token"
    notifier = processpype_notifier(
        {"enabled": True, "backends": {"chat": {"type": "discord", "url": url}}}
    )

    for _ in notifier.progress(range(5), desc="sync", min_interval=0.0):
        pass

    methods = [r.method for r in processpype_webhooks.requests]
    assert methods[0] == "POST"
    assert set(methods[1:]) == {"PATCH"}
    assert "sync: done, 5/5" in processpype_webhooks.requests[-1].json["content"]
