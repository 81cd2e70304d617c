"""Every benchmark runs on a tiny size and returns well-formed rows (no speed asserted)."""

from __future__ import annotations

import importlib

import pytest

from benchmarks.__main__ import MODULES
from benchmarks._common import format_table

KEYS = {"benchmark", "figure", "unit", "baselines", "ratios", "target", "met", "spread"}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODULES)
def test_benchmark_runs_on_a_tiny_size(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    rows = module.run("tiny")
    assert rows, f"{name} returned no rows"
    for row in rows:
        assert KEYS <= set(row), sorted(KEYS - set(row))
        assert row["figure"] > 0
        assert isinstance(row["met"], bool)
        for value in row["baselines"].values():
            assert value > 0
    assert row["benchmark"] in format_table(rows)
