"""Email attachments end to end: aiosmtplib to a real aiosmtpd server, parsed by the stdlib."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from email_helpers import backend, message

from processpype.communications.backends._smtp_transaction import DIRECT_MIN_BYTES, is_prepared
from processpype.communications.errors import SendError
from processpype.communications.models import Attachment
from processpype.communications.notifier import Notifier
from processpype.testing.smtp import SMTPTestServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _notifier_config(server: SMTPTestServer) -> dict[str, Any]:
    mail = server.email_config().model_dump()
    mail["password"] = ""
    return {"enabled": True, "backends": {"mail": mail}}


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as running:
        yield running


@pytest.mark.asyncio
async def test_attachments_arrive_byte_for_byte_after_the_text(server: SMTPTestServer) -> None:
    blob = os.urandom(200_000) + b"\r\n.\r\n\x00" + bytes(range(256))
    files = [
        Attachment.from_bytes(blob, "dump.bin"),
        Attachment.from_bytes(b"a,b\r\n1,2\n", "table.csv"),
        Attachment.from_bytes(b"", "empty.log", content_type="text/plain"),
    ]
    mail = backend(server)
    await mail.send(message("backup failed\nsee the log", attachments=files))
    await mail.stop()
    [received] = server.messages
    assert received.get_content_type() == "multipart/mixed"
    parts = list(received.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    assert received.text == "backup failed\r\nsee the log\r\n"
    assert [(a.filename, a.content_type, a.data) for a in received.attachments] == [
        ("dump.bin", "application/octet-stream", blob),
        ("table.csv", "text/csv", b"a,b\r\n1,2\n"),
        ("empty.log", "text/plain", b""),
    ]


@pytest.mark.asyncio
async def test_non_ascii_and_long_filenames_are_rfc2231_encoded(server: SMTPTestServer) -> None:
    names = ["résumé été.pdf", "график 📈.png", "長い名前" * 30 + ".txt", 'quote"d.txt']
    files = [Attachment.from_bytes(name.encode(), name) for name in names]
    mail = backend(server)
    await mail.send(message("files", attachments=files))
    await mail.stop()
    [envelope] = server.envelopes
    assert b"filename*=utf-8''r%C3%A9sum%C3%A9%20%C3%A9t%C3%A9.pdf" in envelope.content
    assert all(len(line) <= 998 for line in envelope.content.split(b"\r\n"))
    assert envelope.content.isascii()
    received = server.messages[0]
    assert [a.filename for a in received.attachments] == names
    assert [a.data for a in received.attachments] == [name.encode() for name in names]


@pytest.mark.asyncio
async def test_text_only_messages_stay_plain_text(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.send(message("no files"))
    await mail.stop()
    [received] = server.messages
    assert received.get_content_type() == "text/plain"
    assert received.attachments == []


@pytest.mark.asyncio
async def test_over_max_attachment_bytes_fails_naming_file_size_and_limit(
    server: SMTPTestServer,
) -> None:
    mail = backend(server, max_attachment_bytes=1000)
    files = [Attachment.from_bytes(b"x" * 600, "a.bin"), Attachment.from_bytes(b"y" * 500, "b.bin")]
    with pytest.raises(SendError) as caught:
        await mail.send(message("too big", attachments=files))
    text = str(caught.value)
    assert "a.bin (600 B, 600 bytes)" in text
    assert "b.bin (500 B, 500 bytes)" in text
    assert "1100 bytes" in text
    assert "limit of 1000 B (1000 bytes, max_attachment_bytes)" in text
    assert "nothing was sent" in text
    assert caught.value.permanent
    assert server.messages == []
    await mail.stop()


def test_default_limit_is_20_mib(server: SMTPTestServer) -> None:
    assert server.email_config().max_attachment_bytes == 20 * 1024 * 1024


def test_a_matplotlib_figure_is_mailed_as_png_from_a_script(server: SMTPTestServer) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3, 2))
    axes.plot([0.9, 0.5, 0.3, 0.2], label="loss")
    expected = Attachment.from_figure(figure).data
    config = _notifier_config(server)
    with Notifier(config) as notifier:
        notifier.send("training done", attachments=[figure]).raise_for_errors()
    plt.close(figure)
    [received] = server.messages
    [png] = received.attachments
    assert (png.filename, png.content_type) == ("figure.png", "image/png")
    assert png.data == expected
    assert png.data.startswith(PNG_MAGIC)


def test_a_file_path_is_mailed_through_the_notifier(server: SMTPTestServer, tmp_path: Path) -> None:
    log = tmp_path / "backup.txt"
    log.write_bytes(b"line 1\nline 2\n")
    config = _notifier_config(server)
    with Notifier(config) as notifier:
        report = notifier.send("backup failed", attachments=[log])
    report.raise_for_errors()
    [attachment] = server.messages[0].attachments
    assert (attachment.filename, attachment.content_type) == ("backup.txt", "text/plain")
    assert attachment.data == b"line 1\nline 2\n"


SCRIPT = """
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from processpype import Notifier

