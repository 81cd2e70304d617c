"""Message models shared by the async core, the backends and the blocking facade."""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = [
    "Attachment",
    "IncomingMessage",
    "MessageHandler",
    "MessageSeverity",
    "OnMessageHandler",
    "OutgoingMessage",
]


class MessageSeverity(StrEnum):
    """Severity of a message; members compare in order DEBUG < INFO < ... < CRITICAL."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position of this severity, 0 for DEBUG up to 4 for CRITICAL."""
        return _RANKS[self]

    @classmethod
    def coerce(cls, value: MessageSeverity | str) -> MessageSeverity:
        """Return the member for ``value`` (a member or its name or value, any case)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            choices = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown severity {value!r}: use one of {choices}") from None

    def _other_rank(self, other: object) -> int | None:
        if isinstance(other, MessageSeverity):
            return other.rank
        if isinstance(other, str):
            try:
                return MessageSeverity.coerce(other).rank
            except ValueError:
                # Falling back to str ordering would compare alphabetically: refuse.
                raise TypeError(f"cannot compare a severity with {other!r}") from None
        return None

    # StrEnum would compare alphabetically ("critical" < "debug"); severities compare
    # by rank instead, also against their plain string values.
    def __lt__(self, other: object) -> bool:
        rank = self._other_rank(other)
        if rank is None:
            return NotImplemented
        return self.rank < rank

    def __le__(self, other: object) -> bool:
        rank = self._other_rank(other)
        if rank is None:
            return NotImplemented
        return self.rank <= rank

    def __gt__(self, other: object) -> bool:
        rank = self._other_rank(other)
        if rank is None:
            return NotImplemented
        return self.rank > rank

    def __ge__(self, other: object) -> bool:
        rank = self._other_rank(other)
        if rank is None:
            return NotImplemented
        return self.rank >= rank

    __hash__ = StrEnum.__hash__


_RANKS: dict[MessageSeverity, int] = {member: index for index, member in enumerate(MessageSeverity)}


_DEFAULT_CONTENT_TYPE = "application/octet-stream"
_MIME_WORD = r"[A-Za-z0-9!#$&^_.+-]+"
_CONTENT_TYPE = re.compile(
    rf'{_MIME_WORD}/{_MIME_WORD}(?:\s*;\s*{_MIME_WORD}=(?:{_MIME_WORD}|"[^"\\\x00-\x1f\x7f]*"))*'
)
_BAD_FILENAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


def format_size(size: int) -> str:
    """``size`` bytes for people: ``512 B``, ``12.1 KiB``, ``20.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _guess_content_type(filename: str) -> str:
    import mimetypes  # on first use: it reads the system's type tables

    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or _DEFAULT_CONTENT_TYPE


