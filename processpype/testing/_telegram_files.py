"""``send_file`` for ``FakeTelegramClient``: files, photos and albums, as Telegram takes them.

Kept apart from the fake's text sending; ``FakeTelegramClient`` mixes it in. What it
reproduces: telethon's ``send_file`` signature; one file, or a list sent as albums of up
to 10 (telethon slices longer lists the same way); a file given as bytes (named
``unnamed``), a path, or a stream with a ``name``; telethon's rule for a photo (a
``.png``/``.jpg``/``.jpeg`` name and no ``force_document``); Telegram's answers with
telethon's error classes: ``PhotoSaveFileInvalidError`` for a photo over 10 MB,
``MediaCaptionTooLongError`` for a caption over 1,024 UTF-16 units (after parsing),
``FilePartsInvalidError`` for a file over what a bot may upload. Each media request
runs through the fake's ``_call`` as telethon's does (``SendMediaRequest`` for one
file, ``SendMultiMediaRequest`` per album of up to 10): flood memory, internal retries
of server errors, silent mode. Scripted failures (``fail_next``), rate limits and
``latency`` apply per media request, as for ``send_message``: an album counts as one
send, a list of 12 files as two.

What it does not reproduce: the upload requests (telethon's ``SaveFilePartRequest``
parts and ``UploadMediaRequest``; the file is read at once), photo recompression and
resizing (the bytes are kept as given), thumbnails, voice and video notes, ``file_id``
reuse, URLs, upload progress. ``send_message(file=...)`` comes here with the text as the
caption, as in telethon; a file's message is kept so that ``edit_message`` changes its
caption.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from telethon import errors, utils
from telethon.tl import functions, types

from processpype.communications.backends._telegram_files import (
    ALBUM_LIMIT,
    CAPTION_LIMIT,
    DOCUMENT_LIMIT,
    PHOTO_LIMIT,
)
from processpype.communications.backends._telegram_text import utf16_len
from processpype.testing._file_bytes import FileBytes
from processpype.testing._waiting import Signal, Until, at_least

__all__ = ["FileSending", "SentFile", "caption_text", "chat_key"]

# What a file's message (kept so that edit_message changes its caption) shares with it.
_MESSAGE_FIELDS = ("chat", "reply_to", "parse_mode", "time", "entities", "message_id")


@dataclass(frozen=True)
class SentFile(FileBytes):
    """One file the fake accepted, as ``send_file`` was called.

    ``photo`` is True when Telegram would show it as a photo; ``album`` is the album's
    id (shared by the files sent in one list of up to 10) or None for a single file;
    ``caption`` is the caption as given (markup included), empty when none.
    """

    chat: int | str
    filename: str
    data: bytes
    photo: bool
    mime_type: str | None
    caption: str
    reply_to: int | None
    time: float
    album: int | None = None
    parse_mode: str | None = None
    entities: list[Any] | None = None
    message_id: int = 0


class _Host(Protocol):
    """What ``FileSending`` needs of the fake it is mixed into."""

    _lock: threading.Condition
    _signal: Signal
    _ids: itertools.count[int]
    enforce_rate_limits: bool
    latency: float
    parse_mode: str | None
    sent_files: list[SentFile]
    _current: dict[tuple[int | str, int], tuple[Any, str]]

    def _check_entity(self, entity: Any) -> None: ...
    def _check_connected(self) -> None: ...
    def _raise_scripted(self, key: int | str) -> None: ...
    def _record_failure(self, entity: Any, exc: BaseException) -> None: ...
    def _check_rate_limits(self, key: int | str, entity: Any) -> float: ...
    async def _call(self, request: Any, attempt: Callable[[], Awaitable[Any]]) -> Any: ...
    def _peer(self, entity: Any) -> Any: ...
    def _refuse_on_own_loop(self, name: str, alternative: str) -> None: ...


def chat_key(entity: Any) -> int | str:
    """The key the fake files a chat under: a username lower-cased, an id, a peer's id."""
    if isinstance(entity, str):
        return entity.lower()
    if isinstance(entity, int):
        return entity
    return int(utils.get_peer_id(entity))


def _read(file: Any) -> tuple[str, bytes]:
    """The name and bytes of a file as telethon accepts it (bytes, path, stream)."""
    if isinstance(file, bytes):
        return "unnamed", file
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        if not path.is_file():
            # telethon's own message for a string that is no file, URL or file id
            raise ValueError(
                f"Failed to convert {file} to media. Not an existing file, an HTTP URL "
                "or a valid bot-API-like file ID"
            )
        return path.name, path.read_bytes()
    read = getattr(file, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, bytes):
            raise TypeError(f"Cannot use {file!r} as file: read() did not return bytes")
        return os.path.basename(str(getattr(file, "name", "") or "unnamed")), data
    raise TypeError(f"Cannot use {file!r} as file")


@dataclass(frozen=True)
class _Options:
    """The ``send_file`` arguments every file of one call shares."""

    force_document: bool
    mime_type: str | None
    reply_to: int | None
    parse_mode: Any
    formatting_entities: list[Any] | None


