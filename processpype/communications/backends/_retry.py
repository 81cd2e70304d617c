"""The retry backoff every backend uses: doubling from a base delay, up to a cap."""

from __future__ import annotations

import math

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, base: float, cap: float = math.inf) -> float:
    """Seconds to wait after failed try number ``attempt`` (1, 2, ...): base, 2x, 4x, ..."""
    return float(min(base * 2 ** (attempt - 1), cap))
