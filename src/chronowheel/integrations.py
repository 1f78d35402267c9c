"""Framework glue: the engine's life tied to an application's.

``lifespan(engine)`` is a Starlette/FastAPI lifespan: the engine starts
with the application and stops (draining its jobs) with it. It needs no
import of Starlette, so this module imports without the ``web`` extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from ._engine import Engine
from ._limits import check_seconds

__all__ = ["lifespan"]


def lifespan(engine: Engine, *, grace: float = 10.0) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """``Starlette(lifespan=lifespan(engine))`` / ``FastAPI(lifespan=lifespan(engine))``.

    Starts ``engine`` at the application's startup, and at its shutdown
    stops it, giving running jobs ``grace`` seconds (see :meth:`Engine.stop`).
    """
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be an Engine, got {type(engine).__name__}")
    grace = check_seconds("grace", grace)

    @contextlib.asynccontextmanager
    async def span(app: Any) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop(grace)

    return span
