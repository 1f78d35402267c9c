"""Hooks (``engine.on(event, callback)``) and middleware (``engine.add_middleware(mw)``): what runs around jobs.

Nothing here runs unless registered: the engine parts test a list's truth
before calling in (an empty list is the whole cost of the feature).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from ._job import Job

__all__ = ["EVENTS", "Event", "Hooks", "Middleware"]

logger = logging.getLogger("chronowheel")

Event = Literal["started", "succeeded", "failed", "dead", "cancelled"]
EVENTS: Final[tuple[Event, ...]] = ("started", "succeeded", "failed", "dead", "cancelled")
Middleware = Callable[["Job", Callable[[], Awaitable[Any]]], Awaitable[Any]]


class Hooks:
    """The callbacks by event and the middleware, in registration order.

    ``callbacks[event]`` is a list that lives as long as the engine, so a
    part may hold it and test it (``if started: hooks.emit(...)``) for free.
    A callback's error is logged and goes no further: a hook never changes
    a job's outcome. An async callback runs as a task of its own.
    """

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[Job], object]]] = {event: [] for event in EVENTS}
        self.middleware: list[Middleware] = []
        self._running: set[asyncio.Future[Any]] = set()  # async callbacks' tasks: a reference until they end

    def on(self, event: str, callback: Callable[[Job], object]) -> None:
        """Call ``callback(job)`` at each ``event``."""
        if not isinstance(event, str) or event not in self.callbacks:
            raise ValueError(f"event must be one of {', '.join(map(repr, EVENTS))}, got {event!r}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        self.callbacks[event].append(callback)

    def add_middleware(self, middleware: Middleware) -> None:
        """Wrap every attempt in ``middleware(job, call_next)``; the first added is the outermost."""
        if not inspect.iscoroutinefunction(middleware):
            raise TypeError(
                f"mw must be an async function, async def mw(job, call_next), got {type(middleware).__name__}"
            )
        self.middleware.append(middleware)

    def emit(self, event: Event, job: Job) -> None:
        """Call the event's callbacks with the job; log what they raise."""
        for callback in self.callbacks[event]:
            try:
                outcome = callback(job)
                if inspect.isawaitable(outcome):
                    task = asyncio.ensure_future(outcome)
                    self._running.add(task)
                    task.add_done_callback(functools.partial(self._finished, event, job, callback))
            except Exception:
                self._log(event, job, callback)

    def _finished(self, event: Event, job: Job, callback: Callable[[Job], object], task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log(event, job, callback, task.exception())

    @staticmethod
    def _log(event: Event, job: Job, callback: object, error: BaseException | None = None) -> None:
        logger.error(
            "chronowheel: the %r hook %s raised for job %s of task %r",
            event,
            getattr(callback, "__qualname__", repr(callback)),
            job.id,
            job.task,
            exc_info=error if error is not None else True,
            extra={"job_id": job.id, "task": job.task, "key": job.key, "attempt": job.attempt, "hook": event},
        )

    async def through(self, job: Job, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``call`` (the attempt) inside every middleware, the first added outermost."""
        for middleware in reversed(self.middleware):
            call = functools.partial(middleware, job, call)
        return await call()
