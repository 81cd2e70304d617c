"""Outbox proofs with real worker processes and a real redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from outbox_helpers import Workers, pending, read_lines, wait_until

from processpype.communications.notifier import Notifier
from processpype.testing.redis import RedisTestServer


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    group = Workers(tmp_path)
    yield group
    group.close()


def config(url: str, **outbox: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "backends": {"rec": {"type": "recording", "receiving": False}},
        "outbox": {"url": url, **outbox},
    }


def test_sigkilled_worker_leaves_its_entries_to_another_and_none_stay_pending(
    processpype_redis: RedisTestServer, workers: Workers, tmp_path: Path
) -> None:
    settings = config(processpype_redis.url, claim_after=0.5)
    db = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    with Notifier(settings) as notifier:
        for number in range(20):
            assert notifier.send(f"alert {number}").ok
    slow_out = tmp_path / "slow.jsonl"
    slow = workers.start(
        {
            "config": settings,
            "out": str(slow_out),
            "delay": 30,
            "concurrency": 5,
            "consumer": "slow",
        }
    )
    # The slow worker holds five entries mid-send.
    wait_until(lambda: pending(db).get("slow") == 5, what="five entries pending at the slow one")
    slow.send_signal(signal.SIGKILL)
    slow.wait(5)
    fast_out = tmp_path / "fast.jsonl"
    workers.start({"config": settings, "out": str(fast_out), "concurrency": 4, "consumer": "fast"})
    wait_until(lambda: len(read_lines(fast_out)) >= 20, timeout=10, what="all 20 delivered")
    wait_until(lambda: sum(pending(db).values()) == 0, what="nothing pending")
    texts = sorted(line["text"] for line in read_lines(fast_out))
    assert texts == sorted(f"alert {n}" for n in range(20))
    assert read_lines(slow_out) == []
    db.close()


def test_cli_worker_delivers_and_stops_on_sigterm(
    processpype_redis: RedisTestServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    settings = {
        "enabled": True,
        "backends": {"file": {"type": "console", "path": str(out)}},
        "outbox": {"url": processpype_redis.url},
    }
    config_path = tmp_path / "notify.yaml"
    config_path.write_text(json.dumps(settings))  # JSON is YAML
    with Notifier(settings) as notifier:
        assert notifier.send("via the cli worker").ok
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "processpype",
            "worker",
            "-c",
            str(config_path),
            "--concurrency",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until(
            lambda: out.exists() and "via the cli worker" in out.read_text(),
            timeout=10,
            what="delivery",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 143
    assert "delivering from redis://127.0.0.1" in stderr
    assert "delivered 1" in stderr


def test_redis_restarted_mid_run_producers_and_workers_recover(
    processpype_redis: RedisTestServer, workers: Workers, tmp_path: Path
) -> None:
    settings = config(processpype_redis.url, claim_after=1)
    out = tmp_path / "out.jsonl"
    workers.start({"config": settings, "out": str(out), "concurrency": 2})
    with Notifier(settings) as notifier:
        for number in range(5):
            assert notifier.send(f"before {number}").ok
        wait_until(lambda: len(read_lines(out)) == 5, what="the first five")

        processpype_redis.kill()
        down = notifier.send("while down")
        assert not down.ok
        assert down.results[0].error is not None
        assert f"127.0.0.1:{processpype_redis.port}/0 is unreachable" in down.results[0].error

        processpype_redis.start()  # same port, no data: the stream and group are gone
        for number in range(5):
            report = notifier.send(f"after {number}")
            assert report.results[0].status == "queued", report
        wait_until(
            lambda: len(read_lines(out)) == 10, timeout=15, what="the five after the restart"
        )
    texts = sorted(line["text"] for line in read_lines(out))
    assert texts == sorted([f"before {n}" for n in range(5)] + [f"after {n}" for n in range(5)])
