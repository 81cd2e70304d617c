"""Splitting message text into pieces Telegram accepts: nothing lost, added or reordered."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telethon.extensions import html
from telethon.tl.types import MessageEntityBold

from processpype.communications.backends._telegram_text import (
    prepare_chunks,
    split_formatted,
    split_text,
    utf16_len,
)

# Newlines, spaces, ASCII, accents, combining marks, emoji (two UTF-16 units each).
_ALPHABET = st.sampled_from(
    ["\n", " ", "\t", "a", "b", "Z", "é", "\u0301", "\u200d", "😀", "👍", "中", "<", "&"]
)
_TEXTS = st.lists(_ALPHABET, max_size=400).map("".join) | st.text(max_size=300)


def _line_count(chunk: str) -> int:
    return chunk.removesuffix("\n").count("\n") + 1


@settings(max_examples=300, deadline=None)
@given(
    text=_TEXTS,
    max_lines=st.integers(min_value=1, max_value=6),
    max_units=st.integers(min_value=2, max_value=40),
)
def test_chunks_rebuild_the_text_within_line_and_unit_limits(
    text: str, max_lines: int, max_units: int
) -> None:
    chunks = split_text(text, max_lines=max_lines, max_units=max_units)

    assert "".join(chunks) == text
    assert all(chunks)
    for chunk in chunks:
        assert utf16_len(chunk) <= max_units
        assert _line_count(chunk) <= max_lines


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdéxyz😀", min_size=1, max_size=8), min_size=1))
def test_long_line_splits_only_at_whitespace_when_words_fit(words: list[str]) -> None:
    text = " ".join(words)

    chunks = split_text(text, max_units=20)

    for chunk in chunks[:-1]:
        assert chunk.endswith(" ")


def test_default_limits_are_30_lines_and_4096_units() -> None:
    text = "".join(f"line {n}\n" for n in range(95))

    chunks = split_text(text)

    assert [_line_count(c) for c in chunks] == [30, 30, 30, 5]
    assert "".join(chunks) == text


def test_line_longer_than_a_message_splits_at_its_last_space() -> None:
    text = "word " * 1000  # 5000 units on one line

    chunks = split_text(text)

    assert len(chunks) == 2
    assert utf16_len(chunks[0]) <= 4096
    assert chunks[0].endswith("word ")
    assert "".join(chunks) == text


def test_emoji_count_two_units_and_are_never_cut() -> None:
    text = "😀" * 3000  # 6000 units, no whitespace

    chunks = split_text(text)

    assert [utf16_len(c) for c in chunks] == [4096, 1904]
    assert "".join(chunks) == text


def test_hard_cut_keeps_combining_sequences_whole() -> None:
    text = "e\u0301" * 3  # é as e + combining acute

    chunks = split_text(text, max_units=3)

    assert all(not chunk.startswith("\u0301") for chunk in chunks)
    assert "".join(chunks) == text


def test_empty_text_gives_no_chunks() -> None:
    assert split_text("") == []


def test_limits_below_one_line_or_one_emoji_are_refused() -> None:
    with pytest.raises(ValueError, match="max_lines"):
        split_text("x", max_lines=0)
    with pytest.raises(ValueError, match="max_units"):
        split_text("x", max_units=1)


@st.composite
def _formatted(draw: st.DrawFn) -> tuple[str, list[MessageEntityBold]]:
    text = draw(st.lists(_ALPHABET, min_size=1, max_size=200).map("".join))
    units = utf16_len(text)
    spans = draw(st.lists(st.tuples(st.integers(0, units), st.integers(1, units)), max_size=10))
    return text, [MessageEntityBold(offset, length) for offset, length in spans]


@settings(max_examples=200, deadline=None)
@given(formatted=_formatted(), max_units=st.integers(min_value=2, max_value=30))
def test_formatted_pieces_keep_every_entity_inside_its_piece(
    formatted: tuple[str, list[MessageEntityBold]], max_units: int
) -> None:
    text, entities = formatted

    pieces = split_formatted(text, entities, max_lines=3, max_units=max_units)

    for piece, piece_entities in pieces:
        assert piece.strip()
        assert utf16_len(piece) <= max_units
        for entity in piece_entities:
            assert entity.length > 0
            assert entity.offset >= 0
            assert entity.offset + entity.length <= utf16_len(piece)


def test_formatting_entities_stay_on_their_text_across_pieces() -> None:
    markup = "\n".join(f"<b>bold {n}</b> plain {n}" for n in range(70))
    plain, entities = html.parse(markup)

    pieces = split_formatted(plain, entities)

    assert len(pieces) == 3
    bold_texts = []
    for text, piece_entities in pieces:
        units = text.encode("utf-16-le")
        for entity in piece_entities:
            start, end = entity.offset * 2, (entity.offset + entity.length) * 2
            bold_texts.append(units[start:end].decode("utf-16-le"))
    assert bold_texts == [f"bold {n}" for n in range(70)]


def test_plain_chunks_drop_only_boundary_whitespace() -> None:
    text = "  indented first line\n" + "x\n" * 40

    chunks = prepare_chunks(text, None)

    assert chunks[0].text.startswith("  indented")
    assert all(not c.text.endswith("\n") for c in chunks)
    assert sum(c.text.count("x") for c in chunks) == 40


def test_whitespace_only_text_gives_no_chunks() -> None:
    assert prepare_chunks(" \n\n \t", None) == []
    assert prepare_chunks("<b> </b>", "html") == []


def test_short_markup_is_left_for_telethon_to_parse() -> None:
    chunks = prepare_chunks("<b>disk</b> full", "html")

    assert [(c.text, c.parse_mode, c.entities) for c in chunks] == [
        ("<b>disk</b> full", "html", None)
    ]
