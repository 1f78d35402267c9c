"""The hierarchical timing wheel, pure Python and sans-IO.

Integer ticks in, due payloads out: no clock, no event loop. ``levels`` levels
of 64 slots; a slot at level ``i`` spans ``64**i`` ticks. A timer is filed at
the level of the highest bit in which its deadline differs from the wheel's
current tick (as in Tokio), so the earliest occupied slot of the lowest
non-empty level is always the next thing to do: ``next_expiry()`` reads one
occupancy mask per level and never scans slots.

Each slot is a dict keyed by the timer's sequence number, so cancel is one
``del``. Moving a deadline later is lazy: only the deadline field changes, and
the timer is re-filed when its old slot comes up. Deadlines beyond the top
level wait in an overflow dict and are re-filed when the wheel's top-level
window rolls over.
"""

from __future__ import annotations

from bisect import insort
from operator import itemgetter
from typing import Any, Final

__all__ = ["TimerWheel"]

_BITS: Final = 6
_SLOTS: Final = 1 << _BITS
_SLOT_MASK: Final = _SLOTS - 1

# A timer is a list, the cheapest mutable record CPython has:
#   [deadline, priority, seq, payload, where]
# ``where`` is ``level * 64 + slot`` while filed in the wheel, _OVERFLOW while
# waiting beyond the top level, _DUE while fired but not yet handed out, and
# _DONE once it has fired or been cancelled.
_DEADLINE: Final = 0
_PRIORITY: Final = 1
_SEQ: Final = 2
_PAYLOAD: Final = 3
_WHERE: Final = 4
_OVERFLOW: Final = -1
_DUE: Final = -2
_DONE: Final = -3

_fire_order = itemgetter(_DEADLINE, _PRIORITY, _SEQ)


