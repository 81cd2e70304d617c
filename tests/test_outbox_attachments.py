"""Attachments through the Redis outbox: the entry carries the bytes, within a bound."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from http_helpers import faulty_server
from outbox_helpers import outbox_config, recorder_of, running_worker

from processpype.communications.models import Attachment
from processpype.communications.notifier import Notifier
from processpype.testing.redis import RedisTestServer
from processpype.testing.smtp import SMTPTestServer

BLOB = os.urandom(300_000) + bytes(range(256)) + b"\r\n.\r\n\x00"


def test_a_queued_file_reaches_the_workers_backend_byte_for_byte(
    processpype_redis: RedisTestServer, tmp_path: Path
) -> None:
    path = tmp_path / "données.bin"
    path.write_bytes(BLOB)
    config = outbox_config(processpype_redis.url)
    with Notifier(config) as notifier:
        report = notifier.send("backup failed", attachments=[path])
        assert [r.status for r in report.results] == ["queued"]
        path.unlink()  # read at the call: the worker needs no file
        assert notifier.flush(5)
    with running_worker(config) as worker:
        recorder = recorder_of(worker)
        recorder.wait_for(1)
    [delivered] = recorder.messages
    assert [(a.filename, a.content_type, a.data) for a in delivered.attachments] == [
        ("données.bin", "application/octet-stream", BLOB)
    ]


def test_a_queued_file_is_mailed_by_the_worker_byte_for_byte(
    processpype_redis: RedisTestServer,
) -> None:
    with SMTPTestServer() as smtp:
        mail = smtp.email_config().model_dump()
        mail["password"] = ""
        config = outbox_config(processpype_redis.url, {"mail": mail})
        files = [Attachment.from_bytes(BLOB, "dump.bin"), Attachment.from_bytes(b"a,b\n", "t.csv")]
        with running_worker(config), Notifier(config) as notifier:
            report = notifier.send(
                "nightly dump", attachments=files, wait_for_delivery=True, timeout=15
            )
        assert [(r.backend, r.status) for r in report.results] == [("mail", "delivered")]
        [received] = smtp.messages
    assert [(a.filename, a.content_type, a.data) for a in received.attachments] == [
        ("dump.bin", "application/octet-stream", BLOB),
        ("t.csv", "text/csv", b"a,b\n"),
    ]


def test_the_entry_holds_the_bytes_base64_encoded(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(processpype_redis.url)
    with Notifier(config) as notifier:
        notifier.send("x", attachments=[Attachment.from_bytes(b"\x00\xffdata", "a.bin")])
    [(_, fields)] = db.xrange("processpype:outbox")
    assert '"data":"AP9kYXRh"' in fields["message"]


def test_a_message_over_max_entry_bytes_fails_naming_the_limit_and_queues_nothing(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    config = outbox_config(processpype_redis.url, max_entry_bytes=100_000)
    big = Attachment.from_bytes(os.urandom(80_000), "big.bin")  # ~107 kB once base64 encoded
    with Notifier(config) as notifier:
        report = notifier.send("too big for one entry", attachments=[big])
        small = notifier.send("fits", attachments=[Attachment.from_bytes(b"ok", "ok.txt")])
    [result] = report.results
    assert result.status == "failed"
    assert result.error is not None
    assert "communications.outbox.max_entry_bytes" in result.error
    assert "100000 bytes" in result.error
    assert "nothing was queued" in result.error
    assert [r.status for r in small.results] == ["queued"]
    entries = db.xrange("processpype:outbox")
    assert len(entries) == 1
    assert '"fits"' in entries[0][1]["message"]


def test_max_entry_bytes_defaults_to_64_mib_and_stays_under_redis_limit() -> None:
    config = outbox_config("redis://127.0.0.1:1/0")
    assert config.outbox is not None
    assert config.outbox.max_entry_bytes == 64 * 1024 * 1024
    with pytest.raises(ValueError, match="max_entry_bytes"):
        outbox_config("redis://127.0.0.1:1/0", max_entry_bytes=600 * 1024 * 1024)


def test_a_slack_warning_comes_back_with_the_workers_outcome(
    processpype_redis: RedisTestServer,
) -> None:
    with faulty_server() as server:
        slack = {"type": "slack", "url": server.url}
        config = outbox_config(processpype_redis.url, {"slack": slack})
        with running_worker(config), Notifier(config) as notifier:
            report = notifier.send(
                "report",
                attachments=[Attachment.from_bytes(b"x", "r.pdf")],
                wait_for_delivery=True,
                timeout=15,
            )
        assert b"r.pdf" in server.bodies[0]
    [result] = report.results
    assert result.status == "delivered"
    assert result.warnings
    assert "r.pdf" in result.warnings[0]
    assert "[warning: not attached" in str(report)


def test_an_entry_with_metadata_that_is_not_json_still_carries_the_bytes() -> None:
    from processpype.communications.models import OutgoingMessage
    from processpype.communications.outbox._redis import decode_message, encode_message

    message = OutgoingMessage(
        message="x",
        metadata={"run": object()},  # encoded as text, by the fallback path
        attachments=[Attachment.from_bytes(bytes(range(256)), "all.bin")],
    )
    [attachment] = decode_message(encode_message(message)).attachments
    assert (attachment.filename, attachment.data) == ("all.bin", bytes(range(256)))


def test_each_backend_of_the_label_gets_an_entry_with_the_files(
    processpype_redis: RedisTestServer, db: Any
) -> None:
    backends = {
        "a": {"type": "recording", "receiving": False},
        "b": {"type": "recording", "receiving": False},
    }
    config = outbox_config(processpype_redis.url, backends)
    with Notifier(config) as notifier:
        notifier.send("x", attachments=[Attachment.from_bytes(BLOB, "dump.bin")])
    entries = db.xrange("processpype:outbox")
    assert sorted(fields["backend"] for _, fields in entries) == ["a", "b"]
    with running_worker(config) as worker:
        for name in ("a", "b"):
            recorder_of(worker, name).wait_for(1)
            [message] = recorder_of(worker, name).messages
            assert message.attachments[0].data == BLOB
