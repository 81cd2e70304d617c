"""Message models: severity order, defaults, validation and serialization."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from processpype.communications.models import IncomingMessage, MessageSeverity, OutgoingMessage


def test_severities_compare_in_order() -> None:
    order = [
        MessageSeverity.DEBUG,
        MessageSeverity.INFO,
        MessageSeverity.WARNING,
        MessageSeverity.ERROR,
        MessageSeverity.CRITICAL,
    ]
    alphabetical = sorted(order, key=lambda member: member.value)
    assert sorted(alphabetical) == order
    assert MessageSeverity.DEBUG < MessageSeverity.CRITICAL
    assert MessageSeverity.ERROR >= MessageSeverity.WARNING
    assert not MessageSeverity.INFO > MessageSeverity.WARNING


def test_severity_compares_with_its_string_value() -> None:
    assert MessageSeverity.ERROR > "warning"
    assert MessageSeverity.INFO <= "INFO"
    assert str(MessageSeverity.ERROR) == "error"


def test_severity_against_unknown_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _ = MessageSeverity.ERROR < "loud"


def test_severity_coerce_accepts_names_in_any_case_and_names_choices_on_error() -> None:
    assert MessageSeverity.coerce("Warning") is MessageSeverity.WARNING
    with pytest.raises(ValueError, match="debug, info, warning, error, critical"):
        MessageSeverity.coerce("loud")


def test_outgoing_message_defaults_match_the_reference() -> None:
    message = OutgoingMessage(message="Deployment complete")
    assert message.label == "default"
    assert message.source is None
    assert message.severity is MessageSeverity.INFO
    assert message.metadata == {}
    assert message.subject is None


def test_outgoing_message_refuses_an_empty_label() -> None:
    with pytest.raises(ValidationError, match="label"):
        OutgoingMessage(message="x", label="")


def test_outgoing_message_metadata_is_not_shared_between_instances() -> None:
    first = OutgoingMessage(message="a")
    first.metadata["k"] = 1
    assert OutgoingMessage(message="b").metadata == {}


def test_incoming_message_excludes_raw_event_from_serialization() -> None:
    raw = object()
    message = IncomingMessage(
        text="/status",
        sender="ann",
        sender_id="42",
        chat_label="ops",
        backend_name="tg",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        raw_event=raw,
    )
    assert message.raw_event is raw
    assert "raw_event" not in message.model_dump()
    assert "raw_event" not in message.model_dump_json()
    assert "raw_event" not in repr(message)


def test_incoming_message_defaults_match_the_reference() -> None:
    message = IncomingMessage(text="hi")
    assert message.sender is None
    assert message.sender_id is None
    assert message.chat_label == "default"
    assert message.backend_name == ""
    assert message.timestamp is None
    assert message.metadata == {}
    assert message.raw_event is None
