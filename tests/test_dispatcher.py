"""Label routing, concurrency, failure isolation, severity filters and incoming events."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import pytest

from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryResult
from processpype.communications.dispatcher import (
    CommunicationDispatcher,
    emit_message,
    get_dispatcher,
)
from processpype.communications.models import IncomingMessage, MessageSeverity, OutgoingMessage
from processpype.config.models import CommunicatorBackendConfig
from processpype.testing.recording import RecordingCommunicator


def recorder(name: str, **extra: object) -> RecordingCommunicator:
    return RecordingCommunicator(name, CommunicatorBackendConfig(type="recording", **extra))  # type: ignore[arg-type]


class GateCommunicator(RecordingCommunicator):
    """Sends only once ``gate`` is set: a slow server."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()

    async def send(self, message: OutgoingMessage) -> None:
        await self.gate.wait()
        await super().send(message)


class FailingStart(RecordingCommunicator):
    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name)
        self.failures = failures

    async def start(self) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("smtp.example.com:587 refused the connection")
        await super().start()


async def started(dispatcher: CommunicationDispatcher) -> CommunicationDispatcher:
    await dispatcher.start_all()
    return dispatcher


async def dispatching(*backends: Communicator) -> CommunicationDispatcher:
    """A started dispatcher with each of ``backends`` registered under the default label."""
    dispatcher = CommunicationDispatcher()
    for backend in backends:
        dispatcher.register(backend)
    return await started(dispatcher)


@pytest.mark.asyncio
async def test_message_goes_to_every_backend_of_its_label_only() -> None:
    dispatcher = CommunicationDispatcher()
    ops, dev, both = recorder("ops"), recorder("dev"), recorder("both")
    dispatcher.register(ops, ["ops"])
    dispatcher.register(dev, ["dev"])
    dispatcher.register(both, ["ops", "dev"])
    await started(dispatcher)

    await dispatcher.emit(OutgoingMessage(message="disk full", label="ops"))

    assert ops.texts == ["disk full"]
    assert both.texts == ["disk full"]
    assert dev.texts == []


@pytest.mark.asyncio
async def test_register_without_labels_means_default() -> None:
    dispatcher = CommunicationDispatcher()
    dispatcher.register(recorder("a"))
    assert dispatcher.labels() == {"default": ["a"]}


@pytest.mark.asyncio
async def test_slow_backend_does_not_delay_the_others() -> None:
    slow, fast = GateCommunicator("slow"), recorder("fast")
    dispatcher = await dispatching(slow, fast)

    delivery = asyncio.create_task(dispatcher.deliver(OutgoingMessage(message="deploy done")))
    # fast receives the message while slow is still blocked on its gate.
    await asyncio.wait_for(asyncio.to_thread(fast.wait_for, 1, 5.0), 10)
    assert slow.messages == []
    slow.gate.set()
    report = await asyncio.wait_for(delivery, 5)
    assert [r.status for r in report.results] == ["delivered", "delivered"]


@pytest.mark.asyncio
async def test_one_backend_failure_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, healthy = recorder("broken"), recorder("healthy")
    broken.fail_next(RuntimeError("boom"))
    dispatcher = await dispatching(broken, healthy)

    with caplog.at_level(logging.ERROR, logger="processpype"):
        report = await dispatcher.deliver(OutgoingMessage(message="x"))

    assert healthy.texts == ["x"]
    assert report.result_for("broken").status == "failed"  # type: ignore[union-attr]
    assert "RuntimeError: boom" in report.result_for("broken").error  # type: ignore[operator,union-attr]
    assert not report.ok
    assert "broken" in caplog.text
    assert "boom" in caplog.text


@pytest.mark.asyncio
async def test_emit_never_raises_for_a_backend_error() -> None:
    broken = recorder("broken")
    broken.fail_next(ValueError("bad"))
    dispatcher = await dispatching(broken)
    await dispatcher.emit(OutgoingMessage(message="x"))
    assert broken.messages == []


