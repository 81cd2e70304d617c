"""The email backend behind the blocking Notifier, as the documentation shows it."""

from __future__ import annotations

from processpype import Notifier
from processpype.testing import SMTPTestServer


def test_backup_failure_is_mailed_through_the_notifier() -> None:
    with SMTPTestServer(tls="starttls", auth=("alerts", "s3cret")) as server:
        config = {"enabled": True, "backends": {"mail": server.email_config(labels=["backups"])}}
        with Notifier(config) as notifier:
            report = notifier.send("db-1 backup failed", label="backups", subject="Backup failed")
        [message] = server.wait_for_messages(1)
    assert report.ok
    assert message["Subject"] == "Backup failed"
    assert server.envelopes[0].rcpt_tos == ("ops@example.com",)


def test_notifier_reports_the_attempts_of_a_retried_message() -> None:
    with SMTPTestServer() as server:
        server.fail_next(code=451)
        config = {"enabled": True, "backends": {"mail": server.email_config()}}
        with Notifier(config) as notifier:
            report = notifier.send("disk almost full")
    assert report.results[0].attempts == 2
    assert len(server.messages) == 1


def test_notifier_reports_a_permanent_refusal_as_failed() -> None:
    with SMTPTestServer() as server:
        server.fail_next(code=554)
        config = {"enabled": True, "backends": {"mail": server.email_config()}}
        with Notifier(config) as notifier:
            report = notifier.send("disk almost full")
    [result] = report.results
    assert (result.status, result.attempts) == ("failed", 1)
    assert "554" in str(result.error)
