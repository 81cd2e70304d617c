"""Edits, progress, watch and questions with a Redis outbox: queued results have no message id."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from outbox_helpers import outbox_config, recorder_of, running_worker
from telegram_helpers import enforcing_default_fake, listening_backends

from processpype.communications.notifier import Notifier
from processpype.testing.redis import RedisTestServer
from processpype.testing.telegram import FakeTelegramClient

PRIVATE = 555000111
OWNER = 42


@pytest.fixture
def fake() -> Iterator[FakeTelegramClient]:
    with enforcing_default_fake() as client:
        yield client


def telegram_backend(tmp_path: Path) -> dict[str, Any]:
    return listening_backends(tmp_path, PRIVATE, command_authorized=True)


def test_editing_a_queued_message_is_skipped_saying_why(processpype_redis: RedisTestServer) -> None:
    with Notifier(outbox_config(processpype_redis.url)) as notifier:
        report = notifier.send("deploying")
        edited = notifier.edit(report, "deployed")

    [result] = edited.results
    assert (result.backend, result.status) == ("rec", "skipped")
    assert result.error is not None
    assert "queued in the outbox" in result.error


def test_progress_with_an_outbox_queues_only_the_first_and_the_final_message(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(processpype_redis.url)
    with Notifier(config) as notifier:
        progress = notifier.progress(range(200), desc="rows", min_interval=0)
        for _ in progress:
            pass
        assert notifier.flush(5)

    assert progress.state == "done"
    assert progress.final_report is not None
    assert [r.status for r in progress.final_report.results] == ["queued"]
    assert db.xlen("processpype:outbox") == 2
    with running_worker(config) as worker:
        recorder = recorder_of(worker)
        recorder.wait_for(2)
    first, final = recorder.texts
    assert first.startswith("\N{HOURGLASS WITH FLOWING SAND} rows: 0/200")
    assert final.startswith("\N{WHITE HEAVY CHECK MARK} rows: done, 200/200")


def test_watch_with_an_outbox_queues_the_failure_report(
    processpype_redis: RedisTestServer,
) -> None:
    config = outbox_config(processpype_redis.url)
    with Notifier(config) as notifier:
        watch = notifier.watch("nightly ETL")
        with pytest.raises(KeyError), watch:
            raise KeyError("orders")

    with running_worker(config) as worker:
        [message] = recorder_of(worker).wait_for(1)
    assert message.message.startswith("\N{CROSS MARK} nightly ETL failed after ")
    assert message.severity == "error"


def test_a_question_is_asked_by_the_process_holding_the_update_lease(
    processpype_redis: RedisTestServer, fake: FakeTelegramClient, tmp_path: Path
) -> None:
    config = outbox_config(processpype_redis.url, telegram_backend(tmp_path), lease_time=1.0)
    with (
        Notifier(config) as notifier,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        answer = pool.submit(notifier.ask, "Deploy to prod?", choices=["yes", "no"], timeout=10)
        [question] = fake.wait_for_sent(1)
        [[yes, _]] = question.buttons

        fake.press_button(PRIVATE, question.message_id, yes.data, sender_id=OWNER)

        assert answer.result(5) == "yes"
    assert fake.message(PRIVATE, question.message_id).text.startswith(
        "Deploy to prod?\n\N{WHITE HEAVY CHECK MARK} yes"
    )


def test_asking_where_another_process_holds_the_update_lease_is_a_clear_error(
    processpype_redis: RedisTestServer, fake: FakeTelegramClient, tmp_path: Path, db: Any
) -> None:
    db.set("processpype:lease:tg", "elsewhere-1-abcdef")  # another process's bot connection
    config = outbox_config(processpype_redis.url, telegram_backend(tmp_path), lease_time=1.0)
    with Notifier(config) as notifier, pytest.raises(RuntimeError, match="another process holds"):
        notifier.ask("Deploy to prod?", choices=["yes", "no"], timeout=0.3)

    assert fake.sent == []


def test_a_one_shot_sender_without_receiving_cannot_ask(
    processpype_redis: RedisTestServer, fake: FakeTelegramClient, tmp_path: Path
) -> None:
    from processpype.communications.outbox.producer import OutboxProducer

    config = outbox_config(processpype_redis.url, telegram_backend(tmp_path))
    assert config.outbox is not None
    producer = OutboxProducer(config.outbox, receive=False)
    communicator = producer.communicator_factory("tg", config.backends["tg"])

    assert not communicator.supports_asking


def test_run_only_sends_it_never_takes_the_update_lease(
    processpype_redis: RedisTestServer, fake: FakeTelegramClient, tmp_path: Path, db: Any
) -> None:
    import json
    import sys

    from processpype.cli import main

    config = {
        "communications": {
            "enabled": True,
            "backends": telegram_backend(tmp_path),
            "outbox": {"url": processpype_redis.url},
        }
    }
    path = tmp_path / "notify.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML

    status = main(["run", "-c", str(path), "--name", "job", "--", sys.executable, "-c", "pass"])

    assert status == 0
    [(_, entry)] = db.xrange("processpype:outbox")
    assert entry["backend"] == "tg"
    assert db.get("processpype:lease:tg") is None
    assert fake.sessions == []  # no bot connection was opened in this process