port = int(sys.argv[1])
figure, axes = plt.subplots(figsize=(3, 2))
axes.plot([0.9, 0.5, 0.3, 0.2], label="loss")
config = {
    "enabled": True,
    "backends": {
        "mail": {
            "type": "email",
            "host": "127.0.0.1",
            "port": port,
            "use_tls": False,
            "from_address": "alerts@example.com",
            "default_recipients": ["ops@example.com"],
            "local_hostname": "script.test",
            "timeout": 5,
        }
    },
}
with Notifier(config) as notifier:
    notifier.send("training done", attachments=[figure]).raise_for_errors()
print("sent")
"""


def test_a_script_mails_its_figure_as_png(server: SMTPTestServer, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script), str(server.port)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent"
    [received] = server.wait_for_messages(1)
    [png] = received.attachments
    assert (png.filename, png.content_type) == ("figure.png", "image/png")
    assert png.data.startswith(PNG_MAGIC)


# -- large messages: sent without aiosmtplib's copies (_smtp_transaction) ----------------

BIG = os.urandom(DIRECT_MIN_BYTES)  # its message is over DIRECT_MIN_BYTES


@pytest.mark.asyncio
async def test_a_large_attachment_and_a_dotted_text_arrive_intact(server: SMTPTestServer) -> None:
    text = "report\n.hidden line starts with a dot\n..two dots\n."
    mail = backend(server)
    await mail.send(message(text, attachments=[Attachment.from_bytes(BIG, "big.bin")]))
    await mail.send(message("a small one after it, on the same connection"))
    await mail.stop()
    big, small = server.messages
    assert big.attachments[0].data == BIG
    assert big.text == text.replace("\n", "\r\n") + "\r\n"
    assert small.text == "a small one after it, on the same connection\r\n"
    assert mail.connections_opened == 1


@pytest.mark.asyncio
async def test_a_large_message_reports_refused_recipients(server: SMTPTestServer) -> None:
    server.refuse_recipients("gone@example.com", code=550)
    mail = backend(server, default_recipients=["ops@example.com", "gone@example.com"])
    result = await mail.deliver(message("x", attachments=[Attachment.from_bytes(BIG, "b.bin")]))
    await mail.stop()
    assert result.status == "delivered"
    assert "gone@example.com (550" in str(result.error)
    assert server.envelopes[0].rcpt_tos == ("ops@example.com",)


@pytest.mark.asyncio
async def test_a_large_message_to_refused_recipients_only_fails(server: SMTPTestServer) -> None:
    server.refuse_recipients("ops@example.com", code=550, times=1)
    mail = backend(server)
    with pytest.raises(SendError, match="every recipient was refused"):
        await mail.send(message("x", attachments=[Attachment.from_bytes(BIG, "b.bin")]))
    await mail.send(message("the connection still works"))
    await mail.stop()
    assert [m.text for m in server.messages] == ["the connection still works\r\n"]


@pytest.mark.asyncio
async def test_a_large_message_refused_for_now_is_retried(server: SMTPTestServer) -> None:
    server.fail_next(code=451)
    mail = backend(server)
    result = await mail.deliver(message("x", attachments=[Attachment.from_bytes(BIG, "b.bin")]))
    await mail.stop()
    assert (result.status, result.attempts) == ("delivered", 2)
    assert server.messages[0].attachments[0].data == BIG


@pytest.mark.asyncio
async def test_a_large_message_refused_for_good_fails_at_once(server: SMTPTestServer) -> None:
    server.fail_next(code=554, message="5.6.0 content rejected")
    mail = backend(server)
    with pytest.raises(SendError, match="554") as caught:
        await mail.send(message("x", attachments=[Attachment.from_bytes(BIG, "b.bin")]))
    await mail.stop()
    assert caught.value.permanent
    assert caught.value.attempts == 1


@pytest.mark.asyncio
async def test_a_large_message_cut_off_mid_data_is_sent_again(server: SMTPTestServer) -> None:
    server.disconnect_next()
    mail = backend(server)
    result = await mail.deliver(message("x", attachments=[Attachment.from_bytes(BIG, "b.bin")]))
    await mail.stop()
    assert result.status == "delivered"
    assert result.attempts == 2
    assert server.messages[0].attachments[0].data == BIG


def test_only_crlf_messages_take_the_direct_path() -> None:
    assert is_prepared(b"a\r\nb\r\n")
    assert not is_prepared(b"a\nb\r\n")
    assert not is_prepared(b"a\r\rb\r\n")
    assert not is_prepared(b"a\r\nb")


@pytest.mark.asyncio
async def test_a_large_message_goes_over_starttls_and_auth() -> None:
    with SMTPTestServer(tls="starttls", auth=("alerts", "s3cret-pass")) as secure:
        mail = backend(secure)
        await mail.send(message("x", attachments=[Attachment.from_bytes(BIG, "b.bin")]))
        await mail.stop()
        [envelope] = secure.envelopes
        assert (envelope.tls, envelope.username) == (True, "alerts")
        assert secure.messages[0].attachments[0].data == BIG
