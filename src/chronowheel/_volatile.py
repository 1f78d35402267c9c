"""Volatile timers in pure Python: the twin of the native ``TimerCore`` and ``TimerHandle`` (``native/_cwheel.pyx``).

A core is one engine's ``call_later``/``call_at``, the handles they return,
and the driver's fire loop for them; :class:`Core` and :class:`Handle` are
what both twins promise, and :mod:`chronowheel._selection` picks one. The
engine binds ``engine.call_later`` to the core's method at construction.

Seconds are checked with the messages of :mod:`chronowheel._limits`, inline
(these are the calls a million timers make): a delay of 0 or less is due now,
as with ``loop.call_later``; NaN, infinities, more than ``MAX_DELAY`` and
what is not a number are refused.

The pure twin differs from the native one in two ways that no engine call
shows: its handles hold their core (the native ones name it by an id, so they
do not keep an engine alive), and the wheel hands a batch out as a list, so a
timer cancelled by a callback of its own batch still runs (the native fire
loop takes each timer out just before its call, as asyncio skips a cancelled
handle of its ready batch).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, MutableMapping
from typing import Any, Final, Protocol

from ._limits import MAX_DELAY
from ._wheel import TimerWheel
from ._wheel_api import Wheel

__all__ = ["Core", "Handle", "TimerCore", "TimerHandle"]

_ceil: Final = math.ceil
_INF: Final = math.inf


class Handle(Protocol):
    """A volatile timer, as asyncio's ``TimerHandle`` (``cancel``, ``when``, ``cancelled``) plus ``reschedule``."""

    def cancel(self) -> bool:
        """Stop the timer; True if it was still pending."""
        ...

    def reschedule(self, delay: float) -> bool:
        """Move it to ``delay`` seconds from now (0 or less: due now); True if it was still pending."""
        ...

    def when(self) -> float | None:
        """Its deadline on the engine clock (rounded up to the tick), or None once it fired or was cancelled."""
        ...

    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called (whether or not the timer had fired), as asyncio's."""
        ...


class Core(Protocol):
    """One engine's volatile timers. ``guard`` up: each call asks ``check(name)`` first; see ``_timers.Timers``."""

    sleep_tick: int
    guard: bool
    quiet: bool

    def __init__(
        self,
        time: Callable[[], float],
        epoch: float,
        rate: float,
        wake: Callable[[], object],
        check: Callable[[str], object],
    ) -> None:
        """``time``: the engine clock; tick ``n`` starts ``n / rate`` seconds after ``epoch`` on it."""
        ...

    @property
    def wheel(self) -> Wheel: ...

    @property
    def epoch(self) -> float:
        """The clock time of tick 0."""
        ...

    @property
    def rate(self) -> float:
        """Ticks per second."""
        ...

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Handle: ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Handle: ...

    def file(self, tick: int, payload: object) -> Handle: ...

    def fire(self, now: int, limit: int, loop: asyncio.AbstractEventLoop, counts: MutableMapping[str, int]) -> int:
        """Call up to ``limit`` callbacks due by tick ``now``, in order; return how many ran.

        SystemExit and KeyboardInterrupt go on to the caller (the rest of the
        batch fires at the next call); anything else a callback raises goes to
        ``loop``'s exception handler. ``counts["fired"]`` grows by the number run.
        """
        ...


def _delay_refused(delay: object) -> ValueError:
    return ValueError(f"delay must be a number of seconds up to {MAX_DELAY:g} (0 or less: due now), got {delay!r}")


def _when_refused(when: object) -> ValueError:
    return ValueError(f"when must be a finite time on the engine clock at most {MAX_DELAY:g}s ahead, got {when!r}")


class TimerHandle:
    """A volatile timer from ``call_later``/``call_at``: its core and the wheel's int handle.

    Two slots, as few as a tracked object can have here (every instance of a
    Python class is tracked by the cyclic GC, whatever it holds): ``cancel()``
    negates the handle, which the wheel then knows as no timer of its own.
    """

    __slots__ = ("_core", "_handle")

    def __init__(self, core: TimerCore, handle: int) -> None:
        self._core = core
        self._handle = handle

    def cancel(self) -> bool:
        """Stop the timer; True if it was still pending."""
        core = self._core
        if core.guard:
            core.check("cancel")
        handle = self._handle
        if handle < 0:
            return False
        self._handle = -handle
        return core.wheel.cancel(handle)

    def reschedule(self, delay: float) -> bool:
        """Move the timer to ``delay`` seconds from now (the session-expiry touch); True if pending.

        Moving it later is O(1) and lazy; the wheel re-files it only when its
        old slot comes due. A ``delay`` of 0 or less is due now.
        """
        core = self._core
        tick = core.after(delay)
        if core.guard:
            core.check("reschedule")
        if not core.wheel.reschedule(self._handle, tick):
            return False
        if tick < core.sleep_tick:
            core.wake()
        return True

    def when(self) -> float | None:
        """The time on the engine clock the timer is due at (its deadline's tick), or None once it is not pending."""
        tick = self._core.wheel.deadline(self._handle)
        return None if tick is None else self._core.epoch + tick / self._core.rate

    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called, as asyncio's (whether or not the timer had fired)."""
        return self._handle < 0

    def __repr__(self) -> str:
        if self._handle < 0:
            return "<TimerHandle cancelled>"
        when = self.when()
        return "<TimerHandle done>" if when is None else f"<TimerHandle when={when!r}>"