class TimerWheel:
    """Hierarchical timing wheel: O(1) add, cancel and reschedule.

    ``advance(now)`` hands out every payload whose deadline is ``<= now``, in
    (deadline, priority, insertion) order; a deadline already in the past is
    due at the next ``advance``. Handles returned by :meth:`add` are opaque:
    pass them back to :meth:`cancel` and :meth:`reschedule`.
    """

    __slots__ = ("_levels", "_now", "_slots", "_masks", "_overflow", "_due", "_due_at", "_seq", "_count")

    def __init__(self, levels: int = 6, *, start: int = 0) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 10:
            raise ValueError(f"levels must be an int from 1 to 10, got {levels!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be a non-negative int, got {start!r}")
        self._levels = levels
        self._now = start
        self._slots: list[dict[int, list[Any]]] = [{} for _ in range(levels * _SLOTS)]
        self._masks = [0] * levels
        self._overflow: dict[int, list[Any]] = {}
        self._due: list[list[Any]] = []
        self._due_at = 0
        self._seq = 0
        self._count = 0

    @property
    def now(self) -> int:
        """The tick the wheel has advanced to."""
        return self._now

    @property
    def levels(self) -> int:
        return self._levels

    def __len__(self) -> int:
        """Timers added and neither fired nor cancelled."""
        return self._count

    def __repr__(self) -> str:
        return f"<TimerWheel levels={self._levels} now={self._now} pending={self._count}>"

    def add(self, deadline: int, payload: object, priority: int = 0) -> Any:
        """File ``payload`` to fire at tick ``deadline``; return its handle."""
        seq = self._seq + 1
        self._seq = seq
        timer = [deadline, priority, seq, payload, 0]
        self._file(timer)
        self._count += 1
        return timer

    def cancel(self, handle: Any) -> bool:
        """Remove a pending timer. False if it already fired or was cancelled."""
        where = handle[_WHERE]
        if where == _DONE:
            return False
        self._unfile(handle, where)
        handle[_WHERE] = _DONE
        handle[_PAYLOAD] = None
        self._count -= 1
        return True

    def reschedule(self, handle: Any, deadline: int) -> bool:
        """Move a pending timer to ``deadline``. False if it is no longer pending."""
        where = handle[_WHERE]
        if where == _DONE:
            return False
        if where == _DUE:
            # Already handed to the due batch: take it back out of that batch.
            self._unfile(handle, where)
        elif deadline >= handle[_DEADLINE]:
            # Later: lazy. The old slot comes up first and re-files it then.
            handle[_DEADLINE] = deadline
            return True
        else:
            self._unfile(handle, where)
        handle[_DEADLINE] = deadline
        self._file(handle)
        return True

    def next_expiry(self) -> int | None:
        """The earliest tick at which :meth:`advance` may have work, or None.

        Never later than the earliest deadline; may be earlier when a timer
        was lazily moved later (the wheel then wakes once to re-file it).
        """
        if self._due_at < len(self._due):
            return self._now
        found = self._next_slot()
        if found is not None:
            return found[1]
        if self._overflow:
            return self._next_window()
        return None

    def advance(self, now: int, limit: int | None = None) -> list[Any]:
        """Move to tick ``now`` and return the payloads due by then.

        With ``limit``, return at most that many; call again with the same
        ``now`` for the rest. Ticks never go backwards: a smaller ``now``
        only hands out what is already due.
        """
        out: list[Any] = []
        if now < self._now:
            now = self._now
        if limit is None:
            limit = -1
        elif limit <= 0:
            raise ValueError(f"limit must be positive, got {limit!r}")
        due = self._due
        while True:
            # Hand out what has already fired, skipping what was taken back.
            i = self._due_at
            n = len(due)
            handed = len(out)
            while i < n and len(out) != limit:
                timer = due[i]
                i += 1
                if timer[_WHERE] == _DUE:
                    timer[_WHERE] = _DONE
                    out.append(timer[_PAYLOAD])
                    timer[_PAYLOAD] = None
            self._count -= len(out) - handed
            self._due_at = i
            if len(out) == limit:
                return out
            due.clear()
            self._due_at = 0
            if not self._fire_next(now):
                self._now = now
                return out

    # -- internals -----------------------------------------------------------

    def _file(self, timer: list[Any]) -> None:
        """Put a timer in the slot its deadline belongs to, seen from now."""
        now = self._now
        deadline = timer[_DEADLINE]
        if deadline <= now:
            if self._due_at < len(self._due):
                # A drain is under way: join it in fire order.
                timer[_WHERE] = _DUE
                insort(self._due, timer, lo=self._due_at, key=_fire_order)
                return
            deadline = now
        level = (((deadline ^ now) | _SLOT_MASK).bit_length() - 1) // _BITS
        if level >= self._levels:
            timer[_WHERE] = _OVERFLOW
            self._overflow[timer[_SEQ]] = timer
            return
        slot = (deadline >> (level * _BITS)) & _SLOT_MASK
        where = level * _SLOTS + slot
        timer[_WHERE] = where
        self._slots[where][timer[_SEQ]] = timer
        self._masks[level] |= 1 << slot

    def _unfile(self, timer: list[Any], where: int) -> None:
        if where >= 0:
            slot = self._slots[where]
            del slot[timer[_SEQ]]
            if not slot:
                self._masks[where >> _BITS] &= ~(1 << (where & _SLOT_MASK))
        elif where == _OVERFLOW:
            del self._overflow[timer[_SEQ]]
        # _DUE: the batch skips it once it is no longer marked _DUE.

    def _next_slot(self) -> tuple[int, int] | None:
        """(slot index, start tick) of the earliest occupied slot, or None."""
        now = self._now
        for level, mask in enumerate(self._masks):
            if not mask:
                continue
            shift = level * _BITS
            current = (now >> shift) & _SLOT_MASK
            ahead = mask >> current
            if not ahead:  # pragma: no cover - the filing rule forbids it
                raise AssertionError("timer filed behind the wheel's current tick")
            slot = current + (ahead & -ahead).bit_length() - 1
            window = now & ~((1 << (shift + _BITS)) - 1)
            return level * _SLOTS + slot, window + (slot << shift)
        return None

    def _next_window(self) -> int:
        """First tick of the next top-level window, when overflow comes in range."""
        span = _BITS * self._levels
        return ((self._now >> span) + 1) << span

    def _fire_next(self, now: int) -> bool:
        """Process the next slot due by ``now``; False if there is none.

        A level-0 slot fills the due batch; a higher slot cascades its timers
        down; crossing into a new top-level window brings overflow in.
        """
        found = self._next_slot()
        if found is None:
            if not self._overflow:
                return False
            start = self._next_window()
            if start > now:
                return False
            self._now = start
            waiting = self._overflow
            self._overflow = {}
            for timer in waiting.values():
                self._file(timer)
            return True
        where, start = found
        if start > now:
            return False
        if start > self._now:
            self._now = start
        slot = self._slots[where]
        self._slots[where] = {}
        self._masks[where >> _BITS] &= ~(1 << (where & _SLOT_MASK))
        if where >= _SLOTS:
            for timer in slot.values():
                self._file(timer)
            return True
        due = self._due
        for timer in slot.values():
            if timer[_DEADLINE] <= start:
                timer[_WHERE] = _DUE
                due.append(timer)
            else:
                self._file(timer)
        if len(due) > 1:
            due.sort(key=_fire_order)
        return True
