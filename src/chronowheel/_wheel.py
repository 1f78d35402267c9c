"""The hierarchical timing wheel, pure Python and sans-IO.

Integer ticks in, due payloads out: no clock, no event loop. ``levels`` levels
of 64 slots; a slot at level ``i`` spans ``64**i`` ticks. A timer is filed at
the level of the highest bit in which its deadline differs from the wheel's
current tick (as in Tokio), so the earliest occupied slot of the lowest
non-empty level is always the next thing to do: ``next_expiry()`` reads one
occupancy mask per level and never scans slots.

A timer is an int handle (its insertion sequence number, drawn from one
counter for every wheel in the process, so no wheel mistakes another's handle
for its own) and one int of state,
``deadline << 10 | where``, so the wheel allocates no container per timer and
adds nothing for the cyclic garbage collector to walk. Each slot is a dict
``{handle: payload}``, so cancel is one ``del``. Moving a deadline later is
lazy: only the state changes, and the timer is re-filed when its old slot
comes up. Deadlines beyond the top level wait in an overflow dict and are
re-filed when the wheel's top-level window rolls over.

What it accepts, and how it refuses the rest, is :mod:`chronowheel._wheel_api`'s
contract; the checks cost the hot paths one ``type(x) is int`` each, and the
range checks sit on the rarer branches (a deadline filed in the wheel's levels
is in range by construction).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from itertools import count
from typing import Any, Final, NoReturn, Self, SupportsIndex, final

from ._wheel_api import MAX_LEVELS as _MAX_LEVELS
from ._wheel_api import TICK_MAX as _TICK_MAX

__all__ = ["TimerWheel"]

_BITS: Final = 6
_SLOTS: Final = 1 << _BITS
_SLOT_MASK: Final = _SLOTS - 1
_RANGE: Final = "from -(2**63 - 1) to 2**63 - 1"
_NAME: Final = "chronowheel.TimerWheel"  # as the native type names itself in its errors

_handles = count(1)  # next(_handles): a specialised builtin call, cheaper than a bound __next__
_GONE: Final = object()  # the payload of a due-batch entry taken back (cancelled or moved)

# ``where`` is ``level * 64 + slot`` while filed in the wheel, _OVERFLOW while
# waiting beyond the top level, _DUE while fired but not yet handed out.
_WHERE_BITS: Final = 10
_WHERE_MASK: Final = (1 << _WHERE_BITS) - 1
_OVERFLOW: Final = _WHERE_MASK - 1
_DUE: Final = _WHERE_MASK


def _tick(name: str, value: object) -> int:
    """``value`` as a tick or priority, or the contract's TypeError / ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not -_TICK_MAX <= value <= _TICK_MAX:
        raise ValueError(f"{name} must be an int {_RANGE}, got {value!r}")
    return int(value)


def _bad_handle(handle: object) -> TypeError:
    return TypeError(f"handle must be an int returned by add(), got {type(handle).__name__}")


