"""Bad input ends in a documented error naming the field, never a bare UnicodeError."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from processpype.communications import Notifier
from processpype.communications import notifier as notifier_module
from processpype.communications.backends.console import ConsoleCommunicator
from processpype.communications.backends.webhook import WebhookCommunicator
from processpype.communications.errors import SendError
from processpype.communications.models import OutgoingMessage
from processpype.config.models import ConsoleCommunicatorConfig, WebhookCommunicatorConfig
from processpype.testing.recording import RecordingCommunicator

NOTIFIER_LOGGER = "processpype.communications.notifier"


@pytest.mark.parametrize("field", ["message", "subject", "source", "label"])
def test_a_lone_surrogate_in_a_text_field_is_refused_naming_the_field(field: str) -> None:
    fields = {"message": "disk full", field: "caf\udce9"}

    with pytest.raises(ValidationError) as caught:
        OutgoingMessage.model_validate(fields)

    text = str(caught.value)
    # pydantic itself refuses a constrained field (label); our check names the others.
    assert f"{field} holds a lone surrogate" in text or (
        f"\n{field}\n" in text and "unicode string" in text
    )


def test_a_lone_surrogate_is_refused_by_notifier_send_before_any_backend() -> None:
    recorder = RecordingCommunicator("rec")
    with Notifier({"enabled": True}) as notifier:
        notifier.add_communicator(recorder)

        with pytest.raises(ValidationError, match="subject holds a lone surrogate"):
            notifier.send("disk full", subject="\udcff")

    assert recorder.messages == []


def _hook() -> WebhookCommunicator:
    config = WebhookCommunicatorConfig.model_validate(
        {"type": "webhook", "url": "https://hooks.example.com/x"}
    )
    return WebhookCommunicator("hook", config)


def _console(tmp_path: Path) -> ConsoleCommunicator:
    config = ConsoleCommunicatorConfig(type="console", path=str(tmp_path / "out.jsonl"))
    return ConsoleCommunicator("log", config)


def test_non_utf8_bytes_in_webhook_metadata_are_a_send_error_naming_the_key() -> None:
    message = OutgoingMessage(message="x", metadata={"raw": {"blob": b"\xff\xfe"}})

    with pytest.raises(SendError, match=r"metadata\['raw'\]\['blob'\] holds bytes") as caught:
        _hook().render_body(message)

    assert caught.value.permanent
    assert caught.value.attempts == 0


def test_a_lone_surrogate_in_metadata_is_a_send_error_naming_the_key(tmp_path: Path) -> None:
    message = OutgoingMessage(message="x", metadata={"tags": ["ok", "\udc80"]})
    console = _console(tmp_path)

    for render in (_hook().render_body, console._render):
        with pytest.raises(SendError, match=r"metadata\['tags'\]\[1\] holds a lone surrogate"):
            render(message)


@pytest.mark.parametrize(
    "value",
    [{1, 2}, b"utf-8 bytes", object(), frozenset({"a"})],
    ids=["set", "bytes", "object", "frozenset"],
)
def test_console_json_lines_accept_every_value_the_webhook_accepts(
    value: object, tmp_path: Path
) -> None:
    message = OutgoingMessage(message="x", metadata={"value": value})
    console = _console(tmp_path)
    expected = _hook().render_body(message)["metadata"]

    async def write() -> None:
        await console.start()
        try:
            await console.send(message)
        finally:
            await console.stop()

    asyncio.run(write())

    line = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert line["metadata"] == expected


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_notifier_send_refuses_an_empty_message_like_the_cli(text: str) -> None:
    recorder = RecordingCommunicator("rec")
    with Notifier({"enabled": True}) as notifier:
        notifier.add_communicator(recorder)

        with pytest.raises(ValueError, match="the message is empty"):
            notifier.send(text)
        with pytest.raises(ValueError, match="the message is empty"):
            notifier.send_nowait(text)

    assert recorder.messages == []


class _Hanging(RecordingCommunicator):
    """A backend whose sends never finish and whose stop() never returns."""

    def __init__(self, name: str, *, hang_stop: bool) -> None:
        super().__init__(name)
        self.hang_stop = hang_stop
        self.sending = threading.Event()

    async def send(self, message: OutgoingMessage) -> None:
        self.sending.set()
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self._started = False  # as real backends do, before their wait
        if self.hang_stop:
            await asyncio.Event().wait()


def test_the_close_report_names_the_timeout_given_to_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=NOTIFIER_LOGGER)
    hanging = _Hanging("slow", hang_stop=False)
    notifier = Notifier({"enabled": True}, drain_timeout=30)
    notifier.add_communicator(hanging)
    notifier.start()
    notifier.send_nowait("stuck")
    assert hanging.sending.wait(5)

    assert notifier.close(timeout=0.2) is False

    # The message was being sent: reported as "may have been delivered", with the wait.
    report = next(r.getMessage() for r in caplog.records if "may have been" in r.getMessage())
    assert "(close timeout=0.2s)" in report
    assert "drain_timeout" not in report


def test_the_log_names_the_backends_still_stopping_at_close(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifier_module, "_CLOSE_GRACE", 0.5)
    caplog.set_level(logging.ERROR, logger=NOTIFIER_LOGGER)
    notifier = Notifier({"enabled": True})
    notifier.add_communicator(_Hanging("stuck", hang_stop=True))
    notifier.add_communicator(RecordingCommunicator("fine"))
    notifier.start()

    notifier.close(timeout=0)

    lines = [r.getMessage() for r in caplog.records if "still stopping" in r.getMessage()]
    assert lines == [f"{notifier._name}: backends still stopping at close: stuck"]
