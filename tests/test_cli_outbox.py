"""processpype-notify worker / outbox status / outbox retry-dead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from outbox_helpers import needs_redis_server, outbox_config, running_worker, wait_until
from test_outbox import flaky_factory

from processpype.cli import main
from processpype.communications.notifier import Notifier
from processpype.testing.redis import RedisTestServer


def write_config(tmp_path: Path, settings: dict[str, Any]) -> str:
    path = tmp_path / "notify.yaml"
    path.write_text(json.dumps(settings))
    return str(path)


def settings_for(url: str, **outbox: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "backends": {"f": {"type": "flaky", "failures": 1, "permanent": True}},
        "outbox": {"url": url, **outbox},
    }


@needs_redis_server
def test_status_shows_length_pending_age_and_dead_letters_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RedisTestServer(password="pa55-word") as server:
        settings = settings_for(server.url, claim_after=30)
        config = outbox_config(server.url, settings["backends"], claim_after=30)
        with running_worker(config, factory=flaky_factory), Notifier(config) as notifier:
            notifier.send("dead on arrival", wait_for_delivery=True, timeout=10)
        with Notifier(config) as notifier:
            notifier.send("waiting")
        code = main(["outbox", "status", "-c", write_config(tmp_path, settings)])
        out = capsys.readouterr().out
    assert code == 0
    assert f"redis://:**********@127.0.0.1:{server.port}/0" in out
    assert "pa55-word" not in out
    assert "dead letters: 1" in out
    assert "dead on arrival" in out
    assert "refused try 1" in out
    assert "(1 not read yet)" in out
    oldest = out.split("oldest entry: ")[1].split("\n")[0]
    assert oldest.endswith("s old")


def test_status_json_lists_pending_per_consumer(
    processpype_redis: RedisTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    db.xgroup_create("processpype:outbox", "workers", id="0", mkstream=True)
    db.xadd("processpype:outbox", {"backend": "f", "key": "k", "message": '{"message":"x"}'})
    db.xreadgroup("workers", "host-1", {"processpype:outbox": ">"}, count=1)
    db.set("processpype:lease:tg", "host-2-77")
    code = main(
        [
            "outbox",
            "status",
            "--json",
            "-c",
            write_config(tmp_path, settings_for(processpype_redis.url)),
        ]
    )
    status = json.loads(capsys.readouterr().out)
    db.close()
    assert code == 0
    assert status["pending"] == {"host-1": 1}
    assert status["length"] == 1
    assert status["unread"] == 0
    assert status["oldest_age_seconds"] >= 0
    assert status["leases"] == {"tg": "host-2-77"}


def test_retry_dead_puts_dead_letters_back_for_the_workers(
    processpype_redis: RedisTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(processpype_redis.url)
    config = outbox_config(processpype_redis.url, settings["backends"])
    db = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    with running_worker(config, factory=flaky_factory) as worker, Notifier(config) as notifier:
        notifier.send("second chance", wait_for_delivery=True, timeout=10)
        assert db.xlen("processpype:dead") == 1
        code = main(["outbox", "retry-dead", "-c", write_config(tmp_path, settings)])
        # The flaky backend refuses only its first try: the retried entry goes through.
        wait_until(lambda: worker.delivered == 1, what="the retried entry delivered")
    assert code == 0
    assert "put 1 dead letter(s) back" in capsys.readouterr().out
    assert db.xlen("processpype:dead") == 0
    db.close()


def test_worker_without_an_outbox_section_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, {"enabled": True, "backends": {}})
    assert main(["worker", "-c", path]) == 2
    assert "no communications.outbox section" in capsys.readouterr().err


@needs_redis_server
def test_status_with_redis_down_names_the_url_without_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = RedisTestServer(password="pa55-word")
    server.start()
    server.stop()
    code = main(["outbox", "status", "-c", write_config(tmp_path, settings_for(server.url))])
    err = capsys.readouterr().err
    assert code == 1
    assert f"redis://:**********@127.0.0.1:{server.port}/0 is unreachable" in err
    assert "pa55-word" not in err


def test_check_shows_the_outbox_url_with_the_password_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "enabled": True,
        "backends": {"c": {"type": "console"}},
        "outbox": {"url": "redis://:hunter2-pw@redis.internal:6379/2"},
    }
    code = main(["check", write_config(tmp_path, settings)])
    out = capsys.readouterr().out
    assert code == 0
    assert "redis://:**********@redis.internal:6379/2" in out
    assert "hunter2-pw" not in out


def test_cli_send_with_an_outbox_queues_the_message(
    processpype_redis: RedisTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "enabled": True,
        "backends": {"c": {"type": "console"}},
        "outbox": {"url": processpype_redis.url},
    }
    code = main(["send", "-c", write_config(tmp_path, settings), "backup done"])
    assert code == 0
    assert capsys.readouterr().out == "c: queued\n"
    db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    ((_, fields),) = db.xrange("processpype:outbox")
    db.close()
    assert fields["backend"] == "c"
    assert "backup done" in fields["message"]


@needs_redis_server
def test_cli_send_with_redis_down_fails_naming_the_url_without_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = RedisTestServer(password="pa55-word")
    server.start()
    server.stop()
    settings = {
        "enabled": True,
        "backends": {"c": {"type": "console"}},
        "outbox": {"url": server.url},
    }
    code = main(["send", "-c", write_config(tmp_path, settings), "anyone?"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("c: failed: OutboxUnavailableError: the outbox at ")
    assert f"redis://:**********@127.0.0.1:{server.port}/0 is unreachable" in out
    assert "pa55-word" not in out


def test_cli_listen_with_an_outbox_prints_what_the_lease_holder_publishes(
    processpype_redis: RedisTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    from processpype.communications.models import IncomingMessage

    settings = {
        "enabled": True,
        "backends": {"rec": {"type": "recording"}},  # a receiving backend
        "outbox": {"url": processpype_redis.url, "lease_time": 1.0},
    }
    path = write_config(tmp_path, settings)
    db: Any = redis.Redis.from_url(processpype_redis.url, decode_responses=True)

    def publish_when_listening() -> None:
        wait_until(lambda: db.exists("processpype:lease:rec"), what="the lease holder")
        incoming = IncomingMessage(text="/status", backend_name="rec", chat_label="ops")
        db.xadd("processpype:incoming:rec", {"message": incoming.model_dump_json()})

    publisher = threading.Thread(target=publish_when_listening)
    publisher.start()
    code = main(["listen", "-c", path, "--count", "1", "--timeout", "10", "--json"])
    publisher.join(10)
    db.close()
    assert code == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["text"] == "/status"
