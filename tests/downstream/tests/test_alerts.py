"""The backup service's alerts, tested with processpype's fixtures only.

``processpype_telegram`` stands in for every Telegram client, ``processpype_smtp_server``
receives real email, ``processpype_webhooks`` captures what goes to Slack, and
``processpype_notifier`` closes every notifier it made after the test.
"""

from __future__ import annotations

from typing import Any

import alerts
import pytest

OPS_CHAT = -1001234567890


def test_backup_done_reaches_the_ops_chat_and_the_ops_mailbox(
    processpype_notifier: Any,
    processpype_telegram: Any,
    processpype_smtp_server: Any,
    alert_env: dict[str, str],
) -> None:
    notifier = processpype_notifier(alerts.DEFAULT_CONFIG, env=alert_env)

    report = alerts.Alerts(notifier).backup_done("nightly-db", 12.345)

    assert report.ok, str(report)
    [sent] = processpype_telegram.wait_for_sent(1)
    assert sent.chat == OPS_CHAT
    assert sent.text == "Backup nightly-db finished: 12.3 GB"
    [mail] = processpype_smtp_server.wait_for_messages(1)
    assert mail["To"] == "ops@acme.example"
    assert mail["Subject"] == "Backup nightly-db finished"
    assert "Backup nightly-db finished: 12.3 GB" in mail.get_content()


def test_cron_job_code_needs_no_change_to_be_tested(
    processpype_telegram: Any, processpype_smtp_server: Any, alert_env: dict[str, str]
) -> None:
    # notify_backup_done builds its own Notifier with Notifier.from_yaml: the fixtures
    # still catch everything it sends.
    report = alerts.notify_backup_done("weekly-files", 3.0, env=alert_env)

    assert [r.status for r in report.results] == ["delivered", "delivered"]
    assert processpype_telegram.wait_for_sent(1)[0].text == "Backup weekly-files finished: 3.0 GB"
    assert processpype_smtp_server.wait_for_messages(1)[0]["Subject"] == (
        "Backup weekly-files finished"
    )


def test_full_disk_pages_oncall_on_telegram_and_slack(
    processpype_notifier: Any,
    processpype_telegram: Any,
    processpype_webhooks: Any,
    alert_env: dict[str, str],
) -> None:
    notifier = processpype_notifier(alerts.DEFAULT_CONFIG, env=alert_env)

    alerts.Alerts(notifier).disk_almost_full("backup01", 97).raise_for_errors()

    assert processpype_telegram.wait_for_sent(1)[0].chat == "@acme_oncall"
    [request] = processpype_webhooks.wait_for(1)
    assert request.url == alert_env["SLACK_WEBHOOK_URL"]
    assert "Disk on backup01 is 97% full" in request.json["text"]


def test_slack_refusing_the_alert_shows_in_the_report(
    processpype_notifier: Any,
    processpype_telegram: Any,
    processpype_webhooks: Any,
    alert_env: dict[str, str],
) -> None:
    processpype_webhooks.respond(status=400, json={"error": "invalid_payload"})
    notifier = processpype_notifier(alerts.DEFAULT_CONFIG, env=alert_env)

    report = alerts.Alerts(notifier).disk_almost_full("backup01", 97)

    assert not report.ok
    assert [r.backend for r in report.failed] == ["oncall-slack"]
    assert report.result_for("ops-telegram").status == "delivered"


@pytest.mark.asyncio
async def test_backup_failure_is_sent_from_async_code(
    processpype_notifier: Any,
    processpype_telegram: Any,
    processpype_smtp_server: Any,
    processpype_webhooks: Any,
    alert_env: dict[str, str],
) -> None:
    notifier = processpype_notifier(alerts.DEFAULT_CONFIG, env=alert_env)

    report = await alerts.Alerts(notifier).backup_failed("nightly-db", "disk full")

    assert report.ok, str(report)
    assert processpype_webhooks.json_bodies[0]["text"].endswith(
        "Backup nightly-db FAILED: disk full"
    )
    texts = [entry.text for entry in processpype_telegram.wait_for_sent(2)]
    assert texts == ["Backup nightly-db FAILED: disk full"] * 2
    assert processpype_smtp_server.wait_for_messages(1)[0]["To"] == "ops@acme.example"


def test_status_command_is_answered_in_the_same_chat(
    processpype_notifier: Any, processpype_recorder: Any
) -> None:
    notifier = processpype_notifier({"enabled": True})
    notifier.add_communicator(processpype_recorder, labels=["ops"])
    alerts.Alerts(notifier).answer_status_commands()

    processpype_recorder.inject("/status", sender="alice", chat_label="ops")

    [reply] = processpype_recorder.wait_for(1)
    assert (reply.message, reply.label) == ("All backups OK", "ops")


def test_mail_goes_out_over_starttls_with_login(
    processpype_notifier: Any, processpype_smtp_server_factory: Any
) -> None:
    server = processpype_smtp_server_factory(tls="starttls", auth=("backups", "s3cret"))
    mail = server.email_config(
        from_address="backups@acme.example",
        default_recipients=["ops@acme.example"],
        labels=["ops"],
    )
    notifier = processpype_notifier({"enabled": True, "backends": {"ops-mail": mail}})

    alerts.Alerts(notifier).backup_done("nightly-db", 1.0).raise_for_errors()

    [received] = server.wait_for_messages(1)
    assert received["From"] == "backups@acme.example"
