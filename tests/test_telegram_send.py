"""TelegramCommunicator sending through FakeTelegramClient: routing, splitting, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError
from telegram_helpers import FAST_LIMITS, BackendMaker, msg, quick_fake
from telethon import errors

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.errors import SendError
from processpype.testing.telegram import FakeTelegramClient

GROUP = -1001234567890
PRIVATE = 42
# Limits far above what a test sends: these tests are about routing, not pacing.
FAST: dict[str, Any] = {**FAST_LIMITS, "retry_base_delay": 0.01}
CHATS = {
    "default": {"chat_id": str(GROUP)},
    "ops": {"chat_id": str(PRIVATE)},
    "news": {"chat_id": "@processpype_news"},
    "forum": {"chat_id": str(GROUP), "topic_id": 7},
    "muted": {"chat_id": "-1009999", "active": False},
}


@pytest.fixture
def fake() -> FakeTelegramClient:
    return quick_fake()


@pytest_asyncio.fixture
async def make_backend(fake: FakeTelegramClient) -> AsyncIterator[BackendMaker]:
    async with BackendMaker(fake, {"chats": CHATS, **FAST}) as make:
        yield make


@pytest.mark.asyncio
async def test_label_routes_to_its_own_chat(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    result = await backend.deliver(msg(label="ops"))

    assert result.status == "delivered"
    assert [(m.chat, m.text) for m in fake.sent] == [(PRIVATE, "disk full")]


@pytest.mark.asyncio
async def test_unknown_label_falls_back_to_default_chat(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    await backend.deliver(msg(label="unheard-of"))

    assert [m.chat for m in fake.sent] == [GROUP]


@pytest.mark.asyncio
async def test_inactive_chat_is_skipped_not_sent_to_default(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    result = await backend.deliver(msg(label="muted"))

    assert result.status == "skipped"
    assert "inactive" in (result.error or "")
    assert fake.sent == []


@pytest.mark.asyncio
async def test_numeric_chat_id_reaches_telethon_as_int(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    await backend.deliver(msg(label="default"))

    assert type(fake.sent[0].chat) is int


@pytest.mark.asyncio
async def test_username_chat_stays_a_string(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    await backend.deliver(msg(label="news"))

    assert fake.sent[0].chat == "@processpype_news"


@pytest.mark.asyncio
async def test_topic_id_posts_into_the_forum_topic(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    await backend.deliver(msg(label="forum"))
    await backend.deliver(msg(label="default"))

    assert [(m.chat, m.reply_to) for m in fake.sent] == [(GROUP, 7), (GROUP, None)]


@pytest.mark.asyncio
async def test_text_is_plain_by_default_so_markup_characters_are_safe(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    result = await backend.deliver(msg("load < 5 & **no** <b>markup"))

    assert result.status == "delivered"
    [sent] = fake.sent
    assert (sent.text, sent.parse_mode) == ("load < 5 & **no** <b>markup", None)


@pytest.mark.asyncio
async def test_html_parse_mode_is_passed_to_telethon(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(parse_mode="html")

    await backend.deliver(msg("<b>disk</b> full"))

    [sent] = fake.sent
    assert (sent.text, sent.parse_mode) == ("<b>disk</b> full", "html")


@pytest.mark.asyncio
async def test_long_message_goes_out_as_30_line_chunks_in_order(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    lines = [f"line {n}" for n in range(75)]

    result = await backend.deliver(msg("\n".join(lines)))

    assert result.status == "delivered"
    assert [len(m.text.split("\n")) for m in fake.sent] == [30, 30, 15]
    assert [line for m in fake.sent for line in m.text.split("\n")] == lines


@pytest.mark.asyncio
async def test_line_over_4096_units_is_split_and_accepted(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    words = [f"w{n}" for n in range(2000)]  # about 9000 characters on one line

    result = await backend.deliver(msg(" ".join(words)))

    assert result.status == "delivered"
    assert len(fake.sent) == 3
    assert " ".join(m.text for m in fake.sent).split() == words


@pytest.mark.asyncio
async def test_long_html_message_keeps_its_formatting_across_chunks(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(parse_mode="html")
    markup = "\n".join(f"<b>host {n}</b> down" for n in range(40))

    result = await backend.deliver(msg(markup))

    assert result.status == "delivered"
    assert [len(m.entities or []) for m in fake.sent] == [30, 10]
    assert fake.sent[0].text.startswith("host 0 down")


@pytest.mark.asyncio
async def test_chunks_of_two_messages_to_one_chat_are_not_interleaved(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    first = "\n".join(f"A{n}" for n in range(65))
    second = "\n".join(f"B{n}" for n in range(65))

    results = await asyncio.gather(backend.deliver(msg(first)), backend.deliver(msg(second)))

    assert [r.status for r in results] == ["delivered", "delivered"]
    assert [m.text[0] for m in fake.sent] == ["A", "A", "A", "B", "B", "B"]


@pytest.mark.asyncio
async def test_messages_to_one_chat_arrive_in_the_order_sent(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    for n in range(20):
        await backend.send(msg(f"event {n}"))
    assert await backend.flush(timeout=5)

    assert fake.texts == [f"event {n}" for n in range(20)]


@pytest.mark.asyncio
async def test_empty_message_fails_without_reaching_telegram(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()

    with pytest.raises(SendError, match="empty"):
        await backend.deliver(msg(" \n "))

    assert fake.sent == []


@pytest.mark.asyncio
async def test_transient_failure_is_retried_and_reports_attempts(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    # telethon repeats the request once itself (request_retries=1), then raises it.
    fake.fail_next(errors.ServerError(request=None, message="INTERNAL", code=500), count=2)
    fake.fail_next(ConnectionError("connection reset"))

    result = await backend.deliver(msg())

    assert (result.status, result.attempts) == ("delivered", 3)
    assert fake.texts == ["disk full"]


@pytest.mark.asyncio
async def test_failure_after_max_attempts_is_reported_with_its_error(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(max_attempts=3)
    fake.fail_next(ConnectionError("connection reset"), count=3)

    result = await backend.deliver(msg())

    assert (result.status, result.attempts) == ("failed", 3)
    assert "ConnectionError: connection reset" in (result.error or "")
    assert fake.sent == []


@pytest.mark.asyncio
async def test_refusal_by_telegram_is_not_retried(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    fake.fail_next(errors.ChatWriteForbiddenError(request=None))
    fake.fail_next(errors.ChatWriteForbiddenError(request=None))

    result = await backend.deliver(msg())

    assert (result.status, result.attempts) == ("failed", 1)
    assert "ChatWriteForbiddenError" in (result.error or "")


@pytest.mark.asyncio
async def test_a_send_that_times_out_is_not_retried(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend(send_timeout=0.2)
    fake.latency = 5.0

    result = await backend.deliver(msg())

    assert (result.status, result.attempts) == ("failed", 1)
    assert "may have received it" in (result.error or "")


@pytest.mark.asyncio
async def test_failure_in_one_chat_does_not_stop_the_next_message(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    fake.fail_next(errors.ChatWriteForbiddenError(request=None))

    results = await asyncio.gather(backend.deliver(msg("first")), backend.deliver(msg("second")))

    assert [r.status for r in results] == ["failed", "delivered"]
    assert fake.texts == ["second"]


@pytest.mark.asyncio
async def test_send_before_start_is_refused(fake: FakeTelegramClient) -> None:
    backend = TelegramCommunicator(
        "tg", fake.telegram_config(), client_factory=fake.as_client_factory()
    )

    with pytest.raises(SendError, match="not started"):
        await backend.send(msg())


def test_label_without_chat_or_default_chat_is_a_config_error(fake: FakeTelegramClient) -> None:
    with pytest.raises(ValidationError, match=r"chats: no chat for label\(s\) 'alerts'"):
        fake.telegram_config(labels=["alerts"], chats={"ops": {"chat_id": "42"}})
