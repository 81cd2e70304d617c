"""Shared pieces of the benchmarks: repeated timing, median and spread, the row format."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NOISY_SPREAD = 0.2
"""A relative spread (interquartile range over median) above this marks a figure noisy."""


@dataclass
class Sample:
    """Repeated measurements of one figure."""

    values: list[float]

    @property
    def median(self) -> float:
        """The median of the measurements."""
        return statistics.median(self.values)

    @property
    def relative_spread(self) -> float:
        """Interquartile range over the median (the full range below 4 figures)."""
        values = sorted(self.values)
        if len(values) < 2 or self.median == 0:
            return 0.0
        if len(values) < 4:
            return (values[-1] - values[0]) / self.median
        low, _, high = statistics.quantiles(values, n=4)
        return (high - low) / self.median

    def spread_text(self) -> str:
        """The spread as text, flagged when the run was noisy."""
        text = f"±{self.relative_spread * 50:.0f}% (n={len(self.values)})"
        if self.relative_spread > NOISY_SPREAD:
            text += " NOISY"
        return text


def repeat(measure: Callable[[], float], times: int) -> Sample:
    """Call ``measure`` ``times`` times and keep every figure it returns."""
    return Sample([measure() for _ in range(times)])


def timed(action: Callable[[], Any]) -> float:
    """Seconds ``action`` took."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


@dataclass
class Row:
    """One line of the benchmark table."""

    benchmark: str
    figure: float
    unit: str
    target: str
    met: bool
    spread: str = ""
    baselines: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The row in the dict form that ``python -m benchmarks`` prints."""
        return {
            "benchmark": self.benchmark,
            "figure": self.figure,
            "unit": self.unit,
            "baselines": dict(self.baselines),
            "ratios": dict(self.ratios),
            "target": self.target,
            "met": self.met,
            "spread": self.spread,
        }


def format_number(value: float) -> str:
    """A compact human figure: 3 significant digits, thousands separated."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table: figure, baselines, ratios, target, met, spread."""
    header = "| benchmark | ours | baselines | ratios | target | met | spread |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in rows:
        baselines = "; ".join(
            f"{name}: {format_number(value)}" for name, value in row.get("baselines", {}).items()
        )
        ratios = "; ".join(f"{name}: {value:.2f}x" for name, value in row.get("ratios", {}).items())
        ours = f"{format_number(row['figure'])} {row['unit']}"
        met = "yes" if row.get("met") else "**no**"
        lines.append(
            f"| {row['benchmark']} | {ours} | {baselines or '-'} | {ratios or '-'} "
            f"| {row.get('target', '')} | {met} | {row.get('spread', '')} |"
        )
    return "\n".join(lines)


def print_rows(rows: list[dict[str, Any]]) -> None:
    """Print rows as a table (what ``python -m benchmarks.<module>`` shows)."""
    print(format_table(rows))
