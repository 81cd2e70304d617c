"""Notifier: sending, reports, timeouts, start failures, lifecycle and configuration."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from processpype import Notifier as RootNotifier
from processpype.communications import Notifier as PackageNotifier
from processpype.communications import dispatcher as dispatcher_module
from processpype.communications import notifier as notifier_module
from processpype.communications.delivery import DeliveryReport
from processpype.communications.dispatcher import get_dispatcher
from processpype.communications.errors import (
    BackendStartError,
    ConfigError,
    DeliveryError,
    DeliveryTimeoutError,
    NotifierClosedError,
    QueueFullError,
)
from processpype.communications.models import IncomingMessage, MessageSeverity, OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig
from processpype.testing.recording import RecordingCommunicator

ENABLED = {"enabled": True}


class GateCommunicator(RecordingCommunicator):
    """A backend whose sends wait until the test opens the gate: a slow server.

    It records a message when its send completes, so it does not keep order.
    """

    def __init__(self, name: str = "gate") -> None:
        super().__init__(name)
        self._open = threading.Event()
        self.arrived = threading.Event()  # set once a send reached the backend
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()

    async def send(self, message: OutgoingMessage) -> None:
        loop = asyncio.get_running_loop()
        self.arrived.set()
        with self._lock:
            if not self._open.is_set():
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, waiter))
            else:
                waiter = loop.create_future()
                waiter.set_result(None)
        await waiter
        await super().send(message)

    def open(self) -> None:
        """Let every waiting and future send through (callable from any thread)."""
        with self._lock:
            self._open.set()
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FailingStart(RecordingCommunicator):
    """A backend whose start() fails ``failures`` times, then works."""

    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name)
        self.failures = failures

    async def start(self) -> None:
        self.start_count += 1
        if self.failures:
            self.failures -= 1
            raise BackendStartError(
                "smtp.example.com:587 refused the connection", backend=self.name
            )
        self._started = True


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    """Notifiers made by a test, closed after it."""
    made: list[Notifier] = []
    yield made
    for notifier in made:
        notifier.close(timeout=1)


def make(notifiers: list[Notifier], *backends: RecordingCommunicator, **kwargs: object) -> Notifier:
    notifier = Notifier(ENABLED, **kwargs)  # type: ignore[arg-type]
    notifiers.append(notifier)
    for backend in backends:
        notifier.add_communicator(backend)
    return notifier


def recording_config(**backends: dict[str, object]) -> dict[str, object]:
    return {
        "enabled": True,
        "backends": {name: {"type": "recording", **extra} for name, extra in backends.items()},
    }


# -- the public names -----------------------------------------------------------------


def test_notifier_is_importable_from_the_package_root_and_communications() -> None:
    assert RootNotifier is Notifier
    assert PackageNotifier is Notifier


# -- sending ----------------------------------------------------------------------------


def test_send_returns_a_report_with_one_delivered_result_per_backend(
    notifiers: list[Notifier],
) -> None:
    first, second = RecordingCommunicator("first"), RecordingCommunicator("second")
    notifier = make(notifiers, first, second)

    report = notifier.send("Backup done")

    assert isinstance(report, DeliveryReport)
    assert report.ok
    assert [(r.backend, r.status, r.attempts) for r in report.results] == [
        ("first", "delivered", 1),
        ("second", "delivered", 1),
    ]
    assert first.texts == second.texts == ["Backup done"]


def test_send_passes_label_severity_subject_source_and_metadata_to_the_backend(
    notifiers: list[Notifier],
) -> None:
    ops = RecordingCommunicator("ops")
    notifier = make(notifiers)
    notifier.add_communicator(ops, labels=["ops"])

    notifier.send(
        "Disk full",
        label="ops",
        severity="ERROR",
        subject="disk",
        source="cron",
        metadata={"host": "db1"},
    )

    (message,) = ops.messages
    assert message.label == "ops"
    assert message.severity is MessageSeverity.ERROR
    assert (message.subject, message.source, message.metadata) == ("disk", "cron", {"host": "db1"})


def test_send_accepts_a_ready_outgoing_message(notifiers: list[Notifier]) -> None:
    ops = RecordingCommunicator("ops")
    notifier = make(notifiers)
    notifier.add_communicator(ops, labels=["ops"])

    notifier.send(OutgoingMessage(message="hi", label="ops"))

    assert ops.texts == ["hi"]


def test_keywords_next_to_an_outgoing_message_are_refused(notifiers: list[Notifier]) -> None:
    notifier = make(notifiers, RecordingCommunicator())

    with pytest.raises(TypeError, match="inside the OutgoingMessage"):
        notifier.send(OutgoingMessage(message="hi"), label="ops")


def test_a_message_that_is_not_text_is_refused_naming_its_type(notifiers: list[Notifier]) -> None:
    notifier = make(notifiers, RecordingCommunicator())

    with pytest.raises(TypeError, match="not int"):
        notifier.send(42)  # type: ignore[arg-type]


def test_an_unknown_severity_is_refused_naming_the_choices(notifiers: list[Notifier]) -> None:
    notifier = make(notifiers, RecordingCommunicator())

    with pytest.raises(ValueError, match="unknown severity 'loud'"):
        notifier.send("x", severity="loud")


def test_a_failing_backend_is_reported_failed_while_the_others_deliver(
    notifiers: list[Notifier],
) -> None:
    good, bad = RecordingCommunicator("good"), RecordingCommunicator("bad")
    bad.fail_next(ConnectionError("smtp.example.com refused"))
    notifier = make(notifiers, good, bad)

    report = notifier.send("hello")

    assert not report.ok
    assert report.result_for("good").status == "delivered"  # type: ignore[union-attr]
    failed = report.result_for("bad")
    assert failed is not None
    assert failed.status == "failed"
    assert "smtp.example.com refused" in (failed.error or "")
    with pytest.raises(DeliveryError, match="bad"):
        report.raise_for_errors()


def test_min_severity_of_a_backend_skips_lower_messages(notifiers: list[Notifier]) -> None:
    notifier = Notifier(recording_config(pager={"min_severity": "error"}))
    notifiers.append(notifier)

    report = notifier.send("just info")

    assert report.result_for("pager").status == "skipped"  # type: ignore[union-attr]
    assert notifier.communicator("pager").messages == []  # type: ignore[attr-defined]


def test_a_label_no_backend_handles_gives_not_ok_and_a_warning_naming_it(
    notifiers: list[Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    notifier = make(notifiers, RecordingCommunicator())

    with caplog.at_level(logging.WARNING, logger="processpype"):
        report = notifier.send("lost", label="nobody")

    assert report.results == ()
    assert not report.ok
    assert "'nobody'" in caplog.text
    with pytest.raises(DeliveryError, match="no backend handles label 'nobody'"):
        report.raise_for_errors()


def test_send_nowait_returns_a_future_of_the_report(notifiers: list[Notifier]) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)

    future = notifier.send_nowait("later")

    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=5).ok
    assert recorder.texts == ["later"]


def test_cancelling_a_send_nowait_future_before_dispatch_withdraws_the_message(
    notifiers: list[Notifier],
) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)
    loop_busy, release = threading.Event(), threading.Event()

    async def hold_the_loop(message: IncomingMessage) -> None:
        loop_busy.set()
        release.wait(5)  # blocks the notifier's loop on purpose

    notifier.on_message(hold_the_loop)
    recorder.inject("hold")
    assert loop_busy.wait(5)
    withdrawn = notifier.send_nowait("withdrawn")
    kept = notifier.send_nowait("kept")

    assert withdrawn.cancel()
    release.set()

    assert kept.result(timeout=5).ok
    assert notifier.flush(5)
    assert recorder.texts == ["kept"]


@pytest.mark.asyncio
async def test_asend_can_be_awaited_from_another_event_loop(notifiers: list[Notifier]) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)

    report = await notifier.asend("from the test's loop")

    assert report.ok
    assert recorder.texts == ["from the test's loop"]


def test_asend_from_an_async_handler_on_the_notifiers_own_loop_does_not_deadlock(
    notifiers: list[Notifier],
) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)
    reports: concurrent.futures.Future[DeliveryReport] = concurrent.futures.Future()

    async def reply(message: IncomingMessage) -> None:
        reports.set_result(await notifier.asend(f"re: {message.text}"))

    notifier.on_message(reply)
    recorder.inject("ping")

    assert reports.result(timeout=5).ok
    assert recorder.texts == ["re: ping"]


# -- timeouts and slow backends ---------------------------------------------------------


def test_send_timeout_names_the_pending_backend_and_the_message_is_still_delivered(
    notifiers: list[Notifier],
) -> None:
    gate = GateCommunicator("slow-smtp")
    notifier = make(notifiers, gate)

    with pytest.raises(DeliveryTimeoutError, match="slow-smtp") as caught:
        notifier.send("eventually", timeout=0.1)

    assert isinstance(caught.value, TimeoutError)
    assert caught.value.pending == ("slow-smtp",)
    gate.open()
    assert [m.message for m in gate.wait_for(1)] == ["eventually"]


def test_send_to_a_backend_that_waits_returns_the_report_once_the_backend_finished(
    notifiers: list[Notifier],
) -> None:
    # The caller is woken as the loop picks the message up, before the backend ran:
    # it must wait again for the outcome, not return early or raise.
    gate = GateCommunicator("slow-smtp")
    notifier = make(notifiers, gate)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(notifier.send, "after the gate", timeout=30)
        assert gate.arrived.wait(5)
        assert not pending.done()
        gate.open()
        report = pending.result(timeout=10)

    assert report.ok
    assert report.results[0].status == "delivered"
    assert gate.texts == ["after the gate"]


def test_a_send_refused_as_invalid_leaves_the_notifier_sending(
    notifiers: list[Notifier],
) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)

    with pytest.raises(ValidationError, match="label"):
        notifier.send("nowhere", label="")

    assert notifier.send("next", timeout=5).ok
    assert recorder.texts == ["next"]


def test_a_hanging_backend_blocks_neither_send_beyond_its_timeout_nor_the_other_backends(
    notifiers: list[Notifier],
) -> None:
    fast = RecordingCommunicator("fast")
    hanging = RecordingCommunicator("hanging", delay=3600)
    notifier = make(notifiers, fast, hanging)

    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        notifier.send("alert", timeout=0.3)
    elapsed = time.monotonic() - started

    assert elapsed < 5, f"send blocked for {elapsed:.1f}s with a 0.3s timeout"
    assert caught.value.pending == ("hanging",)  # type: ignore[attr-defined]
    assert fast.wait_for(1, timeout=5)[0].message == "alert"


@pytest.mark.asyncio
async def test_asend_timeout_names_the_pending_backend(notifiers: list[Notifier]) -> None:
    notifier = make(notifiers, GateCommunicator("slow-webhook"))

    with pytest.raises(DeliveryTimeoutError, match="slow-webhook"):
        await notifier.asend("eventually", timeout=0.1)


class LoopBlocker(RecordingCommunicator):
    """A broken backend whose send blocks the event loop's thread until released."""

    def __init__(self, name: str = "blocking") -> None:
        super().__init__(name)
        self.entered = threading.Event()
        self.release = threading.Event()

    async def send(self, message: OutgoingMessage) -> None:
        self.entered.set()
        self.release.wait(30)


