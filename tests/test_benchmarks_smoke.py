"""Every benchmark runs on a tiny size and returns well-formed rows (no speed asserted)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

# benchmarks/ is not installed: append the checkout (after site-packages, so the
# installed processpype stays the one under test).
sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks.__main__ import MODULES
from benchmarks._common import format_table

KEYS = {"benchmark", "figure", "unit", "baselines", "ratios", "target", "met", "spread"}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODULES)
def test_benchmark_runs_on_a_tiny_size(name: str) -> None:
    if name == "bench_outbox":
        from processpype.testing.redis import find_redis_server

        if find_redis_server() is None:
            pytest.skip("the outbox benchmark needs redis-server (apt-get install redis-server)")
    module = importlib.import_module(f"benchmarks.{name}")
    rows = module.run("tiny")
    assert rows, f"{name} returned no rows"
    for row in rows:
        assert set(row) >= KEYS, sorted(KEYS - set(row))
        assert row["figure"] > 0
        assert isinstance(row["met"], bool)
        for value in row["baselines"].values():
            assert value > 0
    assert row["benchmark"] in format_table(rows)
