"""The Redis URL's password never shows: not in our logs, redis-py's at DEBUG, or errors."""

from __future__ import annotations

import logging

import pytest
from outbox_helpers import (
    needs_redis_server,
    outbox_config,
    recorder_of,
    running_worker,
    wait_until,
)

from processpype.communications.notifier import Notifier
from processpype.communications.outbox.worker import OutboxWorker
from processpype.testing.redis import RedisTestServer

pytestmark = needs_redis_server

SECRET = "red1s-pa55word"


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(repr(record.exc_info[1]))
            lines.append(str(record.exc_info[1]))
    return "\n".join(lines)


def test_password_never_in_debug_logs_of_a_run_across_a_redis_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, redis-py's, asyncio's
    with RedisTestServer(password=SECRET) as server:
        config = outbox_config(server.url, claim_after=0.5)
        with running_worker(config) as worker:
            assert SECRET not in repr(worker)
            recorder = recorder_of(worker)
            with Notifier(config) as notifier:
                assert SECRET not in repr(notifier.communicators["rec"])
                first = notifier.send("before", wait_for_delivery=True, timeout=10)
                server.restart(keep_data=True)
                second = notifier.send("after", wait_for_delivery=True, timeout=10)
                server.kill()  # a producer with Redis gone: the error is logged
                third = notifier.send("while down")
                server.start()
            wait_until(lambda: len(recorder.messages) == 2, what="both deliveries")
    assert [r.status for r in (first.results + second.results)] == ["delivered", "delivered"]
    (failed,) = third.results
    assert failed.status == "failed"
    assert SECRET not in (failed.error or "")
    assert "redis://:**********@127.0.0.1" in (failed.error or "")
    logged = _everything_logged(caplog)
    assert any(r.name.startswith("processpype") for r in caplog.records)
    assert SECRET not in logged


def test_wrong_password_error_names_the_url_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with RedisTestServer(password=SECRET) as server:
        wrong = server.url.replace(SECRET, "not-" + SECRET)
        config = outbox_config(wrong)
        with Notifier(config) as notifier:
            (result,) = notifier.send("refused").results
        worker = OutboxWorker(config)
    assert result.status == "failed"
    assert "redis://:**********@127.0.0.1" in (result.error or "")
    for text in (result.error or "", repr(worker), _everything_logged(caplog)):
        assert SECRET not in text


def test_a_redis_py_log_line_holding_the_password_is_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio

    from processpype.communications.outbox._redis import connect
    from processpype.config.outbox import OutboxConfig

    config = OutboxConfig.model_validate({"url": f"redis://:{SECRET}@127.0.0.1:1/0"})
    caplog.set_level(logging.DEBUG)
    client = connect(config)
    # As redis-py would log a connection's URL or its arguments at DEBUG.
    logging.getLogger("redis.asyncio.connection").debug(
        "connecting to %s", config.url.get_secret_value()
    )
    asyncio.run(client.aclose())
    (record,) = [r for r in caplog.records if r.name == "redis.asyncio.connection"]
    assert SECRET not in record.getMessage()
    assert "connecting to redis://:" in record.getMessage()