def test_a_blocking_send_the_loop_never_picked_up_is_settled_by_close(
    notifiers: list[Notifier], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifier_module, "_CLOSE_GRACE", 0.5)
    blocker = LoopBlocker()
    notifier = make(notifiers, blocker)
    notifier.send_nowait("blocks the loop")
    assert blocker.entered.wait(5)
    handed_off = threading.Event()
    submit = notifier._submit

    def submit_and_tell(delivery: Any, *, block: bool, deadline: float | None) -> None:
        submit(delivery, block=block, deadline=deadline)
        handed_off.set()

    monkeypatch.setattr(notifier, "_submit", submit_and_tell)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(notifier.send, "never picked up", timeout=60)
        try:
            assert handed_off.wait(5)
            assert notifier.close(timeout=0.2) is False
            report = stuck.result(timeout=10)
        finally:
            blocker.release.set()

    assert not report.ok
    assert "closed" in (report.results[0].error or "")


def test_close_is_bounded_by_its_timeout_and_reports_undelivered_messages_as_failed(
    notifiers: list[Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    notifier = make(notifiers, RecordingCommunicator("hanging", delay=3600))
    future = notifier.send_nowait("never arrives")

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="processpype"):
        assert notifier.close(timeout=0.2) is False
    elapsed = time.monotonic() - started

    assert elapsed < 10, f"close took {elapsed:.1f}s with a 0.2s timeout"
    result = future.result(timeout=1).result_for("hanging")
    assert result is not None
    assert result.status == "failed"
    assert "closed" in (result.error or "")
    assert "never arrives" in caplog.text


# -- back-pressure ----------------------------------------------------------------------


def test_send_nowait_waits_for_room_beyond_max_in_flight_and_drops_nothing(
    notifiers: list[Notifier],
) -> None:
    gate = GateCommunicator()
    notifier = make(notifiers, gate, max_in_flight=3)
    futures = [notifier.send_nowait(f"m{i}") for i in range(3)]
    fourth: list[concurrent.futures.Future[DeliveryReport]] = []
    sender = threading.Thread(target=lambda: fourth.append(notifier.send_nowait("m3")))

    sender.start()
    sender.join(timeout=0.3)
    assert sender.is_alive(), "send_nowait returned although 3 messages were in flight"
    gate.open()
    sender.join(timeout=5)

    assert not sender.is_alive()
    assert all(f.result(timeout=5).ok for f in [*futures, *fourth])
    assert sorted(gate.texts) == ["m0", "m1", "m2", "m3"]


def test_send_nowait_without_blocking_raises_queue_full_beyond_max_in_flight(
    notifiers: list[Notifier],
) -> None:
    gate = GateCommunicator()
    notifier = make(notifiers, gate, max_in_flight=2)
    notifier.send_nowait("a")
    notifier.send_nowait("b")

    with pytest.raises(QueueFullError, match="max_in_flight"):
        notifier.send_nowait("c", block=False)
    gate.open()


def test_send_counts_waiting_for_room_against_its_timeout(notifiers: list[Notifier]) -> None:
    gate = GateCommunicator()
    notifier = make(notifiers, gate, max_in_flight=1)
    notifier.send_nowait("occupies the only slot")

    with pytest.raises(DeliveryTimeoutError, match="no room"):
        notifier.send("waits", timeout=0.1)
    gate.open()


# -- backends that fail to start --------------------------------------------------------


def test_a_backend_whose_start_failed_is_reported_failed_with_the_start_error(
    notifiers: list[Notifier],
) -> None:
    notifier = make(notifiers, FailingStart("mail", failures=1000))

    report = notifier.send("hello")

    result = report.result_for("mail")
    assert result is not None
    assert result.status == "failed"
    assert "refused the connection" in (result.error or "")
    assert not report.ok


def test_the_next_send_retries_a_failed_start(
    notifiers: list[Notifier], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "_START_RETRY_FIRST_DELAY", 0.0)
    backend = FailingStart("mail", failures=1)
    notifier = make(notifiers, backend)

    report = notifier.send("hello")

    assert report.ok
    assert backend.start_count == 2
    assert backend.texts == ["hello"]


def test_messages_sent_while_a_backend_starts_wait_for_it_in_order(
    notifiers: list[Notifier],
) -> None:
    class SlowStart(RecordingCommunicator):
        def __init__(self) -> None:
            super().__init__("slow-start")
            self.may_start = threading.Event()

        async def start(self) -> None:
            await asyncio.to_thread(self.may_start.wait, 5)
            await super().start()

    backend = SlowStart()
    notifier = make(notifiers, start_timeout=0)
    notifier.add_communicator(backend)
    futures = [notifier.send_nowait(f"m{i}") for i in range(5)]

    backend.may_start.set()

    assert all(f.result(timeout=5).ok for f in futures)
    assert backend.texts == [f"m{i}" for i in range(5)]


# -- independence -----------------------------------------------------------------------


def test_two_notifiers_are_independent(notifiers: list[Notifier]) -> None:
    first = Notifier(recording_config(rec={}))
    second = Notifier(recording_config(rec={}))
    notifiers.extend([first, second])

    first.send("to the first")
    first.close()
    second.send("to the second")

    assert first.dispatcher is not second.dispatcher
    assert first.dispatcher is not get_dispatcher()
    assert first.communicator("rec").texts == ["to the first"]  # type: ignore[attr-defined]
    assert second.communicator("rec").texts == ["to the second"]  # type: ignore[attr-defined]


# -- the loop thread --------------------------------------------------------------------


def test_blocking_calls_on_the_notifiers_loop_thread_raise_an_error_pointing_to_asend(
    notifiers: list[Notifier],
) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)
    errors: concurrent.futures.Future[list[BaseException]] = concurrent.futures.Future()

    async def handler(message: IncomingMessage) -> None:
        caught: list[BaseException] = []
        for call in (lambda: notifier.send("x"), notifier.flush, notifier.close):
            try:
                call()
            except RuntimeError as exc:
                caught.append(exc)
        errors.set_result(caught)

    notifier.on_message(handler)
    recorder.inject("ping")

    caught = errors.result(timeout=5)
    assert len(caught) == 3
    assert all("asend" in str(exc) for exc in caught)
    assert not notifier.closed
    assert notifier.send("still works").ok


