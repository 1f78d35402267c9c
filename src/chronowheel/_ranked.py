"""A wheel whose due payloads leave highest priority first: a rate-limited pool's wheel, sans-IO.

A pool with a rate takes out of its wheel only as many due jobs as the
window allows, and a plain wheel hands them out in deadline order: a
low-priority job due a minute ago would start before a high-priority one due
now. :class:`RankedWheel` keeps the timing in a plain wheel and moves each
payload, once due, into a heap ordered by (priority, deadline, filing order),
handing out the heap's top: the highest-priority due job starts first, as the
ready queue of a pool without a rate orders them. A due payload stays
cancellable and movable: the handle is this wheel's own, whichever part holds
the payload. Each payload moves into the heap once; cancelled ones are left
there and skipped (the heap is rebuilt when they outnumber the live ones).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Final

from ._wheel_api import TICK_MAX, TICK_MIN, Wheel

__all__ = ["RankedWheel"]

_handles: Final = itertools.count(1)  # one counter for every ranked wheel: a handle names one timer in the process

_Entry = tuple[int, int, int]  # (priority, deadline, handle): a due payload's place in the heap


class _Timer:
    __slots__ = ("deadline", "entry", "filed", "payload", "priority")

    def __init__(self, deadline: int, priority: int, payload: object, filed: int) -> None:
        self.deadline = deadline
        self.priority = priority
        self.payload = payload
        self.filed: int | None = filed  # the inner wheel's handle while not yet due; None once due
        self.entry: _Entry | None = None  # its heap entry once due (an older one is stale)


def _handle(handle: object) -> int:
    if not isinstance(handle, int) or isinstance(handle, bool):
        raise TypeError(f"handle must be an int returned by add(), got {type(handle).__name__}")
    return handle


def _tick(name: str, value: object) -> int:
    """The wheels' own check (see ``_wheel_api``), for the calls the inner wheel does not see."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not TICK_MIN <= value <= TICK_MAX:
        raise ValueError(f"{name} must be an int from {TICK_MIN} to {TICK_MAX}, got {value!r}")
    return value


class RankedWheel:
    """The :class:`~chronowheel._wheel_api.Wheel` contract over ``inner``, but due payloads leave by priority.

    ``advance(now, limit)`` hands out, of everything due by ``now``, the
    ``limit`` with the lowest (priority, deadline, filing order).
    """

    __slots__ = ("_heap", "_inner", "_timers")

    def __init__(self, inner: Wheel) -> None:
        self._inner = inner  # holds each timer's handle until it is due
        self._timers: dict[int, _Timer] = {}  # every pending timer, filed or due, by this wheel's handle
        self._heap: list[_Entry] = []

    @property
    def now(self) -> int:
        return self._inner.now

    @property
    def levels(self) -> int:
        return self._inner.levels

    def __len__(self) -> int:
        return len(self._timers)

    def add(self, deadline: int, payload: object, priority: int = 0) -> int:
        _tick("priority", priority)
        handle = next(_handles)
        self._timers[handle] = _Timer(deadline, priority, payload, self._inner.add(deadline, handle))
        return handle

    def cancel(self, handle: int) -> bool:
        timer = self._timers.pop(_handle(handle), None)
        if timer is None:
            return False
        if timer.filed is not None:
            self._inner.cancel(timer.filed)
        return True

    def reschedule(self, handle: int, deadline: int) -> bool:
        _tick("deadline", deadline)
        timer = self._timers.get(_handle(handle))
        if timer is None:
            return False
        timer.deadline = deadline
        if timer.filed is not None:
            return self._inner.reschedule(timer.filed, deadline)
        if deadline <= self._inner.now:  # still due: its place among the due ones, by its new deadline
            timer.entry = (timer.priority, deadline, handle)
            heapq.heappush(self._heap, timer.entry)
        else:  # due no more: back to waiting for its deadline
            timer.entry = None
            timer.filed = self._inner.add(deadline, handle)
        return True

    def deadline(self, handle: int) -> int | None:
        timer = self._timers.get(_handle(handle))
        return None if timer is None else timer.deadline

    def hide(self, kind: type | None) -> None:
        """Nothing to hide: the payloads wait in this wheel's own dict, which the collector walks."""

    def next_expiry(self) -> int | None:
        if len(self._timers) > len(self._inner):  # some are due already
            return self._inner.now
        return self._inner.next_expiry()

    def advance(self, now: int, limit: int | None = None) -> list[Any]:
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool):
                raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
            if limit <= 0:
                raise ValueError(f"limit must be positive, got {limit!r}")
        timers, heap = self._timers, self._heap
        for handle in self._inner.advance(now):  # every newly due one joins the heap: the choice is among all
            timer = timers[handle]
            timer.filed = None
            timer.entry = (timer.priority, timer.deadline, handle)
            heapq.heappush(heap, timer.entry)
        out: list[Any] = []
        while heap and len(out) != limit:
            entry = heapq.heappop(heap)
            found = timers.get(entry[2])
            if found is None or found.entry is not entry:
                continue  # cancelled, or moved since
            del timers[entry[2]]
            out.append(found.payload)
        if len(heap) > 64 and len(heap) > 2 * (len(timers) - len(self._inner)):
            self._heap = [t.entry for t in timers.values() if t.entry is not None]  # drop the stale entries
            heapq.heapify(self._heap)
        return out
