"""The generic JSON webhook and the HTTP behaviour all webhook backends share (respx)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from processpype.communications.backends import create_communicator
from processpype.communications.backends.webhook import (
    DiscordCommunicator,
    SlackCommunicator,
    WebhookCommunicator,
    parse_retry_after,
)
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.errors import ConfigError, SendError
from processpype.communications.models import MessageSeverity, OutgoingMessage
from processpype.config.loader import config_from_mapping

URL = "https://hooks.example.com/intake/s3cr3t-t0ken"
SECRET = "s3cr3t-t0ken"
FAST = {"retry_base_delay": 0.001, "max_retry_delay": 0.01}


def build(settings: dict[str, Any], name: str = "hook") -> WebhookCommunicator:
    """A webhook communicator made the way an application makes it: config, registry."""
    config = config_from_mapping({"backends": {name: {"type": "webhook", "url": URL, **settings}}})
    communicator = create_communicator(name, config.backends[name])
    assert isinstance(communicator, WebhookCommunicator)
    return communicator


@contextlib.asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[WebhookCommunicator]:
    communicator = build({**FAST, **settings})
    await communicator.start()
    try:
        yield communicator
    finally:
        await communicator.stop()


def message(text: str = "disk full", **fields: Any) -> OutgoingMessage:
    return OutgoingMessage(message=text, **fields)


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend_type", "cls"),
    [
        ("webhook", WebhookCommunicator),
        ("slack", SlackCommunicator),
        ("discord", DiscordCommunicator),
    ],
)
def test_each_webhook_type_builds_its_backend(backend_type: str, cls: type[object]) -> None:
    config = config_from_mapping({"backends": {"x": {"type": backend_type, "url": URL}}})
    assert isinstance(create_communicator("x", config.backends["x"]), cls)


def test_typo_in_a_webhook_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"backends\.hook\.heders"):
        config_from_mapping({"backends": {"hook": {"type": "webhook", "url": URL, "heders": {}}}})


def test_url_that_is_not_http_is_a_config_error_without_the_url() -> None:
    with pytest.raises(ConfigError, match=r"backends\.hook\.url: must be an http") as caught:
        build({"url": f"ftp://files.example.com/{SECRET}"})
    assert SECRET not in str(caught.value)


def test_header_value_with_a_line_break_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"backends\.hook\.headers\.X-Token: contains a line"):
        build({"headers": {"X-Token": "abc\r\nInjected: 1"}})


@pytest.mark.parametrize(
    "value", ["Bearer s3cr3t\x00x", "Bearer s3cr3t\x0bx", "Bearer s3cr\u00e9t"]
)
def test_header_value_httpx_cannot_send_is_a_config_error_without_the_value(value: str) -> None:
    with pytest.raises(
        ConfigError, match=r"backends\.hook\.headers\.Authorization: contains a ch"
    ) as caught:
        build({"headers": {"Authorization": value}})
    assert "s3cr" not in str(caught.value)


def test_unknown_placeholder_is_a_config_error_naming_key_and_placeholder() -> None:
    with pytest.raises(
        ConfigError, match=r"backends\.hook\.body\.alert\.text: unknown placeholder"
    ):
        build({"body": {"alert": {"text": "{mesage}"}}})


def test_attribute_access_in_a_placeholder_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unsupported placeholder \{message\.__class__\}"):
        build({"body": {"text": "{message.__class__}"}})


def test_unbalanced_brace_is_a_config_error_suggesting_double_braces() -> None:
    with pytest.raises(ConfigError, match=r"body\.text: invalid template .*\{\{ and \}\}"):
        build({"body": {"text": "value {message"}})


def test_repr_and_config_repr_hide_the_url() -> None:
    communicator = build({})
    assert SECRET not in repr(communicator)
    assert SECRET not in repr(communicator.config)
    assert communicator.endpoint == "https://hooks.example.com"


# -- bodies, methods, headers ------------------------------------------------------------


@pytest.mark.asyncio
async def test_default_body_is_the_message_as_json(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).respond(200)
    async with running() as hook:
        sent = message(
            severity=MessageSeverity.ERROR, subject="Disk", source="backup", metadata={"pct": 97}
        )
        await hook.deliver(sent)
    assert route.calls.last.request.headers["content-type"] == "application/json"
    assert _json(route) == {
        "message": "disk full",
        "label": "default",
        "source": "backup",
        "severity": "error",
        "metadata": {"pct": 97},
        "subject": "Disk",
    }


@pytest.mark.asyncio
async def test_template_fills_message_fields_into_nested_strings(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).respond(202)
    body = {
        "summary": "[{severity}] {subject}: {message}",
        "routing": {"key": "team-{label}", "tags": ["from {source}", "host {metadata[host]}"]},
        "fixed": 3,
    }
    async with running(body=body) as hook:
        await hook.deliver(
            message(label="ops", subject="Disk", source="cron", metadata={"host": "db1"})
        )
    assert _json(route) == {
        "summary": "[info] Disk: disk full",
        "routing": {"key": "team-ops", "tags": ["from cron", "host db1"]},
        "fixed": 3,
    }


@pytest.mark.asyncio
async def test_a_string_that_is_one_placeholder_keeps_the_json_type(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).respond(200)
    body = {"pct": "{metadata[pct]}", "all": "{metadata}", "subject": "{subject}"}
    async with running(body=body) as hook:
        await hook.deliver(message(metadata={"pct": 97, "tags": ["a"]}))
    assert _json(route) == {"pct": 97, "all": {"pct": 97, "tags": ["a"]}, "subject": None}


@pytest.mark.asyncio
async def test_double_braces_give_literal_braces(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).respond(200)
    async with running(body={"text": "{{literal}} {message} {{ {label} }}"}) as hook:
        await hook.deliver(message())
    assert _json(route) == {"text": "{literal} disk full { default }"}


@pytest.mark.asyncio
async def test_format_spec_and_missing_subject_inside_text(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).respond(200)
    async with running(body={"text": "{metadata[pct]:>4}%|{subject}|"}) as hook:
        await hook.deliver(message(metadata={"pct": 7}))
    assert _json(route) == {"text": "   7%||"}


@pytest.mark.asyncio
async def test_missing_metadata_key_fails_naming_the_placeholder_without_a_request(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).respond(200)
    async with running(body={"text": "on {metadata[nope]}"}) as hook:
        with pytest.raises(
            SendError, match=r"placeholder \{metadata\[nope\]\} at body\.text"
        ) as err:
            await hook.deliver(message(metadata={"host": "db1"}))
    assert "has no key 'nope' (keys: host)" in str(err.value)
    assert err.value.permanent
    assert err.value.attempts == 0
    assert err.value.backend == "hook"
    assert not route.called


@pytest.mark.asyncio
async def test_metadata_of_an_unknown_type_is_sent_as_text(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).respond(200)

    class Host:
        def __str__(self) -> str:
            return "db1"

    async with running() as hook:
        await hook.deliver(message(metadata={"host": Host()}))
    assert _json(route)["metadata"] == {"host": "db1"}


@pytest.mark.asyncio
async def test_configured_method_and_headers_are_sent(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.put(URL).respond(200)
    headers = {"Authorization": "Bearer abc", "X-Team": "ops"}
    async with running(method="put", headers=headers) as hook:
        await hook.deliver(message())
    request = route.calls.last.request
    assert request.method == "PUT"
    assert request.headers["authorization"] == "Bearer abc"
    assert request.headers["x-team"] == "ops"
    assert request.headers["user-agent"].startswith("processpype/")


# -- retries -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_503_503_200_is_delivered_on_the_third_attempt(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200)]
    )
    async with running() as hook:
        result = await hook.deliver(message())
    assert result.status == "delivered"
    assert result.attempts == 3
    assert route.call_count == 3


@pytest.mark.asyncio
async def test_429_is_retried(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[httpx.Response(429), httpx.Response(204)])
    async with running() as hook:
        result = await hook.deliver(message())
    assert (result.attempts, route.call_count) == (2, 2)


@pytest.mark.asyncio
async def test_5xx_past_max_attempts_fails_with_status_and_body(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).respond(502, text="bad gateway\nupstream down")
    async with running(max_attempts=4) as hook:
        with pytest.raises(SendError) as caught:
            await hook.deliver(message())
    assert route.call_count == 4
    assert caught.value.attempts == 4
    assert not caught.value.permanent
    assert str(caught.value) == (
        "HTTP 502 from https://hooks.example.com: bad gateway upstream down "
        "(gave up after 4 attempts)"
    )


@pytest.mark.asyncio
async def test_400_fails_at_once_with_status_and_start_of_body(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).respond(400, text="invalid_payload " + "x" * 5000)
    async with running() as hook:
        with pytest.raises(
            SendError,
            match=r"^HTTP 400 from https://hooks\.example\.com: invalid_payload x+\.\.\. "
            r"\(not retried\)$",
        ) as caught:
            await hook.deliver(message())
    assert route.call_count == 1
    assert caught.value.permanent
    assert caught.value.attempts == 1
    assert len(str(caught.value)) < 300


@pytest.mark.asyncio
async def test_redirect_is_refused_naming_only_the_new_host(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).respond(301, headers={"Location": f"https://new.example.com/{SECRET}"})
    async with running() as hook:
        with pytest.raises(
            SendError, match=r"HTTP 301 .* redirects to https://new\.example\.com:"
        ) as caught:
            await hook.deliver(message())
    assert SECRET not in str(caught.value)


@pytest.mark.asyncio
async def test_retry_after_in_seconds_replaces_the_backoff(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200)]
    )
    # With a 30 s backoff, only honouring Retry-After: 0 finishes within the timeout.
    async with running(retry_base_delay=30, max_retry_delay=60) as hook:
        result = await asyncio.wait_for(hook.deliver(message()), timeout=5)
    assert result.attempts == 2


@pytest.mark.asyncio
async def test_retry_after_as_http_date_replaces_the_backoff(respx_mock: respx.MockRouter) -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": past}), httpx.Response(200)]
    )
    async with running(retry_base_delay=30, max_retry_delay=60) as hook:
        result = await asyncio.wait_for(hook.deliver(message()), timeout=5)
    assert result.attempts == 2


@pytest.mark.asyncio
async def test_absurd_retry_after_is_capped_at_max_retry_delay(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "86400"}), httpx.Response(200)]
    )
    async with running(max_retry_delay=0.02) as hook:
        result = await asyncio.wait_for(hook.deliver(message()), timeout=5)
    assert result.attempts == 2
    assert "asked to wait 86400 s (Retry-After); waiting max_retry_delay 0.02 s" in caplog.text


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-3", now=now) == 0
    assert parse_retry_after("Wed, 01 May 2024 12:02:00 GMT", now=now) == 120
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("nan", now=now) is None


@pytest.mark.asyncio
async def test_connect_timeout_is_retried(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(
        side_effect=[httpx.ConnectTimeout("slow"), httpx.Response(200)]
    )
    async with running() as hook:
        result = await hook.deliver(message())
    assert (result.attempts, route.call_count) == (2, 2)


@pytest.mark.asyncio
async def test_read_timeout_is_not_retried_to_avoid_a_duplicate(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(side_effect=httpx.ReadTimeout("no answer"))
    async with running(timeout=2.5) as hook:
        with pytest.raises(
            SendError,
            match=r"no response from https://hooks\.example\.com within 2\.5 s; not retried",
        ) as caught:
            await hook.deliver(message())
    assert route.call_count == 1
    assert caught.value.attempts == 1
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


@pytest.mark.asyncio
async def test_unreachable_server_fails_after_max_attempts(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    async with running() as hook:
        with pytest.raises(
            SendError, match=r"could not reach https://hooks\.example\.com after 3"
        ) as caught:
            await hook.deliver(message())
    assert route.call_count == 3
    assert caught.value.attempts == 3
    assert not caught.value.permanent
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


# -- secrets -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_errors_and_logs_show_only_scheme_and_host(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    respx_mock.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(404)])
    async with running(headers={"Authorization": "Bearer hdr-secret"}) as hook:
        with pytest.raises(SendError) as caught:
            await hook.deliver(message())
    # httpx's own request log line is masked too.
    assert 'POST https://hooks.example.com/********** "HTTP/1.1 503' in caplog.text
    for secret in (SECRET, "/intake", "hdr-secret"):
        assert secret not in str(caught.value)
        assert secret not in caplog.text


# -- lifecycle and order -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_after_stop_fails_and_restart_sends_again(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).respond(200)
    hook = build(FAST)
    await hook.start()
    await hook.stop()
    assert not hook.is_started
    with pytest.raises(SendError, match="webhook backend is not started"):
        await hook.send(message())
    await hook.start()
    try:
        await hook.send(message())
    finally:
        await hook.stop()
    assert route.call_count == 1


@pytest.mark.asyncio
async def test_messages_go_out_in_the_order_given_even_when_one_is_retried(
    respx_mock: respx.MockRouter,
) -> None:
    answers = iter([httpx.Response(503), *[httpx.Response(200)] * 5])
    route = respx_mock.post(URL).mock(side_effect=lambda request: next(answers))
    async with running() as hook:
        await asyncio.gather(*(hook.deliver(message(f"m{i}")) for i in range(5)))
    sent = [_json_of(call.request)["message"] for call in route.calls]
    assert sent == ["m0", "m0", "m1", "m2", "m3", "m4"]


@pytest.mark.asyncio
async def test_flush_waits_for_the_message_being_retried(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(200)])
    async with running(retry_base_delay=0.05, max_retry_delay=0.05) as hook:
        task = asyncio.create_task(hook.deliver(message()))
        await asyncio.sleep(0)  # let the delivery begin
        assert await hook.flush(timeout=5)
        assert task.done()
        assert (await task).attempts == 2


@pytest.mark.asyncio
async def test_dispatcher_reports_a_failed_webhook_with_its_attempts(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).respond(503)
    dispatcher = CommunicationDispatcher()
    dispatcher.register(build(FAST), ["ops"])
    await dispatcher.start_all()
    try:
        report = await dispatcher.deliver(message(label="ops"))
    finally:
        await dispatcher.stop_all()
    result = report.result_for("hook")
    assert result is not None
    assert (result.status, result.attempts) == ("failed", 3)
    assert result.error is not None
    assert "HTTP 503 from https://hooks.example.com" in result.error


def _json(route: respx.Route) -> Any:
    return _json_of(route.calls.last.request)


def _json_of(request: httpx.Request) -> Any:
    return json.loads(request.content)
