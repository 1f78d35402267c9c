"""One attempt of a job: the call (async on the loop, sync on a daemon thread), its timeout, its outcome.

Success is acknowledged; a failure is retried through the pool's wheel or
goes to the dead letters; the engine's own failure to start a job too.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import random
import threading
import traceback
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from ._current import CURRENT_JOB
from ._hooks import Hooks
from ._job import Job, TaskSpec
from ._placement import Placement
from ._registry import Registry
from ._results import Results
from ._stats import Stats
from ._ticks import Ticks
from ._timers import Timers

__all__ = ["Execution"]

logger = logging.getLogger("chronowheel")


def _in_thread(
    call: Callable[[], object], loop: asyncio.AbstractEventLoop, done: asyncio.Future[tuple[bool, Any]]
) -> None:
    """A sync job's thread: run it and hand the loop its outcome, a value or whatever it raised."""
    try:
        outcome = (True, call())
    except BaseException as exc:  # the job's to report, whatever it is: this thread only carries it
        outcome = (False, exc)
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this job any more
        loop.call_soon_threadsafe(done.set_result, outcome)


def _fields(spec: TaskSpec, job: Job) -> dict[str, Any]:
    """A log record's ``extra``: what a log pipeline filters and groups a job's lines by."""
    return {"job_id": job.id, "task": job.task, "key": job.key, "attempt": job.attempt, "pool": spec.pool}


