"""One process holds a bot's update connection; a takeover loses and doubles nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from outbox_helpers import read_lines, wait_until

from processpype.testing.redis import RedisTestServer

LISTENER_MAIN = Path(__file__).with_name("outbox_listener_main.py")
ROOT = Path(__file__).resolve().parents[1]
LEASE = "processpype:lease:room"


class Listeners:
    """Notifier processes of one test, killed at the end."""

    def __init__(self) -> None:
        self.processes: dict[int, subprocess.Popen[str]] = {}

    def start(self, spec: dict[str, Any]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(LISTENER_MAIN), json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.processes[process.pid] = process
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", process.stderr.read() if process.stderr else line
        return process

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    group = Listeners()
    yield group
    group.close()


def holder_pid(db: Any) -> int | None:
    value = db.get(LEASE)
    return int(value.rsplit("-", 2)[1]) if value else None  # host-pid-tag


def test_lease_holder_killed_another_takes_over_nothing_lost_or_doubled(
    processpype_redis: RedisTestServer, listeners: Listeners, tmp_path: Path
) -> None:
    url = processpype_redis.url
    config = {
        "enabled": True,
        "backends": {"room": {"type": "chatroom", "url": url}},
        "outbox": {"url": url, "lease_time": 1.0},
    }
    outs = {name: tmp_path / f"{name}.jsonl" for name in ("a", "b")}
    first = listeners.start({"config": config, "out": str(outs["a"])})
    second = listeners.start({"config": config, "out": str(outs["b"])})
    db = redis.Redis.from_url(url, decode_responses=True)
    wait_until(lambda: holder_pid(db) in (first.pid, second.pid), what="a lease holder")
    holder = listeners.processes[holder_pid(db) or 0]
    survivor_out = outs["b"] if holder is first else outs["a"]

    def command(number: int) -> None:
        db.xadd("chatroom:updates", {"text": f"/status {number}", "number": str(number)})

    for number in range(10):
        command(number)
    # Both notifiers get every command, whichever process holds the connection.
    wait_until(lambda: all(len(read_lines(out)) == 10 for out in outs.values()), what="10 each")

    holder.send_signal(signal.SIGKILL)
    holder.wait(5)
    for number in range(10, 20):  # sent while nobody holds the connection
        command(number)
    wait_until(lambda: holder_pid(db) not in (None, holder.pid), timeout=5, what="the takeover")
    wait_until(
        lambda: len(read_lines(survivor_out)) >= 20, timeout=5, what="all 20 at the survivor"
    )

    counts = Counter(line["text"] for line in read_lines(survivor_out))
    assert counts == Counter(f"/status {n}" for n in range(20))
    assert db.xlen("processpype:incoming:room") == 20
    db.close()


def lease_pair(url: str) -> tuple[Any, Any, Any, Any]:
    from processpype.communications.outbox._redis import connect
    from processpype.communications.outbox.lease import UpdateLease
    from processpype.config.outbox import OutboxConfig
    from processpype.testing.recording import RecordingCommunicator

    config = OutboxConfig.model_validate({"url": url, "lease_time": 0.5})

    def client() -> Any:
        return connect(config, socket_timeout=5)

    first, second = RecordingCommunicator("room"), RecordingCommunicator("room")
    return (
        first,
        second,
        UpdateLease(first, config, client, holder="first"),
        UpdateLease(second, config, client, holder="second"),
    )


def test_only_the_holder_runs_the_backend_and_a_clean_stop_hands_over_at_once(
    processpype_redis: RedisTestServer,
) -> None:
    import asyncio

    first, second, lease_one, lease_two = lease_pair(processpype_redis.url)

    async def scenario() -> None:
        await lease_one.start()
        await asyncio.wait_for(_until(lambda: lease_one.holding), 5)
        await lease_two.start()
        await asyncio.sleep(0.2)  # two of second's polls: it must not start its backend
        assert not second.is_started
        assert first.is_started
        await lease_one.stop()
        assert not first.is_started
        await asyncio.wait_for(_until(lambda: lease_two.holding), 0.4)  # before the lease ran out
        assert second.is_started
        await lease_two.stop()

    asyncio.run(scenario())


def test_an_update_received_twice_is_published_once(processpype_redis: RedisTestServer) -> None:
    import asyncio

    first, _, lease_one, _ = lease_pair(processpype_redis.url)
    db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)

    async def scenario() -> None:
        await lease_one.start()
        await asyncio.wait_for(_until(lambda: lease_one.holding), 5)
        first.inject("/status", metadata={"chat_id": 7, "message_id": 1})
        first.inject("/status", metadata={"chat_id": 7, "message_id": 1})  # a catch-up resend
        first.inject("/status", metadata={"chat_id": 7, "message_id": 2})
        await asyncio.wait_for(_until(lambda: db.xlen("processpype:incoming:room") >= 2), 5)
        await lease_one.stop()

    asyncio.run(scenario())
    entries = db.xrange("processpype:incoming:room")
    db.close()
    ids = [json.loads(fields["message"])["metadata"]["message_id"] for _, fields in entries]
    assert ids == [1, 2]


async def _until(predicate: Any) -> None:
    """Poll ``predicate`` (state in another task or in Redis) until it holds."""
    import asyncio

    while not predicate():  # noqa: ASYNC110 - what is awaited has no event to wait on
        await asyncio.sleep(0.005)


def test_notifier_keeps_receiving_after_redis_restarts(processpype_redis: RedisTestServer) -> None:
    import queue

    from processpype.communications.models import IncomingMessage
    from processpype.communications.notifier import Notifier

    config = {
        "enabled": True,
        "backends": {"room": {"type": "recording"}},  # a receiving backend
        "outbox": {"url": processpype_redis.url, "lease_time": 0.5},
    }
    received: queue.SimpleQueue[str] = queue.SimpleQueue()

    def publish(text: str) -> None:
        db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
        wait_until(lambda: db.exists(LEASE), what="a lease holder")
        message = IncomingMessage(text=text, backend_name="room")
        db.xadd("processpype:incoming:room", {"message": message.model_dump_json()})
        db.close()

    with Notifier(config) as notifier:
        notifier.on_message(lambda message: received.put(message.text))
        publish("/before")
        assert received.get(timeout=5) == "/before"
        processpype_redis.kill()
        processpype_redis.start()  # empty: the stream starts over
        publish("/after")
        assert received.get(timeout=10) == "/after"
    assert received.empty()


def test_the_lease_is_renewed_while_a_slow_backend_starts(
    processpype_redis: RedisTestServer,
) -> None:
    import asyncio

    from processpype.communications.outbox._redis import connect
    from processpype.communications.outbox.lease import UpdateLease
    from processpype.config.outbox import OutboxConfig
    from processpype.testing.recording import RecordingCommunicator

    config = OutboxConfig.model_validate({"url": processpype_redis.url, "lease_time": 0.3})
    db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    lease_key = "processpype:lease:slow"

    class SlowStart(RecordingCommunicator):
        """A bot whose login takes several lease times: start() returns once it saw the
        lease renewed three times (or gives up after 5 s)."""

        renewals = 0

        async def start(self) -> None:
            last = db.pttl(lease_key)
            deadline = asyncio.get_running_loop().time() + 5
            while self.renewals < 3 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)  # polling Redis, not waiting for a race
                ttl = db.pttl(lease_key)
                if ttl > last:
                    self.renewals += 1
                last = ttl
            await super().start()

    slow = SlowStart("slow")
    lease = UpdateLease(slow, config, lambda: connect(config, socket_timeout=5), holder="slow-1")

    async def scenario() -> None:
        await lease.start()
        await asyncio.wait_for(_until(lambda: slow.is_started), 10)
        assert slow.renewals == 3  # renewed during the start, not only after it
        assert db.get(lease_key) == "slow-1"
        await lease.stop()

    asyncio.run(scenario())
    db.close()
