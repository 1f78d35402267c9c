"""Pending jobs hidden from the cyclic collector while the driver runs (``TimerWheel.hide``), and shown again."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from chronowheel import WHEEL, Engine
from chronowheel._wheel import TimerWheel as PureWheel
from chronowheel.testing import VirtualClock

NativeWheel: Any = None
with contextlib.suppress(ImportError):
    from chronowheel._cwheel import TimerWheel as NativeWheel

needs_native = pytest.mark.skipif(NativeWheel is None, reason="native wheel not built")


class Payload:
    """What a hiding wheel holds: an instance of a plain class, tracked by the collector."""

    def __init__(self) -> None:
        self.other: Any = None


class Other:
    """A tracked payload of another type: never hidden."""


def leave_by_advance(wheel: Any, handle: int) -> list[Any]:
    return wheel.advance(10)  # type: ignore[no-any-return]


def leave_by_cancel(wheel: Any, handle: int) -> list[Any]:
    assert wheel.cancel(handle)
    return []


def leave_by_showing(wheel: Any, handle: int) -> list[Any]:
    wheel.hide(None)
    return []


def leave_by_reinit(wheel: Any, handle: int) -> list[Any]:
    wheel.__init__()
    return []


def leave_due_then_cancel(wheel: Any, handle: int) -> list[Any]:
    wheel.add(0, Other())
    assert len(wheel.advance(1, limit=1)) == 1  # the due batch under way; ours waits in it
    assert wheel.cancel(handle)  # a tombstone in the batch
    return []


LEAVE: list[tuple[str, Callable[[Any, int], list[Any]]]] = [
    ("advance", leave_by_advance),
    ("cancel", leave_by_cancel),
    ("hide(None)", leave_by_showing),
    ("__init__ again", leave_by_reinit),
    ("cancelled while due", leave_due_then_cancel),
]


@needs_native
@pytest.mark.parametrize("leave", [row[1] for row in LEAVE], ids=[row[0] for row in LEAVE])
def test_a_hidden_payload_is_untracked_while_it_waits_and_tracked_once_it_leaves(leave: Any) -> None:
    wheel = NativeWheel()
    wheel.hide(Payload)
    payload, other = Payload(), Other()
    handle = wheel.add(1, payload)
    wheel.add(5, other)
    assert not gc.is_tracked(payload)
    assert gc.is_tracked(other)  # only exactly the hidden type
    assert wheel.reschedule(handle, 1)  # moving keeps it hidden
    assert not gc.is_tracked(payload)
    out = leave(wheel, handle)
    assert gc.is_tracked(payload)
    assert all(gc.is_tracked(item) for item in out)


@needs_native
def test_hiding_untracks_what_already_waits_and_a_dropped_wheel_shows_it() -> None:
    wheel = NativeWheel()
    payloads = [Payload() for _ in range(3)]
    for tick, payload in enumerate(payloads):
        wheel.add(tick + 1, payload)
    wheel.hide(Payload)
    assert not any(gc.is_tracked(payload) for payload in payloads)
    assert gc.get_referents(wheel) == [Payload]  # the payloads are not walked either
    wheel.hide(Payload)  # the same kind again: nothing changes
    assert not any(gc.is_tracked(payload) for payload in payloads)
    del wheel
    assert all(gc.is_tracked(payload) for payload in payloads)


@needs_native
def test_a_cycle_through_a_hidden_payload_is_kept_while_hidden_and_collected_once_shown() -> None:
    class Owner:
        wheel: Any

    owner = Owner()
    owner.wheel = NativeWheel()
    payload = Payload()
    payload.other = owner  # owner -> wheel -> payload -> owner
    owner.wheel.add(60, payload)
    owner.wheel.hide(Payload)
    gone = weakref.ref(owner)
    del owner, payload
    gc.collect()
    kept = gone()
    assert kept is not None  # the caller's promise was broken here: it dropped a hiding wheel
    kept.wheel.hide(None)
    del kept
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("wheel_type", [NativeWheel, PureWheel], ids=["native", "pure"])
@pytest.mark.parametrize("kind", [1, "Payload", Payload()], ids=["an int", "a str", "an instance"])
def test_hide_takes_a_type_or_none(wheel_type: Any, kind: Any) -> None:
    if wheel_type is None:
        pytest.skip("native wheel not built")
    wheel = wheel_type()
    if wheel_type is PureWheel:
        wheel.hide(kind)  # nothing to hide: the pure wheel takes anything and does nothing
        return
    with pytest.raises(TypeError, match="kind must be a type or None, got "):
        wheel.hide(kind)


def test_the_pure_wheel_hides_nothing() -> None:
    wheel = PureWheel()
    wheel.hide(Payload)
    payload = Payload()
    wheel.add(1, payload)
    assert gc.is_tracked(payload)


def noop(*args: Any) -> None:
    """The task the jobs name."""


async def test_pending_jobs_are_hidden_while_the_driver_runs_and_tracked_once_it_stops() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.task("t")(noop)
    engine.add_pool("other", concurrency=1)
    engine.task("u", pool="other")(noop)
    before = engine.schedule_nowait("t", args=(1,), delay=60)  # filed before the driver: hidden when it starts
    hidden = WHEEL == "native"
    async with engine:  # no turn of the loop yet: the driver is started, not yet run, and hides already
        jobs = [engine.schedule_nowait(name, args=[n], delay=60) for n, name in enumerate("tutu")]
        keyed = engine.schedule_nowait("t", key="k", delay=60)
        assert [gc.is_tracked(job) for job in [before, *jobs, keyed]] == [not hidden] * 6
        assert engine.cancel(keyed)
        assert gc.is_tracked(keyed)  # out of its wheel: its error (JobCancelled) refers back to it
        moved = jobs[0]
        assert engine.reschedule(moved, delay=1)
        assert gc.is_tracked(moved) is not hidden
        await clock.advance(2)  # handed out, run, acknowledged
        assert moved.state == "succeeded"
        assert gc.is_tracked(moved)
    assert all(gc.is_tracked(job) for job in [before, *jobs])


async def test_a_stopped_engine_with_pending_jobs_is_collected() -> None:
    engine = Engine(clock=VirtualClock())
    engine.task("t")(noop)
    async with engine:
        await asyncio.sleep(0)
        for n in range(10):
            engine.schedule_nowait("t", args=(n,), delay=60)  # engine -> wheel -> job -> engine
    gone = weakref.ref(engine)
    del engine
    for _ in range(3):  # the stopped driver's last callbacks run
        await asyncio.sleep(0)
    gc.collect()
    assert gone() is None


@needs_native
def test_a_timer_cores_wheel_refuses_to_hide() -> None:
    from chronowheel._cwheel import TimerCore

    core = TimerCore(time.monotonic, time.monotonic(), 1000.0, print, print)
    with pytest.raises(ValueError, match="a timer core's wheel hides nothing"):
        core.wheel.hide(Payload)
    core.wheel.hide(None)  # showing is always allowed
