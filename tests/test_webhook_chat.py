"""Slack and Discord webhooks: message bodies, severity, escaping and splitting (respx)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from processpype.communications.backends import create_communicator
from processpype.communications.backends.webhook import (
    DISCORD_CONTENT_LIMIT,
    SLACK_TEXT_LIMIT,
    split_text,
    utf16_length,
)
from processpype.communications.base import Communicator
from processpype.communications.errors import SendError
from processpype.communications.models import MessageSeverity, OutgoingMessage
from processpype.config.loader import config_from_mapping

SLACK_URL = "https://hooks.slack.com/services/T000/B000/slacktoken"
DISCORD_URL = "https://discord.com/api/webhooks/123/discordtoken"
FAST = {"retry_base_delay": 0.001, "max_retry_delay": 0.01}


@contextlib.asynccontextmanager
async def running(backend_type: str, **settings: Any) -> AsyncIterator[Communicator]:
    url = SLACK_URL if backend_type == "slack" else DISCORD_URL
    backend = {"type": backend_type, "url": url, **FAST, **settings}
    config = config_from_mapping({"backends": {"chat": backend}})
    communicator = create_communicator("chat", config.backends["chat"])
    await communicator.start()
    try:
        yield communicator
    finally:
        await communicator.stop()


def bodies(route: respx.Route) -> list[Any]:
    return [json.loads(call.request.content) for call in route.calls]


def numbered_lines(count: int, width: int = 60) -> str:
    return "\n".join(f"{i:05d} " + "x" * (width - 6) for i in range(count))


# -- Slack -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_slack_body_is_text_with_the_severity_first(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(SLACK_URL).respond(200, text="ok")
    async with running("slack") as slack:
        result = await slack.deliver(
            OutgoingMessage(message="disk full", severity=MessageSeverity.ERROR)
        )
    assert result.attempts == 1
    assert bodies(route) == [{"text": "\N{LARGE RED CIRCLE} *ERROR* disk full"}]


@pytest.mark.asyncio
async def test_slack_shows_subject_and_source_above_the_text(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(SLACK_URL).respond(200)
    async with running("slack") as slack:
        await slack.deliver(
            OutgoingMessage(
                message="97% used", subject="Disk", source="db1", severity=MessageSeverity.WARNING
            )
        )
    assert bodies(route) == [{"text": "\N{LARGE YELLOW CIRCLE} *WARNING* Disk (db1)\n97% used"}]


@pytest.mark.asyncio
async def test_slack_escapes_its_control_characters(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(SLACK_URL).respond(200)
    async with running("slack") as slack:
        await slack.deliver(OutgoingMessage(message="a < b && <!channel>"))
    # Escaped, <!channel> is shown as text instead of notifying the whole channel.
    assert bodies(route)[0]["text"].endswith("a &lt; b &amp;&amp; &lt;!channel&gt;")


@pytest.mark.asyncio
async def test_slack_splits_long_text_at_line_breaks_in_order(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(SLACK_URL).respond(200)
    text = numbered_lines(200)  # 12,199 characters
    async with running("slack") as slack:
        result = await slack.deliver(OutgoingMessage(message=text))
    chunks = [body["text"] for body in bodies(route)]
    assert len(chunks) == 4
    assert all(utf16_length(chunk) <= SLACK_TEXT_LIMIT for chunk in chunks)
    assert all(chunk.endswith("\n") for chunk in chunks[:-1])  # whole lines only
    assert "".join(chunks).endswith(text)
    assert result.attempts == 1


@pytest.mark.asyncio
async def test_slack_limit_counts_the_escaped_text(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(SLACK_URL).respond(200)
    async with running("slack") as slack:
        await slack.deliver(OutgoingMessage(message="&" * 1000))  # 5,000 characters escaped
    chunks = [body["text"] for body in bodies(route)]
    assert len(chunks) == 2
    assert all(len(chunk) <= SLACK_TEXT_LIMIT for chunk in chunks)
    assert "".join(chunks).count("&amp;") == 1000


# -- Discord -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_discord_body_is_content_that_notifies_nobody(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(DISCORD_URL).respond(204)
    async with running("discord") as discord:
        await discord.deliver(
            OutgoingMessage(message="@everyone disk full", severity=MessageSeverity.CRITICAL)
        )
    assert bodies(route) == [
        {
            "content": "\N{POLICE CARS REVOLVING LIGHT} **CRITICAL** @everyone disk full",
            "allowed_mentions": {"parse": []},
        }
    ]


@pytest.mark.asyncio
async def test_discord_username_overrides_the_webhook_name(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(DISCORD_URL).respond(204)
    async with running("discord", username="Backup bot") as discord:
        await discord.deliver(OutgoingMessage(message="done"))
    assert bodies(route)[0]["username"] == "Backup bot"


@pytest.mark.asyncio
async def test_discord_splits_at_2000_characters(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(DISCORD_URL).respond(204)
    text = numbered_lines(100)  # 6,099 characters
    async with running("discord") as discord:
        await discord.deliver(OutgoingMessage(message=text))
    chunks = [body["content"] for body in bodies(route)]
    assert len(chunks) == 4
    assert all(len(chunk) <= DISCORD_CONTENT_LIMIT for chunk in chunks)
    assert "".join(chunks).endswith(text)


@pytest.mark.asyncio
async def test_discord_counts_an_emoji_outside_the_bmp_as_two(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(DISCORD_URL).respond(204)
    async with running("discord") as discord:
        await discord.deliver(OutgoingMessage(message="\N{FIRE}" * 1500))
    chunks = [body["content"] for body in bodies(route)]
    assert len(chunks) == 2
    assert all(utf16_length(chunk) <= DISCORD_CONTENT_LIMIT for chunk in chunks)
    assert "".join(chunks).count("\N{FIRE}") == 1500


@pytest.mark.asyncio
async def test_a_code_block_cut_in_two_is_closed_and_reopened(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(DISCORD_URL).respond(204)
    traceback = "```\n" + numbered_lines(50) + "\n```"
    async with running("discord") as discord:
        await discord.deliver(OutgoingMessage(message=traceback, severity=MessageSeverity.ERROR))
    chunks = [body["content"] for body in bodies(route)]
    assert len(chunks) == 2
    assert all(chunk.count("```") == 2 for chunk in chunks)
    assert chunks[0].endswith("\n```")
    assert chunks[1].startswith("```\n")
    assert all(len(chunk) <= DISCORD_CONTENT_LIMIT for chunk in chunks)


@pytest.mark.asyncio
async def test_a_failed_part_says_which_parts_were_delivered(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(DISCORD_URL).mock(
        side_effect=[
            httpx.Response(204),
            httpx.Response(204),
            httpx.Response(400, json={"message": "Invalid Form Body"}),
        ]
    )
    async with running("discord") as discord:
        with pytest.raises(SendError) as caught:
            await discord.deliver(OutgoingMessage(message=numbered_lines(100)))
    assert str(caught.value).startswith("part 3 of 4: HTTP 400 from https://discord.com")
    assert str(caught.value).endswith("(parts 1-2 were delivered)")
    assert caught.value.permanent


@pytest.mark.asyncio
async def test_discord_retry_after_in_the_json_body_is_honoured(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(DISCORD_URL).mock(
        side_effect=[
            httpx.Response(429, json={"message": "rate limited", "retry_after": 0.0}),
            httpx.Response(204),
        ]
    )
    # A 30 s backoff would hit pytest's timeout: the body's retry_after is used instead.
    async with running("discord", retry_base_delay=30, max_retry_delay=60) as discord:
        result = await discord.deliver(OutgoingMessage(message="hi"))
    assert result.attempts == 2


@pytest.mark.asyncio
async def test_attempts_of_a_split_message_are_the_most_any_part_needed(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(SLACK_URL).mock(
        side_effect=[httpx.Response(200), httpx.Response(503), httpx.Response(200)]
    )
    async with running("slack") as slack:
        result = await slack.deliver(OutgoingMessage(message=numbered_lines(100)))
    assert result.attempts == 2


# -- split_text --------------------------------------------------------------------------


def test_split_text_keeps_short_text_whole() -> None:
    assert split_text("one\ntwo", 10) == ["one\ntwo"]


def test_split_text_cuts_a_long_line_after_whitespace() -> None:
    chunks = split_text("alpha beta gamma delta", 12)
    assert chunks == ["alpha beta ", "gamma delta"]


def test_split_text_cuts_a_word_longer_than_the_limit() -> None:
    assert split_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_split_text_drops_chunks_of_only_whitespace() -> None:
    assert split_text("a" + "\n" * 10 + "b", 3) == ["a\n\n", "\n\nb"]


@settings(max_examples=300, deadline=None, database=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(["a", "b", " ", "\n", "\N{FIRE}", "&", "\u00e9"]), max_size=400
    ),
    limit=st.integers(min_value=2, max_value=60),
)
def test_split_text_loses_no_text_and_respects_the_limit(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert all(utf16_length(chunk) <= limit for chunk in chunks)
    if len(chunks) > 1:
        assert all(chunk.strip() for chunk in chunks)
    joined = "".join(chunks)
    assert re.sub(r"\s", "", joined) == re.sub(r"\s", "", text)
    assert _only_whitespace_removed(joined, text)


def test_split_text_round_trips_text_without_long_blank_runs() -> None:
    text = "word " * 50 + "\n" + "x" * 130 + "\n\nend"
    for limit in (7, 20, 64):
        assert "".join(split_text(text, limit)) == text


def _only_whitespace_removed(joined: str, text: str) -> bool:
    """True when ``text`` is ``joined`` with whitespace inserted (nothing else)."""
    position = 0
    for char in joined:
        while position < len(text) and text[position] != char:
            if not text[position].isspace():
                return False
            position += 1
        if position == len(text):
            return False
        position += 1
    return text[position:].strip() == ""
