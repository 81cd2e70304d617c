"""Telegram edits, progress within the rate limits, and questions with inline buttons."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram_helpers import enforcing_default_fake, listening_backends
from telethon import Button, errors

from processpype import Notifier
from processpype.communications.backends._telegram_interactive import NOT_ALLOWED
from processpype.communications.backends.telegram import (
    TelegramCommunicator,
    TelegramRateLimits,
)
from processpype.testing.telegram import FakeTelegramClient, InlineButton

GROUP = -1001234567890
PRIVATE = 555000111
OWNER = 42
STRANGER = 7


@pytest.fixture
def fake() -> Iterator[FakeTelegramClient]:
    """A fake that answers a flood wait to any send or edit beyond the (fast) limits."""
    with enforcing_default_fake() as client:
        yield client


def telegram(tmp_path: Path, chat: int = PRIVATE, **chat_fields: Any) -> dict[str, Any]:
    return {"enabled": True, "backends": listening_backends(tmp_path, chat, **chat_fields)}


@pytest.fixture
def notifier(fake: FakeTelegramClient, processpype_notifier: Any, tmp_path: Path) -> Notifier:
    made: Notifier = processpype_notifier(telegram(tmp_path, command_authorized=True))
    return made


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- editing -------------------------------------------------------------------------------


def test_a_sent_message_is_referenced_by_its_telegram_id(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    report = notifier.send("deploying")

    [sent] = fake.sent
    assert report.results[0].reference == (str(sent.message_id),)


def test_edit_changes_the_telegram_message_in_place(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    report = notifier.send("deploying")

    edited = notifier.edit(report, "deployed")

    assert edited.ok
    [sent] = fake.sent
    assert fake.message(PRIVATE, sent.message_id).text == "deployed"
    assert [e.text for e in fake.edits] == ["deployed"]


def test_an_edit_with_the_same_text_counts_as_done(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    report = notifier.send("same")

    edited = notifier.edit(report, "same")

    assert edited.ok
    assert fake.edits == []
    assert isinstance(fake.errors[-1].error, errors.MessageNotModifiedError)


def test_a_split_message_edited_shorter_loses_its_extra_pieces(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    report = notifier.send("word " * 1000)  # 5,000 characters: two pieces
    first, second = (int(part) for part in report.results[0].reference)

    edited = notifier.edit(report, "short now")

    assert edited.results[0].reference == (str(first),)
    assert fake.message(PRIVATE, first).text == "short now"
    assert (PRIVATE, second) in fake.deleted


def test_a_message_edited_longer_gets_more_pieces(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    report = notifier.send("short")

    edited = notifier.edit(report, "word " * 1000)

    reference = edited.results[0].reference
    assert len(reference) == 2
    assert reference[0] == report.results[0].reference[0]
    assert len(fake.sent) == 2  # the second piece is a new message


def test_editing_a_message_telegram_does_not_know_fails(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    report = notifier.send("x")
    forged = report.model_copy(
        update={"results": (report.results[0].model_copy(update={"reference": ("999999",)}),)}
    )

    edited = notifier.edit(forged, "y")

    assert edited.results[0].status == "failed"
    assert "MessageIdInvalidError" in (edited.results[0].error or "")


# -- progress within the rate limits -------------------------------------------------------


def test_progress_edits_as_fast_as_allowed_without_a_flood_wait(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    # min_interval=0: every update wants an edit; only one is ever on its way, and the
    # backend schedules each within the chat's limit, which the fake enforces.
    for _ in notifier.progress(range(3000), desc="copy", min_interval=0.0):
        pass

    assert fake.flood_waits == 0
    assert len(fake.sent) == 1
    final = fake.message(PRIVATE, fake.sent[0].message_id)
    assert final.text.startswith("\N{WHITE HEAVY CHECK MARK} copy: done, 3,000/3,000 in ")


def test_progress_edits_are_bounded_by_min_interval(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    clock = FakeClock()
    for _ in notifier.progress(range(2000), desc="train", min_interval=5.0, clock=clock):
        clock.now += 0.1  # 200 s of work: at most 40 edits and the final one

    assert 1 <= len(fake.edits) <= 41
    assert fake.flood_waits == 0
    assert fake.edits[-1].text.startswith("\N{WHITE HEAVY CHECK MARK} train: done, 2,000/2,000")


def test_a_failed_loop_ends_with_the_error_in_the_message(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    def run() -> None:
        with notifier.progress(range(10), desc="etl") as bar:
            for step in bar:
                if step == 6:
                    raise RuntimeError("db down")

    with pytest.raises(RuntimeError, match="db down"):
        run()

    assert fake.edits[-1].text.startswith("\N{CROSS MARK} etl: failed at 6 of 10")
    assert fake.edits[-1].text.endswith("RuntimeError: db down")


# -- the fake's buttons --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_fake_records_buttons_and_an_edit_without_buttons_removes_them() -> None:
    fake = FakeTelegramClient()
    await fake.start(bot_token="1:abc")
    sent = await fake.send_message(PRIVATE, "ok?", buttons=[Button.inline("Yes", b"y")])

    assert fake.sent[0].buttons == ((InlineButton("Yes", b"y"),),)
    assert sent.reply_markup.rows[0].buttons[0].text == "Yes"
    await fake.edit_message(PRIVATE, sent.id, "answered")
    assert fake.message(PRIVATE, sent.id).buttons == ()


@pytest.mark.asyncio
async def test_the_fake_refuses_a_press_of_a_button_the_message_lacks() -> None:
    fake = FakeTelegramClient()
    await fake.start(bot_token="1:abc")
    sent = await fake.send_message(PRIVATE, "ok?", buttons=[Button.inline("Yes", b"y")])

    with pytest.raises(ValueError, match="no button with data b'n'"):
        await fake.press_button_async(PRIVATE, sent.id, b"n", sender_id=OWNER)


# -- asking --------------------------------------------------------------------------------


def ask_in_background(
    notifier: Notifier, **kwargs: Any
) -> tuple[concurrent.futures.ThreadPoolExecutor, concurrent.futures.Future[str | None]]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    return pool, pool.submit(notifier.ask, "Deploy to prod?", **kwargs)


def test_a_question_is_answered_by_a_button(notifier: Notifier, fake: FakeTelegramClient) -> None:
    pool, answer = ask_in_background(notifier, choices=["yes", "no"], timeout=10)
    with pool:
        [question] = fake.wait_for_sent(1)
        assert question.text == "Deploy to prod?"
        [[yes, no]] = question.buttons
        assert (yes.text, no.text) == ("yes", "no")

        reply = fake.press_button(PRIVATE, question.message_id, yes.data, sender_id=OWNER)

        assert answer.result(5) == "yes"
    assert reply is not None
    assert not reply.alert
    shown = fake.message(PRIVATE, question.message_id)
    assert shown.text == "Deploy to prod?\n\N{WHITE HEAVY CHECK MARK} yes (answered by Test User)"
    assert shown.buttons == ()


def test_a_question_is_answered_by_a_text_reply_in_any_case(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    pool, answer = ask_in_background(notifier, choices=["Yes", "No"], timeout=10)
    with pool:
        [question] = fake.wait_for_sent(1)

        fake.inject_message(PRIVATE, "  no ", sender_name="Ann Lee")

        assert answer.result(5) == "No"
    assert fake.message(PRIVATE, question.message_id).text.endswith("No (answered by Ann Lee)")


def test_a_press_by_an_unauthorized_sender_is_refused_and_changes_nothing(
    fake: FakeTelegramClient, processpype_notifier: Any, tmp_path: Path
) -> None:
    notifier = processpype_notifier(
        telegram(tmp_path, chat=GROUP, command_authorized=True, allowed_sender_ids=[OWNER])
    )
    pool, answer = ask_in_background(notifier, choices=["yes", "no"], timeout=10)
    with pool:
        [question] = fake.wait_for_sent(1)
        [[yes, _]] = question.buttons

        refused = fake.press_button(GROUP, question.message_id, yes.data, sender_id=STRANGER)

        assert refused is not None
        assert (refused.message, refused.alert) == (NOT_ALLOWED, True)
        assert not answer.done()
        assert fake.edits == []

        fake.press_button(GROUP, question.message_id, yes.data, sender_id=OWNER)
        assert answer.result(5) == "yes"


def test_a_question_nobody_answers_returns_the_default(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    result = notifier.ask("Rollback?", choices=["yes", "no"], timeout=0.2, default="no")

    assert result == "no"
    [question] = fake.sent
    assert fake.message(PRIVATE, question.message_id).text == (
        "Rollback?\n\N{HOURGLASS} no answer within 0.2s"
    )


def test_a_question_that_timed_out_loses_its_buttons(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    assert notifier.ask("Now?", choices=["ok"], timeout=0.1) is None
    [question] = fake.sent
    old_button = question.buttons[0][0]

    assert fake.message(PRIVATE, question.message_id).buttons == ()
    with pytest.raises(ValueError, match="no button"):
        fake.press_button(PRIVATE, question.message_id, old_button.data, sender_id=OWNER)


def test_asking_on_a_label_without_a_listening_telegram_backend_is_an_error(
    processpype_notifier: Any,
) -> None:
    notifier = processpype_notifier({"enabled": True, "backends": {"rec": {"type": "recording"}}})

    with pytest.raises(ValueError, match="no backend of label 'default' can ask"):
        notifier.ask("Deploy?", choices=["yes", "no"], timeout=1)


def test_asking_in_a_chat_that_takes_no_commands_is_an_error(
    fake: FakeTelegramClient, processpype_notifier: Any, tmp_path: Path
) -> None:
    notifier = processpype_notifier(telegram(tmp_path))  # command_authorized: false

    with pytest.raises(Exception, match="command_authorized: true"):
        notifier.ask("Deploy?", choices=["yes", "no"], timeout=1)
    assert fake.sent == []


def test_bad_choices_are_refused_before_anything_is_posted(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    with pytest.raises(ValueError, match="given twice"):
        notifier.ask("Deploy?", choices=["yes", "YES"], timeout=1)
    with pytest.raises(TypeError, match="list of strings"):
        notifier.ask("Deploy?", choices="yes", timeout=1)
    assert fake.sent == []


def test_an_infinite_ask_timeout_is_refused_before_anything_is_posted(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    # The wait for the answer cannot honour it: it would overflow after the post.
    with pytest.raises(ValueError, match="timeout"):
        notifier.ask("Deploy?", choices=["yes", "no"], timeout=math.inf)
    assert fake.sent == []


@pytest.mark.asyncio
async def test_aask_is_answered_from_async_code(
    notifier: Notifier, fake: FakeTelegramClient
) -> None:
    task = asyncio.ensure_future(notifier.aask("Go?", choices=["go", "stop"], timeout=10))
    [question] = await fake.wait_for_sent_async(1)
    await fake.press_button_async(
        PRIVATE, question.message_id, question.buttons[0][1].data, sender_id=OWNER
    )

    assert await asyncio.wait_for(task, 5) == "stop"


def test_edits_in_a_group_keep_to_the_group_limit_without_a_flood_wait(
    processpype_notifier: Any,
) -> None:
    # Telegram's own limits (20 per minute in a group), on a clock 100 times faster.
    limits = TelegramRateLimits().scaled(0.01)
    fake = FakeTelegramClient(enforce_rate_limits=True, rate_limits=limits)
    config = FakeTelegramClient.telegram_config(chats={"default": {"chat_id": str(GROUP)}})
    backend = TelegramCommunicator(
        "tg", config, client_factory=fake.as_client_factory(), rate_limits=limits
    )
    notifier = processpype_notifier({"enabled": True})
    notifier.add_communicator(backend)
    report = notifier.send("rows: 0")

    for step in range(1, 46):  # the send and 45 edits: three windows of 20 in the group
        assert notifier.edit(report, f"rows: {step}").ok

    assert fake.flood_waits == 0
    assert fake.message(GROUP, fake.sent[0].message_id).text == "rows: 45"


def test_with_two_telegram_backends_the_question_is_asked_once_on_the_first(
    processpype_notifier: Any,
) -> None:
    fakes = [FakeTelegramClient(), FakeTelegramClient()]
    notifier = processpype_notifier({"enabled": True})
    for number, client in enumerate(fakes, start=1):
        config = FakeTelegramClient.telegram_config(
            listen_to_commands=True,
            chats={"default": {"chat_id": str(PRIVATE), "command_authorized": True}},
        )
        notifier.add_communicator(
            TelegramCommunicator(f"tg{number}", config, client_factory=client.as_client_factory())
        )
    first, second = fakes

    pool, answer = ask_in_background(notifier, choices=["yes", "no"], timeout=10)
    with pool:
        [question] = first.wait_for_sent(1)
        first.press_button(PRIVATE, question.message_id, question.buttons[0][0].data, sender_id=1)

        assert answer.result(5) == "yes"
    assert second.sent == []
