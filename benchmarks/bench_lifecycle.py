"""Notifier start and close time with a console backend, against a bare loop thread."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from benchmarks._common import Row, Sample, print_rows, timed


def _bare_loop_thread() -> None:
    # The floor: start a thread running an event loop, hand it one call, stop and join.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def _notifier_cycle(path: str) -> None:
    from processpype import Notifier

    config = {"enabled": True, "backends": {"out": {"type": "console", "path": path}}}
    notifier = Notifier(config)
    notifier.close()


def run(size: str = "full") -> list[dict[str, Any]]:
    """One row: Notifier(...) then close(), median over repeats, against the bare floor."""
    repeats = 5 if size == "tiny" else 30
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "out.jsonl")
        _notifier_cycle(path)  # warm imports so the figure is start/close, not import
        bare = Sample([])
        ours = Sample([])
        for _ in range(repeats):
            bare.values.append(timed(_bare_loop_thread))
            ours.values.append(timed(lambda: _notifier_cycle(path)))
    ratio = ours.median / bare.median
    return [
        Row(
            benchmark="Notifier start + close (console backend)",
            figure=ours.median * 1000,
            unit="ms",
            baselines={"bare loop thread start + stop (ms)": bare.median * 1000},
            ratios={"vs bare loop thread": ratio},
            target="≤ 50 ms",
            met=ours.median <= 0.050,
            spread=ours.spread_text(),
        ).as_dict()
    ]


if __name__ == "__main__":
    print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
