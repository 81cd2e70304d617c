"""What ``Notifier.progress`` costs per item of a loop, against the bare loop.

A progress message follows loops of millions of short steps, so each step must cost next
to nothing: between edits, an item is one clock reading and two comparisons.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks._common import Row, Sample, print_rows


def _bare(items: int) -> float:
    start = time.perf_counter()
    for _ in range(items):
        pass
    return time.perf_counter() - start


def _with_progress(notifier: Any, items: int) -> float:
    start = time.perf_counter()
    for _ in notifier.progress(range(items), desc="bench", min_interval=3600):
        pass
    return time.perf_counter() - start


def run(size: str = "full") -> list[dict[str, Any]]:
    """One row: nanoseconds each item of a progress loop adds to a bare loop."""
    from processpype import Notifier

    items = 20_000 if size == "tiny" else 1_000_000
    repeats = 3 if size == "tiny" else 9
    config = {"enabled": True, "backends": {"rec": {"type": "recording"}}}
    with Notifier(config) as notifier:
        _with_progress(notifier, 1000)  # warm: imports, the first message
        bare, ours = Sample([]), Sample([])
        for _ in range(repeats):
            bare.values.append(_bare(items) / items * 1e9)
            ours.values.append(_with_progress(notifier, items) / items * 1e9)
    added = max(ours.median - bare.median, 0.001)
    return [
        Row(
            benchmark="progress() per loop item, between edits",
            figure=added,
            unit="ns added per item",
            baselines={"bare loop (ns per item)": bare.median},
            ratios={"progress loop vs bare loop": ours.median / bare.median},
            target="≤ 1,000 ns per item",
            met=added <= 1000,
            spread=ours.spread_text(),
        ).as_dict()
    ]


if __name__ == "__main__":
    print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
