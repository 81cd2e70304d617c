"""Attachments for the Telegram backend: which pieces carry them, and sending one piece.

A message with attachments becomes, after its text pieces (``_telegram_text``), pieces
sent with telethon's ``send_file``: PNG and JPEG images up to ``PHOTO_LIMIT`` go as
photos, grouped in albums of up to ``ALBUM_LIMIT``; other files, and larger images, go
one by one as documents (up to ``DOCUMENT_LIMIT``, what a bot may upload over MTProto).
When the whole text fits a caption (``CAPTION_LIMIT`` UTF-16 units) it rides on the
first file instead of going alone. Every piece takes one slot of the rate limits and is
retried like a text piece; a file over its limit fails the message before anything is
sent.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processpype.communications.backends._attachment_limits import each_problem
from processpype.communications.backends._telegram_text import Chunk, utf16_len
from processpype.foundation.errors import SendError
from processpype.foundation.models import Attachment

__all__ = [
    "ALBUM_LIMIT",
    "CAPTION_LIMIT",
    "DOCUMENT_LIMIT",
    "PHOTO_LIMIT",
    "UPLOAD_BYTES_PER_SECOND",
    "FileChunk",
    "UploadTimeoutError",
    "plan_pieces",
    "send_file_chunk",
]

PHOTO_LIMIT = 10_000_000
"""Largest photo Telegram takes (10 MB); a larger image is sent as a document."""

DOCUMENT_LIMIT = 2000 * 1024 * 1024
"""Largest file a bot uploads over MTProto: 4,000 parts of 512 KiB."""

CAPTION_LIMIT = 1024
"""Longest caption, in UTF-16 code units after entity parsing."""

ALBUM_LIMIT = 10
"""Photos per album (one ``send_file`` with a list)."""

UPLOAD_BYTES_PER_SECOND = 256 * 1024
"""Slowest upload assumed: a file piece may take ``send_timeout`` plus its size at this rate."""


@dataclass(frozen=True)
class FileChunk(Chunk):
    """A piece sent with ``send_file``: one file, or an album of photos; ``text`` its caption."""

    files: tuple[Attachment, ...] = ()
    force_document: bool = False


def plan_pieces(
    chunks: list[Chunk], attachments: Sequence[Attachment], backend: str
) -> list[Chunk]:
    """The pieces that carry the text ``chunks`` and ``attachments``, in sending order.

    Raises ``SendError`` (permanent) naming a file over ``DOCUMENT_LIMIT``.
    """
    problem = each_problem(attachments, DOCUMENT_LIMIT, "a Telegram file")
    if problem is not None:
        raise SendError(
            f"{backend}: {problem}; nothing was sent", backend=backend, attempts=0, permanent=True
        )
    photos = [a for a in attachments if a.is_image and a.size <= PHOTO_LIMIT]
    documents = [a for a in attachments if not (a.is_image and a.size <= PHOTO_LIMIT)]
    pieces: list[Chunk] = []
    caption: Chunk | None = None
    if len(chunks) == 1 and utf16_len(chunks[0].text) <= CAPTION_LIMIT:
        # Measured with its markup, if any: never longer than what Telegram counts.
        caption = chunks[0]
    else:
        pieces.extend(chunks)
    groups: list[tuple[tuple[Attachment, ...], bool]] = [
        (tuple(photos[i : i + ALBUM_LIMIT]), False) for i in range(0, len(photos), ALBUM_LIMIT)
    ]
    groups.extend(((document,), True) for document in documents)
    for files, force_document in groups:
        if caption is not None:
            pieces.append(
                FileChunk(caption.text, caption.parse_mode, caption.entities, files, force_document)
            )
            caption = None
        else:
            pieces.append(FileChunk("", None, None, files, force_document))
    return pieces


_PHOTO_SUFFIX = re.compile(r"\.(png|jpe?g)$", re.IGNORECASE)


def _named(attachment: Attachment, photo: bool) -> io.BytesIO:
    # A stream with a name: telethon takes the file name, and whether it is a photo,
    # from it. A photo shows no name, so one without an image suffix gets one.
    stream = io.BytesIO(attachment.data)
    name = attachment.filename
    if photo and not _PHOTO_SUFFIX.search(name):
        name += ".png" if "png" in attachment.content_type else ".jpg"
    stream.name = name
    return stream


class UploadTimeoutError(TimeoutError):
    """A file piece got no answer within its deadline; the text says how it was reckoned."""


async def send_file_chunk(
    client: Any, entity: int | str, topic_id: int | None, piece: FileChunk, send_timeout: float
) -> Any:
    """Send ``piece`` with ``client.send_file`` (a fresh stream per try), within a deadline.

    Returns what ``send_file`` returned: the message, or a list of them for an album.
    """
    files = [_named(a, not piece.force_document) for a in piece.files]
    options: dict[str, Any] = {
        "caption": piece.text,
        "reply_to": topic_id,
        "force_document": piece.force_document,
        "parse_mode": piece.parse_mode,
        "formatting_entities": piece.entities,
    }
    if len(files) == 1:
        only = piece.files[0]
        options["file_size"] = only.size
        if piece.force_document:
            options["mime_type"] = only.content_type.split(";", 1)[0].strip()
    size = sum(a.size for a in piece.files)
    deadline = send_timeout + size / UPLOAD_BYTES_PER_SECOND
    try:
        async with asyncio.timeout(deadline):
            return await client.send_file(entity, files[0] if len(files) == 1 else files, **options)
    except TimeoutError as exc:
        raise UploadTimeoutError(
            f"send_timeout={send_timeout}s plus {size:,} bytes at "
            f"{UPLOAD_BYTES_PER_SECOND // 1024} KiB/s ({deadline:.3g}s)"
        ) from exc
