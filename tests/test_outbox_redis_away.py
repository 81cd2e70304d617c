"""A worker whose Redis goes away mid-delivery: nothing lost, nothing acknowledged early.

The server is restarted for real (``RedisTestServer.restart(keep_data=True)``: saved on
the way down and loaded back, as a Redis with RDB persistence does), so the stream, the
consumer group and its pending entries survive and the worker's late acknowledgement
meets the very entry it delivered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
import redis
from outbox_helpers import needs_redis_server, outbox_config, pending, running_worker, wait_until

from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryResult
from processpype.communications.models import OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.config.models import CommunicatorBackendConfig
from processpype.testing.redis import RedisTestServer

STREAM = "processpype:outbox"


class GatedBackend(Communicator):
    """Holds each delivery until ``gate`` opens; records what it delivered."""

    def __init__(self, name: str, config: CommunicatorBackendConfig) -> None:
        super().__init__(name, config)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.delivered: list[OutgoingMessage] = []

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        self.entered.set()
        opened = await asyncio.to_thread(self.gate.wait, 20.0)
        assert opened, "the test never opened the gate"
        self.delivered.append(message)

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        await self.send(message)
        return DeliveryResult.model_validate(
            {
                "backend": self.name,
                "status": "delivered",
                "attempts": 1,
                "warnings": ("split into 2 parts",),
                "reference": ("chat-1", "42"),
            }
        )


def test_entry_delivered_while_redis_restarts_is_acknowledged_once_back_and_not_resent(
    processpype_redis: RedisTestServer, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    backends: list[GatedBackend] = []

    def factory(name: str, config: CommunicatorBackendConfig) -> Communicator:
        backend = GatedBackend(name, config)
        backends.append(backend)
        return backend

    # claim_after is short: an entry left pending after the restart would be claimed
    # (and delivered again) by the second worker within the test.
    config = outbox_config(processpype_redis.url, claim_after=0.5)
    caplog.set_level(logging.INFO, logger="processpype.communications.outbox.worker")
    with running_worker(config, factory=factory, consumer="first"):
        with Notifier(config) as notifier:
            queued = notifier.send("sent across a restart")
        assert queued.results[0].status == "queued"
        wait_until(lambda: bool(backends) and backends[0].entered.is_set(), what="delivery")
        assert pending(db) == {"first": 1}
        db.close()

        processpype_redis.restart(keep_data=True)
        # While the server was down the entry stayed pending: the restart kept it.
        assert pending(db) == {"first": 1}
        backends[0].gate.set()
        wait_until(lambda: pending(db) == {}, timeout=15, what="the late acknowledgement")
        assert any(
            "acknowledged 1 entries delivered while Redis was away" in r.getMessage()
            for r in caplog.records
        )

        # A second worker watching past claim_after finds nothing to deliver again.
        with running_worker(config, factory=factory, consumer="second") as second:
            wait_until(lambda: len(backends) == 2, what="the second worker's backend")
            second_backend = backends[1]
            second_backend.gate.set()
            # A claim pass of the second worker after the entry would have been idle
            # past claim_after, had it stayed pending.
            since = time.monotonic() + config.outbox.claim_after  # type: ignore[union-attr]
            wait_until(lambda: second._last_claim > since, what="a claim pass")
        assert not second_backend.entered.is_set()
    assert [m.message for m in backends[0].delivered] == ["sent across a restart"]
    assert db.xpending(STREAM, "workers")["pending"] == 0


def test_outcome_recorded_after_redis_is_back_keeps_warnings_and_reference(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    gated: list[GatedBackend] = []

    def factory(name: str, config: CommunicatorBackendConfig) -> Communicator:
        backend = GatedBackend(name, config)
        gated.append(backend)
        return backend

    config = outbox_config(processpype_redis.url, claim_after=5)
    results: list[Any] = []
    with running_worker(config, factory=factory), Notifier(config) as notifier:
        waiting = threading.Thread(
            target=lambda: results.append(
                notifier.send("waited for", wait_for_delivery=True, timeout=20)
            )
        )
        waiting.start()
        wait_until(lambda: bool(gated) and gated[0].entered.is_set(), what="delivery")
        processpype_redis.restart(keep_data=True)
        gated[0].gate.set()
        waiting.join(25)
    (report,) = results
    (result,) = report.results
    assert result.status == "delivered"
    assert result.warnings == ("split into 2 parts",)
    assert result.reference == ("chat-1", "42")
    assert db.xpending(STREAM, "workers")["pending"] == 0


@needs_redis_server
def test_wait_for_delivery_with_redis_gone_until_the_deadline_names_the_url_masked() -> None:
    from processpype.communications.errors import OutboxUnavailableError

    errors: list[BaseException] = []
    with RedisTestServer(password="wait-s3cret") as server:
        db = redis.Redis.from_url(server.url, decode_responses=True)
        config = outbox_config(server.url, connect_timeout=0.5)
        with Notifier(config) as notifier:

            def wait_for_it() -> None:
                try:
                    notifier.send("waited for", wait_for_delivery=True, timeout=2.0)
                except BaseException as exc:
                    errors.append(exc)

            waiting = threading.Thread(target=wait_for_it)
            waiting.start()
            wait_until(lambda: db.exists(STREAM) == 1, what="the entry in the stream")
            db.close()
            server.kill()  # no worker: the outcome never comes, and Redis is gone
            waiting.join(10)
    (error,) = errors
    assert isinstance(error, OutboxUnavailableError)
    assert "wait-s3cret" not in str(error)
    assert f"redis://:**********@127.0.0.1:{server.port}/0" in str(error)


def test_first_send_after_a_redis_restart_is_queued_not_failed(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    # The producer's pooled connection died with the old server; the send must not.
    config = outbox_config(processpype_redis.url)
    with Notifier(config) as notifier:
        assert notifier.send("before").results[0].status == "queued"
        db.close()
        processpype_redis.restart()
        report = notifier.send("after")
    assert report.results[0].status == "queued", report
    assert [fields["key"] != "" for _, fields in db.xrange(STREAM)] == [True]
