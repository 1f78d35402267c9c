"""Where the engine gets time from, and how it sleeps until a given time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic as _monotonic
from time import time as _wall
from typing import Protocol

__all__ = ["Clock", "Cancellable", "SystemClock"]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the engine needs from a clock; swap in a virtual one for tests.

    ``time()`` is monotonic seconds and drives the wheel; ``wall()`` is POSIX
    seconds (UTC) and dates jobs. ``call_at`` runs ``callback`` once on the
    running event loop when ``time()`` reaches ``when``.
    """

    def time(self) -> float: ...

    def wall(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable: ...


class SystemClock:
    """The real clocks: ``time.monotonic`` and ``time.time``."""

    __slots__ = ()

    time = staticmethod(_monotonic)
    wall = staticmethod(_wall)

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        # call_later, not call_at: uvloop's loop.time() is its own cached clock.
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - _monotonic()), callback)

    def __repr__(self) -> str:
        return "SystemClock()"
