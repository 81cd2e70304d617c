"""Split message text into pieces Telegram accepts (private to the Telegram backend).

Telegram takes 1 to 4096 characters per message, counted in UTF-16 code units after
entity parsing; we also cap a piece at 30 lines so long reports stay readable.
``split_text`` cuts at line ends, and cuts a line longer than a whole message at its
last whitespace (or, failing that, anywhere but inside a character or a combining
sequence). Joining the pieces gives back the text exactly. The pieces are packed by the
shared splitter (``_split.pack``, with the UTF-16 length and the line cap); what is
Telegram's here is what a line is and where a long one may be cut, and the formatting
entities that travel with each piece.
"""

from __future__ import annotations

import copy
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

from processpype.communications.backends._split import cut_ending, notice_room, pack, split_capped
from processpype.communications.backends._split import utf16_length as utf16_len

__all__ = [
    "MAX_CHUNK_LINES",
    "MAX_MESSAGE_UNITS",
    "Chunk",
    "prepare_capped",
    "prepare_chunks",
    "split_formatted",
    "split_text",
    "utf16_len",
]

logger = logging.getLogger("processpype.communications.telegram")

MAX_MESSAGE_UNITS = 4096
"""Telegram's limit of one text message, in UTF-16 code units after entity parsing."""

MAX_CHUNK_LINES = 30
"""Lines per message piece: a longer message goes out as several messages."""

_JOINERS = frozenset("\u200d\ufe0e\ufe0f")  # zero-width joiner, variation selectors


def _units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _lines(text: str) -> list[str]:
    # Only "\n" ends a line in a Telegram message; str.splitlines would also cut at
    # \r, \x0b, \x1c, \u2028 ... and change the line count.
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _inside_cluster(text: str, index: int) -> bool:
    """True when cutting before ``text[index]`` would split a visible character."""
    char = text[index]
    return bool(unicodedata.combining(char) or char in _JOINERS or text[index - 1] == "\u200d")


