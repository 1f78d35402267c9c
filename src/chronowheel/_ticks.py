"""Tick <-> time: the engine's epoch and rate, and the deadline tick of a delay."""

from __future__ import annotations

import math
from typing import Final

from ._clock import Clock
from ._limits import MAX_DELAY

__all__ = ["Ticks"]

_ceil: Final = math.ceil


class Ticks:
    """One engine's time base: tick ``n`` starts ``n / rate`` seconds after ``epoch`` on ``clock``.

    Read-only after construction; the volatile timers' core (``call_later``,
    ``TimerHandle.reschedule``) copies ``time``, ``epoch`` and ``rate`` and
    does the arithmetic of :meth:`after` itself (in C on the native wheel).
    """

    __slots__ = ("clock", "epoch", "rate", "time", "wall")

    def __init__(self, clock: Clock, tick: float) -> None:
        self.clock = clock
        self.time = clock.time
        self.wall = clock.wall
        self.rate = 1.0 / tick
        self.epoch = clock.time()

    def current(self) -> int:
        """The tick the clock reads now."""
        return int((self.time() - self.epoch) * self.rate)

    def time_of(self, tick: int) -> float:
        """The earliest clock time that reads as ``tick``, float rounding included."""
        when = self.epoch + tick / self.rate
        while int((when - self.epoch) * self.rate) < tick:
            when = math.nextafter(when, math.inf)
        return when

    def after(self, delay: float) -> int:
        """The deadline tick ``delay`` seconds from now, checking ``delay`` on the way.

        The checks cost nothing when they pass: a bool is refused by two
        identity tests, anything that is not a number fails the comparison
        or the arithmetic (a ``Decimal`` only the latter, a NaN ``Decimal``
        the former with an ArithmeticError), all inside one ``try``. The
        messages are :func:`chronowheel._limits.check_seconds`'s.
        """
        try:
            if not 0 <= delay <= MAX_DELAY:
                raise ValueError(f"delay must be a number of seconds from 0 to {MAX_DELAY:g}, got {delay!r}")
            if delay is True or delay is False:
                raise TypeError
            return _ceil((self.time() - self.epoch + delay) * self.rate)
        except (TypeError, ArithmeticError):
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None
