"""``WebhookCapture``: the test double that catches what httpx (and webhook backends) send."""

from __future__ import annotations

import asyncio
import re
import socket
import threading

import httpx
import pytest

from processpype import Notifier
from processpype.communications.backends import create_communicator
from processpype.communications.errors import SendError
from processpype.communications.models import MessageSeverity, OutgoingMessage
from processpype.config.loader import config_from_mapping
from processpype.testing import WebhookCapture

SLACK_URL = "https://hooks.slack.com/services/T/B/token"


def test_captures_a_request_and_answers_200() -> None:
    with WebhookCapture() as capture:
        response = httpx.post(
            "https://example.com/hook?x=1", json={"a": 1}, headers={"X-Team": "ops"}
        )
    assert response.status_code == 200
    [request] = capture.requests
    assert (request.method, request.url) == ("POST", "https://example.com/hook?x=1")
    assert request.json == {"a": 1}
    assert request.content == b'{"a":1}'
    assert request.headers["X-Team"] == request.headers["x-team"] == "ops"
    assert capture.json_bodies == [{"a": 1}]


def test_a_body_that_is_not_json_is_kept_as_bytes() -> None:
    with WebhookCapture() as capture:
        httpx.post("https://example.com/hook", content=b"plain words")
    [request] = capture.requests
    assert (request.json, request.content, request.text) == (None, b"plain words", "plain words")
    assert capture.json_bodies == []


@pytest.mark.asyncio
async def test_scripted_503_twice_makes_a_backend_retry() -> None:
    config = config_from_mapping(
        {"backends": {"slack": {"type": "slack", "url": SLACK_URL, "retry_base_delay": 0.001}}}
    )
    slack = create_communicator("slack", config.backends["slack"])
    with WebhookCapture() as capture:
        capture.respond(status=503, text="busy", times=2)
        await slack.start()
        try:
            result = await slack.deliver(OutgoingMessage(message="hello"))
        finally:
            await slack.stop()
    assert result.attempts == 3
    assert len(capture.json_bodies) == 3


def test_answers_match_by_url_glob_and_regex_in_the_order_given() -> None:
    with WebhookCapture() as capture:
        capture.respond("https://a.example/hook", status=201)
        capture.respond("https://b.example/*", status=202)
        capture.respond(re.compile(r"c\.example"), status=203, json={"ok": True})
        statuses = [
            httpx.post(url).status_code
            for url in (
                "https://a.example/hook?attempt=1",
                "https://b.example/any/path",
                "https://www.c.example/",
                "https://d.example/",
            )
        ]
    assert statuses == [201, 202, 203, 200]


def test_an_answer_with_times_is_used_up_then_the_next_applies() -> None:
    with WebhookCapture() as capture:
        capture.respond(status=429, headers={"Retry-After": "3"}, times=1)
        first = httpx.post("https://example.com/")
        second = httpx.post("https://example.com/")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "3")
    assert second.status_code == 200


@pytest.mark.asyncio
async def test_a_scripted_error_reaches_the_backend_as_a_send_error() -> None:
    config = config_from_mapping(
        {"backends": {"hook": {"type": "webhook", "url": SLACK_URL, "max_attempts": 1}}}
    )
    hook = create_communicator("hook", config.backends["hook"])
    with WebhookCapture() as capture:
        capture.respond(error=httpx.ConnectError)
        await hook.start()
        try:
            with pytest.raises(SendError, match=r"could not reach https://hooks\.slack\.com"):
                await hook.deliver(OutgoingMessage(message="hello"))
        finally:
            await hook.stop()


def test_requests_from_another_thread_are_captured() -> None:
    with WebhookCapture() as capture:
        worker = threading.Thread(target=httpx.post, args=("https://example.com/t",))
        worker.start()
        arrived = capture.wait_for(1, timeout=5)
        worker.join(5)
    assert [r.url for r in arrived] == ["https://example.com/t"]


def test_wait_for_timeout_lists_what_arrived() -> None:
    with WebhookCapture() as capture:
        httpx.post("https://example.com/one", json={"n": 1})
        with pytest.raises(
            TimeoutError,
            match=r"(?s)expected 2 request\(s\) within 0\.01 s, got 1"
            r".*POST https://example\.com/one \{\"n\":1\}",
        ):
            capture.wait_for(2, timeout=0.01)


@pytest.mark.asyncio
async def test_wait_for_inside_an_event_loop_points_to_wait_for_async() -> None:
    with WebhookCapture() as capture, pytest.raises(RuntimeError, match="wait_for_async"):
        capture.wait_for(1, timeout=0.01)


@pytest.mark.asyncio
async def test_wait_for_async_wakes_when_the_request_arrives() -> None:
    with WebhookCapture() as capture:
        async with httpx.AsyncClient() as client:
            waiting = asyncio.create_task(capture.wait_for_async(2, timeout=5))
            await client.post("https://example.com/1")
            await client.post("https://example.com/2")
            arrived = await waiting
    assert [r.url for r in arrived] == ["https://example.com/1", "https://example.com/2"]


def test_clear_forgets_requests_and_scripted_answers() -> None:
    with WebhookCapture() as capture:
        capture.respond(status=500)
        httpx.post("https://example.com/")
        capture.clear()
        response = httpx.post("https://example.com/")
    assert response.status_code == 200
    assert len(capture.requests) == 1


def test_after_stop_httpx_reaches_the_network_again() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    capture = WebhookCapture().start()
    assert httpx.post(f"http://127.0.0.1:{port}/").status_code == 200
    capture.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}/")
    assert not capture.running


def test_notifier_posts_through_the_processpype_webhooks_fixture(
    processpype_webhooks: WebhookCapture,
) -> None:
    config = {
        "enabled": True,
        "backends": {
            "slack": {
                "type": "slack",
                "url": SLACK_URL,
                "labels": ["alerts"],
                "retry_base_delay": 0.001,
            }
        },
    }
    processpype_webhooks.respond(status=503, times=1)
    with Notifier(config) as notifier:
        report = notifier.send("/var is 97% full", label="alerts", severity=MessageSeverity.ERROR)
    assert report.ok
    assert report.results[0].attempts == 2
    assert (
        processpype_webhooks.json_bodies
        == [{"text": "\N{LARGE RED CIRCLE} *ERROR* /var is 97% full"}] * 2
    )
