from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import os
import re
from collections.abc import Callable, Mapping

import pytest
import uvloop

from chronowheel._wheel import TimerWheel as PureWheel
from chronowheel._wheel_api import Wheel
from helpers import Runner, run_on

# The optional extras' tests (their packages are all in the dev extra): without them the core suite runs alone.
_EXTRAS = {
    "test_metrics.py": ("prometheus_client",),
    "test_web.py": ("starlette", "jinja2", "httpx"),
    "test_web_browser.py": ("starlette", "jinja2", "uvicorn"),  # playwright and chromium: its own fixture
}
collect_ignore = [
    test for test, needs in _EXTRAS.items() if any(importlib.util.find_spec(name) is None for name in needs)
]

# Callable[..., Wheel]: the tests also call the constructors with ill-typed arguments.
WHEELS: dict[str, Callable[..., Wheel]] = {"pure": PureWheel}

try:
    from chronowheel._cwheel import TimerWheel as NativeWheel
except ImportError:  # not built, or built with CHRONOWHEEL_NO_EXTENSIONS: the pure wheel alone
    pass
else:
    WHEELS["native"] = NativeWheel


@pytest.fixture(params=sorted(WHEELS), scope="session")
def wheel_factory(request: pytest.FixtureRequest) -> Callable[..., Wheel]:
    return WHEELS[request.param]


LoopFactory = Callable[[], asyncio.AbstractEventLoop]
LOOPS: dict[str, LoopFactory] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, LoopFactory]:
    """Every ``async def`` test runs twice, on stock asyncio and on uvloop (ids ``[asyncio]``, ``[uvloop]``).

    pytest-asyncio's loop-factory hook, not an ``event_loop_policy`` override: that is deprecated since 1.4.
    """
    return LOOPS


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a coroutine on stock asyncio and on uvloop, for the tests that cannot be ``async def`` themselves."""
    return run_on(request.param)


@pytest.fixture(autouse=True)
def fsync_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test in which an fsync runs on an event loop's thread: a slow disk would stall every timer."""
    real_fsync = os.fsync

    def guarded_fsync(fd: int) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop in this thread: fine
            asyncio.get_running_loop()
            raise AssertionError("os.fsync called on the event loop thread")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", guarded_fsync)


# The default repr of an object (``<Foo object at 0x7f...>``): as a test id it differs in every process.
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse ids that hold an address: pytest-xdist's workers collect on their own and must agree on every id."""
    unstable = [item.nodeid for item in items if ADDRESS.search(item.nodeid)]
    if unstable:
        raise pytest.UsageError(
            "test ids that differ in every process (give the value a __repr__ or the parametrize an ids=): "
            + ", ".join(unstable)
        )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection made (modules, items, parameters: alive the whole run) out of the collector's sight.

    Every full collection would walk it again, and the journal runs one at each start (``JournalStore.restore``):
    the journal model test alone spent a minute in them.
    """
    gc.collect()
    gc.freeze()


from pgserver import pg_dsn, pg_server  # noqa: E402  the cluster tests' PostgreSQL (tests/pgserver.py)

__all__ = ["pg_dsn", "pg_server"]
