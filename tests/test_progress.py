"""Notifier.progress: one message edited in place as a loop advances."""

from __future__ import annotations

from typing import Any

import pytest

from processpype import Notifier
from processpype.communications.models import MessageSeverity
from processpype.testing.recording import RecordingCommunicator
from processpype.testing.smtp import SMTPTestServer


class FakeClock:
    """A clock the test moves by hand: no sleeps, and exact durations."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def notifier(processpype_notifier: Any) -> Notifier:
    made: Notifier = processpype_notifier(
        {"enabled": True, "backends": {"rec": {"type": "recording"}}}
    )
    return made


def recorder(notifier: Notifier, name: str = "rec") -> RecordingCommunicator:
    backend = notifier.communicator(name)
    assert isinstance(backend, RecordingCommunicator)
    return backend


def test_a_long_loop_edits_at_most_once_per_min_interval(notifier: Notifier) -> None:
    clock = FakeClock()
    items = range(1000)

    for _ in notifier.progress(items, desc="upload", min_interval=5.0, clock=clock):
        clock.advance(0.1)  # 100 s in all: at most 20 edits, plus the final one

    rec = recorder(notifier)
    assert len(rec.messages) == 1  # one message, edited in place
    assert 1 <= len(rec.edits) <= 21
    final = rec.edits[-1].message
    assert final.message.startswith("\N{WHITE HEAVY CHECK MARK} upload: done, 1,000/1,000 in ")
    assert "1m 40s" in final.message
    assert final.metadata["status"] == "done"


def test_an_edit_shows_count_percentage_rate_elapsed_and_time_left(notifier: Notifier) -> None:
    clock = FakeClock()
    with notifier.progress(total=200, desc="rows", min_interval=5.0, clock=clock) as bar:
        recorder(notifier).wait_for(1)
        clock.advance(10)
        bar.update(50)
        [edit] = recorder(notifier).wait_for_edits(1)

        assert edit.message.message == (
            "\N{HOURGLASS WITH FLOWING SAND} rows: 50/200 (25%) \N{MIDDLE DOT} 5/s "
            "\N{MIDDLE DOT} elapsed 10.0s \N{MIDDLE DOT} left 30.0s"
        )


def test_updates_within_min_interval_do_not_edit(notifier: Notifier) -> None:
    clock = FakeClock()
    with notifier.progress(total=10, desc="rows", min_interval=5.0, clock=clock) as bar:
        recorder(notifier).wait_for(1)
        for _ in range(9):
            clock.advance(0.5)
            bar.update()
        assert recorder(notifier).edits == []

    [final] = recorder(notifier).edits
    assert "done, 9/10" in final.message.message


def test_the_first_message_shows_the_start(notifier: Notifier) -> None:
    clock = FakeClock()
    with notifier.progress(total=3, desc="copy", clock=clock):
        [first] = recorder(notifier).wait_for(1)

    assert first.message.startswith("\N{HOURGLASS WITH FLOWING SAND} copy: 0/3 (0%)")


def test_a_failure_in_the_iterable_ends_with_failed_at_k_of_n(notifier: Notifier) -> None:
    clock = FakeClock()

    def rows() -> Any:
        yield from range(3)
        raise OSError("disk gone")

    def run() -> None:
        for _ in notifier.progress(rows(), total=10, desc="read", clock=clock):
            clock.advance(1)

    with pytest.raises(OSError, match="disk gone"):
        run()

    final = recorder(notifier).edits[-1].message
    assert final.severity is MessageSeverity.ERROR
    assert final.message.startswith("\N{CROSS MARK} read: failed at 3 of 10 after 3.00s")
    assert final.message.endswith("OSError: disk gone")


def test_a_failure_in_the_loop_body_is_named_under_with(notifier: Notifier) -> None:
    clock = FakeClock()

    def run() -> None:
        with notifier.progress(range(10), desc="train", clock=clock) as bar:
            for step in bar:
                if step == 4:
                    raise ValueError("loss is nan")

    with pytest.raises(ValueError, match="nan"):
        run()

    rec = recorder(notifier)
    final = rec.edits[-1].message
    assert final.message.startswith("\N{CROSS MARK} train: failed at 4 of 10")
    assert "ValueError: loss is nan" in final.message
    assert len(rec.edits) == 1  # one final edit, not "stopped" then "failed"


def test_leaving_a_plain_loop_early_says_stopped(notifier: Notifier) -> None:
    clock = FakeClock()
    for step in notifier.progress(range(10), desc="scan", clock=clock):
        if step == 2:
            break

    final = recorder(notifier).edits[-1].message
    assert final.severity is MessageSeverity.WARNING
    assert final.message.startswith("\N{WARNING SIGN} scan: stopped at 2 of 10")


def test_an_interrupt_says_stopped_and_is_reraised(notifier: Notifier) -> None:
    clock = FakeClock()

    def run() -> None:
        with notifier.progress(total=5, desc="sync", clock=clock) as bar:
            bar.update(2)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run()

    assert "sync: stopped at 2 of 5" in recorder(notifier).edits[-1].message.message


def test_without_a_total_it_counts(notifier: Notifier) -> None:
    clock = FakeClock()
    for _ in notifier.progress(iter(range(7)), desc="events", clock=clock):
        clock.advance(1)

    assert "events: done, 7 in 7.00s" in recorder(notifier).edits[-1].message.message


def test_a_backend_that_cannot_edit_gets_the_first_and_the_final_message(
    processpype_notifier: Any,
) -> None:
    notifier = processpype_notifier(
        {
            "enabled": True,
            "backends": {
                "rec": {"type": "recording"},
                "plain": {"type": "recording", "editing": False},
            },
        }
    )
    clock = FakeClock()
    for _ in notifier.progress(range(100), desc="batch", min_interval=1.0, clock=clock):
        clock.advance(1)

    plain = recorder(notifier, "plain")
    assert len(plain.messages) == 2
    assert plain.messages[1].message.startswith("\N{WHITE HEAVY CHECK MARK} batch: done")
    assert plain.edits == []


def test_email_gets_the_first_and_the_final_mail(
    processpype_notifier: Any, processpype_smtp_server: SMTPTestServer
) -> None:
    config = processpype_smtp_server.email_config().model_dump(mode="json")
    notifier = processpype_notifier({"enabled": True, "backends": {"mail": config}})
    clock = FakeClock()

    for _ in notifier.progress(range(50), desc="export", min_interval=1.0, clock=clock):
        clock.advance(1)

    first, final = processpype_smtp_server.wait_for_messages(2)
    assert str(first["Subject"]).endswith("export: started")
    assert str(final["Subject"]).endswith("export: done")


def test_a_negative_min_interval_is_refused(notifier: Notifier) -> None:
    with pytest.raises(ValueError, match="min_interval"):
        notifier.progress(range(3), min_interval=-1)


def test_iterating_a_progress_without_an_iterable_is_refused(notifier: Notifier) -> None:
    bar = notifier.progress(total=3)
    with pytest.raises(TypeError, match="update"):
        iter(bar).__next__()


def test_a_closed_notifier_never_stops_the_loop(
    notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    notifier.close()
    seen = list(notifier.progress(range(5), desc="late", min_interval=0))

    assert seen == [0, 1, 2, 3, 4]
    assert "could not send the first message" in caplog.text


def test_a_notifier_closed_during_the_loop_never_stops_it(notifier: Notifier) -> None:
    clock = FakeClock()
    seen = []
    for item in notifier.progress(range(5), desc="cut", min_interval=1.0, clock=clock):
        recorder(notifier).wait_for(1)
        if item == 2:
            notifier.close()
        clock.advance(1)
        seen.append(item)

    assert seen == [0, 1, 2, 3, 4]


def test_slack_and_a_generic_webhook_get_the_first_and_the_final_post(
    processpype_webhooks: Any, processpype_notifier: Any
) -> None:
    slack = "https://hooks.slack.com/services/T000/B000/secret"
    hook = "https://hooks.example.com/notify"
    notifier = processpype_notifier(
        {
            "enabled": True,
            "backends": {
                "slack": {"type": "slack", "url": slack},
                "hook": {"type": "webhook", "url": hook},
            },
        }
    )
    clock = FakeClock()

    for _ in notifier.progress(range(30), desc="sync", min_interval=1.0, clock=clock):
        clock.advance(1)

    for url in (slack, hook):
        posts = [r for r in processpype_webhooks.requests if r.url == url]
        assert [r.method for r in posts] == ["POST", "POST"]
        assert "sync: 0/30" in posts[0].text
        assert "sync: done, 30/30" in posts[1].text


def check_loss(step: int) -> None:
    if step == 4:
        raise ValueError("loss is nan")


def test_a_failure_in_a_plain_loop_is_named_by_the_watch_around_it(notifier: Notifier) -> None:
    clock = FakeClock()

    def run() -> None:
        with notifier.watch("train"):
            for step in notifier.progress(range(10), desc="epochs", clock=clock):
                clock.advance(1)
                check_loss(step)

    with pytest.raises(ValueError, match="nan"):
        run()

    rec = recorder(notifier)
    final = rec.edits[-1].message
    assert final.severity is MessageSeverity.ERROR
    assert final.message.startswith("\N{CROSS MARK} epochs: failed at 4 of 10 after 5.00s")
    assert final.message.endswith("ValueError: loss is nan")
    assert rec.messages[-1].message.startswith("\N{CROSS MARK} train failed after ")


def test_a_loop_left_by_break_stays_stopped_when_the_watch_fails_later(
    notifier: Notifier,
) -> None:
    clock = FakeClock()

    def run() -> None:
        with notifier.watch("scan"):
            for step in notifier.progress(range(10), desc="pages", clock=clock):
                if step == 2:
                    break
            raise KeyError("after the loop")

    with pytest.raises(KeyError):
        run()

    final = recorder(notifier).edits[-1].message
    assert final.message.startswith("\N{WARNING SIGN} pages: stopped at 2 of 10")


@pytest.mark.asyncio
async def test_a_failure_in_a_plain_loop_is_named_by_an_async_watch(notifier: Notifier) -> None:
    clock = FakeClock()

    async def run() -> None:
        async with notifier.watch("upload"):
            for step in notifier.progress(range(6), desc="files", clock=clock):
                if step == 3:
                    raise OSError("bucket gone")

    with pytest.raises(OSError, match="gone"):
        await run()

    final = recorder(notifier).edits[-1].message
    assert final.message.startswith("\N{CROSS MARK} files: failed at 3 of 6")
    assert final.message.endswith("OSError: bucket gone")
