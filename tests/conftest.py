from __future__ import annotations

import contextlib
import importlib
from typing import Any

import pytest

from chronowheel._wheel import TimerWheel as PureWheel
from helpers import Runner, run_on

WHEELS: dict[str, Any] = {"pure": PureWheel}

# Not built, or built with CHRONOWHEEL_NO_EXTENSIONS: the pure wheel alone. Through
# importlib because the extension has no stub, and mypy must not need one.
with contextlib.suppress(ImportError):
    WHEELS["native"] = importlib.import_module("chronowheel._cwheel").TimerWheel


@pytest.fixture(params=sorted(WHEELS), scope="session")
def wheel_factory(request: pytest.FixtureRequest) -> Any:
    return WHEELS[request.param]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a test's coroutine on stock asyncio and on uvloop."""
    return run_on(request.param)