# -- lifecycle --------------------------------------------------------------------------


def test_send_after_close_raises_a_clear_error(notifiers: list[Notifier]) -> None:
    notifier = make(notifiers, RecordingCommunicator())
    notifier.close()

    with pytest.raises(NotifierClosedError, match="closed"):
        notifier.send("too late")
    with pytest.raises(NotifierClosedError):
        notifier.send_nowait("too late")


@pytest.mark.asyncio
async def test_asend_after_close_raises_a_clear_error(notifiers: list[Notifier]) -> None:
    notifier = make(notifiers, RecordingCommunicator())
    notifier.close()

    with pytest.raises(NotifierClosedError):
        await notifier.asend("too late")


def test_close_is_idempotent_and_stops_the_backends(notifiers: list[Notifier]) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)

    assert notifier.close() is True
    assert notifier.close() is True

    assert notifier.closed
    assert recorder.stop_count == 1
    assert not recorder.is_started


def test_close_delivers_what_is_still_queued(notifiers: list[Notifier]) -> None:
    recorder = RecordingCommunicator(delay=0.01)
    notifier = make(notifiers, recorder)
    for i in range(20):
        notifier.send_nowait(f"m{i}")

    assert notifier.close(timeout=10)

    assert len(recorder.texts) == 20


def test_the_context_manager_closes_the_notifier() -> None:
    recorder = RecordingCommunicator()
    with Notifier(ENABLED) as notifier:
        notifier.add_communicator(recorder)
        notifier.send_nowait("queued at exit of the block")

    assert notifier.closed
    assert recorder.texts == ["queued at exit of the block"]


