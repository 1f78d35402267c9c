from __future__ import annotations

from typing import Any

import pytest

from chronowheel._wheel import TimerWheel as PureWheel
from helpers import Runner, run_on

WHEELS: dict[str, Any] = {"pure": PureWheel}


@pytest.fixture(params=sorted(WHEELS), scope="session")
def wheel_factory(request: pytest.FixtureRequest) -> Any:
    return WHEELS[request.param]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a test's coroutine on stock asyncio and on uvloop."""
    return run_on(request.param)
