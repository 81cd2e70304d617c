"""Run explicitly by run.py --no-extras: must fail with the install line, not crash pytest."""

from __future__ import annotations

from typing import Any


def test_smtp_server_without_the_testing_extra(processpype_smtp_server: Any) -> None:
    raise AssertionError("processpype_smtp_server cannot exist without aiosmtpd")
