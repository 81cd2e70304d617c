"""Wording shared by watch, progress and ``processpype-notify run``: durations, shortening."""

from __future__ import annotations

import math

__all__ = ["format_duration", "format_rate", "shorten"]


def format_duration(seconds: float) -> str:
    """A duration as people read it: ``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``, ``1d 4h``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def format_rate(per_second: float) -> str:
    """A rate of items: ``12.5/s``, or ``3.0/min`` and ``2.0/h`` for slow loops."""
    if per_second <= 0 or not math.isfinite(per_second):
        return "?/s"
    if per_second >= 1:
        return f"{per_second:.3g}/s"
    if per_second * 60 >= 1:
        return f"{per_second * 60:.3g}/min"
    return f"{per_second * 3600:.3g}/h"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when it was longer."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "\N{HORIZONTAL ELLIPSIS}"
