"""The bounds every accepted number must stay within, and the checks that name the argument.

One place, so that a value accepted anywhere (a delay, an ``Every`` period or
jitter, a ``Retry`` backoff, a priority) can be carried out everywhere: in both
wheels, in ``datetime`` and in the journal. A value past a bound is refused
when it is passed, never later in the driver or a worker.
"""

from __future__ import annotations

import numbers
from datetime import UTC, datetime
from typing import Final, cast

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_AHEAD",
    "MAX_DELAY",
    "MAX_PRIORITY",
    "MIN_PERIOD",
    "check_priority",
    "check_seconds",
]

MAX_DELAY: Final = 1e10
"""The longest duration any argument takes, in seconds (about 317 years).

A job is filed at most two such durations ahead (a delay or a period, plus a
jitter), so its deadline stays a ``datetime`` (below ``datetime.max``, about
2.5e11 s of POSIX time) for any wall clock before the year 9000, and its tick
count (at the finest tick, 1e-6 s: at most 2e16) stays far inside the native
wheel's int64. The journal stores deadlines as JSON floats, which hold it all.
"""

MAX_AHEAD: Final = 1e12
"""The farthest the engine files anything, in seconds: 1e18 ticks at the finest tick, within int64.

Checked arguments stay within ``2 * MAX_DELAY``; the margin above that is for
a wall clock stepped back while a far job waits, so re-filing it cannot fail.
"""

MIN_PERIOD: Final = 1e-6
"""The shortest ``Every`` period: the finest tick an engine can have."""

MAX_PRIORITY: Final = 2**63 - 1
"""Priorities are ints in ``-MAX_PRIORITY .. MAX_PRIORITY``: the native wheel keeps ``-priority`` in an int64."""

# The first and last whole seconds of POSIX time a ``datetime`` can show (``Job.deadline`` clamps to them).
# Not datetime.max.timestamp() itself: that float rounds up into the year 10000.
EARLIEST: Final = datetime.min.replace(tzinfo=UTC).timestamp()
LATEST: Final = datetime.max.replace(tzinfo=UTC, microsecond=0).timestamp()


def check_seconds(name: str, value: object, *, low: float = 0.0, high: float = MAX_DELAY) -> float:
    """``value`` as a float if it is a real number of seconds in ``[low, high]``; else an error naming ``name``.

    Any ``numbers.Real`` but ``bool`` is a number here (int, float, Fraction,
    numpy scalars); ``Decimal`` is not, as it does not mix with floats.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    number = cast(float, value)  # a Real compares with floats (numbers.Real does not declare it)
    if not low <= number <= high:  # before float(): an int or Fraction too large for a float is out of range
        raise ValueError(f"{name} must be a number of seconds from {low:g} to {high:g}, got {value!r}")
    return abs(float(number))  # abs: -0.0 is 0.0


def check_priority(name: str, value: object) -> int:
    """``value`` if it is an int within the priority range; else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"{name} must be an int from -(2**63 - 1) to 2**63 - 1, got {value!r}")
    return value
