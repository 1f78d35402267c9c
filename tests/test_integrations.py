"""Framework glue: the Starlette/FastAPI lifespan, and which event loops ``start()`` accepts."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette  # the `web` extra, and part of `dev` with httpx and trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chronowheel import Engine
from chronowheel.integrations import lifespan
from chronowheel.testing import VirtualClock


@contextlib.asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI server's part, on the running loop: the lifespan's startup, requests, then its shutdown."""
    inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    running = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await running


def reminders_app(engine: Engine) -> Starlette:
    """A web service with a sync endpoint (run in a thread pool) and an async one, both scheduling reminders."""

    @engine.task(name="remind")
    async def remind(user: str) -> None: ...

    def schedule_sync(request: Request) -> JSONResponse:  # a `def` endpoint: Starlette runs it in a thread
        job = engine.from_thread.schedule("remind", args=(request.path_params["user"],), delay=60).result(10)
        return JSONResponse({"id": job.id, "state": job.state})

    async def schedule_async(request: Request) -> JSONResponse:
        job = await engine.schedule("remind", args=(request.path_params["user"],), delay=60)
        return JSONResponse({"id": job.id, "state": job.state})

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({"pending": len(engine), "repr": repr(engine)})

    routes = [
        Route("/sync/{user}", schedule_sync, methods=["POST"]),
        Route("/async/{user}", schedule_async, methods=["POST"]),
        Route("/status", status),
    ]
    return Starlette(routes=routes, lifespan=lifespan(engine, grace=0))


async def test_the_lifespan_starts_and_stops_the_engine_with_the_app() -> None:
    engine = Engine(clock=VirtualClock())
    app = reminders_app(engine)
    assert repr(engine).startswith("<Engine new")
    async with served(app) as client:
        assert repr(engine).startswith("<Engine running")
        for path in ("/sync/ada", "/async/grace", "/sync/linus"):
            response = await client.post(path)
            assert response.status_code == 200
            assert response.json()["state"] == "pending"
        assert (await client.get("/status")).json()["pending"] == 3
    assert repr(engine).startswith("<Engine stopped")


def test_lifespan_names_its_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"^engine must be an Engine, got str$"):
        lifespan("engine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^grace must be a number of seconds from 0 to"):
        lifespan(Engine(), grace=-1)


def test_the_integrations_module_imports_without_starlette() -> None:
    """It needs no import of Starlette: a plain asyncio service may use it with the base install."""
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "import chronowheel.integrations as m\n"
        "assert 'starlette' not in {name.split('.')[0] for name in sys.modules if sys.modules[name] is not None}\n"
        "print(m.lifespan.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "lifespan"), result.stderr


def test_start_under_trio_is_a_clear_error() -> None:
    async def main() -> None:
        engine = Engine()
        with pytest.raises(RuntimeError, match=r"^start: chronowheel runs on asyncio \(or uvloop\), not trio; run it"):
            await engine.start()
        assert repr(engine).startswith("<Engine new")  # nothing was started: it may still start on asyncio

    anyio.run(main, backend="trio")


def test_start_without_a_running_loop_is_a_clear_error() -> None:
    """A coroutine driven by hand (no event loop at all) gets the same message, less the trio part."""
    coroutine = Engine().start()
    with pytest.raises(
        RuntimeError, match=r"^start: chronowheel needs a running asyncio event loop \(asyncio or uvloop\)"
    ):
        coroutine.send(None)
    coroutine.close()
