"""The Telegram file pieces through real telethon: only its network sender is stubbed.

telethon builds every request itself (file parts, the media, the album); the stub answers
them as Telegram would and keeps them, so these tests check what would go on the wire.
"""

from __future__ import annotations

import asyncio
import io
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from telethon import TelegramClient, functions, types
from telethon.sessions import StringSession

from processpype.communications.backends._telegram_files import FileChunk, send_file_chunk
from processpype.communications.models import Attachment

PEER = types.InputPeerUser(user_id=42, access_hash=7)


def updates(*items: Any) -> types.Updates:
    """Telegram's answer carrying ``items`` (and no users or chats)."""
    return types.Updates(updates=list(items), users=[], chats=[], date=datetime.now(UTC), seq=0)


def message_to_peer(message_id: int, text: str) -> types.Message:
    """The bot's message ``message_id`` in PEER's chat."""
    return types.Message(
        id=message_id,
        peer_id=types.PeerUser(user_id=42),
        date=datetime.now(UTC),
        message=text,
        out=True,
    )


class StubSender:
    """Stands in for telethon's MTProtoSender: answers each request, keeps it."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self._ids = iter(range(1, 1000))

    def is_connected(self) -> bool:
        return True

    def send(self, request: Any, ordered: bool = False) -> asyncio.Future[Any]:
        self.requests.append(request)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(self._answer(request))
        return future

    def _photo(self) -> types.Photo:
        return types.Photo(
            id=next(self._ids),
            access_hash=1,
            file_reference=b"ref",
            date=datetime.now(UTC),
            sizes=[types.PhotoSize(type="x", w=10, h=10, size=100)],
            dc_id=2,
        )

    def _answer(self, request: Any) -> Any:
        if isinstance(
            request, functions.upload.SaveFilePartRequest | functions.upload.SaveBigFilePartRequest
        ):
            return True
        if isinstance(request, functions.messages.UploadMediaRequest):
            return types.MessageMediaPhoto(photo=self._photo())
        if isinstance(
            request, functions.messages.SendMediaRequest | functions.messages.SendMultiMediaRequest
        ):
            return updates()
        raise AssertionError(f"unexpected request {type(request).__name__}")

    def of(self, kind: type) -> list[Any]:
        return [r for r in self.requests if isinstance(r, kind)]

    def uploaded(self) -> dict[int, bytes]:
        """The bytes uploaded per file id, parts joined in order."""
        files: dict[int, list[tuple[int, bytes]]] = {}
        for r in self.of(functions.upload.SaveFilePartRequest):
            files.setdefault(r.file_id, []).append((r.file_part, r.bytes))
        return {fid: b"".join(b for _, b in sorted(parts)) for fid, parts in files.items()}


@pytest.fixture
def client_and_sender() -> tuple[TelegramClient, StubSender]:
    client = TelegramClient(StringSession(), 12345, "0123456789abcdef0123456789abcdef")
    # Never a real Telegram address, even by accident: the session points at loopback.
    client.session.set_dc(2, "127.0.0.1", 443)
    sender = StubSender()
    client._sender = sender  # only the network goes; telethon's request logic runs
    return client, sender


def real_png(size: tuple[int, int] = (8, 6)) -> bytes:
    image_module = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    image_module.new("RGB", size, "blue").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.asyncio
async def test_a_document_keeps_its_bytes_name_type_and_caption(
    client_and_sender: tuple[TelegramClient, StubSender],
) -> None:
    client, sender = client_and_sender
    data = os.urandom(700_000)  # two 512 KiB parts
    document = Attachment.from_bytes(data, "журнал été.csv")
    piece = FileChunk("backup failed", None, None, (document,), True)
    await send_file_chunk(client, PEER, 7, piece, send_timeout=10)
    [request] = sender.of(functions.messages.SendMediaRequest)
    media = request.media
    assert isinstance(media, types.InputMediaUploadedDocument)
    assert media.mime_type == "text/csv"
    names = [
        a.file_name for a in media.attributes if isinstance(a, types.DocumentAttributeFilename)
    ]
    assert names == ["журнал été.csv"]
    assert sender.uploaded() == {media.file.id: data}
    assert request.message == "backup failed"
    assert request.reply_to.reply_to_msg_id == 7


@pytest.mark.asyncio
async def test_an_image_is_sent_as_a_photo(
    client_and_sender: tuple[TelegramClient, StubSender],
) -> None:
    client, sender = client_and_sender
    photo = Attachment.from_bytes(real_png(), "loss.png")
    await send_file_chunk(
        client, PEER, None, FileChunk("loss curve", None, None, (photo,), False), send_timeout=10
    )
    [request] = sender.of(functions.messages.SendMediaRequest)
    assert isinstance(request.media, types.InputMediaUploadedPhoto)
    assert request.message == "loss curve"
    assert request.reply_to is None


@pytest.mark.asyncio
async def test_several_images_are_one_album_with_the_caption_on_the_first(
    client_and_sender: tuple[TelegramClient, StubSender],
) -> None:
    client, sender = client_and_sender
    photos = tuple(Attachment.from_bytes(real_png((4 + i, 4)), f"p{i}.png") for i in range(3))
    await send_file_chunk(
        client, PEER, 3, FileChunk("charts", None, None, photos, False), send_timeout=10
    )
    assert len(sender.of(functions.messages.UploadMediaRequest)) == 3
    [album] = sender.of(functions.messages.SendMultiMediaRequest)
    assert [m.message for m in album.multi_media] == ["charts", "", ""]
    assert all(isinstance(m.media, types.InputMediaPhoto) for m in album.multi_media)
    assert album.reply_to.reply_to_msg_id == 3


@pytest.mark.asyncio
async def test_an_image_named_without_a_suffix_still_goes_as_a_photo(
    client_and_sender: tuple[TelegramClient, StubSender],
) -> None:
    client, sender = client_and_sender
    photo = Attachment.from_bytes(real_png(), "loss-curve", content_type="image/png")
    await send_file_chunk(
        client, PEER, None, FileChunk("", None, None, (photo,), False), send_timeout=10
    )
    [request] = sender.of(functions.messages.SendMediaRequest)
    assert isinstance(request.media, types.InputMediaUploadedPhoto)


class StallingSender(StubSender):
    """Answers the first file part, then never again: an upload whose link went quiet."""

    def send(self, request: Any, ordered: bool = False) -> asyncio.Future[Any]:
        parts = (functions.upload.SaveFilePartRequest, functions.upload.SaveBigFilePartRequest)
        if isinstance(request, parts) and self.of(functions.upload.SaveFilePartRequest):
            self.requests.append(request)
            return asyncio.get_running_loop().create_future()  # never answered
        return super().send(request, ordered)


@pytest.mark.asyncio
async def test_an_upload_that_stops_advancing_fails_at_its_deadline() -> None:
    client = TelegramClient(StringSession(), 12345, "0123456789abcdef0123456789abcdef")
    sender = StallingSender()
    client._sender = sender
    document = Attachment.from_bytes(os.urandom(600_000), "dump.bin")  # two parts
    piece = FileChunk("nightly dump", None, None, (document,), True)

    async with asyncio.timeout(30):  # the test's own bound, far above the upload's deadline
        with pytest.raises(TimeoutError, match=r"send_timeout=0.2s plus 600,000 bytes"):
            await send_file_chunk(client, PEER, None, piece, send_timeout=0.2)

    assert len(sender.of(functions.upload.SaveFilePartRequest)) == 2
    assert not sender.of(functions.messages.SendMediaRequest)


class AnsweringSender(StubSender):
    """Answers a sent file as Telegram does: the new message's id and the message."""

    def _answer(self, request: Any) -> Any:
        if isinstance(request, functions.messages.SendMediaRequest):
            message = message_to_peer(77, request.message)
            return updates(
                types.UpdateMessageID(id=77, random_id=request.random_id),
                types.UpdateNewMessage(message=message, pts=1, pts_count=1),
            )
        return super()._answer(request)


