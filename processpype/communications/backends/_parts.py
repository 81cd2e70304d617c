"""The cap on how many messages one long text becomes (``max_parts`` on chat backends).

Splitting has no natural end: 10 MB of text is 2,560 Telegram messages, hours of a
group's rate limit. Past ``max_parts`` pieces the rest of the text is replaced by one
line saying how much was cut, and the delivery result's ``warnings`` says so too.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_PARTS", "cut_notice", "cut_warning", "prefix_to_split"]

DEFAULT_MAX_PARTS = 10
"""Pieces one message may become by default."""


def cut_notice(cut_chars: int, max_parts: int) -> str:
    """The line that ends the last piece when the rest of the text was cut."""
    return f"\n… {cut_chars:,} more characters cut: the message was longer than {max_parts} parts"


def cut_warning(cut_chars: int, max_parts: int) -> str:
    """The warning of a delivery whose text was cut."""
    return (
        f"the text was cut after {max_parts} part(s): {cut_chars:,} characters were not "
        "sent (max_parts)"
    )


def prefix_to_split(text: str, max_parts: int, limit: int) -> str:
    """Enough of ``text`` to fill ``max_parts`` pieces of ``limit``, so a huge text is not
    split whole only to throw most of it away (every character costs at least 1)."""
    return text[: 4 * max_parts * limit]
