"""Console backend: readable lines on stdout, JSON lines in a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processpype.communications.backends.console import ConsoleCommunicator
from processpype.communications.models import MessageSeverity, OutgoingMessage
from processpype.config.models import ConsoleCommunicatorConfig


@pytest.mark.asyncio
async def test_prints_one_line_per_message_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    console = ConsoleCommunicator("out", ConsoleCommunicatorConfig())
    await console.start()
    await console.send(
        OutgoingMessage(
            message="backup done", label="ops", source="cron", severity=MessageSeverity.WARNING
        )
    )
    await console.stop()
    assert capsys.readouterr().out == "[WARNING] ops (cron) backup done\n"


@pytest.mark.asyncio
async def test_stream_can_be_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    console = ConsoleCommunicator("out", ConsoleCommunicatorConfig(stream="stderr"))
    await console.start()
    await console.send(OutgoingMessage(message="x", subject="Deploy"))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "[INFO] default Deploy: x\n"


@pytest.mark.asyncio
async def test_path_appends_json_lines_with_every_field(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "notify.jsonl"
    console = ConsoleCommunicator("file", ConsoleCommunicatorConfig(path=str(target)))
    await console.start()
    await console.send(OutgoingMessage(message="héllo 🚀", metadata={"job": 7}))
    await console.send(OutgoingMessage(message="second", label="ops"))
    await console.stop()

    lines = target.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["message"] for r in records] == ["héllo 🚀", "second"]
    assert records[0]["metadata"] == {"job": 7}
    assert records[0]["severity"] == "info"
    assert records[1]["label"] == "ops"
    assert records[0]["backend"] == "file"
    assert "time" in records[0]


@pytest.mark.asyncio
async def test_reopening_appends_instead_of_truncating(tmp_path: Path) -> None:
    target = tmp_path / "n.jsonl"
    for text in ("one", "two"):
        console = ConsoleCommunicator("file", ConsoleCommunicatorConfig(path=str(target)))
        await console.start()
        await console.send(OutgoingMessage(message=text))
        await console.stop()
    assert len(target.read_text().splitlines()) == 2


@pytest.mark.asyncio
async def test_message_sent_before_start_still_goes_to_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "n.jsonl"
    console = ConsoleCommunicator("file", ConsoleCommunicatorConfig(path=str(target)))
    await console.send(OutgoingMessage(message="early"))
    await console.stop()
    assert json.loads(target.read_text())["message"] == "early"
    assert capsys.readouterr().out == ""
