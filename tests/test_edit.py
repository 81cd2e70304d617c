"""Editing a sent message: references in results, Notifier.edit, recording and console."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from processpype import Notifier
from processpype.communications.models import MessageSeverity
from processpype.testing.recording import RecordingCommunicator


def recording(**backends: dict[str, object]) -> dict[str, Any]:
    return {
        "enabled": True,
        "backends": {name: {"type": "recording", **extra} for name, extra in backends.items()},
    }


def recorder(notifier: Notifier, name: str = "rec") -> RecordingCommunicator:
    backend = notifier.communicator(name)
    assert isinstance(backend, RecordingCommunicator)
    return backend


def test_a_delivered_result_names_what_was_posted(processpype_notifier: Any) -> None:
    notifier = processpype_notifier(recording(rec={}))

    first = notifier.send("one")
    second = notifier.send("two")

    assert first.results[0].reference == ("0",)
    assert second.results[0].reference == ("1",)


def test_edit_changes_the_message_in_place(processpype_notifier: Any) -> None:
    notifier = processpype_notifier(recording(rec={}))
    report = notifier.send("upload: 0 of 10", subject="upload")

    edited = notifier.edit(report, "upload: 10 of 10", severity="warning")

    rec = recorder(notifier)
    assert edited.ok
    assert edited.results[0].status == "delivered"
    assert rec.edits[0].reference == ("0",)
    assert rec.current_text(("0",)) == "upload: 10 of 10"
    assert rec.edits[0].message.subject == "upload"  # fields not given are kept
    assert rec.edits[0].message.severity is MessageSeverity.WARNING
    assert rec.texts == ["upload: 0 of 10"]  # nothing new was posted


def test_edit_skips_a_backend_that_cannot_edit(processpype_notifier: Any) -> None:
    notifier = processpype_notifier(recording(rec={}, plain={"editing": False}))
    report = notifier.send("first")

    edited = notifier.edit(report, "second")

    plain = edited.result_for("plain")
    assert plain is not None
    assert plain.status == "skipped"
    assert plain.error == "this backend cannot edit messages"
    assert recorder(notifier, "plain").texts == ["first"]
    assert recorder(notifier, "rec").current_text(("0",)) == "second"


def test_edit_skips_a_backend_where_the_message_was_not_delivered(
    processpype_notifier: Any,
) -> None:
    notifier = processpype_notifier(recording(rec={}))
    recorder(notifier).fail_next(ConnectionError("down"))
    report = notifier.send("first")
    assert not report.ok

    edited = notifier.edit(report, "second")

    assert edited.results[0].status == "skipped"
    assert "not delivered" in (edited.results[0].error or "")


def test_edit_refuses_to_change_the_label(processpype_notifier: Any) -> None:
    notifier = processpype_notifier(recording(rec={}))
    report = notifier.send("first")

    with pytest.raises(TypeError, match="label stays"):
        notifier.edit(report, "second", label="ops")


def test_edit_reports_a_failed_edit_without_raising(processpype_notifier: Any) -> None:
    notifier = processpype_notifier(recording(rec={}))
    report = notifier.send("first")
    recorder(notifier).fail_next(ConnectionError("went away"))

    edited = notifier.edit(report, "second")

    assert edited.results[0].status == "failed"
    assert "went away" in (edited.results[0].error or "")


@pytest.mark.asyncio
async def test_aedit_works_from_async_code(processpype_notifier: Any) -> None:
    notifier = processpype_notifier(recording(rec={}))
    report = await notifier.asend("first")

    edited = await notifier.aedit(report, "second")

    assert edited.ok
    assert recorder(notifier).current_text(("0",)) == "second"


def test_console_prints_the_new_text_of_an_edit(
    processpype_notifier: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    notifier = processpype_notifier({"enabled": True, "backends": {"out": {"type": "console"}}})
    report = notifier.send("rows: 10")

    notifier.edit(report, "rows: 20")
    notifier.flush()

    lines = capsys.readouterr().out.splitlines()
    assert lines == ["[INFO] default rows: 10", "[INFO] default (edit of #1) rows: 20"]


def test_console_json_lines_name_the_edited_message(
    processpype_notifier: Any, tmp_path: Path
) -> None:
    target = tmp_path / "log.jsonl"
    notifier = processpype_notifier(
        {"enabled": True, "backends": {"out": {"type": "console", "path": str(target)}}}
    )
    report = notifier.send("rows: 10")
    notifier.edit(report, "rows: 20")
    notifier.close()

    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["message"] for r in records] == ["rows: 10", "rows: 20"]
    assert "edit_of" not in records[0]
    assert records[1]["edit_of"] == "1"
