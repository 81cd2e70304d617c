"""Checks made as pytest starts: the processpype plugin is loaded, and cost no extra."""

from __future__ import annotations

import sys

import pytest

OPTIONAL = ("aiosmtpd", "aiosmtplib", "httpx", "respx", "telethon", "trustme")


def pytest_configure(config: pytest.Config) -> None:
    assert config.pluginmanager.has_plugin("processpype"), "the processpype plugin is not loaded"
    imported = [name for name in OPTIONAL if name in sys.modules]
    assert not imported, f"loading the processpype plugin imported {imported}"