@pytest.mark.asyncio
async def test_a_sent_file_returns_telegrams_message_with_its_id() -> None:
    # The backend keeps this id as the reference an edit of the caption needs.
    client = TelegramClient(StringSession(), 12345, "0123456789abcdef0123456789abcdef")
    client._sender = AnsweringSender()
    piece = FileChunk("run 7", None, None, (Attachment.from_bytes(b"log", "run.log"),), True)
    sent = await send_file_chunk(client, PEER, None, piece, send_timeout=10)
    assert isinstance(sent, types.Message)
    assert (sent.id, sent.message) == (77, "run 7")


class EditingSender(StubSender):
    """Answers an edit as Telegram does: the edited message."""

    def _answer(self, request: Any) -> Any:
        if isinstance(request, functions.messages.EditMessageRequest):
            message = message_to_peer(request.id, request.message)
            return updates(types.UpdateEditMessage(message=message, pts=2, pts_count=1))
        return super()._answer(request)


@pytest.mark.asyncio
async def test_editing_a_files_message_sends_only_the_new_caption() -> None:
    # What the backend's edit of a caption puts on the wire: the text, no media.
    client = TelegramClient(StringSession(), 12345, "0123456789abcdef0123456789abcdef")
    sender = EditingSender()
    client._sender = sender
    await client.edit_message(PEER, 77, "epoch 2", parse_mode=None)
    [request] = sender.of(functions.messages.EditMessageRequest)
    assert (request.id, request.message, request.media) == (77, "epoch 2", None)
