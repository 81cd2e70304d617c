"""Message models shared by the async core, the backends and the blocking facade."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "IncomingMessage",
    "MessageHandler",
    "MessageSeverity",
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
