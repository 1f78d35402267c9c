"""``engine.from_thread``: the job API for other threads (sync web handlers, Django views, thread pools).

Each call is handed to the engine's loop with ``loop.call_soon_threadsafe``
and answered with a :class:`concurrent.futures.Future`; the engine itself
stays single-threaded, and refuses direct calls from other threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._job import Job
    from ._volatile import Handle

__all__ = ["FromThread", "Loop"]

T = TypeVar("T")
Loop = tuple[asyncio.AbstractEventLoop, int]  # the running engine's loop, and its thread's ident


class FromThread:
    """``schedule``, ``cancel``, ``reschedule`` and ``call_later`` from any thread but the loop's, as futures.

    ``loop()`` is the running engine's loop and thread, or None while it is
    not running; the other arguments are the engine's own methods.
    """

    def __init__(
        self,
        loop: Callable[[], Loop | None],
        schedule: Callable[..., Coroutine[Any, Any, Job]],
        cancel: Callable[..., bool],
        reschedule: Callable[..., bool],
        call_later: Callable[..., Handle],
    ) -> None:
        self._loop = loop
        self._schedule = schedule
        self._cancel = cancel
        self._reschedule = reschedule
        self._call_later = call_later

    def schedule(self, task: str | Callable[..., Any], **options: Any) -> concurrent.futures.Future[Job]:
        """``await engine.schedule(task, **options)`` on the loop: the future's result is the (durable) Job."""
        loop = self._target("schedule")
        coroutine = self._schedule(task, **options)
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:
            coroutine.close()
            raise _closed("schedule") from None

    def cancel(self, key_or_job: str | Job) -> concurrent.futures.Future[bool]:
        """``engine.cancel(key_or_job)`` on the loop."""
        return self._call("cancel", self._cancel, key_or_job)

    def reschedule(self, key_or_job: str | Job, **when: Any) -> concurrent.futures.Future[bool]:
        """``engine.reschedule(key_or_job, delay=... | at=...)`` on the loop."""
        return self._call("reschedule", self._reschedule, key_or_job, **when)

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any
    ) -> concurrent.futures.Future[Handle]:
        """``engine.call_later(delay, callback, *args)`` on the loop; ``delay`` counts from when the loop files it."""
        return self._call("call_later", self._call_later, delay, callback, *args)

    def _target(self, call: str) -> asyncio.AbstractEventLoop:
        """The running engine's loop; a RuntimeError when not running, or when called on the loop's own thread."""
        target = self._loop()
        if target is None:
            raise RuntimeError(f"engine.from_thread.{call}: the engine is not running; start() it first")
        loop, thread = target
        if threading.get_ident() == thread:
            # The future could only be waited for by blocking the loop that must resolve it.
            raise RuntimeError(
                f"engine.from_thread.{call}: called on the engine's own event loop thread; call engine.{call}() there"
            )
        return loop

    def _call(self, call: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        loop = self._target(call)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return  # the caller cancelled the future before the loop got to it
            try:
                future.set_result(method(*args, **kwargs))
            except Exception as exc:  # the caller's to see, as if it had called the method itself
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:
            raise _closed(call) from None
        return future


def _closed(call: str) -> RuntimeError:
    return RuntimeError(f"engine.from_thread.{call}: the engine's event loop is closed")
