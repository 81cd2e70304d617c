"""Attachment limits shared by the backends: what is over, said the same way everywhere."""

from __future__ import annotations

from collections.abc import Sequence

from processpype.foundation.models import Attachment, format_size

__all__ = ["count_problem", "each_problem", "total_problem"]

_LISTED = 5
"""Files named in a limit error, largest first."""


def _sized(attachment: Attachment) -> str:
    return f"{attachment.filename} ({format_size(attachment.size)}, {attachment.size} bytes)"


def total_problem(attachments: Sequence[Attachment], limit: int, setting: str) -> str | None:
    """Why ``attachments`` exceed ``limit`` bytes in total (None when they fit).

    The text names the largest files, their sizes, the total and the setting to raise.
    """
    total = sum(a.size for a in attachments)
    if total <= limit:
        return None
    largest = sorted(attachments, key=lambda a: a.size, reverse=True)
    named = ", ".join(_sized(a) for a in largest[:_LISTED])
    if len(largest) > _LISTED:
        named += f" and {len(largest) - _LISTED} more"
    what = "the attachment" if len(attachments) == 1 else "the attachments"
    size = "is" if len(attachments) == 1 else "total"
    return (
        f"{what} {size} {format_size(total)} ({total} bytes), over the limit of "
        f"{format_size(limit)} ({limit} bytes, {setting}): {named}"
    )


def each_problem(attachments: Sequence[Attachment], limit: int, what: str) -> str | None:
    """Why a file of ``attachments`` is larger than ``limit`` bytes (None when none is)."""
    for attachment in attachments:
        if attachment.size > limit:
            return (
                f"{_sized(attachment)} is over the limit of {format_size(limit)} "
                f"({limit} bytes) for {what}"
            )
    return None


def count_problem(attachments: Sequence[Attachment], limit: int, setting: str) -> str | None:
    """Why there are more than ``limit`` attachments (None when there are not)."""
    if len(attachments) <= limit:
        return None
    names = ", ".join(a.filename for a in attachments)
    return f"{len(attachments)} attachments, over the limit of {limit} ({setting}): {names}"
