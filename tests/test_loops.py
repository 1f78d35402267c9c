"""The loop fixture itself: each ``async def`` test runs once per event loop, on that loop."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from helpers import Runner


async def test_an_async_test_runs_on_the_loop_its_id_names(request: pytest.FixtureRequest) -> None:
    loop = asyncio.get_running_loop()
    if request.node.name.endswith("[uvloop]"):
        assert isinstance(loop, uvloop.Loop)
    else:
        assert request.node.name.endswith("[asyncio]")
        assert type(loop).__module__.startswith("asyncio.")


def test_the_run_fixture_runs_on_the_loop_its_id_names(run: Runner, request: pytest.FixtureRequest) -> None:
    """The hand-driven runner, kept for tests that drive loops themselves (see tests/conftest.py)."""
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        seen.append(asyncio.get_running_loop())

    run(main)
    assert len(seen) == 1
    assert isinstance(seen[0], uvloop.Loop) == request.node.name.endswith("[uvloop]")
