"""Volatile timers: the engine's own wheel, ``call_later``/``call_at``, ``TimerHandle``, and the driver's wake-up.

Hot: ``call_later``, ``TimerHandle.cancel``/``reschedule`` are the calls a
million timers make. ``Engine`` inherits ``call_later`` and ``call_at`` from
:class:`TimerCalls`, so ``engine.call_later`` is one Python frame.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final

from ._errors import EngineClosed
from ._limits import MAX_DELAY
from ._selection import TimerWheel
from ._ticks import Ticks
from ._wheel_api import Wheel

__all__ = ["TimerCalls", "TimerHandle", "Timers"]

_ceil: Final = math.ceil
IDLE: Final = 1 << 62  # sleep target while nothing is scheduled: any timer wakes the driver


class TimerHandle(int):
    """A volatile timer from ``call_later`` / ``call_at``: ``cancel()`` it like asyncio's.

    The handle is the wheel's own int handle. An int subclass with no
    attributes is not tracked by the cyclic garbage collector, so a million
    pending handles cost it nothing; the timers it belongs to are a class
    attribute of a per-engine subclass (see :class:`Timers`).
    """

    __slots__ = ()
    _timers: ClassVar[Timers]

    def cancel(self) -> bool:
        """Stop the timer; True if it was still pending."""
        return bool(self._timers.wheel.cancel(self))

    def reschedule(self, delay: float) -> bool:
        """Move the timer to ``delay`` seconds from now (the session-expiry touch); True if pending.

        Moving it later is O(1) and lazy; the wheel re-files it only when its
        old slot comes due.
        """
        timers = self._timers
        tick = timers.ticks.after(delay)
        if not timers.wheel.reschedule(self, tick):
            return False
        if tick < timers.sleep_tick:
            timers.wake()
        return True

    def __repr__(self) -> str:
        return f"<TimerHandle {int(self)}>"


def _checked_cancel(handle: TimerHandle) -> bool:
    handle._timers.check_thread("cancel")
    return TimerHandle.cancel(handle)


def _checked_reschedule(handle: TimerHandle, delay: float) -> bool:
    handle._timers.check_thread("reschedule")
    return TimerHandle.reschedule(handle, delay)


# What an engine's handle class does instead while sync jobs run in threads: refuse calls from them.
# Put on the class then, not checked in the methods, so the methods cost nothing more the rest of the time.
_CHECKED_HANDLE_METHODS: Final = {"cancel": _checked_cancel, "reschedule": _checked_reschedule}


class Timers:
    """The volatile timers' wheel, and the driver's sleep: what wakes it, and when.

    ``sleep_tick`` is the tick the driver sleeps until (-1 while it is awake
    or not started): filing anything earlier must :meth:`wake` it. Not
    thread-safe: calls come from the loop's thread. The hot calls check that
    only while the guard is up (stopped, or sync jobs running in threads), so
    they cost nothing more otherwise.
    """

    def __init__(self, ticks: Ticks) -> None:
        self.ticks = ticks
        self._time = ticks.time
        self._epoch = ticks.epoch
        self._rate = ticks.rate
        self.wheel: Wheel = TimerWheel()
        self._handle_type: type[TimerHandle] = type("TimerHandle", (TimerHandle,), {"__slots__": (), "_timers": self})
        self.sleep_tick = -1
        self._wakeup: asyncio.Future[None] | None = None
        self._loop_thread: int | None = None
        self._threads = 0  # sync jobs' threads running
        self.closed = False  # True once the engine is stopping
        self._guard = False

    def file_timer(self, tick: int, payload: Any) -> TimerHandle:
        """Put a volatile timer in the wheel; the engine's own (job timeouts) come here directly."""
        handle = self._handle_type(self.wheel.add(tick, payload))
        if tick < self.sleep_tick:
            self.wake()
        return handle

    # -- the driver's sleep --------------------------------------------------------------

    def wake(self) -> None:
        """Wake the driver: something is due before the tick it sleeps until, or a pool has room again."""
        self.sleep_tick = -1
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def nap(self, loop: asyncio.AbstractEventLoop, until: int | None) -> asyncio.Future[None]:
        """The future the driver awaits until tick ``until`` (None: until anything is filed)."""
        self._wakeup = loop.create_future()
        self.sleep_tick = IDLE if until is None else until
        return self._wakeup

    # -- who may call -------------------------------------------------------------------

    def bind(self) -> None:
        """The engine started: calls from now on must come from this (the loop's) thread."""
        self._loop_thread = threading.get_ident()

    def close(self) -> None:
        """The engine is stopping: timers are refused from now on."""
        self.closed = True
        self._set_guard()

    def thread_started(self) -> None:
        """A sync job's thread runs: check callers until it returns."""
        self._threads += 1
        self._set_guard()

    def thread_returned(self, done: object = None) -> None:
        """A sync job's thread returned (a done callback, hence the argument)."""
        self._threads -= 1
        self._set_guard()

    @property
    def threads(self) -> int:
        """Sync jobs' threads running now."""
        return self._threads

    @property
    def guarded(self) -> bool:
        """True while the hot calls check their caller (stopped, or threads running)."""
        return self._guard

    def _check_caller(self, call: str) -> None:
        """Refuse a timer from another thread than the loop's, or once the engine is stopped."""
        self.check_thread(call)
        if self.closed:
            raise EngineClosed("the engine is stopped; it takes no more timers")

    def check_thread(self, call: str) -> None:
        """Refuse a call from another thread (a sync job's): the engine is not thread-safe."""
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            raise RuntimeError(
                f"{call}: called from thread {threading.current_thread().name!r}, but the engine is not "
                "thread-safe and runs on its event loop's thread; from another thread, use engine.from_thread "
                "(engine.from_thread.schedule(...) returns a concurrent.futures.Future)"
            )

    def _set_guard(self) -> None:
        """Raise the guard while stopped or while sync jobs run in threads, lower it otherwise.

        While it is up, the hot calls (``call_later``, ``call_at``, handle
        methods) check which thread calls them; the rest of the time they
        check nothing more than whether it is up (handles, not even that:
        their checked methods are put on the engine's handle class).
        """
        guard = self.closed or self._threads > 0
        if guard == self._guard:
            return
        self._guard = guard
        for name, method in _CHECKED_HANDLE_METHODS.items():
            if guard:
                setattr(self._handle_type, name, method)
            else:
                delattr(self._handle_type, name)


