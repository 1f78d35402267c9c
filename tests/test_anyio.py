"""The engine under ``anyio.run``, as docs/api.md's example starts it, with and without uvloop."""

from __future__ import annotations

import asyncio

import anyio
import pytest
import uvloop

from chronowheel import Engine
from chronowheel.testing import VirtualClock


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_the_engine_runs_under_anyio_run(use_uvloop: bool) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    ran: list[tuple[str, float]] = []
    loops: list[asyncio.AbstractEventLoop] = []

    @engine.task
    async def remind(user: int) -> None:
        ran.append((f"remind:{user}", clock.time()))

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        async with engine:
            await engine.schedule(remind, args=(42,), delay=3600, key="remind:42")
            assert engine.reschedule("remind:42", delay=7200) is True
            handle = engine.call_later(30.0, ran.append, ("expired", 30.0))
            assert handle.cancel() is True
            await clock.advance(7200)

    anyio.run(main, backend_options={"use_uvloop": use_uvloop})
    assert ran == [("remind:42", 7200.0)]
    assert isinstance(loops[0], uvloop.Loop) == use_uvloop