@pytest.mark.asyncio
async def test_unhandled_label_warns_once_per_label(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = CommunicationDispatcher()
    dispatcher.register(recorder("a"), ["ops"])
    with caplog.at_level(logging.WARNING, logger="processpype"):
        for _ in range(3):
            report = await dispatcher.deliver(OutgoingMessage(message="x", label="typo"))
        await dispatcher.deliver(OutgoingMessage(message="x", label="other"))

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "'typo'" in warnings[0]
    assert "ops" in warnings[0]
    assert report.results == ()
    assert not report.ok


@pytest.mark.asyncio
async def test_min_severity_keeps_low_messages_from_a_backend() -> None:
    email = recorder("email", min_severity="error")
    console = recorder("console")
    dispatcher = await dispatching(email, console)

    info = await dispatcher.deliver(OutgoingMessage(message="started"))
    await dispatcher.deliver(OutgoingMessage(message="failed", severity=MessageSeverity.CRITICAL))

    assert console.texts == ["started", "failed"]
    assert email.texts == ["failed"]
    skipped = info.result_for("email")
    assert skipped is not None
    assert skipped.status == "skipped"
    assert "min_severity" in (skipped.error or "")
    assert info.ok


@pytest.mark.asyncio
async def test_backend_that_is_not_started_is_skipped() -> None:
    dispatcher = CommunicationDispatcher()
    idle = recorder("idle")
    dispatcher.register(idle)
    report = await dispatcher.deliver(OutgoingMessage(message="x"))
    assert idle.messages == []
    assert report.results[0].status == "skipped"


@pytest.mark.asyncio
async def test_failed_start_is_retried_with_backoff_and_reported_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("processpype.communications.dispatcher.time.monotonic", lambda: now[0])
    flaky = FailingStart("mail", failures=2)
    dispatcher = await dispatching(flaky)
    assert "mail" in dispatcher.start_errors()

    first = await dispatcher.deliver(OutgoingMessage(message="1"))
    assert first.results[0].status == "failed"
    assert "did not start" in (first.results[0].error or "")
    assert "refused the connection" in (first.results[0].error or "")

    now[0] += 1.5  # past the first backoff (1 s): retried, fails again (backoff now 2 s)
    second = await dispatcher.deliver(OutgoingMessage(message="2"))
    assert second.results[0].status == "failed"
    assert flaky.failures == 0

    now[0] += 1.0  # still inside the 2 s backoff: not retried
    third = await dispatcher.deliver(OutgoingMessage(message="3"))
    assert third.results[0].status == "failed"
    assert not flaky.is_started

    now[0] += 1.5
    fourth = await dispatcher.deliver(OutgoingMessage(message="4"))
    assert fourth.results[0].status == "delivered"
    assert flaky.texts == ["4"]
    assert dispatcher.start_errors() == {}


class SlowRecoveringStart(RecordingCommunicator):
    """Fails its first start; the next one connects once ``connected`` is set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.failed_once = False
        self.connected = asyncio.Event()

    async def start(self) -> None:
        if not self.failed_once:
            self.failed_once = True
            raise ConnectionError("smtp.example.com:587 refused the connection")
        await self.connected.wait()
        await super().start()


@pytest.mark.asyncio
async def test_messages_keep_their_order_while_a_backend_recovers_from_a_failed_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("processpype.communications.dispatcher._START_RETRY_FIRST_DELAY", 0.0)
    mail = SlowRecoveringStart("mail")
    dispatcher = await dispatching(mail)
    first = asyncio.create_task(dispatcher.deliver_to(mail, OutgoingMessage(message="1")))
    second = asyncio.create_task(dispatcher.deliver_to(mail, OutgoingMessage(message="2")))
    await asyncio.sleep(0)  # "1" retries the start, "2" waits behind it

    mail.connected.set()
    # Handed over after "2", and arriving just as the retried start succeeds.
    third = asyncio.create_task(dispatcher.deliver_to(mail, OutgoingMessage(message="3")))
    results = await asyncio.gather(first, second, third)

    assert [r.status for r in results] == ["delivered"] * 3
    assert mail.texts == ["1", "2", "3"]


@pytest.mark.asyncio
async def test_start_all_and_stop_all_survive_a_failing_backend() -> None:
    bad, good = FailingStart("bad", failures=5), recorder("good")
    dispatcher = await dispatching(bad, good)
    assert good.is_started
    assert not bad.is_started

    async def broken_stop() -> None:
        raise RuntimeError("stop failed")

    bad.stop = broken_stop  # type: ignore[method-assign]
    await dispatcher.stop_all()
    assert not good.is_started


class HungStop(RecordingCommunicator):
    """A backend whose stop() never returns on its own: a server that stopped answering."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.cancelled = asyncio.Event()

    async def stop(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.mark.asyncio
async def test_stop_all_is_bounded_and_names_the_backends_still_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hung, good = HungStop("hung"), recorder("good")
    dispatcher = await dispatching(hung, good)
    with caplog.at_level(logging.ERROR, logger="processpype.communications.dispatcher"):
        still = await dispatcher.stop_all(timeout=0.05)
    assert still == ["hung"]
    await asyncio.wait_for(hung.cancelled.wait(), 5)  # cancelled, not left running
    assert not good.is_started
    assert "hung" in caplog.text


@pytest.mark.asyncio
async def test_unregister_removes_every_label_mapping() -> None:
    dispatcher = CommunicationDispatcher()
    dispatcher.register(recorder("a"), ["ops", "dev"])
    dispatcher.register(recorder("b"), ["ops"])
    dispatcher.unregister("a")
    assert dispatcher.labels() == {"ops": ["b"]}
    assert dispatcher.get("a") is None
    dispatcher.unregister("missing")  # no error


def test_duplicate_name_is_refused() -> None:
    dispatcher = CommunicationDispatcher()
    dispatcher.register(recorder("a"))
    with pytest.raises(ValueError, match="'a' is already registered"):
        dispatcher.register(recorder("a"))


def test_empty_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="labels cannot be empty"):
        CommunicationDispatcher().register(recorder("a"), [])


@pytest.mark.asyncio
async def test_flush_all_is_true_for_backends_without_a_queue() -> None:
    dispatcher = CommunicationDispatcher()
    dispatcher.register(recorder("a"))
    assert await dispatcher.flush_all(timeout=1.0) is True


def test_incoming_messages_reach_subscribers_even_after_garbage_collection() -> None:
    dispatcher = CommunicationDispatcher()
    chat = recorder("chat")
    dispatcher.register(chat)
    received: list[IncomingMessage] = []
    unsubscribe = dispatcher.subscribe(received.append)
    gc.collect()

    chat.inject("/status", sender="ann", sender_id="7", chat_label="ops")

    assert [(m.text, m.sender_id, m.chat_label, m.backend_name) for m in received] == [
        ("/status", "7", "ops", "chat")
    ]
    unsubscribe()
    chat.inject("/again")
    assert len(received) == 1


def test_incoming_publisher_is_an_eventspype_publisher_of_incoming_messages() -> None:
    from eventspype import EventPublisher, FunctionalEventSubscriber

    dispatcher = CommunicationDispatcher()
    chat = recorder("chat")
    dispatcher.register(chat)
    seen: list[str] = []
    subscriber = FunctionalEventSubscriber(lambda m: seen.append(m.text), with_event_info=False)
    assert isinstance(dispatcher.incoming_publisher, EventPublisher)
    dispatcher.incoming_publisher.add_subscriber(subscriber)
    chat.inject("hello")
    assert seen == ["hello"]


def test_backend_that_cannot_receive_is_not_wired() -> None:
    dispatcher = CommunicationDispatcher()
    mute = recorder("mute", receiving=False)
    dispatcher.register(mute)
    received: list[IncomingMessage] = []
    dispatcher.subscribe(received.append)
    mute.inject("ignored")
    assert received == []


def test_get_dispatcher_is_one_instance_across_threads() -> None:
    results: list[CommunicationDispatcher] = []
    lock = threading.Lock()
    barrier = threading.Barrier(32)

    def grab() -> None:
        barrier.wait()
        dispatcher = get_dispatcher()
        with lock:
            results.append(dispatcher)

    threads = [threading.Thread(target=grab) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 32
    assert len({id(d) for d in results}) == 1


@pytest.mark.asyncio
async def test_emit_message_uses_the_global_dispatcher() -> None:
    dispatcher = get_dispatcher()
    rec = recorder(
        "rec",
    )
    dispatcher.register(rec, ["alerts"])
    await dispatcher.start_all()
    await emit_message(OutgoingMessage(message="Hello", label="alerts"))
    assert rec.texts == ["Hello"]


class CountingCommunicator(Communicator):
    """A minimal third-party backend: only the abstract methods."""

    def __init__(self, name: str) -> None:
        super().__init__(name, CommunicatorBackendConfig(type="counting"))
        self.count = 0

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        self.count += 1


@pytest.mark.asyncio
async def test_minimal_backend_gets_default_deliver_and_flush() -> None:
    counting = CountingCommunicator("count")
    dispatcher = await dispatching(counting)
    report = await dispatcher.deliver(OutgoingMessage(message="x"))
    assert counting.count == 1
    assert report.results[0].status == "delivered"
    assert report.results[0].attempts == 1
    assert await counting.flush() is True
    assert counting.supports_receiving is False


@pytest.mark.asyncio
async def test_deliver_reports_each_result_as_it_arrives() -> None:
    slow, fast = GateCommunicator("slow"), recorder("fast")
    dispatcher = await dispatching(slow, fast)
    arrived: list[str] = []
    first = asyncio.Event()

    def on_result(result: DeliveryResult) -> None:
        arrived.append(result.backend)
        first.set()

    task = asyncio.ensure_future(
        dispatcher.deliver(OutgoingMessage(message="hi"), on_result=on_result)
    )
    # The fast backend reports while the slow one still sends.
    await asyncio.wait_for(first.wait(), 5)
    assert arrived == ["fast"]
    slow.gate.set()
    report = await task
    assert arrived == ["fast", "slow"]
    assert [r.backend for r in report.results] == ["slow", "fast"]  # registration order


class SlowStart(RecordingCommunicator):
    """Connects once ``connected`` is set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.connected = asyncio.Event()

    async def start(self) -> None:
        await self.connected.wait()
        await super().start()


@pytest.mark.asyncio
async def test_messages_wait_at_the_start_gate_and_go_in_arrival_order() -> None:
    dispatcher = CommunicationDispatcher()
    mail = SlowStart("mail")
    dispatcher.register(mail)
    starting = asyncio.ensure_future(dispatcher.start_all())
    await asyncio.sleep(0)  # the start is under way
    sends = [
        asyncio.ensure_future(dispatcher.deliver(OutgoingMessage(message=text)))
        for text in ("1", "2")
    ]
    await asyncio.sleep(0)
    assert mail.texts == []
    mail.connected.set()
    # Handed over as the start ends: it still queues behind the two waiting.
    sends.append(asyncio.ensure_future(dispatcher.deliver(OutgoingMessage(message="3"))))
    reports = await asyncio.gather(*sends)
    await starting
    assert [r.results[0].status for r in reports] == ["delivered"] * 3
    assert mail.texts == ["1", "2", "3"]


@pytest.mark.asyncio
async def test_a_send_cancelled_at_the_start_gate_is_known_as_not_sent() -> None:
    dispatcher = CommunicationDispatcher()
    mail = SlowStart("mail")
    dispatcher.register(mail)
    start = dispatcher.begin_start(mail)
    results: list[DeliveryResult | None] = []
    sends = dispatcher.fan_out(
        OutgoingMessage(message="held"), [mail], lambda _, result: results.append(result)
    )
    task = sends[0]
    assert task is not None
    assert dispatcher.at_gate(task)
    task.cancel()
    await asyncio.wait([task])
    assert results == [None]  # cancelled: no result
    assert not dispatcher.at_gate(task)
    mail.connected.set()
    assert await start is True
    later = await dispatcher.deliver(OutgoingMessage(message="after"))
    assert later.ok
    assert mail.texts == ["after"]


@pytest.mark.asyncio
async def test_fan_out_hands_an_in_memory_result_back_at_once() -> None:
    one, two = recorder("one"), recorder("two")
    dispatcher = await dispatching(one, two)
    results: list[tuple[int, DeliveryResult | None]] = []
    sends = dispatcher.fan_out(
        OutgoingMessage(message="hi"), [one, two], lambda i, r: results.append((i, r))
    )
    assert sends == [None, None]  # nothing left under way: both completed here
    assert [(i, r.status if r else None) for i, r in results] == [
        (0, "delivered"),
        (1, "delivered"),
    ]


@pytest.mark.asyncio
async def test_cancelling_deliver_cancels_its_sends() -> None:
    one, two = GateCommunicator("one"), GateCommunicator("two")
    dispatcher = await dispatching(one, two)
    task = asyncio.ensure_future(dispatcher.deliver(OutgoingMessage(message="hi")))
    await asyncio.sleep(0)  # both sends wait at their gates
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    one.gate.set()
    two.gate.set()
    await asyncio.sleep(0)
    assert one.texts == []
    assert two.texts == []


@pytest.mark.asyncio
async def test_send_one_gives_the_result_at_once_or_the_task_still_sending() -> None:
    import contextvars

    quick, slow = recorder("quick"), GateCommunicator("slow")
    dispatcher = await dispatching(quick, slow)
    message = OutgoingMessage(message="hi")

    at_once = dispatcher.send_one(quick, message, contextvars.copy_context())
    assert isinstance(at_once, DeliveryResult)
    assert at_once.status == "delivered"
    assert quick.texts == ["hi"]  # sent before send_one returned

    sending = dispatcher.send_one(slow, message, contextvars.copy_context())
    assert isinstance(sending, asyncio.Task)
    assert not sending.done()
    slow.gate.set()
    assert (await sending).status == "delivered"
