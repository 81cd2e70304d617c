"""Alerts of the Acme backup service, sent with processpype.

``notify.yaml`` routes the ``ops`` label to a Telegram chat and an email list, and the
``oncall`` label to another Telegram chat and Slack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from processpype import DeliveryReport, IncomingMessage, MessageSeverity, Notifier

DEFAULT_CONFIG = Path(__file__).with_name("notify.yaml")


def open_notifier(
    config_path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Notifier:
    """The service's Notifier, from ``$ACME_NOTIFY_CONFIG`` or the bundled notify.yaml."""
    path = config_path or os.environ.get("ACME_NOTIFY_CONFIG") or DEFAULT_CONFIG
    return Notifier.from_yaml(path, env=env)


class Alerts:
    """Every alert the backup service sends."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def backup_done(self, job: str, size_gb: float) -> DeliveryReport:
        """Tell ops that a backup job finished."""
        return self.notifier.send(
            f"Backup {job} finished: {size_gb:.1f} GB",
            label="ops",
            subject=f"Backup {job} finished",
            source="acme.backup",
        )

    def disk_almost_full(self, host: str, percent: int) -> DeliveryReport:
        """Page on-call: a backup disk is nearly full."""
        return self.notifier.send(
            f"Disk on {host} is {percent}% full",
            label="oncall",
            severity=MessageSeverity.CRITICAL,
            source="acme.backup",
        )

    async def backup_failed(self, job: str, error: str) -> DeliveryReport:
        """Tell ops and on-call that a backup failed (from async code)."""
        text = f"Backup {job} FAILED: {error}"
        report = await self.notifier.asend(text, label="oncall", severity=MessageSeverity.ERROR)
        await self.notifier.asend(text, label="ops", severity=MessageSeverity.ERROR)
        return report

    def answer_status_commands(self) -> None:
        """Reply "all backups OK" to every ``/status`` command received."""

        def on_message(message: IncomingMessage) -> None:
            if message.text.strip() == "/status":
                self.notifier.send("All backups OK", label=message.chat_label)

        self.notifier.on_message(on_message)


def notify_backup_done(
    job: str,
    size_gb: float,
    *,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> DeliveryReport:
    """What the nightly cron job calls: open the notifier, send one alert, close it."""
    with open_notifier(config_path, env=env) as notifier:
        return Alerts(notifier).backup_done(job, size_gb)