async def _deliver(
    host: _Host,
    entity: Any,
    key: int | str,
    files: list[tuple[str, bytes]],
    captions: list[Any],
    album: int | None,
    options: _Options,
) -> list[Any]:
    """One media request reaching Telegram: check, count, record; the sent messages."""
    host._check_connected()
    host._raise_scripted(key)
    batch: list[SentFile] = []
    parsed: list[str] = []
    for index, (name, data) in enumerate(files):
        text = str(captions[index] or "") if index < len(captions) else ""
        parsed.append(caption_text(host, text, options.parse_mode, options.formatting_entities))
        photo = bool(utils.is_image(name)) and not options.force_document
        if photo and len(data) > PHOTO_LIMIT:
            raise errors.PhotoSaveFileInvalidError(request=None)
        if len(data) > DOCUMENT_LIMIT:
            raise errors.FilePartsInvalidError(request=None)
        batch.append(
            SentFile(
                chat=entity,
                filename=name,
                data=data,
                photo=photo,
                mime_type=None if photo else options.mime_type,
                caption=text,
                reply_to=options.reply_to,
                time=0.0,
                album=album,
                parse_mode=host.parse_mode if options.parse_mode == () else options.parse_mode,
                entities=options.formatting_entities,
            )
        )
    # One request, one send against the rate limits (an album of up to 10 included).
    now = host._check_rate_limits(key, entity) if host.enforce_rate_limits else time.monotonic()
    records = [replace(record, time=now, message_id=next(host._ids)) for record in batch]
    from processpype.testing.telegram import SentMessage  # the module mixing this in

    with host._lock:
        host.sent_files.extend(records)
        for record, shown in zip(records, parsed, strict=True):
            # Kept as messages too, so that edit_message changes their captions.
            shared = {name: getattr(record, name) for name in _MESSAGE_FIELDS}
            host._current[(key, record.message_id)] = (
                SentMessage(text=record.caption, media=True, **shared),
                shown,
            )
    host._signal.notify()
    await asyncio.sleep(host.latency)
    return [
        types.Message(
            id=record.message_id,
            peer_id=host._peer(entity),
            date=datetime.now(UTC),
            message=record.caption,
            out=True,
        )
        for record in records
    ]


class FileSending:
    """Mixin: telethon's ``send_file`` for the fake client (see the module docstring)."""

    async def send_file(
        self: _Host,
        entity: Any,
        file: Any,
        *,
        caption: str | list[str] | None = None,
        force_document: bool = False,
        mime_type: str | None = None,
        file_size: int | None = None,
        reply_to: Any = None,
        attributes: Any = None,
        parse_mode: Any = (),
        formatting_entities: list[Any] | None = None,
        silent: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Accept one file, or a list as albums of up to 10, or raise telethon's error."""
        try:
            if not file:
                raise TypeError(f"Cannot use {file!r} as file")
            self._check_entity(entity)
            key = chat_key(entity)
            album = isinstance(file, list | tuple)
            # Read once, as telethon uploads once: a retried request sends the same media.
            items = [_read(item) for item in (list(file) if album else [file])]
            captions = caption if isinstance(caption, list) else [caption or ""]
            options = _Options(
                force_document,
                mime_type,
                utils.get_message_id(reply_to),
                parse_mode,
                formatting_entities,
            )
            if not album:
                # telethon: SendMediaRequest; its flood memory and retries are _call's.
                single = functions.messages.SendMediaRequest(
                    peer=types.InputPeerEmpty(), media=types.InputMediaEmpty(), message=""
                )
                [message] = await self._call(
                    single,
                    lambda: _deliver(self, entity, key, items, captions[:1], None, options),
                )
                return message
            messages: list[Any] = []
            for start in range(0, len(items), ALBUM_LIMIT):
                # telethon slices a list into albums of 10: one SendMultiMediaRequest each.
                group = items[start : start + ALBUM_LIMIT]
                texts = captions[start : start + ALBUM_LIMIT]
                request = functions.messages.SendMultiMediaRequest(
                    peer=types.InputPeerEmpty(), multi_media=[]
                )
                album_id = next(self._ids)
                messages += await self._call(
                    request,
                    functools.partial(_deliver, self, entity, key, group, texts, album_id, options),
                )
            return messages
        except Exception as exc:
            self._record_failure(entity, exc)
            raise

    def wait_for_files(self: _Host, count: int, timeout: float = 5.0) -> list[SentFile]:
        """Block until ``count`` files were sent; return them all (``TimeoutError`` if not)."""
        self._refuse_on_own_loop("wait_for_files", "wait_for_files_async")
        return self._signal.block(_until_files(self, count, timeout), timeout)

    async def wait_for_files_async(self: _Host, count: int, timeout: float = 5.0) -> list[SentFile]:
        """``wait_for_files`` without blocking the event loop."""
        return await self._signal.wait(_until_files(self, count, timeout), timeout)


def _until_files(host: _Host, count: int, timeout: float) -> Until[list[SentFile]]:
    def shortfall() -> str:
        got = [(f.chat, f.filename, f.size) for f in host.sent_files[:10]]
        return (
            f"expected {count} sent files within {timeout}s, "
            f"{len(host.sent_files)} arrived: {got!r}"
        )

    return at_least(host.sent_files, count, shortfall)


def caption_text(
    host: _Host, caption: str, parse_mode: Any, formatting_entities: list[Any] | None
) -> str:
    """``caption`` as Telegram keeps it (markup parsed); ``MediaCaptionTooLongError`` if long."""
    text = caption
    if formatting_entities is None and caption:
        mode = utils.sanitize_parse_mode(host.parse_mode if parse_mode == () else parse_mode)
        if mode:
            text, _ = mode.parse(caption)
    if utf16_len(text) > CAPTION_LIMIT:
        raise errors.MediaCaptionTooLongError(request=None)
    return str(text)
