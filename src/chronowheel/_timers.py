"""Volatile timers: the engine's timer core, who may call it, and the driver's wake-up.

Hot: ``call_later``, ``TimerHandle.cancel``/``reschedule`` are the calls a
million timers make. They live in the core (:mod:`chronowheel._volatile`'s
``Core``: native, or its pure twin), and the engine binds ``engine.call_later``
and ``engine.call_at`` to the core's own methods: no Python frame in between.
What is left here is rare: the guard, the threads, the driver's sleep.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Final

from ._errors import EngineClosed
from ._selection import TimerCore, TimerHandle
from ._ticks import Ticks
from ._volatile import Core, Handle
from ._wheel_api import Wheel

__all__ = ["TimerHandle", "Timers"]

IDLE: Final = 1 << 62  # sleep target while nothing is scheduled: any timer wakes the driver


class Timers:
    """The volatile timers' core and wheel, and the driver's sleep: what wakes it, and when.

    ``sleep_tick`` is the tick the driver sleeps until (-1 while it is awake
    or not started): filing anything earlier must :meth:`wake` it. The core
    keeps its own copy for its hot calls; this one is the job path's. Not
    thread-safe: calls come from the loop's thread. The hot calls check that
    only while the guard is up (stopped, sync jobs running in threads, or the
    loop in debug mode), so they cost nothing more otherwise.
    """

    def __init__(self, ticks: Ticks) -> None:
        self.ticks = ticks
        self.core: Core = TimerCore(ticks.time, ticks.epoch, ticks.rate, self.wake, self._check_caller)
        self.wheel: Wheel = self.core.wheel
        self.sleep_tick = -1
        self._wakeup: asyncio.Future[None] | None = None
        self.loop_thread: int | None = None  # set by bind(); schedule_nowait compares it itself, a call less
        self._threads = 0  # sync jobs' threads running
        self._debug = False  # the loop runs in asyncio debug mode: every hot call checks its thread
        self.closed = False  # True once the engine is stopping

    def file_timer(self, tick: int, payload: Any) -> Handle:
        """Put a volatile timer in the wheel; the engine's own (job timeouts) come here directly."""
        return self.core.file(tick, payload)

    def fire(self, now: int, limit: int, loop: asyncio.AbstractEventLoop, counts: dict[str, int]) -> int:
        """Run up to ``limit`` due timers' callbacks (the core's fire loop); how many ran."""
        return self.core.fire(now, limit, loop, counts)

    # -- the driver's sleep --------------------------------------------------------------

    def wake(self) -> None:
        """Wake the driver: something is due before the tick it sleeps until, or a pool has room again."""
        self.awake()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def nap(self, loop: asyncio.AbstractEventLoop, until: int | None) -> asyncio.Future[None]:
        """The future the driver awaits until tick ``until`` (None: until anything is filed)."""
        self._wakeup = loop.create_future()
        self.sleep_tick = self.core.sleep_tick = IDLE if until is None else until
        return self._wakeup

    def awake(self) -> None:
        """The driver is awake: nothing filed needs to wake it."""
        self.sleep_tick = self.core.sleep_tick = -1

    # -- who may call -------------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The engine started: calls from now on must come from this (the loop's) thread.

        In asyncio debug mode the hot calls check it too, every time (issue 15):
        ``loop.call_later`` does as much in debug mode, and nothing otherwise.
        """
        self.loop_thread = threading.get_ident()
        self._debug = loop.get_debug()
        self._set_guard()

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
        """True while the hot calls check their caller (stopped, threads running, or debug mode)."""
        return self.core.guard

    def _check_caller(self, call: str) -> None:
        """Refuse a timer from another thread than the loop's, or once the engine is stopped."""
        self.check_thread(call)
        if self.closed and call in ("call_later", "call_at"):
            raise EngineClosed("the engine is stopped; it takes no more timers")

    def check_thread(self, call: str) -> None:
        """Refuse a call from another thread (a sync job's): the engine is not thread-safe."""
        if self.loop_thread is not None and threading.get_ident() != self.loop_thread:
            raise RuntimeError(
                f"{call}: called from thread {threading.current_thread().name!r}, but the engine is not "
                "thread-safe and runs on its event loop's thread; from another thread, use engine.from_thread "
                "(engine.from_thread.schedule(...) returns a concurrent.futures.Future)"
            )

    def _set_guard(self) -> None:
        """Raise the guard while stopped, while sync jobs run in threads or in debug mode; lower it otherwise.

        While it is up, the hot calls (``call_later``, ``call_at``, handle
        methods) ask :meth:`_check_caller` first; the rest of the time they
        test one flag in the core and nothing more.
        """
        self.core.guard = self.closed or self._threads > 0 or self._debug
