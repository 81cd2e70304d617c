"""One check for every timeout a caller passes: seconds, finite and not negative, or None.

``None`` means "no limit" wherever a timeout is accepted. An infinite or NaN value is
refused at the call, before anything is queued or sent: such a value used to reach
``threading.Lock.acquire`` or ``Condition.wait``, which raise ``OverflowError`` after
the message already went out.
"""

from __future__ import annotations

import math

__all__ = ["check_timeout"]


def check_timeout(value: object, name: str, *, allow_none: bool = True) -> float | None:
    """``value`` as float seconds (None kept); ValueError/TypeError naming ``name`` otherwise."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name} must be a number of seconds or None (no limit), not {type(value).__name__}"
        )
    seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        hint = ", or None for no limit" if allow_none else ""
        raise ValueError(f"{name} must be a finite number of seconds >= 0{hint}, not {value!r}")
    return seconds
