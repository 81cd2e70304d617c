"""SMTPTestServer: a real SMTP server for tests, with TLS, AUTH and faults on demand."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from processpype.config.models import EmailCommunicatorConfig
from processpype.testing.smtp import SMTPTestServer

RAW = "From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n\r\n{body}\r\n"


def raw(subject: str = "hello", body: str = "body") -> str:
    return RAW.format(subject=subject, body=body)


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as running:
        yield running


def client(server: SMTPTestServer) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, local_hostname="client.test", timeout=5)


def test_binds_a_free_port_and_reports_it(server: SMTPTestServer) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        assert sock.recv(1024).startswith(b"220 ")


def test_two_servers_listen_on_different_ports() -> None:
    with SMTPTestServer() as first, SMTPTestServer() as second:
        assert first.port != second.port


def test_records_parsed_messages_and_envelopes(server: SMTPTestServer) -> None:
    with client(server) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com", "c@example.com"], raw("Deploy"))
    [received] = server.messages
    assert received["Subject"] == "Deploy"
    assert received.get_content().strip() == "body"
    [envelope] = server.envelopes
    assert envelope.mail_from == "a@example.com"
    assert envelope.rcpt_tos == ("b@example.com", "c@example.com")
    assert envelope.tls is False
    assert b"Subject: Deploy" in envelope.content


@pytest.mark.asyncio
async def test_serves_async_clients_on_the_test_loop(server: SMTPTestServer) -> None:
    await aiosmtplib.send(
        raw("from async"),
        sender="a@example.com",
        recipients=["b@example.com"],
        hostname=server.host,
        port=server.port,
        start_tls=False,
        local_hostname="client.test",
    )
    [received] = await server.wait_for_messages_async(1)
    assert received["Subject"] == "from async"


def test_wait_for_messages_returns_once_they_arrived(server: SMTPTestServer) -> None:
    def send_later() -> None:
        with client(server) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], raw("late"))

    sender = threading.Thread(target=send_later)
    sender.start()
    received = server.wait_for_messages(1, timeout=5)
    sender.join()
    assert [m["Subject"] for m in received] == ["late"]


def test_wait_for_messages_times_out_saying_what_arrived(server: SMTPTestServer) -> None:
    with client(server) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], raw("only one"))
    with pytest.raises(
        TimeoutError, match=r"expected 2 messages .* got 1; subjects: \['only one'\]"
    ):
        server.wait_for_messages(2, timeout=0.05)


def test_clear_forgets_messages_and_connections(server: SMTPTestServer) -> None:
    with client(server) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], raw())
    server.clear()
    assert server.messages == []
    assert server.envelopes == []
    assert server.message_count == 0
    assert server.connection_count == 0


def test_counts_client_connections(server: SMTPTestServer) -> None:
    assert server.connection_count == 0
    for _ in range(2):
        with client(server) as smtp:
            smtp.noop()
    assert server.connection_count == 2


def test_record_false_counts_without_keeping_messages() -> None:
    with SMTPTestServer(record=False) as quiet, client(quiet) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], raw())
        assert quiet.message_count == 1
        assert quiet.messages == []


def test_fail_next_answers_the_given_code_then_accepts(server: SMTPTestServer) -> None:
    server.fail_next(code=451)
    with client(server) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@example.com", ["b@example.com"], raw("first"))
        assert refused.value.smtp_code == 451
        smtp.sendmail("a@example.com", ["b@example.com"], raw("second"))
    assert [m["Subject"] for m in server.messages] == ["second"]


def test_fail_next_counts_down(server: SMTPTestServer) -> None:
    server.fail_next(count=2, code=554)
    codes = []
    with client(server) as smtp:
        for _ in range(3):
            try:
                smtp.sendmail("a@example.com", ["b@example.com"], raw())
                codes.append(250)
            except smtplib.SMTPDataError as exc:
                codes.append(exc.smtp_code)
    assert codes == [554, 554, 250]


@pytest.mark.parametrize("code", [250, 399, 600])
def test_fail_next_refuses_codes_that_are_not_errors(server: SMTPTestServer, code: int) -> None:
    with pytest.raises(ValueError, match="400 to 599"):
        server.fail_next(code=code)


def test_disconnect_next_drops_the_connection_and_keeps_nothing(server: SMTPTestServer) -> None:
    server.disconnect_next()
    with client(server) as smtp, pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.sendmail("a@example.com", ["b@example.com"], raw("lost"))
    with client(server) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], raw("kept"))
    assert [m["Subject"] for m in server.messages] == ["kept"]


def test_refuse_recipients_refuses_only_those(server: SMTPTestServer) -> None:
    server.refuse_recipients("Gone@Example.com")
    with client(server) as smtp:
        refused = smtp.sendmail("a@example.com", ["b@example.com", "gone@example.com"], raw())
    assert refused == {"gone@example.com": (550, b"5.1.1 Mailbox unavailable (SMTPTestServer)")}
    assert server.envelopes[0].rcpt_tos == ("b@example.com",)


def test_refuse_recipients_times_lifts_the_refusal_after_that_many(
    server: SMTPTestServer,
) -> None:
    server.refuse_recipients("new@example.com", code=450, times=1)  # refused once, then accepted
    with client(server) as smtp:
        first = smtp.sendmail("a@example.com", ["b@example.com", "new@example.com"], raw())
        second = smtp.sendmail("a@example.com", ["new@example.com"], raw())
    assert first == {
        "new@example.com": (450, b"4.2.1 Mailbox busy, try again later (SMTPTestServer)")
    }
    assert second == {}
    assert [e.rcpt_tos for e in server.envelopes] == [("b@example.com",), ("new@example.com",)]


def test_refuse_recipients_refuses_a_times_below_one(server: SMTPTestServer) -> None:
    with pytest.raises(ValueError, match="times must be at least 1"):
        server.refuse_recipients("new@example.com", times=0)


def test_stop_refuses_connections_and_restart_serves_the_same_port(
    server: SMTPTestServer,
) -> None:
    port = server.port
    server.stop()
    assert not server.is_running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, port), timeout=5)
    server.restart()
    assert server.port == port
    with client(server) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], raw("after outage"))
    assert [m["Subject"] for m in server.messages] == ["after outage"]


def test_stop_drops_open_connections(server: SMTPTestServer) -> None:
    smtp = client(server)
    smtp.ehlo()
    server.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    smtp.close()


def test_start_twice_is_refused(server: SMTPTestServer) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_unknown_tls_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="'starttls' or 'implicit'"):
        SMTPTestServer(tls="ssl")  # type: ignore[arg-type]


def test_ca_cert_path_is_none_without_tls(server: SMTPTestServer) -> None:
    assert server.ca_cert_path is None
    assert server.client_ssl_context() is None


def test_starttls_is_offered_with_a_certificate_clients_can_verify() -> None:
    with SMTPTestServer(tls="starttls") as secure:
        assert secure.ca_cert_path is not None
        context = ssl.create_default_context(cafile=secure.ca_cert_path)
        with client(secure) as smtp:
            smtp.starttls(context=context)
            smtp.sendmail("a@example.com", ["b@example.com"], raw("secret"))
        assert secure.envelopes[0].tls is True


def test_implicit_tls_speaks_tls_from_the_first_byte() -> None:
    with SMTPTestServer(tls="implicit") as secure:
        context = secure.client_ssl_context()
        with smtplib.SMTP_SSL(secure.host, secure.port, context=context, timeout=5) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], raw("tls"))
        assert secure.envelopes[0].tls is True


def test_certificate_is_not_trusted_without_the_ca() -> None:
    with SMTPTestServer(tls="implicit") as secure, pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(secure.host, secure.port, context=ssl.create_default_context(), timeout=5)


@pytest.mark.parametrize("tls", [None, "starttls", "implicit"])
def test_auth_accepts_the_right_password_in_every_mode(tls: str | None) -> None:
    with SMTPTestServer(tls=tls, auth=("alerts", "s3cret")) as secure:  # type: ignore[arg-type]
        context = secure.client_ssl_context()
        if tls == "implicit":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                secure.host, secure.port, context=context, timeout=5
            )
        else:
            smtp = client(secure)
            if tls == "starttls":
                smtp.starttls(context=context)
        with smtp:
            smtp.login("alerts", "s3cret")
            smtp.sendmail("a@example.com", ["b@example.com"], raw())
        assert secure.envelopes[0].username == "alerts"


def test_auth_rejects_a_wrong_password() -> None:
    with SMTPTestServer(auth=("alerts", "s3cret")) as secure, client(secure) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login("alerts", "wrong")
        assert refused.value.smtp_code == 535


def test_auth_is_required_before_mail() -> None:
    with SMTPTestServer(auth=("alerts", "s3cret")) as secure, client(secure) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("a@example.com", ["b@example.com"], raw())
        assert refused.value.smtp_code == 530
    assert secure.messages == []


def test_auth_over_plain_text_emits_no_warning() -> None:
    # aiosmtpd warns when AUTH is required without TLS; -W error would turn that fatal.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with SMTPTestServer(auth=("alerts", "s3cret")) as secure, client(secure) as smtp:
            smtp.login("alerts", "s3cret")


def test_email_config_points_a_backend_at_the_server() -> None:
    with SMTPTestServer(tls="starttls", auth=("alerts", "s3cret")) as secure:
        config = secure.email_config()
        assert isinstance(config, EmailCommunicatorConfig)
        assert (config.host, config.port) == (secure.host, secure.port)
        assert (config.use_tls, config.start_tls) == (False, True)
        assert config.cert_bundle == secure.ca_cert_path
        assert config.username == "alerts"
        assert config.password.get_secret_value() == "s3cret"


def test_email_config_overrides_win(server: SMTPTestServer) -> None:
    config = server.email_config(max_attempts=7, default_recipients="x@example.com")
    assert config.max_attempts == 7
    assert config.default_recipients == ["x@example.com"]
    assert (config.use_tls, config.start_tls) == (False, False)


def test_leaving_the_context_removes_the_certificate_files() -> None:
    with SMTPTestServer(tls="implicit") as secure:
        path = Path(str(secure.ca_cert_path))
        assert path.is_file()
    assert not path.exists()


def test_is_exported_from_processpype_testing() -> None:
    from processpype import testing

    assert testing.SMTPTestServer is SMTPTestServer