class TimerCalls:
    """The hot calls, ``call_later`` and ``call_at``, as methods of the class that inherits them: ``Engine``.

    Inherited rather than delegated to: ``engine.call_later`` is then one
    Python frame, and CPython specializes the method lookup (an attribute
    holding a bound method costs about 150 instructions more per call).
    """

    def __init__(self, timers: Timers) -> None:
        self.__timers = timers

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` after ``delay`` seconds; never journaled."""
        t = self.__timers
        # Ticks.after and file_timer, inlined: this is the call a million timers make.
        try:
            if not 0 <= delay <= MAX_DELAY:
                raise ValueError(f"delay must be a number of seconds from 0 to {MAX_DELAY:g}, got {delay!r}")
            if delay is True or delay is False:
                raise TypeError
            tick = _ceil((t._time() - t._epoch + delay) * t._rate)
        except (TypeError, ArithmeticError):
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None
        if t._guard:  # stopped, or sync jobs run in threads: one check for both rare cases
            t._check_caller("call_later")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        # The payload is the callback itself when there are no args: nothing allocated.
        handle = t._handle_type(t.wheel.add(tick, (callback, args) if args else callback))
        if tick < t.sleep_tick:
            t.wake()
        return handle

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` when :meth:`time` reaches ``when``; never journaled.

        A ``when`` in the past is due at once; one more than ``MAX_DELAY``
        seconds ahead is refused, as that delay is by ``call_later``.
        """
        t = self.__timers
        try:
            if not -math.inf < when <= t._time() + MAX_DELAY:
                raise ValueError(
                    f"when must be a finite time on the engine clock at most {MAX_DELAY:g}s ahead, got {when!r}"
                )
            if when is True or when is False:
                raise TypeError
            # Far in the past is due at once, as at the engine's first tick: no tick count overflows.
            tick = _ceil((when - t._epoch) * t._rate) if when > t._epoch else 0
        except (TypeError, ArithmeticError):
            raise TypeError(f"when must be a number, got {type(when).__name__}") from None
        if t._guard:
            t._check_caller("call_at")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        # The payload is the callback itself when there are no args: nothing allocated.
        return t.file_timer(tick, (callback, args) if args else callback)
