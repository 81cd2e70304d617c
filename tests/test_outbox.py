"""The Redis outbox: queued sends, at-least-once delivery by workers, dead letters."""

from __future__ import annotations

import time
from typing import Any

import pytest
from outbox_helpers import (
    needs_redis_server,
    outbox_config,
    recorder_of,
    running_worker,
    wait_until,
)

from processpype.communications.base import Communicator
from processpype.communications.delivery import IDEMPOTENCY_KEY
from processpype.communications.errors import DeliveryTimeoutError, SendError
from processpype.communications.models import OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.config.models import CommunicatorBackendConfig
from processpype.testing.recording import RecordingCommunicator
from processpype.testing.redis import RedisTestServer


class FlakyBackend(Communicator):
    """Fails its first ``failures`` deliveries, then records; ``permanent`` failures optional."""

    def __init__(self, name: str, config: CommunicatorBackendConfig) -> None:
        super().__init__(name, config)
        extra: dict[str, Any] = config.model_extra or {}
        self.failures = int(extra.get("failures", 0))
        self.permanent = bool(extra.get("permanent", False))
        self.seen: list[OutgoingMessage] = []
        self.delivered: list[OutgoingMessage] = []

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        self.seen.append(message)
        if len(self.seen) <= self.failures:
            raise SendError(
                f"refused try {len(self.seen)}", backend=self.name, permanent=self.permanent
            )
        self.delivered.append(message)


def flaky_factory(name: str, config: CommunicatorBackendConfig) -> Communicator:
    if config.type == "flaky":
        return FlakyBackend(name, config)
    return RecordingCommunicator(name, config)