def test_flush_waits_until_every_message_reached_an_outcome(notifiers: list[Notifier]) -> None:
    recorder = RecordingCommunicator(delay=0.01)
    notifier = make(notifiers, recorder)
    for i in range(50):
        notifier.send_nowait(f"m{i}")

    assert notifier.flush(timeout=10)

    assert len(recorder.texts) == 50
    assert notifier.in_flight == 0


def test_flush_returns_false_when_time_runs_out(notifiers: list[Notifier]) -> None:
    gate = GateCommunicator()
    notifier = make(notifiers, gate)
    notifier.send_nowait("stuck")

    assert notifier.flush(timeout=0.1) is False
    gate.open()
    assert notifier.flush(timeout=5) is True


def test_a_notifier_created_without_start_starts_on_first_send() -> None:
    recorder = RecordingCommunicator()
    notifier = Notifier(ENABLED, start=False)
    notifier.add_communicator(recorder)
    assert not recorder.is_started

    try:
        assert notifier.send("first").ok
        assert recorder.is_started
    finally:
        notifier.close()


def test_start_is_idempotent(notifiers: list[Notifier]) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)

    notifier.start()
    notifier.start()

    assert recorder.start_count == 1


def test_add_communicator_on_a_running_notifier_starts_it(notifiers: list[Notifier]) -> None:
    notifier = make(notifiers)
    recorder = RecordingCommunicator("late")

    notifier.add_communicator(recorder, labels=["ops"])

    assert recorder.is_started
    assert notifier.send("hi", label="ops").ok