class Attachment(BaseModel):
    """A file sent with a message: a name, a content type and the bytes.

    The bytes never appear in a repr, a log line or a JSON dump (the repr shows name,
    type and size); ``model_dump(mode="json", context={"attachment_data": True})``
    includes them, base64 encoded. Build one with ``from_path``, ``from_bytes``,
    ``from_figure`` (matplotlib) or ``from_image`` (Pillow).
    """

    # Errors never echo the input: it would carry the file's bytes.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        ser_json_bytes="base64",
        val_json_bytes="base64",
        hide_input_in_errors=True,
    )

    filename: str = Field(min_length=1, description="The file name shown to the recipient")
    content_type: str = Field(
        default=_DEFAULT_CONTENT_TYPE, description="MIME type, e.g. image/png"
    )
    data: bytes = Field(repr=False, description="The file's content")

    @model_validator(mode="before")
    @classmethod
    def _fill_content_type(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = dict(values)
            values.pop("size", None)  # written by dumps; derived from the data
            if values.get("content_type") is None and isinstance(values.get("filename"), str):
                # Guessed from the name when not given (None included).
                values["content_type"] = _guess_content_type(values["filename"])
        return values

    @field_validator("filename")
    @classmethod
    def _bare_filename(cls, value: str) -> str:
        if _BAD_FILENAME_CHARS.search(value) or value.strip() in ("", ".", ".."):
            raise ValueError(
                f"{value!r} is not a bare file name (no folder separators, line breaks "
                "or control characters)"
            )
        return value

    @field_validator("content_type")
    @classmethod
    def _valid_content_type(cls, value: str) -> str:
        value = value.strip()
        if not _CONTENT_TYPE.fullmatch(value):
            raise ValueError(f"{value!r} is not a MIME type such as image/png or text/plain")
        return value

    @property
    def size(self) -> int:
        """Size of the data in bytes."""
        return len(self.data)

    @property
    def is_image(self) -> bool:
        """True for a PNG or JPEG image (what chat services show as a photo)."""
        return self.content_type.split(";", 1)[0].strip().lower() in _PHOTO_TYPES

    def describe(self) -> str:
        """``name (type, size)``, as console lines and errors show an attachment."""
        return f"{self.filename} ({self.content_type}, {format_size(self.size)})"

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "filename", self.filename
        yield "content_type", self.content_type
        yield "size", self.size

    @model_serializer(mode="plain")
    def _serialize(self, info: SerializationInfo) -> dict[str, Any]:
        out: dict[str, Any] = {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
        }
        if not info.mode_is_json():
            out["data"] = self.data
        elif isinstance(info.context, dict) and info.context.get("attachment_data"):
            out["data"] = base64.b64encode(self.data).decode("ascii")
        return out

    # -- constructors ---------------------------------------------------------------

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, filename: str, *, content_type: str | None = None
    ) -> Attachment:
        """An attachment of ``data`` named ``filename`` (type guessed from the name)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"attachment data must be bytes, not {type(data).__name__}")
        return cls._make(filename, content_type, bytes(data))

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Attachment:
        """The file at ``path``, read now (a later change to the file changes nothing)."""
        target = Path(os.fspath(path)).expanduser()
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"attachment {str(path)!r}: no such file") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"attachment {str(path)!r} is a folder, not a file") from None
        except PermissionError:
            raise PermissionError(
                f"attachment {str(path)!r} cannot be read: permission denied"
            ) from None
        except OSError as exc:
            raise OSError(
                f"attachment {str(path)!r} cannot be read: {exc.strerror or exc}"
            ) from exc
        return cls._make(filename or target.name, content_type, data)

    @classmethod
    def _make(cls, filename: str, content_type: str | None, data: bytes) -> Attachment:
        if content_type is None:
            return cls(filename=filename, data=data)
        return cls(filename=filename, content_type=content_type, data=data)

    @classmethod
    def from_figure(
        cls, figure: Any, *, filename: str = "figure.png", dpi: float | None = None
    ) -> Attachment:
        """A PNG of ``figure`` (anything with matplotlib's ``savefig``), drawn now."""
        options: dict[str, Any] = {"format": "png"}
        if dpi is not None:
            options["dpi"] = dpi
        needs = "from_figure needs a figure with a savefig() method (matplotlib)"
        return cls._png(figure, "savefig", needs, filename, options)

    @classmethod
    def from_image(cls, image: Any, *, filename: str = "image.png") -> Attachment:
        """A PNG of ``image`` (anything with Pillow's ``save``), encoded now."""
        needs = "from_image needs an image with a save() method (Pillow)"
        return cls._png(image, "save", needs, filename, {"format": "PNG"})

    @classmethod
    def _png(
        cls, source: Any, method: str, needs: str, filename: str, options: dict[str, Any]
    ) -> Attachment:
        """``source.<method>(buffer, **options)`` written into a PNG attachment."""
        write = getattr(source, method, None)
        if not callable(write):
            raise TypeError(f"{needs}, not {type(source).__name__}")
        buffer = io.BytesIO()
        write(buffer, **options)
        return cls(filename=filename, content_type="image/png", data=buffer.getvalue())

    @classmethod
    def coerce(cls, item: Any) -> Attachment:
        """``item`` as an attachment: an ``Attachment``, a path, a figure or an image.

        Raises ``TypeError`` for anything else and ``OSError`` for a path that cannot be
        read, naming it.
        """
        if isinstance(item, Attachment):
            return item
        if isinstance(item, str | os.PathLike):
            return cls.from_path(item)
        if callable(getattr(item, "savefig", None)):
            return cls.from_figure(item)
        if callable(getattr(item, "save", None)) and hasattr(item, "mode"):
            return cls.from_image(item)
        if isinstance(item, bytes | bytearray | memoryview):
            raise TypeError("bytes need a file name: pass Attachment.from_bytes(data, 'name.ext')")
        raise TypeError(
            f"cannot attach a {type(item).__name__}: pass an Attachment, a path (str or "
            "os.PathLike), a matplotlib figure or a Pillow image"
        )


_PHOTO_TYPES = frozenset({"image/png", "image/jpeg"})


def coerce_attachments(items: Iterable[Any] | Any) -> list[Attachment]:
    """Convert ``items`` (one or a list) to attachments now; the first bad one raises."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        raise TypeError(
            "attachments must be a list of Attachment objects, paths, figures or images, "
            "not a mapping"
        )
    single = (Attachment, str, os.PathLike, bytes, bytearray, memoryview)
    if isinstance(items, single) or not isinstance(items, Iterable):
        items = [items]
    return [Attachment.coerce(item) for item in items]


class OutgoingMessage(BaseModel):
    """A message to send via a communicator backend."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="The message body")
    label: str = Field(default="default", min_length=1, description="Routing label")
    source: str | None = Field(
        default=None, description="Identifier of the component that produced the message"
    )
    severity: MessageSeverity = Field(default=MessageSeverity.INFO, description="Severity level")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Arbitrary metadata")
    subject: str | None = Field(
        default=None, description="Optional subject line (used by email backend)"
    )
    attachments: list[Attachment] = Field(
        default_factory=list, description="Files sent with the message"
    )

    @model_validator(mode="after")
    def _valid_text(self) -> OutgoingMessage:
        # A lone surrogate (text decoded with errors="surrogateescape") cannot be encoded
        # by any backend: refuse it here, naming the field, not as a UnicodeEncodeError
        # deep inside one. One check for every field keeps the cost of a send low.
        for field in ("message", "subject", "source", "label"):
            text = getattr(self, field)
            if text is not None and not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise ValueError(
                        f"{field} holds a lone surrogate ({text[exc.start]!r} at index "
                        f"{exc.start}), which is not valid text: decode bytes with "
                        "errors='replace'"
                    ) from None
        return self


class IncomingMessage(BaseModel):
    """A message received from a communicator backend (published as event)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str = Field(description="Message text")
    sender: str | None = Field(default=None, description="Human-readable sender name")
    sender_id: str | None = Field(default=None, description="Backend-specific sender identifier")
    chat_label: str = Field(default="default", description="Label of the chat that received it")
    backend_name: str = Field(default="", description="Name of the communicator that received it")
    timestamp: datetime | None = Field(default=None, description="Message timestamp")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Arbitrary metadata")
    raw_event: Any = Field(
        default=None, exclude=True, repr=False, description="Backend-specific raw event object"
    )


MessageHandler = Callable[[IncomingMessage], Awaitable[None]]
"""Type alias for async functions that handle incoming messages."""

OnMessageHandler = Callable[[IncomingMessage], Awaitable[None] | None]
"""What ``Notifier.on_message`` takes: a sync function, or an async one (``MessageHandler``)."""
