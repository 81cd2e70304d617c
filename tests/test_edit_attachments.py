"""Editing a message that had attachments: the text (or caption) changes, the files stay."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from http_helpers import started_backend
from telegram_helpers import FAST_LIMITS, BackendMaker

from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.delivery import DeliveryReport
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.testing import WebhookCapture
from processpype.testing.telegram import FakeTelegramClient

GROUP = -1001234567890
FAST: dict[str, Any] = {**FAST_LIMITS, "retry_base_delay": 0.01}
DISCORD_URL = "https://discord.com/api/webhooks/1/tok3n"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(300)


def photo() -> Attachment:
    return Attachment.from_bytes(PNG, "loss.png")


def log() -> Attachment:
    return Attachment.from_bytes(b"epoch 1\n", "train.log", content_type="text/plain")


@pytest.fixture
def fake() -> FakeTelegramClient:
    return FakeTelegramClient()


@pytest_asyncio.fixture
async def telegram(fake: FakeTelegramClient) -> AsyncIterator[TelegramCommunicator]:
    async with BackendMaker(fake, {"chats": {"default": {"chat_id": str(GROUP)}}, **FAST}) as make:
        yield await make()


async def edit(backend: Any, report: DeliveryReport, text: str) -> Any:
    dispatcher = CommunicationDispatcher()
    dispatcher.register(backend, ["default"])
    new = report.message.model_copy(update={"message": text})
    return (await dispatcher.edit(report, new)).results[0]


async def sent(backend: Any, text: str, files: list[Attachment]) -> DeliveryReport:
    message = OutgoingMessage(message=text, attachments=files)
    return DeliveryReport(message=message, results=(await backend.deliver(message),))


@pytest.mark.asyncio
async def test_telegram_edit_of_a_caption_changes_the_caption_and_keeps_the_files(
    telegram: TelegramCommunicator, fake: FakeTelegramClient
) -> None:
    report = await sent(telegram, "epoch 1", [photo(), log()])
    [first, second] = fake.sent_files
    assert report.results[0].reference == (str(first.message_id),)

    result = await edit(telegram, report, "epoch 2: loss 0.12")

    assert result.status == "delivered"
    assert fake.message(GROUP, first.message_id).text == "epoch 2: loss 0.12"
    assert fake.message(GROUP, second.message_id).text == ""  # the log keeps no caption
    assert len(fake.sent_files) == 2  # nothing uploaded again
    assert fake.sent == []  # and no text message posted
    assert fake.deleted == []


@pytest.mark.asyncio
async def test_telegram_edit_of_a_long_text_changes_the_text_and_keeps_the_files(
    telegram: TelegramCommunicator, fake: FakeTelegramClient
) -> None:
    report = await sent(telegram, "x" * 1500, [photo()])  # too long for a caption
    [text] = fake.sent
    assert report.results[0].reference == (str(text.message_id),)

    result = await edit(telegram, report, "done")

    assert result.status == "delivered"
    assert fake.message(GROUP, text.message_id).text == "done"
    assert len(fake.sent_files) == 1
    assert fake.deleted == []


@pytest.mark.asyncio
async def test_telegram_edit_of_a_caption_into_a_text_too_long_for_it_fails_and_says_so(
    telegram: TelegramCommunicator, fake: FakeTelegramClient
) -> None:
    report = await sent(telegram, "short", [photo()])

    result = await edit(telegram, report, "y" * 2000)

    assert result.status == "failed"
    assert result.error is not None
    assert "caption" in result.error.lower()
    [record] = fake.sent_files
    assert fake.message(GROUP, record.message_id).text == "short"


@pytest.mark.asyncio
async def test_telegram_edit_of_files_only_sets_the_first_files_caption(
    telegram: TelegramCommunicator, fake: FakeTelegramClient
) -> None:
    report = await sent(telegram, "", [log()])

    result = await edit(telegram, report, "the log of run 7")

    assert result.status == "delivered"
    [record] = fake.sent_files
    assert fake.message(GROUP, record.message_id).text == "the log of run 7"


@pytest.mark.asyncio
async def test_discord_edit_of_a_message_with_files_patches_the_text_only() -> None:
    with WebhookCapture() as capture:
        capture.respond(status=200, json={"id": "1100000000000000001"})
        async with started_backend("discord", DISCORD_URL, name="discord") as discord:
            report = await sent(discord, "epoch 1", [photo()])
            result = await edit(discord, report, "epoch 2")
    assert result.status == "delivered"
    post, patch = capture.requests
    assert [f.filename for f in post.files] == ["loss.png"]
    assert patch.method == "PATCH"
    assert patch.files == []
    assert "epoch 2" in patch.json["content"]
    assert "attachments" not in patch.json  # absent: Discord keeps the posted files


def test_console_edit_prints_the_new_text_without_the_files_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = {"enabled": True, "backends": {"console": {"type": "console"}}}
    with Notifier(config) as notifier:
        report = notifier.send("epoch 1", attachments=[log()])
        edited = notifier.edit(report, "epoch 2")
    lines = capsys.readouterr().out.splitlines()
    assert edited.results[0].status == "delivered"
    assert lines == [
        "[INFO] default epoch 1",
        "  attachment: train.log (text/plain, 8 B)",
        "[INFO] default (edit of #1) epoch 2",
    ]
    assert edited.message.attachments == []


def test_notifier_edit_refuses_other_files(processpype_notifier: Any) -> None:
    notifier = processpype_notifier(
        {"enabled": True, "backends": {"rec": {"type": "recording", "receiving": False}}}
    )
    report = notifier.send("epoch 1", attachments=[log()])
    changed = report.message.model_copy(update={"message": "epoch 2", "attachments": [photo()]})
    with pytest.raises(ValueError, match="an edit changes the text only"):
        notifier.edit(report, changed)
    same = report.message.model_copy(update={"message": "epoch 2"})
    assert notifier.edit(report, same).ok


@pytest.mark.asyncio
async def test_discord_edit_into_fewer_pieces_keeps_the_post_that_carries_the_files() -> None:
    with WebhookCapture() as capture:
        capture.respond(status=200, json={"id": "1100000000000000001"}, times=1)
        capture.respond(status=200, json={"id": "1100000000000000002"}, times=1)
        async with started_backend("discord", DISCORD_URL, name="discord") as discord:
            report = await sent(discord, "word " * 700, [photo()])  # two posts, files on #2
            result = await edit(discord, report, "short")
    assert report.results[0].reference == ("1100000000000000001", "1100000000000000002")
    assert result.reference == ("1100000000000000002",)
    _, with_files, patch, delete = capture.requests
    assert [f.filename for f in with_files.files] == ["loss.png"]
    assert (patch.method, patch.url.rsplit("/", 1)[-1]) == ("PATCH", "1100000000000000002")
    assert (delete.method, delete.url.rsplit("/", 1)[-1]) == ("DELETE", "1100000000000000001")


@pytest.mark.asyncio
async def test_telegram_edit_cut_by_max_parts_says_so(fake: FakeTelegramClient) -> None:
    chats = {"default": {"chat_id": str(GROUP)}}
    async with BackendMaker(fake, {"chats": chats, **FAST, "max_parts": 1}) as make:
        telegram = await make()
        report = await sent(telegram, "x" * 1500, [photo()])  # the text goes first
        result = await edit(telegram, report, "word " * 2000)  # 10,000 characters
    [text] = fake.sent
    assert result.status == "delivered"
    assert "more characters cut" in fake.message(GROUP, text.message_id).text
    (cut,) = result.warnings
    assert "max_parts" in cut
    assert len(fake.sent_files) == 1


@pytest.mark.asyncio
async def test_discord_edit_cut_by_max_parts_says_so() -> None:
    with WebhookCapture() as capture:
        capture.respond(status=200, json={"id": "1100000000000000001"})
        async with started_backend("discord", DISCORD_URL, name="discord", max_parts=1) as discord:
            report = await sent(discord, "epoch 1", [photo()])
            result = await edit(discord, report, "word " * 1000)
    assert result.status == "delivered"
    (cut,) = result.warnings
    assert "max_parts" in cut
    assert "more characters cut" in capture.requests[-1].json["content"]


@pytest.mark.asyncio
async def test_discord_edit_called_with_the_files_still_on_the_message_patches_the_text_only() -> (
    None
):
    with WebhookCapture() as capture:
        capture.respond(status=200, json={"id": "1100000000000000001"})
        async with started_backend("discord", DISCORD_URL, name="discord") as discord:
            report = await sent(discord, "epoch 1", [photo()])
            # The message as first sent, files included: the backend's own edit() keeps them.
            new = report.message.model_copy(update={"message": "epoch 2"})
            result = await discord.edit(report.results[0].reference, new)
    assert result.status == "delivered"
    post, patch = capture.requests
    assert [f.filename for f in post.files] == ["loss.png"]
    assert patch.method == "PATCH"
    assert patch.files == []
    assert "epoch 2" in patch.json["content"]