def test_add_communicator_refuses_a_duplicate_name(notifiers: list[Notifier]) -> None:
    notifier = make(notifiers, RecordingCommunicator("rec"))

    with pytest.raises(ValueError, match="'rec' is already registered"):
        notifier.add_communicator(RecordingCommunicator("rec"))


# -- configuration ----------------------------------------------------------------------


def test_a_mapping_config_is_validated_and_its_backends_created(notifiers: list[Notifier]) -> None:
    notifier = Notifier(recording_config(one={}, two={"labels": ["ops"]}))
    notifiers.append(notifier)

    assert sorted(notifier.communicators) == ["one", "two"]
    assert isinstance(notifier.communicator("one"), RecordingCommunicator)
    assert isinstance(notifier.config, CommunicationsConfig)
    assert [r.backend for r in notifier.send("x", label="ops").results] == ["two"]


def test_a_bad_mapping_raises_config_error_naming_the_key() -> None:
    bad = {"enabled": True, "backends": {"mail": {"type": "email"}}}

    with pytest.raises(ConfigError, match=r"backends\.mail\.from_address"):
        Notifier(bad)


def test_a_config_that_is_not_a_mapping_is_refused_naming_its_type() -> None:
    with pytest.raises(TypeError, match="not list"):
        Notifier([])  # type: ignore[arg-type]


