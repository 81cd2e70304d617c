"""Attachments: the model, conversion at the call, the recorder and the console backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import processpype
from processpype.communications.backends.console import ConsoleCommunicator
from processpype.communications.delivery import DeliveryReport, DeliveryResult
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.config.models import ConsoleCommunicatorConfig
from processpype.testing.recording import RecordingCommunicator

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def notifier() -> Iterator[tuple[Notifier, RecordingCommunicator]]:
    recorder = RecordingCommunicator("rec")
    with Notifier({"enabled": True}) as notifier:
        notifier.add_communicator(recorder)
        yield notifier, recorder


# -- the model ------------------------------------------------------------------------


def test_attachment_is_exported_from_the_package_root() -> None:
    assert processpype.Attachment is Attachment


def test_repr_shows_name_type_and_size_but_never_the_bytes() -> None:
    attachment = Attachment.from_bytes(b"secret-bytes" * 10, "notes.txt")
    text = repr(attachment)
    assert text == "Attachment(filename='notes.txt', content_type='text/plain', size=120)"
    assert "secret-bytes" not in str(attachment)
    assert "secret-bytes" not in repr(OutgoingMessage(message="x", attachments=[attachment]))


def test_content_type_is_guessed_from_the_filename_or_octet_stream() -> None:
    assert Attachment.from_bytes(b"", "plot.png").content_type == "image/png"
    assert Attachment.from_bytes(b"", "table.csv").content_type == "text/csv"
    assert Attachment.from_bytes(b"", "blob.zzz-unknown").content_type == (
        "application/octet-stream"
    )
    assert Attachment.from_bytes(b"", "x.bin", content_type="image/webp").content_type == (
        "image/webp"
    )


def test_a_header_injection_in_the_content_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="is not a MIME type"):
        Attachment(filename="a.txt", content_type="text/plain\r\nBcc: x@example.com", data=b"")


@pytest.mark.parametrize("name", ["", "a/b.txt", "..", "line\nbreak.txt", "back\\slash"])
def test_a_filename_that_is_not_a_bare_name_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="filename"):
        Attachment(filename=name, data=b"")


def test_json_dumps_leave_the_bytes_out_unless_asked() -> None:
    message = OutgoingMessage(
        message="report", attachments=[Attachment.from_bytes(b"\xff\x00\x01", "r.bin")]
    )
    dumped = message.model_dump(mode="json")
    assert dumped["attachments"] == [
        {"filename": "r.bin", "content_type": "application/octet-stream", "size": 3}
    ]
    with_data = json.loads(message.model_dump_json(context={"attachment_data": True}))
    assert with_data["attachments"][0]["data"] == "/wAB"


def test_python_dumps_keep_the_bytes_and_round_trip() -> None:
    message = OutgoingMessage(
        message="report", attachments=[Attachment.from_bytes(b"\xff\x00\x01", "r.bin")]
    )
    assert message.model_dump()["attachments"][0]["data"] == b"\xff\x00\x01"
    assert OutgoingMessage.model_validate(message.model_dump()) == message
    as_json = message.model_dump_json(context={"attachment_data": True})
    assert OutgoingMessage.model_validate_json(as_json) == message


def test_from_path_reads_the_file_now(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_bytes(b"first")
    attachment = Attachment.from_path(path)
    path.write_bytes(b"changed")
    assert (attachment.filename, attachment.data) == ("log.txt", b"first")
    renamed = Attachment.from_path(str(path), filename="renamed.log", content_type="text/plain")
    assert (renamed.filename, renamed.content_type) == ("renamed.log", "text/plain")


def test_from_path_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.txt'?: no such file"):
        Attachment.from_path(tmp_path / "missing.txt")


def test_from_path_names_a_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder"):
        Attachment.from_path(tmp_path)


def test_from_figure_saves_a_real_matplotlib_figure_as_png() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1))
    figure.subplots().plot([1, 3, 2])
    attachment = Attachment.from_figure(figure, filename="loss.png", dpi=50)
    assert attachment.filename == "loss.png"
    assert attachment.content_type == "image/png"
    assert attachment.data.startswith(PNG_MAGIC)


def test_from_image_saves_a_real_pillow_image_as_png() -> None:
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.new("RGB", (4, 3), "red")
    attachment = Attachment.from_image(image)
    assert (attachment.filename, attachment.content_type) == ("image.png", "image/png")
    assert attachment.data.startswith(PNG_MAGIC)
    assert image_module.open(__import__("io").BytesIO(attachment.data)).size == (4, 3)


# -- Notifier: converted at the call --------------------------------------------------


def test_send_carries_paths_and_attachments_to_the_backend(
    notifier: tuple[Notifier, RecordingCommunicator], tmp_path: Path
) -> None:
    sender, recorder = notifier
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    extra = Attachment.from_bytes(b"\x00\x01", "raw.bin")
    sender.send("with files", attachments=[path, extra]).raise_for_errors()
    (message,) = recorder.messages
    assert [(a.filename, a.content_type, a.data) for a in message.attachments] == [
        ("data.csv", "text/csv", b"a,b\n1,2\n"),
        ("raw.bin", "application/octet-stream", b"\x00\x01"),
    ]
    assert recorder.attachments == message.attachments


def test_send_nowait_reads_the_file_before_returning(
    notifier: tuple[Notifier, RecordingCommunicator], tmp_path: Path
) -> None:
    sender, recorder = notifier
    path = tmp_path / "gone.txt"
    path.write_bytes(b"original")
    future = sender.send_nowait("x", attachments=[str(path)])
    path.unlink()
    future.result(timeout=5).raise_for_errors()
    assert recorder.attachments[0].data == b"original"


def test_a_figure_redrawn_after_send_nowait_does_not_change_what_is_sent(
    notifier: tuple[Notifier, RecordingCommunicator],
) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    sender, recorder = notifier
    figure = Figure(figsize=(2, 1))
    axes = figure.subplots()
    axes.plot([1, 2, 3])
    expected = Attachment.from_figure(figure).data
    future = sender.send_nowait("plot", attachments=[figure])
    axes.plot([3, 1, 2], color="red")
    future.result(timeout=5).raise_for_errors()
    assert recorder.attachments[0].data == expected


def test_a_missing_path_raises_at_the_call_and_nothing_is_queued(
    notifier: tuple[Notifier, RecordingCommunicator], tmp_path: Path
) -> None:
    sender, recorder = notifier
    good = tmp_path / "good.txt"
    good.write_text("ok")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        sender.send_nowait("x", attachments=[good, tmp_path / "nope.txt"])
    assert sender.in_flight == 0
    sender.send("after").raise_for_errors()
    assert recorder.texts == ["after"]


def test_an_object_of_another_kind_is_a_type_error_at_the_call(
    notifier: tuple[Notifier, RecordingCommunicator],
) -> None:
    sender, recorder = notifier
    with pytest.raises(TypeError, match="cannot attach a dict"):
        sender.send("x", attachments=[{"not": "a file"}])
    with pytest.raises(TypeError, match="from_bytes"):
        sender.send("x", attachments=[b"raw bytes"])
    assert recorder.messages == []


def test_asend_reads_paths_and_delivers(
    notifier: tuple[Notifier, RecordingCommunicator], tmp_path: Path
) -> None:
    sender, recorder = notifier
    path = tmp_path / "a.txt"
    path.write_bytes(b"async")

    async def main() -> DeliveryReport:
        return await sender.asend("x", attachments=[path])

    asyncio.run(main()).raise_for_errors()
    assert recorder.attachments[0].data == b"async"


def test_asend_raises_for_a_missing_path(
    notifier: tuple[Notifier, RecordingCommunicator], tmp_path: Path
) -> None:
    sender, recorder = notifier

    async def main() -> Any:
        return await sender.asend("x", attachments=[tmp_path / "missing.bin"])

    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        asyncio.run(main())
    assert recorder.messages == []


def test_attachments_next_to_an_outgoing_message_are_refused(
    notifier: tuple[Notifier, RecordingCommunicator],
) -> None:
    sender, _ = notifier
    attachment = Attachment.from_bytes(b"x", "x.txt")
    with pytest.raises(TypeError, match="inside the OutgoingMessage"):
        sender.send(OutgoingMessage(message="x"), attachments=[attachment])
    sender.send(OutgoingMessage(message="x", attachments=[attachment])).raise_for_errors()


# -- reports ----------------------------------------------------------------------------


def test_report_text_shows_warnings() -> None:
    report = DeliveryReport(
        message=OutgoingMessage(message="x"),
        results=(
            DeliveryResult(
                backend="slack",
                status="delivered",
                attempts=1,
                warnings=("not attached: a.png (Slack webhooks cannot carry files)",),
            ),
        ),
    )
    assert report.ok
    assert "slack: delivered [warning: not attached: a.png" in str(report)


# -- console ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_console_prints_one_line_per_attachment(capsys: pytest.CaptureFixture[str]) -> None:
    console = ConsoleCommunicator("out", ConsoleCommunicatorConfig())
    await console.start()
    files = [
        Attachment.from_bytes(b"x" * 2048, "plot.png"),
        Attachment.from_bytes(b"abc", "été.csv"),
    ]
    await console.send(OutgoingMessage(message="done", attachments=files))
    await console.stop()
    assert capsys.readouterr().out == (
        "[INFO] default done\n"
        "  attachment: plot.png (image/png, 2.0 KiB)\n"
        "  attachment: été.csv (text/csv, 3 B)\n"
    )


@pytest.mark.asyncio
async def test_console_json_lines_record_name_type_and_size(tmp_path: Path) -> None:
    target = tmp_path / "n.jsonl"
    console = ConsoleCommunicator("file", ConsoleCommunicatorConfig(path=str(target)))
    await console.start()
    files = [Attachment.from_bytes(b"\xff" * 10, "blob.bin")]
    await console.send(OutgoingMessage(message="done", attachments=files))
    await console.stop()
    (record,) = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
    assert record["attachments"] == [
        {"filename": "blob.bin", "content_type": "application/octet-stream", "size": 10}
    ]


def test_a_mapping_of_attachments_is_a_type_error(
    notifier: tuple[Notifier, RecordingCommunicator],
) -> None:
    sender, recorder = notifier
    with pytest.raises(TypeError, match="not a mapping"):
        sender.send("x", attachments={"a.txt": b"x"})
    assert recorder.messages == []


def test_a_single_path_needs_no_list(
    notifier: tuple[Notifier, RecordingCommunicator], tmp_path: Path
) -> None:
    sender, recorder = notifier
    path = tmp_path / "one.txt"
    path.write_text("one")
    sender.send("x", attachments=path).raise_for_errors()  # type: ignore[arg-type]
    assert [a.filename for a in recorder.attachments] == ["one.txt"]


def test_a_validation_error_never_echoes_the_bytes() -> None:
    with pytest.raises(ValidationError) as caught:
        Attachment(filename="a\nb.txt", data=b"secret-bytes")
    assert "secret-bytes" not in str(caught.value)
