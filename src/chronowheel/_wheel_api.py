"""The timing wheel's interface: what both twins (``_wheel``, ``_cwheel``) promise, bad input included.

A leaf: no imports from the package. The engine and the pools program against
:class:`Wheel`; :mod:`chronowheel._selection` picks the implementation.

The contract, the same in both twins on every input:

* Ticks (``deadline``, ``now``, ``start``) and priorities are ints, never a
  bool or a float (a float deadline could only be rounded, and rounding down
  fires early), within ``TICK_MIN .. TICK_MAX``: the native wheel keeps them in
  int64, and the range is symmetric so that ``-priority`` fits as well.
* A wrong type raises ``TypeError("<argument> must be an int, got <type>")``;
  an int out of range raises ``ValueError("<argument> must be an int from ...
  to ..., got <value>")``. Arguments are checked in order, all of them, before
  anything changes, whether or not the handle is still pending.
* A handle is an int that :meth:`Wheel.add` returned (an int subclass holding
  it, such as the engine's ``TimerHandle``, is that handle too). Handles are
  unique in the process, so any other int (stale, negative, huge, or another
  wheel's) names no pending timer: ``cancel`` and ``reschedule`` return False.
  A non-int handle, a bool included, raises ``TypeError``.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

__all__ = ["MAX_LEVELS", "TICK_MAX", "TICK_MIN", "Wheel"]

TICK_MAX: Final = 2**63 - 1
TICK_MIN: Final = -TICK_MAX
MAX_LEVELS: Final = 10


class Wheel(Protocol):
    """A hierarchical timing wheel: integer ticks in, due payloads out, sans-IO.

    Constructed as ``TimerWheel(levels=6, *, start=0)``: ``levels`` an int from
    1 to :data:`MAX_LEVELS`, ``start`` (the first tick) an int from 0 to
    :data:`TICK_MAX`.
    """

    def __init__(self, levels: int = 6, *, start: int = 0) -> None:
        """So that ``type[Wheel]`` (``chronowheel.TimerWheel``) is called as both twins are."""
        ...

    @property
    def now(self) -> int:
        """The tick the wheel has advanced to: never behind ``start``, never going back."""
        ...

    @property
    def levels(self) -> int:
        """Levels of 64 slots; deadlines beyond ``64**levels`` ticks ahead wait in overflow."""
        ...

    def __len__(self) -> int:
        """Timers added and not yet handed out or cancelled."""
        ...

    def add(self, deadline: int, payload: object, priority: int = 0) -> int:
        """File ``payload`` to fire at tick ``deadline``; return its handle.

        ``deadline`` and ``priority`` are ints in ``TICK_MIN .. TICK_MAX``; a
        deadline at or before :attr:`now` is due at the next :meth:`advance`.
        """
        ...

    def cancel(self, handle: int) -> bool:
        """Remove a pending timer; False if ``handle`` names none (fired, cancelled, foreign)."""
        ...

    def reschedule(self, handle: int, deadline: int) -> bool:
        """Move a pending timer to ``deadline`` (checked as in :meth:`add`); False if it is not pending.

        It keeps its priority and its place among timers of equal deadline and priority.
        """
        ...

    def deadline(self, handle: int) -> int | None:
        """The tick a pending timer is due at (moved or not), or None if ``handle`` names none; a non-int: TypeError."""
        ...

    def next_expiry(self) -> int | None:
        """The earliest tick at which :meth:`advance` may have work, or None if the wheel is empty.

        Never later than the earliest deadline; it may be earlier (a timer
        moved later lazily wakes the wheel once to be re-filed).
        """
        ...

    def hide(self, kind: type | None) -> None:
        """Keep payloads of exactly type ``kind`` out of the cyclic collector while they wait here; None: show them.

        Only the native wheel can (it untracks them, and tracks each again as
        it leaves); the pure one lets the collector walk them, as any object.
        The caller promises the wheel stays reachable while it hides.
        """
        ...

    def advance(self, now: int, limit: int | None = None) -> list[Any]:
        """Move to tick ``now`` and hand out the payloads due by then.

        In (deadline, priority, insertion) order, lower priority values first.
        ``now`` is an int in ``TICK_MIN .. TICK_MAX``; one behind :attr:`now`
        means :attr:`now`. ``limit`` is None or an int >= 1: at most that many
        are handed out, and the rest of the batch stays due, still cancellable.
        """
        ...
