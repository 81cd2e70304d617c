"""With no extra installed: watch, progress and edits work on the console backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processpype import Notifier

pytestmark = pytest.mark.minimal


def test_watch_and_progress_reach_the_console_without_extras(tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    config = {"enabled": True, "backends": {"out": {"type": "console", "path": str(out)}}}

    with Notifier(config) as notifier:
        with notifier.watch("job"):
            for _ in notifier.progress(range(3), desc="rows", min_interval=0.0):
                pass
        with pytest.raises(ValueError, match="no backend of label 'default' can ask"):
            notifier.ask("Go?", choices=["yes"], timeout=1)

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["message"].startswith("\N{HOURGLASS WITH FLOWING SAND} rows: 0/3")
    assert records[-2]["edit_of"] == "1"
    assert records[-2]["message"].startswith("\N{WHITE HEAVY CHECK MARK} rows: done, 3/3")
    assert records[-1]["message"].startswith("\N{WHITE HEAVY CHECK MARK} job finished in ")
