"""``ReceivedEmail``: a parsed message as the test SMTP server keeps it, with its files."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from processpype.testing._file_bytes import FileBytes

__all__ = ["ReceivedAttachment", "ReceivedEmail"]


@dataclass(frozen=True)
class ReceivedAttachment(FileBytes):
    """One attachment of a received email, decoded by the standard library's parser."""

    filename: str | None
    """The file name (RFC 2231 and RFC 2047 names decoded), or None when it has none."""
    content_type: str
    """The MIME type, without parameters (``image/png``)."""
    data: bytes
    """The decoded bytes."""


class ReceivedEmail(EmailMessage):
    """An ``EmailMessage`` (``email.policy.default``) with ``text`` and ``attachments``."""

    @property
    def text(self) -> str | None:
        """The plain-text body (the first ``text/plain`` part that is no attachment)."""
        body = self.get_body(preferencelist=("plain",))
        if body is None:
            return None
        content = body.get_content()
        return content if isinstance(content, str) else None

    @property
    def attachments(self) -> list[ReceivedAttachment]:
        """The attachments, in order, with their decoded bytes."""
        found: list[ReceivedAttachment] = []
        for part in self.iter_attachments():
            payload = part.get_payload(decode=True)
            found.append(
                ReceivedAttachment(
                    filename=part.get_filename(),
                    content_type=part.get_content_type(),
                    data=payload if isinstance(payload, bytes) else b"",
                )
            )
        return found
