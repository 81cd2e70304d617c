"""Notifier.watch: a job's end reported as a context manager and as a decorator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processpype import Notifier
from processpype.communications.models import MessageSeverity, OutgoingMessage
from processpype.testing.recording import RecordingCommunicator
from processpype.testing.smtp import SMTPTestServer


@pytest.fixture
def notifier(processpype_notifier: Any) -> Notifier:
    made: Notifier = processpype_notifier(
        {"enabled": True, "backends": {"rec": {"type": "recording"}}}
    )
    return made


def sent(notifier: Notifier) -> list[OutgoingMessage]:
    backend = notifier.communicator("rec")
    assert isinstance(backend, RecordingCommunicator)
    return backend.messages


def boom() -> None:
    raise ValueError("row 17 has no id")


def test_a_block_that_ends_well_reports_its_name_and_duration(notifier: Notifier) -> None:
    with notifier.watch("nightly ETL"):
        pass

    [message] = sent(notifier)
    assert message.severity is MessageSeverity.INFO
    assert message.message.startswith("\N{WHITE HEAVY CHECK MARK} nightly ETL finished in ")
    assert message.message.endswith("s")
    assert message.metadata["status"] == "finished"
    assert message.metadata["duration"] >= 0


def test_a_failing_block_reports_the_error_and_reraises_it_unchanged(notifier: Notifier) -> None:
    error = ValueError("row 17 has no id")

    with pytest.raises(ValueError, match="row 17") as raised, notifier.watch("import"):
        raise error

    assert raised.value is error
    [message] = sent(notifier)
    assert message.severity is MessageSeverity.ERROR
    assert "import failed after" in message.message
    assert "ValueError: row 17 has no id" in message.message
    assert "Traceback (most recent call last):" in message.message


def test_a_configured_secret_quoted_by_the_error_is_masked_in_the_traceback_too(
    processpype_notifier: Any,
) -> None:
    secret = "zz-very-secret-123"
    notifier: Notifier = processpype_notifier(
        {"enabled": True, "backends": {"rec": {"type": "recording", "api_token": secret}}}
    )

    with pytest.raises(RuntimeError), notifier.watch("sync"):
        raise RuntimeError(f"the server refused token {secret}")

    [message] = sent(notifier)
    assert "RuntimeError: the server refused token" in message.message
    assert "Traceback (most recent call last):" in message.message
    assert secret not in message.message


def test_the_traceback_is_cut_to_its_last_lines(notifier: Notifier) -> None:
    def deep(n: int) -> None:
        if n == 0:
            boom()
        deep(n - 1)

    with pytest.raises(ValueError, match="row 17"), notifier.watch("deep", traceback_lines=3):
        deep(30)

    text = sent(notifier)[0].message
    tail = text.split("\n\n", 1)[1].splitlines()
    assert len(tail) == 3
    assert tail[-1] == "ValueError: row 17 has no id"
    assert "Traceback (most recent call last):" not in text


def test_traceback_lines_zero_sends_only_the_error(notifier: Notifier) -> None:
    with pytest.raises(ValueError, match="row 17"), notifier.watch("short", traceback_lines=0):
        boom()

    text = sent(notifier)[0].message
    assert "\n" not in text
    assert text.endswith("ValueError: row 17 has no id")


@pytest.mark.parametrize(
    ("exc", "shown"),
    [(KeyboardInterrupt(), "KeyboardInterrupt"), (SystemExit(3), "SystemExit(3)")],
)
def test_an_interrupted_block_warns_and_reraises(
    notifier: Notifier, exc: BaseException, shown: str
) -> None:
    with pytest.raises(type(exc)), notifier.watch("train"):
        raise exc

    [message] = sent(notifier)
    assert message.severity is MessageSeverity.WARNING
    assert "train interrupted after" in message.message
    assert shown in message.message


def test_the_message_is_delivered_before_the_exception_propagates(notifier: Notifier) -> None:
    seen_before_raise: list[int] = []
    try:
        with notifier.watch("job"):
            raise RuntimeError("x")
    except RuntimeError:
        seen_before_raise.append(len(sent(notifier)))

    assert seen_before_raise == [1]


def test_notify_start_sends_a_message_when_the_job_begins(notifier: Notifier) -> None:
    with notifier.watch("backup", notify_start=True):
        assert [m.message for m in sent(notifier)] == [
            "\N{BLACK RIGHT-POINTING TRIANGLE} backup started"
        ]

    assert len(sent(notifier)) == 2


def test_the_decorator_reports_every_call_with_its_result(notifier: Notifier) -> None:
    @notifier.watch("square", include_result=True)
    def square(x: int) -> int:
        return x * x

    assert square(7) == 49
    assert square(3) == 9

    texts = [m.message for m in sent(notifier)]
    assert texts[0].endswith("\nresult: 49")
    assert texts[1].endswith("\nresult: 9")
    assert square.__name__ == "square"


def test_a_long_result_is_shortened(notifier: Notifier) -> None:
    @notifier.watch("big", include_result=True)
    def big() -> str:
        return "x" * 10_000

    big()

    assert len(sent(notifier)[0].message) < 400


def test_the_result_is_left_out_unless_asked_for(notifier: Notifier) -> None:
    @notifier.watch("quiet")
    def quiet() -> str:
        return "secret-ish"

    quiet()

    assert "result" not in sent(notifier)[0].message


def test_the_decorator_reraises_and_reports_a_failure(notifier: Notifier) -> None:
    @notifier.watch("train")
    def train() -> None:
        boom()

    with pytest.raises(ValueError, match="row 17"):
        train()

    assert sent(notifier)[0].severity is MessageSeverity.ERROR


@pytest.mark.asyncio
async def test_an_async_function_keeps_being_async_under_the_decorator(
    notifier: Notifier,
) -> None:
    @notifier.watch("fetch", include_result=True)
    async def fetch() -> str:
        await asyncio.sleep(0)
        return "ok"

    assert asyncio.iscoroutinefunction(fetch)
    assert await fetch() == "ok"
    assert sent(notifier)[0].message.endswith("result: 'ok'")


@pytest.mark.asyncio
async def test_async_with_reports_a_failure(notifier: Notifier) -> None:
    async def job() -> None:
        async with notifier.watch("async job"):
            await asyncio.sleep(0)
            boom()

    with pytest.raises(ValueError, match="row 17"):
        await job()

    assert "async job failed after" in sent(notifier)[0].message


@pytest.mark.asyncio
async def test_a_cancelled_async_job_counts_as_interrupted(notifier: Notifier) -> None:
    @notifier.watch("slow")
    async def slow() -> None:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(slow())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [message] = sent(notifier)
    assert message.severity is MessageSeverity.WARNING
    assert "cancelled" in message.message


def test_a_block_can_set_its_result(notifier: Notifier) -> None:
    with notifier.watch("count", include_result=True) as job:
        job.result = 42

    assert sent(notifier)[0].message.endswith("result: 42")


def test_a_notification_failure_never_replaces_the_job_outcome(
    notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    backend = notifier.communicator("rec")
    assert isinstance(backend, RecordingCommunicator)
    backend.fail_next(ConnectionError("down"))

    @notifier.watch("still fine")
    def job() -> int:
        return 1

    assert job() == 1  # no exception from the failed notification
    assert "watch 'still fine': the notification was not delivered" in caplog.text


def test_a_closed_notifier_never_breaks_the_job(
    notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    notifier.close()

    with pytest.raises(ValueError, match="row 17"), notifier.watch("late"):
        boom()  # the job's own error, not NotifierClosedError

    assert "watch 'late': could not notify" in caplog.text


def test_a_bad_traceback_lines_is_refused(notifier: Notifier) -> None:
    with pytest.raises(ValueError, match="traceback_lines"):
        notifier.watch("x", traceback_lines=-1)


def test_a_failure_reaches_a_real_smtp_server(
    processpype_notifier: Any, processpype_smtp_server: SMTPTestServer
) -> None:
    config = processpype_smtp_server.email_config().model_dump(mode="json")
    notifier = processpype_notifier({"enabled": True, "backends": {"mail": config}})

    with pytest.raises(ValueError, match="row 17"), notifier.watch("nightly ETL"):
        boom()

    [mail] = processpype_smtp_server.wait_for_messages(1)
    assert "nightly ETL failed" in str(mail["Subject"])
    body = mail.get_body()
    assert body is not None
    assert "ValueError: row 17 has no id" in body.get_content()
