"""Email backend: what a message looks like, who gets it, TLS modes, AUTH and clear errors."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest
from email_helpers import backend, message

from processpype.communications.backends import create_communicator
from processpype.communications.backends._smtp_failures import classify
from processpype.communications.backends.email import EmailCommunicator
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.errors import BackendStartError, ConfigError, SendError
from processpype.communications.models import MessageSeverity
from processpype.config.loader import load_config_text
from processpype.testing.smtp import SMTPTestServer

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as running:
        yield running


# -- the message ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_message_carries_date_message_id_from_and_to(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.send(message("disk almost full"))
    [received] = server.messages
    assert received["From"] == "processpype@example.com"
    assert received["To"] == "ops@example.com"
    assert parsedate_to_datetime(received["Date"]).tzinfo is not None
    assert received["Message-ID"].endswith("@example.com>")
    assert received.get_content().strip() == "disk almost full"
    await mail.stop()


@pytest.mark.asyncio
async def test_subject_defaults_to_the_severity(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.send(message(severity=MessageSeverity.CRITICAL))
    assert server.messages[0]["Subject"] == "[CRITICAL] Notification"
    await mail.stop()


@pytest.mark.asyncio
async def test_subject_and_body_keep_utf8_and_emoji(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.send(message("Température élevée 🔥 über 90°", subject="Alerte 🚨 chaleur"))
    [received] = server.messages
    assert received["Subject"] == "Alerte 🚨 chaleur"
    assert received.get_content().strip() == "Température élevée 🔥 über 90°"
    await mail.stop()


@pytest.mark.asyncio
async def test_each_message_gets_its_own_message_id(server: SMTPTestServer) -> None:
    mail = backend(server)
    for _ in range(3):
        await mail.send(message())
    assert len({m["Message-ID"] for m in server.messages}) == 3
    await mail.stop()


# -- recipients ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recipients_come_from_metadata_as_a_list(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.send(message(metadata={"recipients": ["a@example.com", "b@example.com"]}))
    assert server.envelopes[0].rcpt_tos == ("a@example.com", "b@example.com")
    assert server.messages[0]["To"] == "a@example.com, b@example.com"
    await mail.stop()


@pytest.mark.asyncio
async def test_recipients_come_from_metadata_as_a_comma_separated_string(
    server: SMTPTestServer,
) -> None:
    mail = backend(server)
    await mail.send(message(metadata={"recipients": "a@example.com, b@example.com"}))
    assert server.envelopes[0].rcpt_tos == ("a@example.com", "b@example.com")
    await mail.stop()


@pytest.mark.asyncio
async def test_recipients_with_display_names_keep_them_in_the_header(
    server: SMTPTestServer,
) -> None:
    mail = backend(server)
    await mail.send(message(metadata={"recipients": ["On Call <oncall@example.com>"]}))
    assert server.envelopes[0].rcpt_tos == ("oncall@example.com",)
    assert server.messages[0]["To"] == "On Call <oncall@example.com>"
    await mail.stop()


@pytest.mark.asyncio
async def test_default_recipients_are_used_without_metadata(server: SMTPTestServer) -> None:
    mail = backend(server, default_recipients=["team@example.com"])
    await mail.send(message())
    assert server.envelopes[0].rcpt_tos == ("team@example.com",)
    await mail.stop()


@pytest.mark.asyncio
async def test_no_recipients_at_all_is_skipped_with_a_warning(
    server: SMTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    mail = backend(server, default_recipients=[])
    with caplog.at_level(logging.WARNING):
        result = await mail.deliver(message())
    assert result.status == "skipped"
    assert "no recipients" in str(result.error)
    assert "default_recipients" in caplog.text
    assert server.connection_count == 0


@pytest.mark.asyncio
async def test_recipients_of_the_wrong_type_are_refused(server: SMTPTestServer) -> None:
    mail = backend(server)
    with pytest.raises(SendError, match=r"metadata\['recipients'\] must be a list"):
        await mail.send(message(metadata={"recipients": 42}))


@pytest.mark.asyncio
async def test_a_recipient_that_is_not_an_address_is_refused(server: SMTPTestServer) -> None:
    mail = backend(server)
    with pytest.raises(SendError, match="'ops' is not an email address") as refused:
        await mail.send(message(metadata={"recipients": ["ops"]}))
    assert refused.value.permanent
    assert server.connection_count == 0


@pytest.mark.asyncio
async def test_some_recipients_refused_is_delivered_and_names_them(
    server: SMTPTestServer,
) -> None:
    server.refuse_recipients("gone@example.com")
    mail = backend(server)
    result = await mail.deliver(
        message(metadata={"recipients": "ops@example.com,gone@example.com"})
    )
    assert result.status == "delivered"
    assert "gone@example.com (550" in str(result.error)
    assert "ops@example.com" not in str(result.error)
    assert [e.rcpt_tos for e in server.envelopes] == [("ops@example.com",)]  # 5xx: final
    assert result.attempts == 1
    await mail.stop()


@pytest.mark.asyncio
async def test_a_recipient_refused_for_now_gets_the_same_message_on_retry(
    server: SMTPTestServer,
) -> None:
    server.refuse_recipients("new@example.com", code=450, times=1)  # refused once, then accepted
    mail = backend(server, retry_base_delay=0.01)
    result = await mail.deliver(message(metadata={"recipients": "ops@example.com,new@example.com"}))
    assert result.status == "delivered"
    assert result.error is None
    assert result.attempts == 2
    # The retry goes to the refused recipient alone, with the same Message-ID.
    assert [e.rcpt_tos for e in server.envelopes] == [("ops@example.com",), ("new@example.com",)]
    first, again = server.messages
    assert first["Message-ID"] == again["Message-ID"]
    await mail.stop()


@pytest.mark.asyncio
async def test_a_recipient_still_refused_after_every_try_is_named_with_the_last_reply(
    server: SMTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.refuse_recipients("full@example.com", code=452, message="4.2.2 Mailbox full")
    mail = backend(server, retry_base_delay=0.01, max_attempts=3)
    with caplog.at_level(logging.WARNING, logger="processpype"):
        result = await mail.deliver(
            message(metadata={"recipients": ["ops@example.com", "full@example.com"]})
        )
    assert result.status == "delivered"
    assert result.attempts == 3
    assert "full@example.com (452 4.2.2 Mailbox full)" in str(result.error)
    assert "ops@example.com" not in str(result.error)
    assert [e.rcpt_tos for e in server.envelopes] == [("ops@example.com",)]
    assert "retry 2 of 2" in caplog.text
    await mail.stop()


@pytest.mark.asyncio
async def test_every_recipient_refused_fails_naming_each(server: SMTPTestServer) -> None:
    server.refuse_recipients("a@example.com", "b@example.com")
    mail = backend(server)
    with pytest.raises(SendError) as failed:
        await mail.send(message(metadata={"recipients": ["a@example.com", "b@example.com"]}))
    text = str(failed.value)
    assert "RCPT TO" in text
    assert "a@example.com (550" in text
    assert "b@example.com (550" in text
    assert failed.value.permanent
    assert failed.value.attempts == 1
    await mail.stop()


# -- header injection ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_line_break_in_subject_is_refused(server: SMTPTestServer) -> None:
    mail = backend(server)
    with pytest.raises(SendError, match="subject contains a line break") as refused:
        await mail.send(message(subject="Hello\r\nBcc: victim@example.com"))
    assert refused.value.permanent
    assert refused.value.attempts == 0
    assert server.connection_count == 0


@pytest.mark.asyncio
async def test_line_break_in_a_recipient_is_refused(server: SMTPTestServer) -> None:
    mail = backend(server)
    with pytest.raises(SendError, match="contains a line break"):
        await mail.send(message(metadata={"recipients": ["ops@example.com\nBcc: x@example.com"]}))
    assert server.connection_count == 0


# -- TLS modes and AUTH --------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [None, "starttls", "implicit"])
async def test_delivers_in_every_tls_mode(tls: str | None) -> None:
    with SMTPTestServer(tls=tls) as secure:  # type: ignore[arg-type]
        mail = backend(secure)
        await mail.start()
        await mail.send(message(subject=f"mode {tls}"))
        await mail.stop()
        [envelope] = secure.envelopes
    assert envelope.tls is (tls is not None)
    assert secure.messages[0]["Subject"] == f"mode {tls}"


@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [None, "starttls", "implicit"])
async def test_logs_in_over_every_tls_mode(tls: str | None) -> None:
    with SMTPTestServer(tls=tls, auth=("alerts", PASSWORD)) as secure:  # type: ignore[arg-type]
        mail = backend(secure)
        await mail.start()
        await mail.send(message())
        await mail.stop()
    assert secure.envelopes[0].username == "alerts"


@pytest.mark.asyncio
async def test_start_tls_alone_in_the_config_upgrades_with_starttls() -> None:
    with SMTPTestServer(tls="starttls") as secure:
        config = secure.email_config().model_dump()
        del config["use_tls"]  # as in a YAML file that only says start_tls: true
        mail = EmailCommunicator("mail", type(secure.email_config()).model_validate(config))
        await mail.send(message())
        await mail.stop()
    assert secure.envelopes[0].tls is True


@pytest.mark.asyncio
async def test_both_tls_settings_false_never_upgrades_behind_the_users_back() -> None:
    with SMTPTestServer(tls="starttls") as secure:  # the server offers STARTTLS
        mail = backend(secure, use_tls=False, start_tls=False)
        await mail.send(message())
        await mail.stop()
    assert secure.envelopes[0].tls is False


@pytest.mark.asyncio
async def test_wrong_password_fails_start_with_a_clear_auth_error() -> None:
    with SMTPTestServer(tls="starttls", auth=("alerts", PASSWORD)) as secure:
        mail = backend(secure, password="not-the-password")
        with pytest.raises(BackendStartError) as failed:
            await mail.start()
    text = str(failed.value)
    assert "AUTH" in text
    assert f"127.0.0.1:{secure.port}" in text
    assert "refused the username 'alerts' or its password" in text
    assert "not-the-password" not in text
    assert not mail.is_started


@pytest.mark.asyncio
async def test_wrong_password_fails_a_send_at_once(caplog: pytest.LogCaptureFixture) -> None:
    with SMTPTestServer(auth=("alerts", PASSWORD)) as secure:
        mail = backend(secure, password="not-the-password", max_attempts=5)
        with pytest.raises(SendError) as failed:
            await mail.send(message())
    assert failed.value.permanent
    assert failed.value.attempts == 1
    assert "535" in str(failed.value)


@pytest.mark.asyncio
async def test_password_never_appears_in_logs_reprs_or_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG), SMTPTestServer(auth=("alerts", PASSWORD)) as secure:
        good = backend(secure)
        await good.send(message())
        await good.stop()
        bad = backend(secure, password="wrong-" + PASSWORD)
        with pytest.raises(BackendStartError) as start_error:
            await bad.start()
        with pytest.raises(SendError) as send_error:
            await bad.send(message())
    texts = [
        caplog.text,
        str(start_error.value),
        str(send_error.value),
        repr(good),
        repr(good.config),
        str(good.config),
    ]
    for text in texts:
        assert PASSWORD not in text


@pytest.mark.asyncio
async def test_untrusted_certificate_says_to_set_cert_bundle_never_to_skip_the_check() -> None:
    with SMTPTestServer(tls="implicit") as secure:
        mail = backend(secure, cert_bundle=None)
        with pytest.raises(BackendStartError) as failed:
            await mail.start()
    text = str(failed.value)
    assert "TLS handshake" in text
    assert "certificate" in text
    assert "cert_bundle" in text
    assert "validate_certs" not in text  # a hint never weakens TLS


@pytest.mark.asyncio
async def test_untrusted_certificate_after_starttls_fails_a_send_permanently() -> None:
    with SMTPTestServer(tls="starttls") as secure:
        mail = backend(secure, cert_bundle=None, max_attempts=5)
        with pytest.raises(SendError, match="cert_bundle") as failed:
            await mail.send(message())
    assert failed.value.permanent
    assert failed.value.attempts == 1


@pytest.mark.asyncio
async def test_validate_certs_false_accepts_an_untrusted_certificate() -> None:
    with SMTPTestServer(tls="starttls") as secure:
        mail = backend(secure, cert_bundle=None, validate_certs=False)
        await mail.send(message())
        await mail.stop()
    assert len(secure.messages) == 1


@pytest.mark.asyncio
async def test_missing_cert_bundle_file_is_named() -> None:
    with SMTPTestServer(tls="starttls") as secure:
        mail = backend(secure, cert_bundle="/nonexistent/ca.pem")
        with pytest.raises(BackendStartError, match=r"cert_bundle '/nonexistent/ca\.pem'"):
            await mail.start()


@pytest.mark.asyncio
async def test_implicit_tls_on_a_plain_port_says_which_setting_to_change(
    server: SMTPTestServer,
) -> None:
    mail = backend(server, use_tls=True, start_tls=False)
    with pytest.raises(BackendStartError) as failed:
        await mail.start()
    assert "TLS" in str(failed.value)
    assert "use_tls: false and start_tls: true" in str(failed.value)


@pytest.mark.asyncio
async def test_start_tls_against_a_server_without_starttls_is_a_clear_error(
    server: SMTPTestServer,
) -> None:
    mail = backend(server, start_tls=True)
    with pytest.raises(BackendStartError, match="STARTTLS") as failed:
        await mail.start()
    # An attacker can strip the STARTTLS offer: the hint never says to turn TLS off.
    assert "start_tls: false" not in str(failed.value)
    assert "use_tls: true" in str(failed.value)
    assert "do not turn TLS off" in str(failed.value)


@pytest.mark.asyncio
async def test_username_against_a_server_without_auth_is_a_clear_error(
    server: SMTPTestServer,
) -> None:
    mail = backend(server, username="alerts", password=PASSWORD)
    with pytest.raises(BackendStartError, match="AUTH"):
        await mail.start()


@pytest.mark.asyncio
async def test_auth_offered_only_after_starttls_says_to_turn_starttls_on() -> None:
    with SMTPTestServer(tls="starttls", auth=("alerts", PASSWORD)) as secure:
        mail = backend(secure, start_tls=False, use_tls=False)
        with pytest.raises(BackendStartError, match="AUTH") as failed:
            await mail.start()

    text = str(failed.value)
    assert "the server offers AUTH only over TLS: set start_tls: true" in text
    assert "start_tls: false" not in text
    assert PASSWORD not in text


def test_implicit_tls_to_a_plain_server_on_port_465_says_use_tls_false() -> None:
    # What the handshake raises when the first bytes are an SMTP banner, not TLS.
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")

    failure = classify(error, "connect", use_tls=True, port=465)

    assert "the server on port 465 answered in plain text, not TLS" in failure.reason
    assert "use_tls: false and start_tls: true" in failure.reason
    assert not failure.temporary


# -- lifecycle and wiring ------------------------------------------------------------


@pytest.mark.asyncio
async def test_start_opens_the_connection_and_stop_closes_it(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.start()
    running = (mail.is_started, mail.connected)
    await mail.stop()
    stopped = (mail.is_started, mail.connected)
    assert running == (True, True)
    assert stopped == (False, False)


@pytest.mark.asyncio
async def test_flush_waits_for_sends_in_flight(server: SMTPTestServer) -> None:
    mail = backend(server)
    sends = [asyncio.create_task(mail.send(message(str(i)))) for i in range(5)]
    await asyncio.sleep(0)  # let the sends take their place in line
    assert await mail.flush(timeout=5)
    assert all(task.done() for task in sends)
    assert server.message_count == 5
    await mail.stop()


@pytest.mark.asyncio
async def test_flush_right_after_a_send_waits_for_the_next_one_in_line(
    server: SMTPTestServer,
) -> None:
    mail = backend(server)
    waiting = asyncio.create_task(mail.send(message("second")))
    await mail.deliver(message("first"))  # takes the lock before "second" runs
    # The lock was just handed on: "second" is woken but has not taken it yet.
    assert await mail.flush(timeout=5)
    assert waiting.done()
    assert server.message_count == 2
    await mail.stop()


def test_works_again_in_a_new_event_loop_after_stop(server: SMTPTestServer) -> None:
    mail = backend(server)

    async def send_and_stop(text: str) -> None:
        await mail.send(message(text))
        await mail.stop()

    asyncio.run(send_and_stop("first loop"))
    asyncio.run(send_and_stop("second loop"))
    assert [m.get_content().strip() for m in server.messages] == ["first loop", "second loop"]


def test_the_registry_builds_an_email_communicator(server: SMTPTestServer) -> None:
    communicator = create_communicator("mail", server.email_config())
    assert isinstance(communicator, EmailCommunicator)


@pytest.mark.asyncio
async def test_dispatcher_reports_delivered_skipped_and_failed(server: SMTPTestServer) -> None:
    dispatcher = CommunicationDispatcher()
    mail = backend(server, default_recipients=[])
    dispatcher.register(mail)
    await dispatcher.start_all()
    delivered = await dispatcher.deliver(message(metadata={"recipients": ["a@example.com"]}))
    skipped = await dispatcher.deliver(message())
    server.fail_next(code=554)
    failed = await dispatcher.deliver(message(metadata={"recipients": ["a@example.com"]}))
    await dispatcher.stop_all()
    assert [r.status for r in delivered.results] == ["delivered"]
    assert [r.status for r in skipped.results] == ["skipped"]
    [failure] = failed.results
    assert failure.status == "failed"
    assert failure.attempts == 1
    assert "554" in str(failure.error)


@pytest.mark.asyncio
async def test_an_unquoted_display_name_with_a_comma_is_refused_with_a_hint(
    server: SMTPTestServer,
) -> None:
    mail = backend(server)
    with pytest.raises(SendError, match='quote a display name with a comma: "Doe, Jane"'):
        await mail.send(message(metadata={"recipients": ["Doe, Jane <jane@example.com>"]}))


def test_a_from_address_that_is_not_an_address_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"backends\.mail\.from_address: 'alerts' is not an email"
    ):
        load_config_text("backends:\n  mail: {type: email, from_address: alerts}\n")


@pytest.mark.asyncio
async def test_a_server_that_requires_auth_says_to_set_username_and_password() -> None:
    with SMTPTestServer(auth=("alerts", PASSWORD)) as secure:
        mail = backend(secure, username="", password="")
        with pytest.raises(SendError, match="requires AUTH: set username and password"):
            await mail.send(message())
        await mail.stop()