def _split_long_line(line: str, max_units: int) -> list[str]:
    """Cut one line into pieces of at most ``max_units``, at whitespace where it can."""
    pieces: list[str] = []
    start = 0
    remaining = utf16_len(line)
    while remaining > max_units:
        end = start
        units = 0
        while units + _units(line[end]) <= max_units:
            units += _units(line[end])
            end += 1
        cut = end
        for index in range(end - 1, start, -1):
            if line[index].isspace():
                cut = index + 1  # the whitespace stays at the end of this piece
                break
        else:
            while cut - 1 > start and _inside_cluster(line, cut):
                cut -= 1
        pieces.append(line[start:cut])
        remaining -= utf16_len(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return pieces


def split_text(
    text: str, *, max_lines: int = MAX_CHUNK_LINES, max_units: int = MAX_MESSAGE_UNITS
) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_lines`` lines and ``max_units`` units.

    ``"".join(split_text(text)) == text``; no piece is empty; an empty text gives [].
    """
    if max_lines < 1:
        raise ValueError(f"max_lines must be at least 1, got {max_lines}")
    if max_units < 2:
        raise ValueError(f"max_units must be at least 2 (one astral character), got {max_units}")
    segments = (
        segment
        for line in _lines(text)
        for segment in (
            [line] if utf16_len(line) <= max_units else _split_long_line(line, max_units)
        )
    )
    # A piece with n newlines shows n + 1 lines once another segment follows.
    return pack(segments, max_units, length=utf16_len, max_lines=max_lines)


def _trim(text: str) -> tuple[str, int]:
    """Drop trailing whitespace and leading blank lines; also return the units cut left."""
    stripped = text.rstrip()
    lead = len(stripped) - len(stripped.lstrip("\r\n"))
    return stripped[lead:], lead  # line breaks are one unit each


def _slice_entities(entities: list[Any], start: int, end: int) -> list[Any]:
    """The entities overlapping units [start, end), moved to start at 0 and clipped."""
    result = []
    for entity in entities:
        first = max(entity.offset, start)
        last = min(entity.offset + entity.length, end)
        if last <= first:
            continue
        piece = copy.copy(entity)
        piece.offset = first - start
        piece.length = last - first
        result.append(piece)
    return result


def split_formatted(
    text: str,
    entities: list[Any],
    *,
    max_lines: int = MAX_CHUNK_LINES,
    max_units: int = MAX_MESSAGE_UNITS,
) -> list[tuple[str, list[Any]]]:
    """Split parsed text and its formatting entities (UTF-16 offsets) into pieces.

    Each piece loses its trailing whitespace and leading blank lines (Telegram would
    drop them); pieces left empty are dropped.
    """
    pieces: list[tuple[str, list[Any]]] = []
    offset = 0
    for chunk in split_text(text, max_lines=max_lines, max_units=max_units):
        units = utf16_len(chunk)
        trimmed, lead = _trim(chunk)
        if trimmed:
            start = offset + lead
            end = start + utf16_len(trimmed)
            pieces.append((trimmed, _slice_entities(entities, start, end)))
        offset += units
    return pieces


@dataclass(frozen=True)
class Chunk:
    """One Telegram message of an outgoing message: text and how Telegram reads it.

    ``entities`` is None when Telegram (telethon) parses ``text`` with ``parse_mode``
    itself; otherwise ``text`` is already plain and ``entities`` holds its formatting.
    """

    text: str
    parse_mode: str | None = None
    entities: list[Any] | None = None


def prepare_chunks(text: str, parse_mode: str | None) -> list[Chunk]:
    """The messages that carry ``text`` to Telegram; [] when nothing visible is left."""
    if parse_mode is not None:
        parsed = _parse(text, parse_mode)
        if parsed is not None:
            plain, entities = parsed
            if len(split_text(plain)) <= 1:
                # Fits in one message: let telethon parse the markup itself, so it
                # also resolves mentions the way it always does.
                return [Chunk(text, parse_mode)] if plain.strip() else []
            return [
                Chunk(piece, parse_mode, piece_entities)
                for piece, piece_entities in split_formatted(plain, entities)
            ]
    chunks = []
    for piece in split_text(text):
        trimmed, _ = _trim(piece)
        if trimmed:
            chunks.append(Chunk(trimmed, None))
    return chunks


def prepare_capped(
    text: str, parse_mode: str | None, max_parts: int
) -> tuple[list[Chunk], str | None]:
    """``prepare_chunks``, at most ``max_parts`` messages; and a warning when text was cut.

    Past the cap, the last message ends with a line saying how much was cut. Only a
    prefix of a huge text is split: enough to fill the messages that are sent.
    """
    chunks = split_capped(
        text,
        MAX_MESSAGE_UNITS,
        max_parts,
        lambda part: prepare_chunks(part, parse_mode),
        at_line_end=True,  # where no markup tag or entity is likely to be open
    )
    if len(chunks) <= max_parts:
        return chunks, None
    kept = chunks[:max_parts]
    last = kept[-1]
    room = notice_room(MAX_MESSAGE_UNITS, max_parts, utf16_len)
    body = last.text
    if utf16_len(body) > room:
        body = body[:room]
        while utf16_len(body) > room:
            body = body[:-1]
    sent = sum(len(chunk.text) for chunk in kept[:-1]) + len(body)
    notice, warning = cut_ending(text, sent, max_parts)
    entities = last.entities
    if entities is not None:
        entities = _slice_entities(entities, 0, utf16_len(body))
    kept[-1] = Chunk(body + notice, last.parse_mode, entities)
    return kept, warning


def _parse(text: str, parse_mode: str) -> tuple[str, list[Any]] | None:
    from telethon import utils

    parser = utils.sanitize_parse_mode(parse_mode)
    try:
        plain, entities = parser.parse(text)
    except Exception as exc:  # a parser bug must not lose the message
        logger.warning(
            "could not parse a message as %s (%s); it is sent as plain text",
            parse_mode,
            type(exc).__name__,
        )
        return None
    return str(plain), list(entities)
