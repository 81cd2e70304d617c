"""Long subjects: folded to RFC 5322 lines, or shortened, never refused by the server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from email_helpers import backend, message

from processpype.communications.backends._smtp_message import MAX_SUBJECT_CHARS, render_message
from processpype.communications.models import Attachment, OutgoingMessage
from processpype.testing.smtp import SMTPTestServer


def head_lines(subject: str) -> list[bytes]:
    data = render_message(
        from_header="alerts@example.com",
        to_headers=["ops@example.com"],
        subject=subject,
        body="body",
        date="Tue, 01 Dec 2026 21:00:00 +0000",
        message_id="<1@example.com>",
    )
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize(
    "subject",
    [
        "x" * 1000,  # one ASCII word, no space to fold at
        "word " * 400,
        "ü" * 990,
        "a" * 500 + " " + "b" * 950,
    ],
)
def test_every_header_line_fits_998_characters(subject: str) -> None:
    assert all(len(line) <= 998 for line in head_lines(subject))


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    # aiosmtpd refuses lines over 1001 bytes with "500 Line too long", as real servers do.
    with SMTPTestServer() as running:
        yield running


def delivered_status(server: SMTPTestServer, outgoing: OutgoingMessage) -> str:
    """The status of ``outgoing`` sent through a started email backend to ``server``."""

    async def send() -> str:
        mail = backend(server)
        await mail.start()
        try:
            return (await mail.deliver(outgoing)).status
        finally:
            await mail.stop()

    return asyncio.run(send())


def test_a_1000_character_subject_without_spaces_is_delivered_and_reads_back_whole(
    server: SMTPTestServer,
) -> None:
    subject = "backup-" + "x" * 993

    assert delivered_status(server, message("body", subject=subject)) == "delivered"
    [received] = server.messages
    assert str(received["Subject"]).replace("\n", "").replace("\r", "") == subject


def test_a_subject_no_server_would_take_is_shortened_with_an_ellipsis(
    server: SMTPTestServer,
) -> None:
    subject = "report " * 20_000

    assert delivered_status(server, message("body", subject=subject)) == "delivered"
    [received] = server.messages
    text = " ".join(str(received["Subject"]).split())
    assert text.endswith("…")
    assert len(text) <= MAX_SUBJECT_CHARS


def test_a_huge_subject_of_a_message_with_attachments_is_shortened_too(
    server: SMTPTestServer,
) -> None:
    subject = "report " * 20_000
    log = Attachment.from_bytes(b"epoch 1\n", "train.log", content_type="text/plain")

    outgoing = message("body", subject=subject, attachments=[log])
    assert delivered_status(server, outgoing) == "delivered"
    [received] = server.messages
    text = " ".join(str(received["Subject"]).split())
    assert text.endswith("…")
    assert len(text) <= MAX_SUBJECT_CHARS
