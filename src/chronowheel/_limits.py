"""The bounds every accepted number must stay within, and the one argument validator.

One place, so that a value accepted anywhere (a delay, an ``Every`` period or
jitter, a ``Retry`` backoff, a priority) can be carried out everywhere: in both
wheels, in ``datetime`` and in the journal. A value past a bound is refused
when it is passed, never later in the driver or a worker.

Every public call checks its arguments here, so one mistake reads the same
wherever it is made: a value of the wrong type raises ``TypeError("<name>
must be <what>, got <type>")``, a value of the right type out of range
``ValueError("<name> must be <what>, got <value>")``. (The hot calls,
``call_later``/``call_at``/``reschedule``, inline the seconds check in that
same shape, a delay of 0 or less being due now there; see ``_volatile.py``.)
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Final, cast

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_AHEAD",
    "MAX_DELAY",
    "MAX_PRIORITY",
    "MIN_PERIOD",
    "check_arguments",
    "check_choice",
    "check_instant",
    "check_int",
    "check_methods",
    "check_name",
    "check_path",
    "check_priority",
    "check_seconds",
    "check_when",
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


def check_seconds(
    name: str, value: object, *, low: float = 0.0, high: float = MAX_DELAY, positive: bool = False
) -> float:
    """``value`` as a float if it is a real number of seconds in ``[low, high]``; else an error naming ``name``.

    Any ``numbers.Real`` but ``bool`` is a number here (int, float, Fraction,
    numpy scalars); ``Decimal`` is not, as it does not mix with floats.
    ``positive`` refuses zero too (a timeout, an fsync interval).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    number = cast(float, value)  # a Real compares with floats (numbers.Real does not declare it)
    if not low <= number <= high:  # before float(): an int or Fraction too large for a float is out of range
        raise ValueError(f"{name} must be a number of seconds from {low:g} to {high:g}, got {value!r}")
    if positive and number == 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return abs(float(number))  # abs: -0.0 is 0.0


def check_delay(name: str, value: object) -> float:
    """:func:`check_seconds` for a delay, which may also be a ``datetime.timedelta``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if not 0 <= seconds <= MAX_DELAY:
            raise ValueError(f"{name} must be a timedelta from 0 to {MAX_DELAY:g} seconds, got {value!r}")
        return seconds
    return check_seconds(name, value)


def check_instant(name: str, value: object) -> float:
    """``value`` as a float if it is a finite POSIX timestamp; NaN would silently break every comparison."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a POSIX timestamp (a number), got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be a finite POSIX timestamp, got {value!r}")
    return result


def check_int(name: str, value: object, *, optional: bool = False) -> int | None:
    """``value`` if it is an int ``>= 1`` (a count: or None when ``optional``); else an error naming ``name``."""
    if optional and value is None:
        return None
    what = f"{'None or ' if optional else ''}an int >= 1"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_choice(name: str, value: object, allowed: Collection[str]) -> str:
    """``value`` if it is one of ``allowed``; else a ``ValueError`` naming ``name`` and listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_name(name: str, value: object, *, optional: bool = False) -> str | None:
    """``value`` if it is a non-empty str (or None when ``optional``); else an error naming ``name``."""
    if optional and value is None:
        return None
    what = f"a non-empty string{' or None' if optional else ''}"
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must be {what}, got ''")
    return value


def check_priority(name: str, value: object) -> int:
    """``value`` if it is an int within the priority range; else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"{name} must be an int from -(2**63 - 1) to 2**63 - 1, got {value!r}")
    return value


def check_when(delay: object, at: object, wall: Callable[[], float]) -> float:
    """Seconds from now for exactly one of ``delay`` (seconds) and ``at`` (an aware datetime); ``wall``: now."""
    if (delay is None) == (at is None):
        raise ValueError("pass exactly one of delay= and at=")
    if delay is not None:
        if isinstance(delay, timedelta):  # not check_delay() for all: a frame less on schedule_nowait's path
            return check_delay("delay", delay)
        return check_seconds("delay", delay)
    if not isinstance(at, datetime):
        raise TypeError(f"at must be an aware datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"at must be an aware datetime (with tzinfo), got naive {at!r}")
    seconds = at.timestamp() - wall()
    if seconds > MAX_DELAY:
        raise ValueError(f"at must be at most {MAX_DELAY:g}s from now, got {at.isoformat()}")
    return max(0.0, seconds)


def check_path(name: str, value: object) -> str:
    """``value`` as a str if it is the path of a file (it need not exist yet); else an error naming ``name``."""
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a file path or None, got {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a str path, got a {type(path).__name__} path")
    if not path or path.endswith(os.sep) or os.path.isdir(path):
        raise ValueError(f"{name} must be the path of a file (it need not exist yet), got {path!r}")
    return path


def check_methods(name: str, value: object, methods: tuple[str, ...]) -> None:
    """Refuse (``TypeError`` naming ``name``) a ``value`` that is a class, or lacks one of the callable ``methods``."""
    if isinstance(value, type) or not all(callable(getattr(value, method, None)) for method in methods):
        listed = ", ".join(f"{method}()" for method in methods[:-1]) + f" and {methods[-1]}()"
        raise TypeError(f"{name} must have {listed} methods, got {type(value).__name__}")


def check_arguments(args: object, kwargs: object) -> None:
    """Refuse a job's ``args`` that are not a tuple or list, ``kwargs`` not a dict of str keys."""
    if not isinstance(args, tuple | list):
        raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict or None, got {type(kwargs).__name__}")
    for name in kwargs or ():
        if not isinstance(name, str):
            raise TypeError(f"kwargs keys must be str (they are keyword argument names), got {name!r}")
