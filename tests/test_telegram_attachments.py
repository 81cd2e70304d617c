"""Telegram attachments through FakeTelegramClient: photos, albums, documents, captions, limits."""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from telegram_helpers import FAST_LIMITS, BackendMaker, quick_fake
from telethon import errors

from processpype.communications.backends import _telegram_files
from processpype.communications.backends.telegram import (
    TelegramCommunicator,
    TelegramRateLimits,
    set_default_client_factory,
)
from processpype.communications.delivery import DeliveryResult
from processpype.communications.errors import SendError
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.testing.telegram import FakeTelegramClient

GROUP = -1001234567890
PRIVATE = 42
FAST: dict[str, Any] = {**FAST_LIMITS, "retry_base_delay": 0.01}
CHATS = {
    "default": {"chat_id": str(GROUP)},
    "ops": {"chat_id": str(PRIVATE)},
    "forum": {"chat_id": str(GROUP), "topic_id": 7},
}
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(500)


def png(name: str = "plot.png", data: bytes = PNG) -> Attachment:
    return Attachment.from_bytes(data, name)


def doc(name: str = "log.txt", data: bytes = b"line 1\nline 2\n") -> Attachment:
    return Attachment.from_bytes(data, name)


@pytest.fixture
def fake() -> FakeTelegramClient:
    return quick_fake()


@pytest_asyncio.fixture
async def make_backend(fake: FakeTelegramClient) -> AsyncIterator[BackendMaker]:
    async with BackendMaker(fake, {"chats": CHATS, **FAST}) as make:
        yield make


async def deliver(
    backend: TelegramCommunicator, text: str, files: list[Attachment], **fields: Any
) -> DeliveryResult:
    return await backend.deliver(OutgoingMessage(message=text, attachments=files, **fields))


# -- what is sent ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_image_goes_as_a_photo_with_the_text_as_caption(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    result = await deliver(backend, "loss curve", [png()])
    assert result.status == "delivered"
    assert fake.sent == []
    [sent] = fake.sent_files
    assert (sent.chat, sent.filename, sent.photo, sent.caption) == (
        GROUP,
        "plot.png",
        True,
        "loss curve",
    )
    assert sent.data == PNG