@final
class TimerWheel:
    """Hierarchical timing wheel: O(1) add, cancel and reschedule.

    ``advance(now)`` hands out every payload whose deadline is ``<= now``, in
    (deadline, priority, insertion) order, lower priority values first; a
    deadline already in the past is due at the next ``advance``. Handles
    returned by :meth:`add` are opaque: pass them back to :meth:`cancel` and
    :meth:`reschedule`. What is accepted and how the rest is refused:
    :class:`chronowheel._wheel_api.Wheel`.
    """

    __slots__ = (
        "_due",
        "_due_at",
        "_levels",
        "_masks",
        "_now",
        "_overflow",
        "_priority",
        "_slots",
        "_state",
    )

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        """A default wheel even before ``__init__`` runs, as the native type's ``__cinit__`` makes it."""
        wheel = super().__new__(cls)
        wheel._reset(6, 0)
        return wheel

    def __init__(self, levels: int = 6, *, start: int = 0) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int):
            raise TypeError(f"levels must be an int, got {type(levels).__name__}")
        if not 1 <= levels <= _MAX_LEVELS:
            raise ValueError(f"levels must be an int from 1 to {_MAX_LEVELS}, got {levels!r}")
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(f"start must be an int, got {type(start).__name__}")
        if not 0 <= start <= _TICK_MAX:
            raise ValueError(f"start must be an int from 0 to 2**63 - 1, got {start!r}")
        self._reset(int(levels), int(start))

    def _reset(self, levels: int, start: int) -> None:
        self._levels = levels
        self._now = start
        self._state: dict[int, int] = {}  # handle -> deadline << 10 | where, for every pending timer
        self._priority: dict[int, int] = {}  # handle -> priority, only where it is not 0
        self._slots: list[dict[int, Any]] = [{} for _ in range(levels * _SLOTS)]
        self._masks = [0] * levels
        self._overflow: dict[int, Any] = {}
        # Fired and not yet handed out, in order: (state, priority, handle, payload), the state
        # being the timer's while due (deadline << 10 | _DUE, which sorts as the deadline does).
        self._due: list[tuple[int, int, int, Any]] = []
        self._due_at = 0

    def __init_subclass__(cls, **kwargs: object) -> NoReturn:
        """Final, as the native type is: a subclass could not be the same on both."""
        raise TypeError(f"type {_NAME!r} is not an acceptable base type")

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        """Not picklable or copyable, as the native type is not: payloads are the caller's objects."""
        raise TypeError(f"cannot pickle {_NAME!r} object")

    @property
    def now(self) -> int:
        """The tick the wheel has advanced to."""
        return self._now

    @property
    def levels(self) -> int:
        return self._levels

    def __len__(self) -> int:
        """Timers added and not yet handed out or cancelled."""
        return len(self._state)

    def __repr__(self) -> str:
        return f"<TimerWheel levels={self._levels} now={self._now} pending={len(self._state)}>"

    def add(self, deadline: int, payload: object, priority: int = 0) -> int:
        """File ``payload`` to fire at tick ``deadline``; return its handle."""
        if type(deadline) is not int or type(priority) is not int:
            deadline = _tick("deadline", deadline)
            priority = _tick("priority", priority)
        now = self._now
        if deadline <= now or (level := (((deadline ^ now) | _SLOT_MASK).bit_length() - 1) // _BITS) >= self._levels:
            return self._add(_tick("deadline", deadline), payload, _tick("priority", priority))
        # _file's common case, inlined: this is the hottest call there is. The
        # deadline is in range: it shares every bit from 60 up with ``now``.
        handle = next(_handles)
        if priority:
            if not -_TICK_MAX <= priority <= _TICK_MAX:
                raise ValueError(f"priority must be an int {_RANGE}, got {priority!r}")
            self._priority[handle] = priority
        slot = (deadline >> (level * _BITS)) & _SLOT_MASK
        where = level * _SLOTS + slot
        self._state[handle] = deadline << _WHERE_BITS | where
        self._slots[where][handle] = payload
        self._masks[level] |= 1 << slot
        return handle

    def _add(self, deadline: int, payload: object, priority: int) -> int:
        """``add`` for a deadline due already or beyond the top level, its arguments checked."""
        handle = next(_handles)
        if priority:
            self._priority[handle] = priority
        self._file(handle, deadline, payload)
        return handle

    def cancel(self, handle: int) -> bool:
        """Remove a pending timer. False if it already fired or was cancelled."""
        if type(handle) is not int and (handle is True or handle is False or not isinstance(handle, int)):
            raise _bad_handle(handle)
        state = self._state.pop(handle, None)
        if state is None:
            return False
        self._take(handle, state, refiling=False)
        if self._priority:
            self._priority.pop(handle, None)
        return True

    def reschedule(self, handle: int, deadline: int) -> bool:
        """Move a pending timer to ``deadline``. False if it is no longer pending."""
        if type(handle) is not int and (handle is True or handle is False or not isinstance(handle, int)):
            raise _bad_handle(handle)
        if type(deadline) is not int:
            deadline = _tick("deadline", deadline)
        state = self._state.get(handle)
        if state is None:
            _tick("deadline", deadline)  # not pending is no excuse for a bad deadline
            return False
        where = state & _WHERE_MASK
        if where != _DUE and deadline >= state >> _WHERE_BITS:
            if deadline > _TICK_MAX:
                _tick("deadline", deadline)
            # Later: lazy. The old slot comes up first and re-files it then.
            self._state[handle] = deadline << _WHERE_BITS | where
            return True
        self._file(handle, _tick("deadline", deadline), self._take(handle, state, refiling=True))
        return True

    def deadline(self, handle: int) -> int | None:
        """The tick a pending timer is due at, or None if ``handle`` names no pending timer."""
        if type(handle) is not int and (handle is True or handle is False or not isinstance(handle, int)):
            raise _bad_handle(handle)
        state = self._state.get(handle)
        return None if state is None else state >> _WHERE_BITS

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

    def hide(self, kind: type | None) -> None:
        """Nothing to hide: the collector walks this wheel's dicts and payloads as any (the native one untracks)."""

    def advance(self, now: int, limit: int | None = None) -> list[Any]:
        """Move to tick ``now`` and return the payloads due by then.

        With ``limit``, return at most that many; call again with the same
        ``now`` for the rest. Ticks never go backwards: a ``now`` behind the
        wheel's hands out what is due at the wheel's own tick.
        """
        if type(now) is not int or not -_TICK_MAX <= now <= _TICK_MAX:
            now = _tick("now", now)
        if limit is None:
            limit = -1
        elif type(limit) is not int and (limit is True or limit is False or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
        elif limit <= 0:
            raise ValueError(f"limit must be positive, got {limit!r}")
        now = max(now, self._now)
        out: list[Any] = []
        append = out.append
        due = self._due
        state = self._state
        priority = self._priority
        left = limit  # -1 (no limit) never counts down to 0
        while True:
            # Hand out what has already fired, skipping what was taken back, a
            # slice at a time: a loop over a slice is the cheapest per timer.
            i = self._due_at
            n = len(due)
            while i < n and left:
                end = n if left < 0 or n - i <= left else i + left
                handed = len(out)
                for entry in due[i:end]:
                    payload = entry[3]
                    if payload is not _GONE:
                        append(payload)
                        del state[entry[2]]
                        if priority:
                            priority.pop(entry[2], None)
                if left > 0:
                    left -= len(out) - handed
                i = end
            self._due_at = i
            if not left:
                return out
            due.clear()
            self._due_at = 0
            if not self._fire_next(now):
                self._now = now
                return out

    # -- internals -----------------------------------------------------------

    def _file(self, handle: int, deadline: int, payload: Any) -> None:
        """Put a timer where its deadline belongs, seen from the current tick."""
        now = self._now
        if deadline <= now:
            if self._due_at < len(self._due):
                # A drain is under way: join it in fire order.
                state = self._state[handle] = deadline << _WHERE_BITS | _DUE
                insort(self._due, (state, self._priority.get(handle, 0), handle, payload), lo=self._due_at)
                return
            level = 0
            slot = now & _SLOT_MASK
        else:
            level = (((deadline ^ now) | _SLOT_MASK).bit_length() - 1) // _BITS
            if level >= self._levels:
                self._state[handle] = deadline << _WHERE_BITS | _OVERFLOW
                self._overflow[handle] = payload
                return
            slot = (deadline >> (level * _BITS)) & _SLOT_MASK
        where = level * _SLOTS + slot
        self._state[handle] = deadline << _WHERE_BITS | where
        self._slots[where][handle] = payload
        self._masks[level] |= 1 << slot

    def _take(self, handle: int, state: int, *, refiling: bool) -> Any:
        """Unlink a timer from where its ``state`` says it is filed and return its payload."""
        where = state & _WHERE_MASK
        if where < _OVERFLOW:
            slot = self._slots[where]
            payload = slot.pop(handle)
            if not slot:
                self._masks[where >> _BITS] &= ~(1 << (where & _SLOT_MASK))
            return payload
        if where == _OVERFLOW:
            return self._overflow.pop(handle)
        due = self._due
        i = bisect_left(due, (state, self._priority.get(handle, 0), handle), lo=self._due_at)
        if refiling:
            # Out of the batch, or its old entry would meet the new one in it.
            return due.pop(i)[3]
        # A cancel leaves a tombstone in its place (taking it out would move the
        # rest), which the drain skips, as the native wheel's does.
        entry = due[i]
        due[i] = (state, entry[1], handle, _GONE)
        return entry[3]

    def _next_slot(self) -> tuple[int, int] | None:
        """(slot index, start tick) of the earliest occupied slot, or None."""
        now = self._now
        for level, mask in enumerate(self._masks):
            if not mask:
                continue
            shift = level * _BITS
            ahead = mask >> ((now >> shift) & _SLOT_MASK)
            slot = ((now >> shift) & _SLOT_MASK) + (ahead & -ahead).bit_length() - 1
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
            # Straight to the window of the earliest overflow deadline, as the
            # native wheel does: stepping one window at a time would take 2**27
            # passes to reach a deadline near 2**63 at six levels.
            state = self._state
            span = _BITS * self._levels
            window = min(state[handle] for handle in self._overflow) >> _WHERE_BITS >> span << span
            if window > start:
                if window > now:
                    return False
                start = window
            self._now = start
            waiting = self._overflow
            self._overflow = {}
            for handle, payload in waiting.items():
                self._file(handle, state[handle] >> _WHERE_BITS, payload)
            return True
        where, start = found
        if start > now:
            return False
        self._now = max(self._now, start)
        slot = self._slots[where]
        self._slots[where] = {}
        self._masks[where >> _BITS] &= ~(1 << (where & _SLOT_MASK))
        state = self._state
        if where >= _SLOTS:
            # _file's common case inlined, as in add: a cascade moves every timer of the slot, and a
            # call per timer would be most of its cost.
            slots = self._slots
            if where < 2 * _SLOTS:
                # A level-1 slot spans 64 ticks from ``start``, the wheel's tick now: each timer
                # still in that span goes to the level-0 slot of its own tick.
                in_span = (start + _SLOTS) << _WHERE_BITS  # a state below it: a deadline in the span
                filled = 0
                for handle, payload in slot.items():
                    filed = state[handle]
                    if filed < in_span:
                        bit = (filed >> _WHERE_BITS) & _SLOT_MASK
                        state[handle] = filed - where + bit
                        slots[bit][handle] = payload
                        filled |= 1 << bit
                    else:
                        self._file(handle, filed >> _WHERE_BITS, payload)  # moved later, lazily
                self._masks[0] |= filled
                return True
            now = self._now
            levels = self._levels
            masks = self._masks
            for handle, payload in slot.items():
                deadline = state[handle] >> _WHERE_BITS
                if deadline <= now or (level := (((deadline ^ now) | _SLOT_MASK).bit_length() - 1) // _BITS) >= levels:
                    self._file(handle, deadline, payload)
                    continue
                bit = (deadline >> (level * _BITS)) & _SLOT_MASK
                filed = level * _SLOTS + bit
                state[handle] = deadline << _WHERE_BITS | filed
                slots[filed][handle] = payload
                masks[level] |= 1 << bit
            return True
        append = self._due.append
        priority = self._priority
        due_by = (start + 1) << _WHERE_BITS  # a state below it: due by ``start``
        to_due = _DUE - where  # what filing a timer of this slot as due adds to its state
        for handle, payload in slot.items():
            filed = state[handle]
            if filed < due_by:
                filed = state[handle] = filed + to_due
                append((filed, priority.get(handle, 0) if priority else 0, handle, payload))
            else:
                self._file(handle, filed >> _WHERE_BITS, payload)
        due = self._due
        if len(due) > 1:
            due.sort()
        return True
