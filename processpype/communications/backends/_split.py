"""Cutting a message's text into the pieces a chat service takes, for every backend.

``pack`` is the one splitter: it fills pieces greedily with units (lines, or the parts
of a line too long for a piece) while they fit ``limit`` under a pluggable ``length``
(``utf16_length``, UTF-16 code units, for Telegram and Discord; Slack's length of the
escaped text for Slack) and, optionally, ``max_lines`` lines. What a unit is, and how a
unit that does not fit is cut, is each service's policy, and what makes their pieces
differ:

- ``split_text`` (the webhooks): lines as ``str.splitlines`` cuts them; a longer line
  cut between words, a longer word anywhere; pieces of only whitespace are dropped.
  ``split_keeping_fences`` closes a code block at a piece's end and reopens it in the
  next (Slack and Discord).
- ``_telegram_text.split_text``: lines end at ``\\n`` only (as Telegram counts them), at
  most 30 a piece; a long line is cut at its last whitespace, never inside a visible
  character; joined, the pieces give back the text.

The cap on how many pieces one long text becomes (``max_parts`` on chat backends):
splitting has no natural end (10 MB of text is 2,560 Telegram messages, hours of a
group's rate limit). ``split_capped`` splits only what the pieces sent can hold; past
``max_parts`` pieces the rest is replaced by one line saying how much was cut
(``cut_ending``), and the delivery result's ``warnings`` says so too. ``cap_parts`` does
it all for plain text; Telegram's ``prepare_capped`` for its formatted chunks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = [
    "Spill",
    "cap_parts",
    "cut_ending",
    "notice_room",
    "pack",
    "split_capped",
    "split_keeping_fences",
    "split_text",
    "utf16_length",
]

Spill = Callable[[str, int], list[str]]
"""``spill(unit, room)``: a unit that does not fit, as a first part for the current piece
(at most ``room``) and parts that each start a new piece."""


def utf16_length(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (a character outside the BMP counts 2)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _next_piece(unit: str, room: int) -> list[str]:
    """The default spill: a unit that does not fit starts the next piece whole."""
    return ["", unit]


def pack(
    units: Iterable[str],
    limit: int,
    *,
    length: Callable[[str], int] = utf16_length,
    max_lines: int | None = None,
    spill: Spill = _next_piece,
) -> list[str]:
    """Join ``units`` into pieces of at most ``limit`` (by ``length``) and ``max_lines``.

    A unit is added to the current piece while it fits (and the piece has fewer than
    ``max_lines`` line breaks); otherwise ``spill`` cuts it (by default it starts the
    next piece whole). Joined, the pieces give back the units; the last is never empty.
    """
    pieces: list[str] = []
    current: list[str] = []
    room = limit
    lines = 0
    for unit in units:
        cost = length(unit)
        if cost <= room and (max_lines is None or lines < max_lines):
            current.append(unit)
            room -= cost
            lines += unit.endswith("\n")
            continue
        first, *rest = spill(unit, room)
        if first:
            current.append(first)
            room -= length(first)
            lines += first.endswith("\n")
        for part in rest:
            pieces.append("".join(current))
            current, room, lines = [part], limit - length(part), int(part.endswith("\n"))
    if current:
        pieces.append("".join(current))
    return pieces


# -- the webhooks' policy ------------------------------------------------------------------

_WORDS = re.compile(r"\S+|\s+")


def split_text(text: str, limit: int, *, cost: Callable[[str], int] = utf16_length) -> list[str]:
    """Split ``text`` into chunks whose ``cost`` is at most ``limit``.

    Cuts fall at line breaks where possible, else between words, else inside a word.
    Joined, the chunks give back ``text``, except that chunks holding only whitespace
    are dropped (services refuse empty messages). A single character must cost no more
    than ``limit``.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if cost(text) <= limit:
        return [text]

    def spill(unit: str, room: int) -> list[str]:
        if cost(unit) <= limit and not unit.isspace():
            return ["", unit]  # a whole line or word that fits a chunk of its own starts one
        # Whitespace, or a word longer than a chunk: fill this chunk up, go on in the next.
        return _cut(unit, room, limit, cost)

    chunks = pack(_units(text, limit, cost), limit, length=cost, spill=spill)
    return [chunk for chunk in chunks if chunk.strip()]


def _units(text: str, limit: int, cost: Callable[[str], int]) -> list[str]:
    """The lines of ``text``, with the lines over ``limit`` broken into words and spaces."""
    units: list[str] = []
    for line in text.splitlines(keepends=True):
        if cost(line) <= limit:
            units.append(line)
        else:
            units.extend(_WORDS.findall(line))
    return units


