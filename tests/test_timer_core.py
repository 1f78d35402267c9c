"""The volatile-timer core, native against pure: handles, the fire loop, the clock, the collector.

The differential tests drive both twins (``chronowheel._cwheel.TimerCore`` and
``chronowheel._volatile.TimerCore``) with the same operations on the same
hand-driven clock and compare every output: return values, the exception
type and message of every refusal, what fired in which order, what reached
the loop's exception handler, ``when()`` and ``cancelled()`` of every handle.
"""

from __future__ import annotations

import gc
import math
import time
import weakref
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel._volatile import Core
from chronowheel._volatile import TimerCore as PureCore

CORES: dict[str, type[Core]] = {"pure": PureCore}
try:
    from chronowheel._cwheel import TimerCore as NativeCore
    from chronowheel._cwheel import TimerHandle as NativeHandle
except ImportError:  # not built, or built with CHRONOWHEEL_NO_EXTENSIONS
    NativeCore = None  # type: ignore[assignment, misc]
else:
    CORES["native"] = NativeCore

needs_native = pytest.mark.skipif(NativeCore is None, reason="native wheel not built")
RATE = 1000.0  # the default 1 ms tick


class Loop:
    """What the fire loop needs of an event loop: an exception handler, here one that records."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context["exception"]
        self.errors.append((type(exc).__name__, str(exc)))


class World:
    """One core on a hand-driven clock, with everything it did written down."""

    def __init__(self, make: type[Core], start: float) -> None:
        self.now = start
        self.wakes = 0
        self.checks: list[str] = []
        self.core = make(self.time, start, RATE, self.wake, self.checks.append)
        self.handles: list[Any] = []
        self.fired: list[Any] = []
        self.loop = Loop()
        self.counts = {"fired": 0}

    def time(self) -> float:
        return self.now

    def wake(self) -> None:
        self.wakes += 1
        self.core.sleep_tick = -1

    def callback(self, kind: str, mark: int) -> Callable[..., None]:
        if kind == "ok":
            return self.fired.append
        if kind == "raises":

            def raises(mark: int) -> None:
                self.fired.append(-mark)
                raise ValueError(f"timer {mark}")

            return raises
        return lambda *args: self.fired.append(("args", args))

    def fire(self, limit: int) -> int:
        tick = int((self.now - self.core.epoch) * RATE)
        return self.core.fire(tick, limit, self.loop, self.counts)  # type: ignore[arg-type]


# Values a delay or a time may be: in range, due now, out of range, and not numbers at all.
SECONDS = st.one_of(
    st.floats(min_value=-5, max_value=5, allow_nan=False),
    st.integers(min_value=-5, max_value=5),
    st.sampled_from([0, -0.0, 0.0005, 0.001, 0.0015, 64.0, 4096.5, 3600.0, 1e10, -1e308, 2**63, -(10**400)]),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e10 + 1e-3, 1e13, 10**400, True, False]),
    st.sampled_from([Fraction(1, 3), Fraction(-1, 3), Decimal(1), Decimal(-1), "1", None]),
)
CALLBACKS = st.sampled_from(["ok", "raises", "noargs", "args"])
OPERATION = st.one_of(
    st.tuples(st.just("later"), SECONDS, CALLBACKS),
    st.tuples(st.just("at"), SECONDS, CALLBACKS),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("reschedule"), st.integers(0, 30), SECONDS),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.0004, 0.001, 0.0105, 1.0, 70.0]), st.integers(1, 4)),
    st.tuples(st.just("sleep"), st.integers(-1, 8000)),
)


def step(world: World, op: tuple[Any, ...], mark: int) -> Any:
    """Apply one operation to one world; what it returned, comparable across twins."""
    core, kind = world.core, op[0]
    if kind in ("later", "at"):
        _, value, callback = op
        method = core.call_later if kind == "later" else core.call_at
        fn = world.callback(callback, mark)
        try:
            handle = method(value, fn) if callback == "noargs" else method(value, fn, mark)
        except Exception as exc:
            return ("raised", type(exc).__name__, str(exc))
        world.handles.append(handle)
        return ("filed", handle.when(), handle.cancelled())
    if kind in ("cancel", "reschedule"):
        if not world.handles:
            return None
        handle = world.handles[op[1] % len(world.handles)]
        try:
            done = handle.cancel() if kind == "cancel" else handle.reschedule(op[2])
        except Exception as exc:
            return ("raised", type(exc).__name__, str(exc))
        return (done, handle.when(), handle.cancelled())
    if kind == "advance":
        world.now += op[1]
        return ("fired", world.fire(op[2]))
    core.sleep_tick = op[1]
    return None


def state(world: World) -> Any:
    return (
        world.fired,
        world.loop.errors,
        world.counts,
        world.wakes,
        len(world.core.wheel),
        [(h.when(), h.cancelled()) for h in world.handles],
    )


@needs_native
@settings(max_examples=150, deadline=None)
@given(start=st.sampled_from([0.0, 1234.5678, 1e6 + 0.3]), ops=st.lists(OPERATION, min_size=3, max_size=60))
def test_native_core_matches_pure(start: float, ops: list[tuple[Any, ...]]) -> None:
    native, pure = World(NativeCore, start), World(PureCore, start)
    for mark, op in enumerate(ops, 1):
        assert step(native, op, mark) == step(pure, op, mark), op
        assert state(native) == state(pure), op
    for world in (native, pure):  # drain both: everything still pending fires, in the same order
        world.now += 1e10
        while world.fire(1000):
            pass
    assert state(native) == state(pure)


@needs_native
@pytest.mark.parametrize("order", ["filing", "reversed", "random"])
@pytest.mark.parametrize("spread", [0.05, 5.0, 3600.0], ids=["one-level-0-window", "level-1", "level-3"])
def test_cancels_past_the_tombstone_bound_leave_the_rest_firing_as_the_pure_core(order: str, spread: float) -> None:
    """Native cancels leave tombstones up to a bound, then unlink: both kinds stay out of what fires.

    12,000 timers and 10,000 cancels: past the first few thousand the native
    core's cancels unlink at once, so both of its ways are compared with the
    pure core, cancel by cancel and firing batch by batch.
    """
    import random

    rng = random.Random(f"{order}-{spread}")
    delays = [rng.uniform(0.001, spread) for _ in range(12_000)]
    victims = list(range(0, 12_000, 6)) + [i for i in range(12_000) if i % 6]
    victims = victims[:10_000]
    if order == "reversed":
        victims.reverse()
    elif order == "random":
        rng.shuffle(victims)
    worlds = [World(NativeCore, 0.0), World(PureCore, 0.0)]
    for world in worlds:
        world.handles = [world.core.call_later(delay, world.fired.append, n) for n, delay in enumerate(delays)]
    native, pure = worlds
    stopped = 0
    for count, victim in enumerate(victims, 1):
        done = native.handles[victim].cancel()
        assert done == pure.handles[victim].cancel()
        stopped += done
        if count % 2_500 == 0:  # part of the way through: fire what is due on both, halfway
            for world in worlds:
                world.now += spread / 8
                while world.fire(1_000):
                    pass
            assert native.fired == pure.fired
            assert len(native.core.wheel) == len(pure.core.wheel)
    for world in worlds:
        world.now += 2 * spread
        while world.fire(1_000):
            pass
    assert native.fired == pure.fired
    assert len(native.fired) == 12_000 - stopped
    assert stopped > 6_000  # well past the bound: both ways were taken
    assert len(native.core.wheel) == 0


@needs_native
@pytest.mark.parametrize("delay", [0.01, 3600.0], ids=["level-0", "level-3"])
def test_a_core_that_files_and_cancels_for_ever_keeps_a_bounded_slab(delay: float) -> None:
    """Tombstones are bounded: 200,000 file-and-cancel rounds beside 1,000 timers grow nothing past the bound."""
    import tracemalloc

    world = World(NativeCore, 0.0)
    kept = [world.core.call_later(7200.0, print) for _ in range(1_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200_000):
            world.core.call_later(delay, print).cancel()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Unbounded, 200,000 tombstones of 32 bytes would be 6.4 MB; the bound is 500 + 4,096 of them.
    assert grown < 400_000, grown
    assert len(world.core.wheel) == len(kept)


@pytest.mark.parametrize("kind", sorted(CORES))
@pytest.mark.parametrize(
    ("delay", "due_tick"),
    [(-1e308, 0), (-5, 0), (-(10**400), 0), (Fraction(-1, 3), 0), (-0.0, 0), (0, 0), (0.0001, 1), (0.0015, 2)],
    ids=["-1e308", "-5", "-10**400", "Fraction(-1,3)", "-0.0", "0", "0.0001", "0.0015"],
)
def test_a_delay_of_zero_or_less_is_due_now(kind: str, delay: Any, due_tick: int) -> None:
    """As with ``loop.call_later``: a negative delay is due at once, at the first tick on or after now."""
    world = World(CORES[kind], 0.0)
    handle = world.core.call_later(delay, world.fired.append, "due")
    assert handle.when() == due_tick / RATE
    assert world.fire(10) == (1 if due_tick == 0 else 0)
    world.now = due_tick / RATE
    world.fire(10)
    assert world.fired == ["due"]
    assert handle.when() is None


@pytest.mark.parametrize("kind", sorted(CORES))
def test_when_and_cancelled_follow_asyncio(kind: str) -> None:
    """``when()`` is the deadline on the engine clock; ``cancelled()`` says whether ``cancel()`` was called."""
    world = World(CORES[kind], 100.0)
    moved, fired, cancelled = (world.core.call_later(2.5, world.fired.append, i) for i in range(3))
    assert [h.when() for h in (moved, fired, cancelled)] == [102.5, 102.5, 102.5]
    assert moved.reschedule(10.0)
    assert moved.when() == 110.0
    assert cancelled.cancel() is True
    assert (cancelled.cancelled(), cancelled.when(), cancelled.cancel()) == (True, None, False)
    world.now = 102.5
    world.fire(10)
    assert world.fired == [1]
    assert (fired.cancelled(), fired.when()) == (False, None)
    assert fired.cancel() is False
    assert fired.cancelled() is True  # as asyncio's: cancel() was called, too late or not
    assert (moved.cancelled(), moved.when()) == (False, 110.0)
    assert [repr(h) for h in (moved, fired)] == ["<TimerHandle when=110.0>", "<TimerHandle cancelled>"]


@pytest.mark.parametrize("kind", sorted(CORES))
@pytest.mark.parametrize("limit", [1, 3, 1000])
def test_the_fire_loop_runs_batches_of_at_most_limit(kind: str, limit: int) -> None:
    world = World(CORES[kind], 0.0)
    for i in range(10):
        world.core.call_later(i * 0.001, world.fired.append, i)
    world.now = 1.0
    batches = []
    while ran := world.fire(limit):
        batches.append(ran)
    assert world.fired == list(range(10))
    assert batches == [min(limit, 10 - done) for done in range(0, 10, limit)]
    assert world.counts == {"fired": 10}


@pytest.mark.parametrize("kind", sorted(CORES))
@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit], ids=["KeyboardInterrupt", "SystemExit"])
def test_a_fatal_error_leaves_the_rest_of_the_batch_due(kind: str, fatal: type[BaseException]) -> None:
    world = World(CORES[kind], 0.0)

    def stop() -> None:
        raise fatal()

    world.core.call_later(0.001, world.fired.append, "before")
    world.core.call_later(0.001, stop)
    world.core.call_later(0.001, world.fired.append, "after")
    world.now = 0.001
    with pytest.raises(fatal):
        world.fire(10)
    assert (world.fired, world.counts) == (["before"], {"fired": 2})
    assert world.fire(10) == 1
    assert (world.fired, world.counts, world.loop.errors) == (["before", "after"], {"fired": 3}, [])


@needs_native
def test_a_native_callback_cancelling_a_later_timer_of_its_batch_stops_it() -> None:
    """Each timer leaves the wheel just before its call, as asyncio skips a cancelled handle of its ready batch."""
    world = World(NativeCore, 0.0)
    later: list[Any] = []
    world.core.call_later(0.001, lambda: world.fired.append(later[0].cancel()))
    later.append(world.core.call_later(0.001, world.fired.append, "cancelled"))
    world.now = 0.001
    assert world.fire(10) == 1
    assert world.fired == [True]


@pytest.mark.parametrize("kind", sorted(CORES))
@pytest.mark.parametrize("call", ["call_later", "call_at", "cancel", "reschedule"])
def test_while_the_guard_is_up_each_call_asks_first(kind: str, call: str) -> None:
    world = World(CORES[kind], 0.0)
    handle = world.core.call_later(5, print)
    world.core.guard = True
    calls: dict[str, Callable[[], object]] = {
        "call_later": lambda: world.core.call_later(1, print),
        "call_at": lambda: world.core.call_at(1, print),
        "cancel": handle.cancel,
        "reschedule": lambda: handle.reschedule(1),
    }
    calls[call]()
    assert world.checks == [call]
    world.core.guard = False
    world.core.call_later(1, print)
    assert world.checks == [call]


@pytest.mark.parametrize("kind", sorted(CORES))
def test_filing_before_the_sleep_tick_wakes_the_driver(kind: str) -> None:
    world = World(CORES[kind], 0.0)
    world.core.sleep_tick = 5000
    world.core.call_later(6, print)
    assert world.wakes == 0
    handle = world.core.call_later(4, print)
    assert world.wakes == 1
    world.core.sleep_tick = 3000
    assert handle.reschedule(3.5)
    assert world.wakes == 1  # 3500 is not before 3000
    assert handle.reschedule(2)
    assert world.wakes == 2


@needs_native
def test_the_native_clock_is_time_monotonic() -> None:
    """On the system clock the core reads ``CLOCK_MONOTONIC`` in C: the value ``time.monotonic`` gives."""
    core = NativeCore(time.monotonic, time.monotonic(), RATE, print, print)
    for _ in range(1000):
        before = time.monotonic()
        now = core.time()
        after = time.monotonic()
        assert before <= now <= after


@needs_native
def test_native_handles_are_untracked_and_do_not_keep_the_engine_alive() -> None:
    core = NativeCore(time.monotonic, time.monotonic(), RATE, print, print)
    handles = [core.call_later(60, print) for _ in range(100)]
    assert not any(gc.is_tracked(handle) for handle in handles)
    assert all(sys_size(handle) <= 32 for handle in handles)
    gone = weakref.ref(core)
    del core
    gc.collect()
    assert gone() is None
    assert [(h.cancel(), h.reschedule(1), h.when()) for h in handles[:3]] == [(False, False, None)] * 3


def sys_size(handle: NativeHandle) -> int:
    import sys

    return sys.getsizeof(handle)


@needs_native
def test_a_quiet_core_hides_its_payloads_from_the_collector_until_it_is_loud_again() -> None:
    """While quiet (its driver runs) a cycle through a payload is kept; once loud again it is collected."""
    core = NativeCore(time.monotonic, time.monotonic(), RATE, print, print)

    class Owner:
        core: Any

    owner = Owner()
    owner.core = core  # owner -> core -> wheel -> payload -> owner
    core.call_later(60, lambda owner=owner: owner)
    gone = weakref.ref(owner)
    core.quiet = True
    assert gc.get_referents(core.wheel) == []
    del owner, core
    gc.collect()
    assert gone() is not None
    kept = gone()
    assert kept is not None
    kept.core.quiet = False
    del kept
    gc.collect()
    assert gone() is None
