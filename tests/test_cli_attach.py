"""``processpype-notify send --attach``: files and stdin, run for real in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processpype.testing.smtp import SMTPTestServer

SCRIPT = Path(sys.executable).with_name("processpype-notify")


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PROCESSPYPE_CONFIG"}
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, input=stdin, env=env, timeout=60, check=False
    )


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as running:
        yield running


def mail_config(tmp_path: Path, port: int) -> str:
    path = tmp_path / "mail.yaml"
    path.write_text(
        f"""
enabled: true
backends:
  mail:
    type: email
    host: 127.0.0.1
    port: {port}
    use_tls: false
    from_address: alerts@example.com
    default_recipients: [ops@example.com]
    local_hostname: cli.test
    timeout: 5
    max_attempts: 1
""",
        encoding="utf-8",
    )
    return str(path)


def test_attach_sends_each_file_byte_for_byte(server: SMTPTestServer, tmp_path: Path) -> None:
    first = tmp_path / "report été.pdf"
    first.write_bytes(b"%PDF-1.4\x00\xff" * 100)
    second = tmp_path / "data.csv"
    second.write_bytes(b"a,b\n1,2\n")
    config = mail_config(tmp_path, server.port)
    result = run_cli("send", "-c", config, "nightly", "--attach", str(first), "-a", str(second))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "mail: delivered\n"
    [received] = server.messages
    assert [(a.filename, a.content_type, a.data) for a in received.attachments] == [
        ("report été.pdf", "application/pdf", first.read_bytes()),
        ("data.csv", "text/csv", b"a,b\n1,2\n"),
    ]


def test_attach_dash_reads_the_file_from_stdin(server: SMTPTestServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4
    config = mail_config(tmp_path, server.port)
    result = run_cli(
        "send", "-c", config, "dump", "--attach", "-", "--attach-name", "core.bin", stdin=data
    )
    assert result.returncode == 0, result.stderr
    [attachment] = server.messages[0].attachments
    assert (attachment.filename, attachment.data) == ("core.bin", data)


def test_files_alone_need_no_message(server: SMTPTestServer, tmp_path: Path) -> None:
    log = tmp_path / "backup.txt"
    log.write_text("done")
    result = run_cli("send", "-c", mail_config(tmp_path, server.port), "--attach", str(log))
    assert result.returncode == 0, result.stderr
    assert [a.filename for a in server.messages[0].attachments] == ["backup.txt"]


def test_a_missing_file_is_a_usage_error_and_nothing_is_sent(
    server: SMTPTestServer, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.txt"
    result = run_cli("send", "-c", mail_config(tmp_path, server.port), "x", "-a", str(missing))
    assert result.returncode == 2
    assert "argument -a/--attach: attachment" in result.stderr.decode()
    assert "nope.txt" in result.stderr.decode()
    assert "no such file" in result.stderr.decode()
    assert server.messages == []


def test_stdin_cannot_be_both_the_message_and_an_attachment(tmp_path: Path) -> None:
    result = run_cli("send", "-", "--attach", "-", stdin=b"x")
    assert result.returncode == 2
    assert "stdin cannot hold both the message (-) and an attachment" in result.stderr.decode()


def test_attach_name_without_stdin_is_refused(tmp_path: Path) -> None:
    result = run_cli("send", "x", "--attach-name", "a.bin")
    assert result.returncode == 2
    assert "--attach-name: it names the file read from stdin" in result.stderr.decode()


def test_the_console_backend_records_an_attached_file(tmp_path: Path) -> None:
    config = tmp_path / "console.yaml"
    out = tmp_path / "out.jsonl"
    config.write_text(f"enabled: true\nbackends:\n  log:\n    type: console\n    path: {out}\n")
    image = tmp_path / "plot.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    result = run_cli("send", "-c", str(config), "hello", "-a", str(image))
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["attachments"] == [
        {"filename": "plot.png", "content_type": "image/png", "size": 8}
    ]