_new_handle: Final = object.__new__


class TimerCore:
    """One engine's volatile timers in Python: the native ``TimerCore``'s twin (see :class:`Core`)."""

    def __init__(
        self,
        time: Callable[[], float],
        epoch: float,
        rate: float,
        wake: Callable[[], object],
        check: Callable[[str], object],
    ) -> None:
        self.wheel = TimerWheel()
        self.sleep_tick = -1
        self.guard = False
        self.quiet = False  # nothing to quiet: the pure wheel's dicts are walked by the collector as any
        self.time = time
        self.epoch = epoch
        self.rate = rate
        self.wake = wake
        self.check = check
        self._left: list[Any] = []  # the rest of a batch that a SystemExit or KeyboardInterrupt interrupted

    def after(self, delay: float) -> int:
        """The tick ``delay`` seconds from now, ``delay`` checked.

        The checks cost nothing when they pass: a bool is refused by two
        identity tests, anything that is not a number fails the comparison or
        the arithmetic (a ``Decimal`` only the latter, a NaN ``Decimal`` the
        former with an ArithmeticError), all inside one ``try``.
        """
        try:
            if not -_INF < delay <= MAX_DELAY:
                raise _delay_refused(delay)
            if delay is True or delay is False:
                raise TypeError
            if delay < 0:
                delay = delay * 0  # due now, in its own type: what does not mix with floats still fails below
            return _ceil((self.time() - self.epoch + delay) * self.rate)
        except (TypeError, ArithmeticError):
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` after ``delay`` seconds (0 or less: due now); never journaled."""
        # after(), inlined: this is the call a million timers make.
        try:
            if not -_INF < delay <= MAX_DELAY:
                raise _delay_refused(delay)
            if delay is True or delay is False:
                raise TypeError
            if delay < 0:
                delay = delay * 0
            tick = _ceil((self.time() - self.epoch + delay) * self.rate)
        except (TypeError, ArithmeticError):
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None
        if self.guard:
            self.check("call_later")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        # The payload is the callback itself when there are no args: nothing allocated. The handle is built
        # here, not by TimerHandle(): its __init__ would be a Python frame per timer.
        handle = _new_handle(TimerHandle)
        handle._core = self
        handle._handle = self.wheel.add(tick, (callback, args) if args else callback)
        if tick < self.sleep_tick:
            self.wake()
        return handle

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` when the engine clock reaches ``when``; never journaled.

        A ``when`` in the past is due at once; one more than ``MAX_DELAY``
        seconds ahead is refused, as that delay is by ``call_later``.
        """
        try:
            if not -_INF < when <= self.time() + MAX_DELAY:
                raise _when_refused(when)
            if when is True or when is False:
                raise TypeError
            # Far in the past is due at once, as at the engine's first tick: no tick count overflows.
            tick = _ceil((when - self.epoch) * self.rate) if when > self.epoch else 0
        except (TypeError, ArithmeticError):
            raise TypeError(f"when must be a number, got {type(when).__name__}") from None
        if self.guard:
            self.check("call_at")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        return self.file(tick, (callback, args) if args else callback)

    def file(self, tick: int, payload: object) -> TimerHandle:
        """File a callable (or ``(callable, args)``) at ``tick``: the engine's own timers (job timeouts)."""
        handle = TimerHandle(self, self.wheel.add(tick, payload))
        if tick < self.sleep_tick:
            self.wake()
        return handle

    def fire(self, now: int, limit: int, loop: asyncio.AbstractEventLoop, counts: MutableMapping[str, int]) -> int:
        """Call up to ``limit`` callbacks due by tick ``now``; see :meth:`Core.fire`. One loop, no frame per timer."""
        due = self._left or self.wheel.advance(now, limit)
        self._left = []
        firing = iter(due)
        try:
            for payload in firing:
                try:
                    if payload.__class__ is tuple:
                        payload[0](*payload[1])
                    else:
                        payload()
                except (SystemExit, KeyboardInterrupt):
                    self._left = list(firing)
                    raise
                except BaseException as exc:
                    loop.call_exception_handler(
                        {"message": f"chronowheel: timer callback {payload!r} raised", "exception": exc}
                    )
        finally:
            counts["fired"] += len(due) - len(self._left)
        return len(due)
