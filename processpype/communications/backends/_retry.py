"""The retry backoff every backend uses: doubling from a base delay, up to a cap."""

from __future__ import annotations

import math

__all__ = ["backoff_delay"]

_MAX_DOUBLINGS = 64
"""Past this many doublings every delay is at its cap: ``2**n`` stays a small float."""


def backoff_delay(attempt: int, base: float, cap: float = math.inf) -> float:
    """Seconds to wait after failed try number ``attempt`` (1, 2, ...): base, 2x, 4x, ...

    Never overflows, however many tries failed: the exponent stops growing once the
    delay would pass any cap (``2**1025`` is too large for a float).
    """
    doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
    return float(min(base * 2.0**doublings, cap))