def _cut(unit: str, room: int, limit: int, cost: Callable[[str], int]) -> list[str]:
    """Cut ``unit`` into a first piece of at most ``room``, then pieces of ``limit``."""
    pieces: list[str] = []
    start = used = 0
    capacity = room
    for index, char in enumerate(unit):
        char_cost = cost(char)
        if used + char_cost > capacity and (index > start or capacity < limit):
            pieces.append(unit[start:index])
            start, used, capacity = index, 0, limit
        used += char_cost
    pieces.append(unit[start:])
    return pieces


_FENCE = "```"


def split_keeping_fences(text: str, limit: int, cost: Callable[[str], int]) -> list[str]:
    """``split_text``, then close a code block at a chunk's end and reopen it in the next."""
    if _FENCE not in text:
        return split_text(text, limit, cost=cost)
    opener, closer = _FENCE + "\n", "\n" + _FENCE
    pieces = split_text(text, limit - cost(opener) - cost(closer), cost=cost)
    if len(pieces) == 1:
        return pieces
    chunks: list[str] = []
    inside = False
    for piece in pieces:
        chunk = opener + piece if inside else piece
        if piece.count(_FENCE) % 2:
            inside = not inside
        if inside:
            chunk += closer
        chunks.append(chunk)
    return chunks


# -- max_parts -----------------------------------------------------------------------------


def _prefix_to_split(text: str, max_parts: int, limit: int) -> str:
    """Enough of ``text`` to fill ``max_parts`` pieces of ``limit``, so a huge text is not
    split whole only to throw most of it away (every character costs at least 1)."""
    return text[: 4 * max_parts * limit]


def notice_room(limit: int, max_parts: int, length: Callable[[str], int]) -> int:
    """How much text the last piece keeps before the cut notice (whose number grows by a
    few digits at most)."""
    return limit - length(_cut_notice(0, max_parts)) - 16


def cut_ending(text: str, sent: int, max_parts: int) -> tuple[str, str]:
    """The line that ends the last piece, and the warning, when ``sent`` characters of
    ``text`` go out."""
    cut = max(0, len(text) - sent)
    warning = (
        f"the text was cut after {max_parts} part(s): {cut:,} characters were not sent (max_parts)"
    )
    return _cut_notice(cut, max_parts), warning


def _cut_notice(cut_chars: int, max_parts: int) -> str:
    return f"\n… {cut_chars:,} more characters cut: the message was longer than {max_parts} parts"


def split_capped[Piece](
    text: str,
    limit: int,
    max_parts: int,
    split: Callable[[str], list[Piece]],
    *,
    at_line_end: bool = False,
) -> list[Piece]:
    """``split(text)``; of a huge text only a prefix, enough for more than ``max_parts``.

    The prefix ends at a line end when ``at_line_end`` and one is in its second half
    (where no markup is likely to be open). When the prefix gives ``max_parts`` pieces
    or fewer (the rest was mostly blank), the whole text is split after all. The caller
    keeps the first ``max_parts`` pieces.
    """
    if max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, not {max_parts}")
    prefix = _prefix_to_split(text, max_parts, limit)
    if at_line_end and len(prefix) < len(text):
        line_end = prefix.rfind("\n")
        if line_end > len(prefix) // 2:
            prefix = prefix[: line_end + 1]
    pieces = split(prefix)
    if len(pieces) <= max_parts and len(prefix) < len(text):
        pieces = split(text)
    return pieces


def cap_parts(
    text: str,
    limit: int,
    max_parts: int,
    split: Callable[[str], list[str]],
    cost: Callable[[str], int] = utf16_length,
) -> tuple[list[str], str | None]:
    """``split(text)``, at most ``max_parts`` pieces of at most ``limit``; and a warning.

    Past the cap, the last piece ends with a line saying how many characters were cut,
    and the warning says the same; without a cut the warning is None.
    """
    chunks = split_capped(text, limit, max_parts, split)
    if len(chunks) <= max_parts:
        return chunks, None
    kept = chunks[:max_parts]
    last = kept[-1]
    room = notice_room(limit, max_parts, cost)
    # Cut by the excess each time (Telegram's formatted chunks keep the longest prefix
    # that fits instead): each backend's pieces stay as they were.
    while last and cost(last) > room:
        last = last[: max(0, len(last) - max(1, cost(last) - room))]
    notice, warning = cut_ending(
        text, sum(len(chunk) for chunk in kept[:-1]) + len(last), max_parts
    )
    kept[-1] = last + notice
    return kept, warning
