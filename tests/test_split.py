"""The shared text splitter: every character kept in order, within the limit and line cap.

``pack`` is the one splitter; ``split_text`` is the webhooks' policy over it (Telegram's
is tested in test_telegram_split.py). The lengths are the ones the backends use.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processpype.communications.backends._split import pack, split_text, utf16_length
from processpype.communications.backends.webhook import SlackCommunicator

# Line breaks of every kind, spaces, ASCII, accents, combining marks, emoji (two UTF-16
# units each), and the characters Slack escapes.
_ALPHABET = st.sampled_from(
    ["\n", "\r", "\u2028", " ", "\t", "a", "b", "é", "\u0301", "\u200d", "😀", "中", "<", "&"]
)
_TEXTS = st.lists(_ALPHABET, max_size=300).map("".join) | st.text(max_size=200)
_LENGTHS: dict[str, Callable[[str], int]] = {
    "utf16 (Telegram, Discord)": utf16_length,
    "characters": len,
    "Slack's escaped text": SlackCommunicator._cost,
}


def _lines_of(text: str) -> list[str]:
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


@settings(max_examples=300, deadline=None)
@given(
    text=_TEXTS,
    limit=st.integers(min_value=5, max_value=40),
    max_lines=st.none() | st.integers(min_value=1, max_value=6),
    length_name=st.sampled_from(sorted(_LENGTHS)),
)
def test_pack_keeps_every_character_in_order_within_the_limit_and_the_line_cap(
    text: str, limit: int, max_lines: int | None, length_name: str
) -> None:
    length = _LENGTHS[length_name]
    # Units that fit a piece: each line, cut into characters where it is too long.
    units = [
        part
        for line in _lines_of(text)
        for part in ([line] if length(line) <= limit else list(line))
    ]

    pieces = pack(units, limit, length=length, max_lines=max_lines)

    assert "".join(pieces) == text
    assert all(pieces)
    for piece in pieces:
        assert length(piece) <= limit
        if max_lines is not None:
            assert piece.count("\n") <= max_lines


@settings(max_examples=300, deadline=None)
@given(
    text=_TEXTS,
    limit=st.integers(min_value=5, max_value=40),
    length_name=st.sampled_from(sorted(_LENGTHS)),
)
def test_webhook_split_keeps_every_visible_character_in_order_within_the_limit(
    text: str, limit: int, length_name: str
) -> None:
    length = _LENGTHS[length_name]

    chunks = split_text(text, limit, cost=length)

    assert "".join("".join(chunks).split()) == "".join(text.split())
    if length(text) > limit:
        assert all(chunk.strip() for chunk in chunks)
        assert all(length(chunk) <= limit for chunk in chunks)
    else:
        assert chunks == [text]


def test_pack_starts_a_piece_at_the_line_cap() -> None:
    assert pack(["a\n", "b\n", "c\n"], 100, max_lines=2) == ["a\nb\n", "c\n"]


def test_pack_hands_a_unit_that_does_not_fit_to_spill() -> None:
    def spill(unit: str, room: int) -> list[str]:
        return [unit[:room], unit[room:]]

    assert pack(["abc", "defgh"], 5, length=len, spill=spill) == ["abcde", "fgh"]


def test_utf16_length_counts_an_astral_character_twice() -> None:
    assert utf16_length("a😀é") == 4


def test_split_text_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_text("x", 0)
