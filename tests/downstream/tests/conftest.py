"""The environment that points notify.yaml at processpype's test doubles."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def alert_env(processpype_smtp_server: Any) -> dict[str, str]:
    """Variables for notify.yaml: fake Telegram credentials, the local SMTP server, Slack."""
    return {
        "TELEGRAM_API_ID": "12345",
        "TELEGRAM_API_HASH": "test-api-hash",
        "TELEGRAM_BOT_TOKEN": "123456:TEST-TOKEN",
        "SMTP_HOST": processpype_smtp_server.host,
        "SMTP_PORT": str(processpype_smtp_server.port),
        "SMTP_STARTTLS": "false",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0000/B0000/not-a-real-token",
    }