def test_send_returns_queued_for_each_backend_once_redis_has_it(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(
        processpype_redis.url,
        {
            "a": {"type": "recording", "receiving": False},
            "b": {"type": "recording", "receiving": False},
        },
    )
    with Notifier(config) as notifier:
        report = notifier.send("disk full")
    assert [(r.backend, r.status) for r in report.results] == [("a", "queued"), ("b", "queued")]
    assert report.ok
    assert report.queued == report.results
    entries = db.xrange("processpype:outbox")
    assert sorted(fields["backend"] for _, fields in entries) == ["a", "b"]
    keys = {fields["key"] for _, fields in entries}
    assert keys == {report.message.metadata[IDEMPOTENCY_KEY]}


def test_worker_delivers_and_acknowledges_every_entry(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(processpype_redis.url)
    with Notifier(config) as notifier:
        for number in range(20):
            notifier.send_nowait(f"message {number}")
        assert notifier.flush(5)
    with running_worker(config, concurrency=4) as worker:
        recorder = recorder_of(worker)
        recorder.wait_for(20)
        wait_until(lambda: db.xpending("processpype:outbox", "workers")["pending"] == 0)
    assert sorted(recorder.texts) == sorted(f"message {n}" for n in range(20))


def test_wait_for_delivery_returns_the_workers_outcome(processpype_redis: RedisTestServer) -> None:
    config = outbox_config(processpype_redis.url)
    with running_worker(config) as worker, Notifier(config) as notifier:
        report = notifier.send("deploy done", wait_for_delivery=True, timeout=10)
        assert [(r.backend, r.status) for r in report.results] == [("rec", "delivered")]
        assert recorder_of(worker).texts == ["deploy done"]


@pytest.mark.asyncio
async def test_asend_waits_for_delivery_too(processpype_redis: RedisTestServer) -> None:
    config = outbox_config(processpype_redis.url)
    with running_worker(config), Notifier(config) as notifier:
        report = await notifier.asend("async hello", wait_for_delivery=True, timeout=10)
    assert report.results[0].status == "delivered"


def test_wait_for_delivery_without_a_worker_times_out_naming_the_backend(
    processpype_redis: RedisTestServer,
) -> None:
    config = outbox_config(processpype_redis.url)
    with Notifier(config) as notifier, pytest.raises(DeliveryTimeoutError) as caught:
        notifier.send("nobody home", wait_for_delivery=True, timeout=0.3)
    assert caught.value.pending == ("rec",)
    assert "stays in the outbox" in str(caught.value)


def test_failed_delivery_is_retried_with_the_same_idempotency_key(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(
        processpype_redis.url,
        {"f": {"type": "flaky", "failures": 2}},
        claim_after=0.2,
        max_deliveries=5,
    )
    with running_worker(config, factory=flaky_factory) as worker, Notifier(config) as notifier:
        report = notifier.send("retry me", wait_for_delivery=True, timeout=10)
        backend = worker.dispatcher.get("f")
        assert isinstance(backend, FlakyBackend)
    assert report.results[0].status == "delivered"
    keys = {m.metadata[IDEMPOTENCY_KEY] for m in backend.seen}
    assert len(backend.seen) == 3
    assert keys == {report.message.metadata[IDEMPOTENCY_KEY]}
    assert db.xpending("processpype:outbox", "workers")["pending"] == 0
    assert db.hlen("processpype:errors") == 0


def test_entry_moves_to_dead_letters_after_max_deliveries_with_its_last_error(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(
        processpype_redis.url,
        {"f": {"type": "flaky", "failures": 100}},
        claim_after=0.1,
        max_deliveries=3,
    )
    with running_worker(config, factory=flaky_factory), Notifier(config) as notifier:
        report = notifier.send("doomed", wait_for_delivery=True, timeout=10)
    assert report.results[0].status == "failed"
    dead = db.xrange("processpype:dead")
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields["deliveries"] == "3"
    assert "refused try 3" in fields["error"]
    assert fields["backend"] == "f"
    assert db.xpending("processpype:outbox", "workers")["pending"] == 0


def test_permanent_failure_goes_to_dead_letters_at_once(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(
        processpype_redis.url,
        {"f": {"type": "flaky", "failures": 100, "permanent": True}},
        claim_after=0.1,
        max_deliveries=5,
    )
    with running_worker(config, factory=flaky_factory), Notifier(config) as notifier:
        notifier.send("refused", wait_for_delivery=True, timeout=10)
    (dead,) = db.xrange("processpype:dead")
    assert dead[1]["deliveries"] == "1"


def test_acknowledged_entries_are_trimmed_but_pending_ones_kept(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(
        processpype_redis.url,
        {
            "f": {"type": "flaky", "failures": 1},
            "rec": {"type": "recording", "receiving": False, "labels": ["other"]},
        },
        claim_after=30,
    )
    with Notifier(config) as notifier:
        for number in range(10):
            notifier.send(f"before {number}", label="other")
        notifier.send("stuck")  # fails once, then waits 30 s to be claimed again
        for number in range(5):
            notifier.send(f"after {number}", label="other")
    with running_worker(config, factory=flaky_factory) as worker:
        recorder = recorder_of(worker)
        recorder.wait_for(15)
        # Only what lies below the oldest pending entry can go.
        wait_until(lambda: db.xlen("processpype:outbox") == 6, what="the trim")
        pending = db.xpending("processpype:outbox", "workers")
    assert pending["pending"] == 1
    first, *rest = db.xrange("processpype:outbox")
    assert first[0] == pending["min"]
    assert "stuck" in first[1]["message"]
    assert all("after" in fields["message"] for _, fields in rest)


def test_stable_id_set_by_the_caller_is_kept(processpype_redis: RedisTestServer) -> None:
    config = outbox_config(processpype_redis.url)
    with running_worker(config) as worker, Notifier(config) as notifier:
        notifier.send("mine", metadata={IDEMPOTENCY_KEY: "job-42"}, wait_for_delivery=True)
        (message,) = recorder_of(worker).messages
    assert message.metadata[IDEMPOTENCY_KEY] == "job-42"


def test_same_message_object_sent_twice_gets_two_ids(processpype_redis: RedisTestServer) -> None:
    config = outbox_config(processpype_redis.url)
    message = OutgoingMessage(message="twice")
    with Notifier(config) as notifier:
        first = notifier.send(message)
        second = notifier.send(message)
    assert first.message.metadata[IDEMPOTENCY_KEY] != second.message.metadata[IDEMPOTENCY_KEY]
    assert IDEMPOTENCY_KEY not in message.metadata


def stopped_server(password: str | None = None) -> RedisTestServer:
    """A Redis server started and stopped again: nothing answers at its ``url`` any more."""
    server = RedisTestServer(password=password)
    server.start()
    server.stop()
    return server


@needs_redis_server
def test_redis_down_fails_fast_naming_the_url_without_password() -> None:
    server = stopped_server(password="hunter2-secret")
    config = outbox_config(server.url)
    with Notifier(config) as notifier:
        started = time.monotonic()
        report = notifier.send("anyone?", timeout=10)
        elapsed = time.monotonic() - started
    (result,) = report.results
    assert result.status == "failed"
    assert result.error is not None
    assert f"redis://:**********@127.0.0.1:{server.port}/0" in result.error
    assert "hunter2-secret" not in result.error
    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in repr(notifier)
    assert elapsed < 5  # fails at once, not after redis-py's retries


@needs_redis_server
def test_fallback_direct_delivers_in_process_and_says_so() -> None:
    url = stopped_server().url
    config = outbox_config(url, fallback="direct")
    with Notifier(config) as notifier:
        report = notifier.send("still goes out")
        proxy = notifier.communicator("rec")
    (result,) = report.results
    assert result.status == "delivered"
    assert result.error is not None
    assert "fallback: direct" in result.error
    assert isinstance(proxy, Communicator)


def test_without_an_outbox_the_notifier_sends_in_process(
    processpype_recorder: RecordingCommunicator,
) -> None:
    with Notifier({"enabled": True}) as notifier:
        notifier.add_communicator(processpype_recorder)
        report = notifier.send("direct", wait_for_delivery=True)
    (result,) = report.results
    assert (result.backend, result.status, result.attempts) == ("recorder", "delivered", 1)


def test_a_send_longer_than_claim_after_is_not_taken_over_by_another_worker(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    # The send takes 1.2 s, over twice claim_after: the worker holding the entry keeps
    # it fresh, so the other worker never claims it and it goes out once.
    config = outbox_config(
        processpype_redis.url,
        {"rec": {"type": "recording", "receiving": False, "delay": 1.2}},
        claim_after=0.5,
    )
    with running_worker(config) as first, running_worker(config) as second:
        recorders = [recorder_of(first), recorder_of(second)]
        with Notifier(config) as notifier:
            report = notifier.send("slow one", wait_for_delivery=True, timeout=10)
    # Both workers stopped: whatever either had started has finished.
    assert report.results[0].status == "delivered"
    assert db.xpending("processpype:outbox", "workers")["pending"] == 0
    assert sum(len(recorder.messages) for recorder in recorders) == 1


def test_metadata_that_is_not_json_reaches_the_worker_as_text(
    processpype_redis: RedisTestServer,
) -> None:
    config = outbox_config(processpype_redis.url)
    with running_worker(config) as worker, Notifier(config) as notifier:
        notifier.send("odd metadata", metadata={"when": object()}, wait_for_delivery=True)
        (message,) = recorder_of(worker).messages
    assert message.metadata["when"].startswith("<object object at")


class _ReadsDuringTrim:
    """A real redis-py client whose ``xinfo_groups`` first lets another worker read entries."""

    def __init__(self, client: Any, stream: str) -> None:
        self._client = client
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def xinfo_groups(self, stream: str) -> Any:
        # Another worker reads every new entry between the trim's two looks at the group.
        await self._client.xreadgroup("workers", "other", {self._stream: ">"}, count=10)
        return await self._client.xinfo_groups(stream)


@pytest.mark.asyncio
async def test_trim_never_deletes_entries_another_worker_reads_meanwhile(
    processpype_redis: RedisTestServer,
) -> None:
    import redis.asyncio as aioredis

    from processpype.communications.outbox.worker import OutboxWorker

    stream = "processpype:outbox"
    client = aioredis.Redis.from_url(processpype_redis.url, decode_responses=True)
    try:
        await client.xgroup_create(stream, "workers", id="0", mkstream=True)
        for number in range(3):
            await client.xadd(stream, {"backend": "rec", "message": str(number)})
        worker = OutboxWorker(outbox_config(processpype_redis.url))
        await worker._trim(_ReadsDuringTrim(client, stream))
        pending = await client.xpending(stream, "workers")
        # Pending at the other worker: a crash there must leave them to be claimed.
        assert pending["pending"] == 3
        assert await client.xlen(stream) == 3
    finally:
        await client.aclose()


@needs_redis_server
def test_waited_sends_that_queued_nothing_are_not_remembered() -> None:
    url = stopped_server().url
    with Notifier(outbox_config(url)) as notifier:
        for number in range(3):
            report = notifier.send(f"lost {number}", wait_for_delivery=True, timeout=10)
            assert report.results[0].status == "failed"
        producer = notifier._outbox
        assert producer is not None
        # A long-running sender with Redis down must not keep one key per failed send.
        assert producer._waited == set()


@pytest.mark.asyncio
async def test_trim_of_a_stream_that_is_gone_leaves_it_to_the_next_read(
    processpype_redis: RedisTestServer,
) -> None:
    import redis.asyncio as aioredis

    from processpype.communications.outbox.worker import OutboxWorker

    client = aioredis.Redis.from_url(processpype_redis.url, decode_responses=True)
    try:
        worker = OutboxWorker(outbox_config(processpype_redis.url))
        await worker._trim(client)  # no stream at all: nothing to trim, no error
        assert await client.exists("processpype:outbox") == 0
    finally:
        await client.aclose()


def test_the_worker_skips_a_message_below_the_backends_min_severity(
    processpype_redis: RedisTestServer,
) -> None:
    backends = {"rec": {"type": "recording", "receiving": False, "min_severity": "warning"}}
    config = outbox_config(processpype_redis.url, backends)
    with running_worker(config) as worker, Notifier(config) as notifier:
        quiet = notifier.send("just so you know", wait_for_delivery=True, timeout=10)
        loud = notifier.send("disk full", severity="error", wait_for_delivery=True, timeout=10)
    [skipped] = quiet.results
    assert skipped.status == "skipped"
    assert skipped.error == "severity info is below min_severity warning"
    assert [r.status for r in loud.results] == ["delivered"]
    assert recorder_of(worker).texts == ["disk full"]