@pytest.mark.asyncio
async def test_other_files_go_as_documents_keeping_name_type_and_bytes(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    blob = os.urandom(3000)
    await deliver(backend, "backup failed", [doc("журнал été.log", blob), doc("data.csv", b"a,b")])
    first, second = fake.sent_files
    assert (first.filename, first.photo, first.data, first.caption) == (
        "журнал été.log",
        False,
        blob,
        "backup failed",
    )
    assert (second.filename, second.mime_type, second.caption) == ("data.csv", "text/csv", "")
    assert first.mime_type == "application/octet-stream"


@pytest.mark.asyncio
async def test_several_images_go_as_albums_of_ten(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    images = [png(f"p{i}.png") for i in range(12)]
    await deliver(backend, "charts", images)
    sent = fake.sent_files
    assert [f.filename for f in sent] == [f"p{i}.png" for i in range(12)]
    assert all(f.photo for f in sent)
    albums = [f.album for f in sent]
    assert len(set(albums[:10])) == 1
    assert len(set(albums[10:])) == 1
    assert albums[0] != albums[10]
    assert [f.caption for f in sent] == ["charts"] + [""] * 11


@pytest.mark.asyncio
async def test_a_text_too_long_for_a_caption_goes_first_then_the_files(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    text = "x" * 1025
    await deliver(backend, text, [png()])
    assert [m.text for m in fake.sent] == [text]
    [sent] = fake.sent_files
    assert sent.caption == ""
    assert fake.sent[0].message_id < sent.message_id


@pytest.mark.asyncio
async def test_a_caption_of_exactly_1024_utf16_units_rides_on_the_file(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    text = "🚀" * 512  # 1,024 UTF-16 code units
    await deliver(backend, text, [png()])
    assert fake.sent == []
    assert fake.sent_files[0].caption == text


@pytest.mark.asyncio
async def test_files_follow_routing_and_topics_like_text(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    await deliver(backend, "to the topic", [doc()], label="forum")
    await deliver(backend, "to ops", [doc()], label="ops")
    topic, private = fake.sent_files
    assert (topic.chat, topic.reply_to) == (GROUP, 7)
    assert (private.chat, private.reply_to) == (PRIVATE, None)


@pytest.mark.asyncio
async def test_a_message_of_files_only_needs_no_text(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    result = await deliver(backend, "", [doc()])
    assert result.status == "delivered"
    assert [f.caption for f in fake.sent_files] == [""]


@pytest.mark.asyncio
async def test_an_image_over_the_photo_limit_goes_as_a_document(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    big = png("huge.png", PNG + bytes(_telegram_files.PHOTO_LIMIT))
    await deliver(backend, "big", [big, png()])
    photo, document = fake.sent_files
    assert (photo.filename, photo.photo) == ("plot.png", True)
    assert (document.filename, document.photo, document.size) == ("huge.png", False, big.size)


@pytest.mark.asyncio
async def test_a_file_over_the_document_limit_fails_before_anything_is_sent(
    make_backend: BackendMaker, fake: FakeTelegramClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_telegram_files, "DOCUMENT_LIMIT", 1000)
    backend = await make_backend()
    with pytest.raises(SendError) as caught:
        await deliver(backend, "too big", [doc(), doc("big.bin", bytes(1001))])
    text = str(caught.value)
    assert "big.bin (1001 B, 1001 bytes) is over the limit of 1000 B (1000 bytes)" in text
    assert caught.value.permanent
    assert fake.sent == []
    assert fake.sent_files == []


@pytest.mark.asyncio
async def test_a_failed_file_is_retried_like_text(
    make_backend: BackendMaker, fake: FakeTelegramClient
) -> None:
    backend = await make_backend()
    # telethon repeats the media request once itself (request_retries=1): two 500s
    # fail the first attempt, the backend's second attempt gets through.
    fake.fail_next(errors.ServerError(request=None, message="INTERNAL", code=500), count=2)
    result = await deliver(backend, "retry me", [doc()])
    assert (result.status, result.attempts) == ("delivered", 2)
    assert len(fake.sent_files) == 1


@pytest.mark.asyncio
async def test_every_piece_is_counted_by_the_rate_limiter() -> None:
    limits = TelegramRateLimits(time_scale=0.02)
    fake = FakeTelegramClient(enforce_rate_limits=True, rate_limits=limits)
    async with BackendMaker(fake, {"chats": CHATS}, limits=limits) as make:
        backend = await make()
        text = "y" * 1500  # a text piece, then three documents: four sends to one chat
        result = await deliver(backend, text, [doc("a.txt"), doc("b.txt"), doc("c.txt")])
    assert result.status == "delivered"
    assert fake.flood_waits == 0
    times = [fake.sent[0].time, *(f.time for f in fake.sent_files)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= limits.chat_interval * 0.9 for gap in gaps), gaps


def test_a_figure_reaches_telegram_as_a_photo_from_a_script() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fake = FakeTelegramClient()
    previous = set_default_client_factory(fake.as_client_factory())
    try:
        config = fake.telegram_config(**FAST).model_dump()
        for key in ("api_hash", "token", "session_string"):
            config[key] = getattr(fake.telegram_config(), key).get_secret_value()
        figure, axes = plt.subplots(figsize=(2, 1))
        axes.plot([1, 0.5, 0.25])
        expected = Attachment.from_figure(figure).data
        with Notifier({"enabled": True, "backends": {"tg": config}}) as notifier:
            notifier.send("training done", attachments=[figure]).raise_for_errors()
        plt.close(figure)
    finally:
        set_default_client_factory(previous)
    [sent] = fake.sent_files
    assert (sent.filename, sent.photo, sent.caption) == ("figure.png", True, "training done")
    assert sent.data == expected


# -- the fake answers like Telegram ---------------------------------------------------


async def started_fake() -> FakeTelegramClient:
    fake = FakeTelegramClient()
    await fake.start(bot_token="123:abc")
    return fake


@pytest.mark.asyncio
async def test_fake_refuses_a_photo_over_10_mb_with_telethons_error() -> None:
    fake = await started_fake()
    stream = io.BytesIO(bytes(_telegram_files.PHOTO_LIMIT + 1))
    stream.name = "big.png"
    with pytest.raises(errors.PhotoSaveFileInvalidError):
        await fake.send_file(GROUP, stream)
    stream.seek(0)
    await fake.send_file(GROUP, stream, force_document=True)
    assert [f.photo for f in fake.sent_files] == [False]


@pytest.mark.asyncio
async def test_fake_refuses_a_caption_over_1024_units_with_telethons_error() -> None:
    fake = await started_fake()
    with pytest.raises(errors.MediaCaptionTooLongError):
        await fake.send_file(GROUP, b"data", caption="x" * 1025, parse_mode=None)
    assert fake.sent_files == []
    assert isinstance(fake.errors[0].error, errors.MediaCaptionTooLongError)


@pytest.mark.asyncio
async def test_fake_sends_a_list_as_albums_and_returns_the_messages() -> None:
    fake = await started_fake()
    streams = []
    for i in range(3):
        stream = io.BytesIO(b"img%d" % i)
        stream.name = f"{i}.jpg"
        streams.append(stream)
    messages = await fake.send_file(GROUP, streams, caption="album", reply_to=5)
    assert len(messages) == 3
    assert [f.filename for f in fake.sent_files] == ["0.jpg", "1.jpg", "2.jpg"]
    assert {f.album for f in fake.sent_files} == {fake.sent_files[0].album}
    assert [f.reply_to for f in fake.sent_files] == [5, 5, 5]
    assert await fake.wait_for_files_async(3) == fake.sent_files


@pytest.mark.asyncio
async def test_fake_names_bytes_unnamed_as_telethon_does() -> None:
    fake = await started_fake()
    await fake.send_file(GROUP, b"raw")
    assert (fake.sent_files[0].filename, fake.sent_files[0].photo) == ("unnamed", False)


@pytest.mark.asyncio
async def test_fake_send_message_with_a_file_sends_the_text_as_its_caption() -> None:
    # telethon's send_message(file=...) hands over to send_file with caption=message.
    fake = await started_fake()
    sent = await fake.send_message(GROUP, "loss curve", file=io.BytesIO(PNG), reply_to=7)
    [record] = fake.sent_files
    assert (record.caption, record.reply_to, record.data) == ("loss curve", 7, PNG)
    assert sent.id == record.message_id
    assert fake.sent == []


@pytest.mark.asyncio
async def test_fake_send_message_with_a_file_refuses_a_long_caption_as_telethon_does() -> None:
    fake = await started_fake()
    with pytest.raises(errors.MediaCaptionTooLongError):
        await fake.send_message(GROUP, "x" * 1025, file=b"data")
    assert fake.sent_files == []


@pytest.mark.asyncio
async def test_fake_send_file_keeps_its_own_flood_memory_as_telethon_does() -> None:
    # telethon remembers a flood wait per request type: SendMedia, not SendMessage.
    fake = await started_fake()
    fake.flood_sleep_threshold = 0  # as the backend configures telethon
    fake.fail_next(errors.FloodWaitError(request=None, capture=30))
    with pytest.raises(errors.FloodWaitError):
        await fake.send_file(GROUP, b"one")
    with pytest.raises(errors.FloodWaitError) as remembered:
        await fake.send_file(PRIVATE, b"other chat")
    assert type(remembered.value.request).__name__ == "SendMediaRequest"
    await fake.send_message(PRIVATE, "text still goes")
    assert [s.text for s in fake.sent] == ["text still goes"]
    assert fake.sent_files == []


@pytest.mark.asyncio
async def test_fake_send_file_repeats_a_server_error_like_telethon() -> None:
    fake = await started_fake()
    fake.internal_retry_delay = 0
    fake.fail_next(errors.ServerError(request=None, message="RPC_CALL_FAIL", code=500))
    await fake.send_file(GROUP, b"data")
    assert len(fake.sent_files) == 1
