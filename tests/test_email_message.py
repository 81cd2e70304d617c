"""The email as rendered by the backend: any text survives, headers stay well formed."""

from __future__ import annotations

import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from email_helpers import backend, message
from hypothesis import given, settings
from hypothesis import strategies as st

from processpype.communications.backends._smtp_message import format_address, render_message
from processpype.testing.smtp import SMTPTestServer

PARSER = BytesParser(_class=EmailMessage, policy=email.policy.default)


def parse(data: bytes) -> EmailMessage:
    parsed = PARSER.parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return parsed


def render(body: str = "body", subject: str = "subject", to: list[str] | None = None) -> bytes:
    return render_message(
        from_header=format_address("Alerts <alerts@example.com>"),
        to_headers=[format_address(a) for a in (to or ["ops@example.com"])],
        subject=subject,
        body=body,
        date="Mon, 01 Jan 2024 00:00:00 +0000",
        message_id="<1@example.com>",
    )


def expected_body(text: str) -> str:
    lines = re.split(r"\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()
    return "".join(line + "\n" for line in lines)


def content(parsed: EmailMessage) -> str:
    """The body as a mail client shows it (the parser keeps the CRLF line ends)."""
    text = parsed.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def longest_line(data: bytes) -> int:
    return max(len(line) for line in data.split(b"\r\n"))


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as running:
        yield running


@settings(max_examples=200, deadline=None)
@given(body=st.text(), subject=st.text().filter(lambda s: "\r" not in s and "\n" not in s))
def test_any_body_and_subject_survive_the_round_trip(body: str, subject: str) -> None:
    data = render(body=body, subject=subject)
    assert data.isascii()
    assert longest_line(data) <= 998
    parsed = parse(data)
    assert parsed.defects == []
    assert content(parsed) == expected_body(body)
    # Header parsers treat runs of whitespace as folding: compare words.
    assert str(parsed["Subject"]).split() == subject.split()


def test_plain_ascii_text_is_sent_as_is() -> None:
    data = render(body="line one\nline two", subject="Disk full")
    assert b"Content-Transfer-Encoding: 7bit" in data
    assert data.endswith(b"\r\n\r\nline one\r\nline two\r\n")
    assert b"Subject: Disk full\r\n" in data


def test_non_ascii_text_is_quoted_printable_utf8() -> None:
    data = render(body="Température 🔥")
    assert b"Content-Transfer-Encoding: quoted-printable" in data
    assert content(parse(data)) == "Température 🔥\n"


def test_lines_longer_than_998_characters_are_wrapped_and_restored() -> None:
    body = "x" * 5000
    data = render(body=body)
    assert longest_line(data) <= 998
    assert content(parse(data)) == body + "\n"


def test_a_long_subject_is_folded() -> None:
    subject = " ".join(["word"] * 400)
    data = render(subject=subject)
    assert longest_line(data) <= 998
    assert str(parse(data)["Subject"]) == subject


def test_many_recipients_go_on_folded_lines() -> None:
    recipients = [f"person{n}@example.com" for n in range(200)]
    data = render(to=recipients)
    assert longest_line(data) <= 998
    assert [a.addr_spec for a in parse(data)["To"].addresses] == recipients


def test_a_non_ascii_display_name_is_encoded() -> None:
    header = format_address("Zoë Équipe <zoe@example.com>")
    assert header.isascii()
    data = render(to=["Zoë Équipe <zoe@example.com>"])
    [address] = parse(data)["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Zoë Équipe", "zoe@example.com")


def test_a_display_name_with_a_comma_stays_quoted() -> None:
    [address] = parse(render(to=['"Doe, Jane" <jane@example.com>']))["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Doe, Jane", "jane@example.com")


@pytest.mark.asyncio
async def test_lines_starting_with_a_dot_arrive_intact(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.send(message(".\n..two dots\n.hidden"))
    await mail.stop()
    assert content(server.messages[0]) == ".\n..two dots\n.hidden\n"


@pytest.mark.asyncio
async def test_from_header_keeps_the_configured_display_name(server: SMTPTestServer) -> None:
    mail = backend(server, from_address="Alerts Bot <alerts@example.com>")
    await mail.send(message())
    await mail.stop()
    [sender] = server.messages[0]["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Alerts Bot", "alerts@example.com")
    assert server.envelopes[0].mail_from == "alerts@example.com"


@pytest.mark.asyncio
async def test_headers_arrive_without_parse_defects(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.send(
        message(
            "Alerte 🚨", subject="Über 90° 🔥", metadata={"recipients": ["Zoë <z@example.com>"]}
        )
    )
    await mail.stop()
    [received] = server.messages
    assert received.defects == []
    assert all(not value.defects for value in received.values())
