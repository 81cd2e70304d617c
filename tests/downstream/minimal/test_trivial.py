"""pytest runs with processpype installed without extras."""

from __future__ import annotations

import sys
from typing import Any

OPTIONAL = ("aiosmtpd", "aiosmtplib", "httpx", "respx", "telethon", "trustme")


def test_arithmetic_still_works() -> None:
    assert 1 + 1 == 2


def test_recorder_needs_no_extra(processpype_recorder: Any) -> None:
    assert processpype_recorder.messages == []
    assert not [name for name in OPTIONAL if name in sys.modules]