def _summary(error: BaseException) -> str:
    """``Type: message``, or the type alone: a retry's one line."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class Execution:
    """Runs jobs for the pools' workers (:meth:`run`), and keeps the dead letters.

    ``dead`` holds the jobs that ran out of attempts, oldest first;
    ``interrupted`` the ones ``stop()`` cut off mid-attempt. ``rng`` draws
    the retries' jitter. ``run_finished`` is told when a run of a recurring
    job is over (it succeeded or is dead); ``results`` takes a success's
    value and acknowledges it, and learns of each death. ``hooks`` are told
    of each attempt's start and outcome, and their middleware wraps each
    attempt; each is a list's truth test when none is registered.
    """

    def __init__(
        self,
        ticks: Ticks,
        timers: Timers,
        registry: Registry,
        placement: Placement,
        stats: Stats,
        rng: random.Random,
        run_finished: Callable[[Job], None],
        hooks: Hooks,
        results: Results,
    ) -> None:
        self._ticks = ticks
        self._timers = timers
        self._registry = registry
        self._placement = placement
        self._stats = stats
        self.rng = rng
        self._run_finished = run_finished
        self._hooks = hooks
        on = hooks.callbacks  # lists that live as long as the engine: tested for truth, called into when not empty
        self._started, self._succeeded = on["started"], on["succeeded"]
        self._failed, self._dead = on["failed"], on["dead"]
        self._middleware = hooks.middleware
        self._acknowledge = results.succeeded
        self._died = results.died
        self.dead: dict[str, Job] = {}
        self.interrupted: list[Job] = []

    async def run(self, job: Job) -> None:
        """Run one attempt of a job; on failure, retry it through the wheel or bury it.

        Whatever the task raises is a failed attempt, any BaseException:
        CancelledError too, unless the worker itself is being cancelled
        (``stop()``), which leaves the job pending. KeyboardInterrupt and
        SystemExit are recorded, then go on to the loop's caller.
        ``current_job()`` is the job throughout, its hooks included.
        """
        spec = self._registry.tasks[job.task]
        job.state = "running"
        job.attempt += 1
        ticks = self._ticks
        began = ticks.time()
        late = max(0.0, began - ticks.epoch - job._due_tick / ticks.rate)
        self._stats.lateness.append(late)
        figures = self._stats.tasks[job.task]
        figures.counts["started"] += 1
        # Histogram.observe inlined, here and below: no Python frame per job; and the first bucket (where a
        # job on time, or a short one, falls) by one comparison, without a bisect (1,200 instructions).
        histogram = figures.lateness
        bounds = histogram.bounds
        histogram.counts[0 if late <= bounds[0] else bisect_left(bounds, late)] += 1
        histogram.sum += late
        # Set, never reset: the worker's own context outlives the attempt unseen (tasks the job spawns, and
        # async hooks, took a copy), and the next attempt sets it again; a reset would cost as much once more.
        CURRENT_JOB.set(job)
        try:
            if self._started:
                self._hooks.emit("started", job)
            if spec.is_async and spec.timeout is None and not self._middleware:  # _attempt and _invoke, inlined
                value = await spec.func(*job.args, **job.kwargs)
            else:
                value = await self._attempt(spec, job)
        except asyncio.CancelledError as exc:
            worker = asyncio.current_task()
            assert worker is not None
            if worker.cancelling():  # cut off by stop(): it did not complete
                job.state = "pending"
                self.interrupted.append(job)
                raise
            self.failed(spec, job, exc)  # raised by the task itself
        except (KeyboardInterrupt, SystemExit) as exc:
            self.failed(spec, job, exc)
            raise
        except BaseException as exc:
            self.failed(spec, job, exc)
        else:
            job.state = "succeeded"
            job.error = None
            job.traceback = None
            self._stats.counts["succeeded"] += 1
            figures.counts["succeeded"] += 1
            self._acknowledge(job, value)
            if self._succeeded:
                self._hooks.emit("succeeded", job)
        finally:
            took = ticks.time() - began
            histogram = figures.duration
            bounds = histogram.bounds
            histogram.counts[0 if took <= bounds[0] else bisect_left(bounds, took)] += 1
            histogram.sum += took
            if job._parent is not None and job.state in ("succeeded", "dead"):
                self._run_finished(job._parent)

    async def _attempt(self, spec: TaskSpec, job: Job) -> Any:
        """Call the task (through the middleware, if any) for its return value: async on the loop, sync in a
        thread; cancel it at its timeout."""
        invoke = self._invoke if not self._middleware else self._wrapped
        if spec.timeout is None:
            return await invoke(spec, job)
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        # The engine's own timer, not call_later's: it must work through stop()'s grace period.
        alarm = self._timers.file_timer(self._ticks.after(spec.timeout), expire)
        try:
            return await invoke(spec, job)
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()
            raise TimeoutError(f"job {job.id} of task {job.task!r} ran longer than {spec.timeout}s") from None
        finally:
            alarm.cancel()

    async def _wrapped(self, spec: TaskSpec, job: Job) -> Any:
        """The attempt inside the middleware: ``call_next()`` calls the task and returns what it returned."""
        return await self._hooks.through(job, functools.partial(self._invoke, spec, job))

    async def _invoke(self, spec: TaskSpec, job: Job) -> Any:
        if spec.is_async:
            return await spec.func(*job.args, **job.kwargs)
        # A sync job runs on a daemon thread of its own: one given up on (timed out, or cut off by
        # stop()) cannot keep the process from exiting, and its worker waits for it before taking
        # another job, so the pool never runs more than its concurrency.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        call = functools.partial(contextvars.copy_context().run, spec.func, *job.args, **job.kwargs)
        thread = threading.Thread(
            target=_in_thread, args=(call, loop, done), name=f"chronowheel job {job.id}", daemon=True
        )
        timers = self._timers
        timers.thread_started()
        done.add_done_callback(timers.thread_returned)
        try:
            thread.start()
        except BaseException:  # no thread to be had: the attempt fails, as the job cannot run
            timers.thread_returned()
            raise
        try:
            ok, outcome = await asyncio.shield(done)
        except asyncio.CancelledError:
            self._registry.pools[spec.pool].hold(done)
            raise
        if not ok:
            raise outcome
        return outcome

    def failed(self, spec: TaskSpec, job: Job, error: BaseException) -> None:
        """A failed attempt: retry it after its backoff, or move it to the dead letters."""
        job.error = error
        job.traceback = "".join(traceback.format_exception(error))
        counts = self._stats.counts
        counts["failed"] += 1
        task_counts = self._stats.tasks[job.task].counts
        task_counts["failed"] += 1
        retry = spec.retry
        placement = self._placement
        closed = self._timers.closed  # stop() has begun: a retry is only kept by the store, not filed
        if retry is not None and retry.should_retry(error, job.attempt) and not (closed and placement.store is None):
            delay = retry.delay(job.attempt, self.rng)
            job.state = "failed"
            counts["retried"] += 1
            task_counts["retried"] += 1
            if closed:  # stopping: the store keeps the retry for after the restart
                placement.set_due(job, delay)
                placement.record(job, own=True)
            else:
                placement.file(job, delay, own=True)
            # One line, no traceback: a retry is the expected course of things; the death tells the whole story.
            logger.info(
                "chronowheel: job %s of task %r failed (attempt %d of %d): %s; retrying in %.3fs",
                job.id,
                job.task,
                job.attempt,
                retry.attempts,
                _summary(error),
                delay,
                extra=_fields(spec, job),
            )
            if self._failed:
                self._hooks.emit("failed", job)
            return
        job.state = "dead"
        task_counts["dead"] += 1
        self.dead[job.id] = job
        self._registry.forget(job)
        placement.record(job, own=True)
        self._died(job)
        logger.error(
            "chronowheel: job %s of task %r failed (attempt %d); moved to the dead letters",
            job.id,
            job.task,
            job.attempt,
            exc_info=error,
            extra=_fields(spec, job),
        )
        if self._dead:
            self._hooks.emit("dead", job)

    def undeliverable(self, job: Job, error: Exception, loop: asyncio.AbstractEventLoop) -> None:
        """The engine failed to start a due job (a fault of its own): the job goes to the dead letters."""
        job.state = "dead"
        job.error = error
        job.traceback = "".join(traceback.format_exception(error))
        self._stats.tasks[job.task].counts["dead"] += 1
        self.dead[job.id] = job
        self._registry.forget(job)
        self._placement.record(job, own=True)
        self._died(job)
        loop.call_exception_handler(
            {"message": f"chronowheel: job {job.id} of task {job.task!r} could not be started", "exception": error}
        )
        if self._dead:
            self._hooks.emit("dead", job)
