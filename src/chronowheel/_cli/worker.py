"""``chronowheel worker module:engine``: run a user's engine until SIGTERM or SIGINT, then stop it gracefully.

Exit status: 0 when every running job finished within the grace period,
3 when the grace ran out or a second signal cut it short (running jobs were
cancelled; a journaled engine runs them again at its next start), 1 when
the engine failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, Final

from .._errors import ChronowheelError

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = ["configure", "load_engine", "run"]

logger = logging.getLogger("chronowheel.worker")

DRAINED: Final = 0
FAILED: Final = 1
USAGE: Final = 2
CUT_SHORT: Final = 3


class UsageError(Exception):
    """A command-line argument that does not name what it must."""


def configure(commands: Any) -> None:
    parser = commands.add_parser(
        "worker",
        help="run an engine until SIGTERM/SIGINT, then stop it gracefully",
        description="Import ENGINE (module:attribute, e.g. myapp.jobs:engine) and run it until SIGTERM or SIGINT;"
        " then stop it: running jobs get --grace seconds to finish, and a second signal cancels them at once."
        " Exit status: 0 drained, 3 jobs were cancelled at the end, 1 the engine failed, 2 usage errors.",
    )
    parser.add_argument("engine", metavar="ENGINE", help="module:attribute of a chronowheel.Engine")
    parser.add_argument("--grace", type=float, default=10.0, metavar="S", help="seconds jobs get to finish (10)")
    parser.add_argument("--web", metavar="HOST:PORT", help="serve the dashboard (extra web), read-only")
    parser.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics (extra prometheus)")
    parser.set_defaults(run=run)


def load_engine(target: str) -> Engine:
    """The engine that ``module:attribute`` names; the current directory is importable, as with ``python -m``."""
    from .._engine import Engine

    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise UsageError(f"ENGINE must be module:attribute (e.g. myapp.jobs:engine), got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the module exists and imports something that does not: the user's traceback
        raise UsageError(f"ENGINE {target!r}: no module named {exc.name!r}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"ENGINE {target!r}: {module_name} has no attribute {attribute!r}") from None
    if not isinstance(found, Engine):
        raise UsageError(f"ENGINE {target!r} is a {type(found).__name__}, not a chronowheel.Engine")
    return found


def address(option: str, value: str | None) -> tuple[str, int] | None:
    """``HOST:PORT`` (or ``:PORT`` for 127.0.0.1) as a pair."""
    if value is None:
        return None
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"{option} must be HOST:PORT (e.g. 127.0.0.1:8080), got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _needs(option: str, extra: str, module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{option} needs the {extra} extra: pip install 'chronowheel[{extra}]'") from None


def run(args: argparse.Namespace) -> int:
    try:
        if not args.grace >= 0:
            raise UsageError(f"--grace must be seconds, at least 0, got {args.grace!r}")
        web = address("--web", args.web)
        metrics = address("--metrics", args.metrics)
        if web is not None:
            for module in ("starlette", "jinja2", "uvicorn"):
                _needs("--web", "web", module)
        if metrics is not None:
            _needs("--metrics", "prometheus", "prometheus_client")
        engine = load_engine(args.engine)
    except UsageError as exc:
        print(f"chronowheel worker: {exc}", file=sys.stderr)
        return USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run_loop(_serve(engine, args.grace, web, metrics))
    except (ChronowheelError, OSError) as exc:
        print(f"chronowheel worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return FAILED


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


@contextlib.contextmanager
def _signals(loop: asyncio.AbstractEventLoop, on_signal: Callable[[int], None]) -> Iterator[None]:
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    try:
        yield
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)


async def _serve(engine: Engine, grace: float, web: tuple[str, int] | None, metrics: tuple[str, int] | None) -> int:
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[int] = asyncio.Queue()
    async with contextlib.AsyncExitStack() as servers:  # left last: the dashboard shows the drain
        servers.enter_context(_signals(loop, signals.put_nowait))
        await engine.start()
        try:
            if metrics is not None:
                servers.enter_context(_metrics_server(engine, *metrics))
            if web is not None:
                await servers.enter_async_context(_web_server(engine, *web))
            flavour = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
            logger.info("running %r on %s; SIGTERM or SIGINT stops it", engine, flavour)
            number = await signals.get()
        except BaseException:
            await engine.stop(grace=0)
            raise
        logger.info("%s: stopping, running jobs get %gs to finish (a second signal cancels them)", _name(number), grace)
        stopping = asyncio.ensure_future(engine.stop(grace))
        second = asyncio.ensure_future(signals.get())
        done, _ = await asyncio.wait((stopping, second), timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        status = DRAINED if stopping in done and stopping.exception() is None else CUT_SHORT
        if second in done:
            logger.info("%s: cancelling the running jobs now", _name(second.result()))
            await engine.stop(grace=0)  # cuts the first stop's grace short
        second.cancel()
        await stopping
        logger.info("stopped (%s)", "drained" if status == DRAINED else "running jobs were cancelled")
        return status


def _name(number: int) -> str:
    return signal.Signals(number).name


@contextlib.contextmanager
def _metrics_server(engine: Engine, host: str, port: int) -> Generator[None]:
    from prometheus_client import start_http_server

    from ..metrics import register

    collector = register(engine)
    server, thread = start_http_server(port, addr=host)
    logger.info("metrics on http://%s:%d/metrics", host, server.server_port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        from prometheus_client import REGISTRY

        REGISTRY.unregister(collector)


@contextlib.asynccontextmanager
async def _web_server(engine: Engine, host: str, port: int) -> AsyncIterator[None]:
    """The dashboard, read-only, served by uvicorn on this loop (the worker handles the signals, not uvicorn)."""
    import uvicorn

    from ..web import dashboard

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None]:
            yield

    listener = socket.create_server((host, port))  # bound here, so port 0 is logged as the port it got
    server = Server(uvicorn.Config(dashboard(engine), log_level="warning", lifespan="off"))
    serving = asyncio.ensure_future(server.serve(sockets=[listener]))
    logger.info("dashboard on http://%s:%d/", host, listener.getsockname()[1])
    try:
        yield
    finally:
        server.should_exit = True
        await serving
        listener.close()