def test_communicator_lookup_names_the_known_backends(notifiers: list[Notifier]) -> None:
    notifier = Notifier(recording_config(alpha={}, beta={}))
    notifiers.append(notifier)

    with pytest.raises(KeyError, match="alpha, beta"):
        notifier.communicator("gamma")


def test_from_yaml_reads_the_file_and_substitutes_env(
    tmp_path: Path, notifiers: list[Notifier]
) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(
        "communications:\n"
        "  enabled: true\n"
        "  backends:\n"
        "    rec:\n"
        "      type: recording\n"
        "      labels: ['${LABEL}']\n",
        encoding="utf-8",
    )

    notifier = Notifier.from_yaml(path, env={"LABEL": "ops"}, drain_timeout=1)
    notifiers.append(notifier)

    assert notifier.send("from yaml", label="ops").ok
    assert notifier.drain_timeout == 1


def test_from_config_accepts_a_config_model(notifiers: list[Notifier]) -> None:
    config = CommunicationsConfig(
        enabled=True, backends={"rec": CommunicatorBackendConfig(type="recording")}
    )

    notifier = Notifier.from_config(config)
    notifiers.append(notifier)

    assert notifier.config is config
    assert notifier.send("x").ok


def test_disabled_communications_warn_naming_the_flag_and_every_send_is_skipped(
    notifiers: list[Notifier],
) -> None:
    config = {"backends": {"rec": {"type": "recording"}}}  # enabled defaults to false

    with pytest.warns(UserWarning, match=r"communications\.enabled") as warned:
        notifier = Notifier(config)
    notifiers.append(notifier)
    report = notifier.send("not sent")

    assert warned[0].filename == __file__
    assert [(r.backend, r.status) for r in report.results] == [("rec", "skipped")]
    assert "enabled is false" in (report.results[0].error or "")


def test_a_backend_disabled_in_config_is_not_created(notifiers: list[Notifier]) -> None:
    notifier = Notifier(recording_config(on={}, off={"enabled": False}))
    notifiers.append(notifier)

    assert list(notifier.communicators) == ["on"]


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("drain_timeout", -1, "drain_timeout"),
        ("max_in_flight", 0, "max_in_flight"),
        ("start_timeout", -1, "start_timeout"),
    ],
)
def test_bad_options_are_refused_naming_them(option: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Notifier(ENABLED, start=False, **{option: value})  # type: ignore[arg-type]


def test_repr_names_the_backends_and_the_state(notifiers: list[Notifier]) -> None:
    notifier = Notifier(recording_config(rec={}), name="alerts")
    notifiers.append(notifier)

    assert repr(notifier) == "Notifier(name='alerts', backends=['rec'], started)"


# -- async flush and close --------------------------------------------------------------


@pytest.mark.asyncio
async def test_aflush_waits_without_blocking_the_callers_loop(notifiers: list[Notifier]) -> None:
    gate = GateCommunicator()
    notifier = make(notifiers, gate)
    notifier.send_nowait("stuck until opened")
    flushing = asyncio.create_task(notifier.aflush(timeout=5))

    # The caller's loop keeps running its own timers while the flush waits.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(flushing), timeout=0.05)
    gate.open()

    assert await flushing


@pytest.mark.asyncio
async def test_aclose_closes_from_an_async_application(notifiers: list[Notifier]) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)
    notifier.send_nowait("queued")

    assert await notifier.aclose()

    assert notifier.closed
    assert recorder.texts == ["queued"]


def test_aflush_works_from_an_async_handler_on_the_notifiers_own_loop(
    notifiers: list[Notifier],
) -> None:
    recorder = RecordingCommunicator()
    notifier = make(notifiers, recorder)
    flushed: concurrent.futures.Future[bool] = concurrent.futures.Future()

    async def handler(message: IncomingMessage) -> None:
        notifier.send_nowait("reply")
        flushed.set_result(await notifier.aflush(timeout=5))

    notifier.on_message(handler)
    recorder.inject("ping")

    assert flushed.result(timeout=5)
    assert recorder.texts == ["reply"]
