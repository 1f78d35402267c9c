"""Tasks and pools by name, and the indexes of the engine's unfinished jobs: by id, and by key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._errors import UnknownTask
from ._job import Job, TaskSpec
from ._limits import check_int, check_name, check_priority, check_seconds
from ._pool import Pool
from ._rate import Limiter
from ._retry import Retry

__all__ = ["Registry"]


class Registry:
    """What an engine knows by name: its tasks, its pools, and its pending jobs by key.

    ``keyed`` maps a key to the job holding it: pending, waiting for a retry,
    paused, or a series between runs; it is released when the job fires, is
    cancelled, or ends. ``started`` maps the key of a job that fired to it
    until it ends (so ``get(key)`` finds a running job while the key is free
    for a new one). ``jobs`` holds every unfinished job by id (filed in a
    wheel, held out of one, or a series' run queued or running), until it
    ends (acknowledged, cancelled, dead): what queries read, one dict entry
    per job. ``tasks`` holds each task under its name
    and its aliases (old names that stored jobs may still carry); ``tasks``
    and ``by_function`` are what :meth:`spec` reads; ``schedule_nowait``
    reads them itself, a frame less, and calls :meth:`spec` only for the error.
    """

    def __init__(self) -> None:
        self.tasks: dict[str, TaskSpec] = {}
        self.by_function: dict[Callable[..., Any], TaskSpec] = {}
        self.pools: dict[str, Pool] = {}
        self.keyed: dict[str, Job] = {}
        self.started: dict[str, Job] = {}
        self.jobs: dict[str, Job] = {}

    def add_pool(
        self,
        name: str,
        concurrency: int,
        max_queued: int | None,
        on_room: Callable[[], None],
        *,
        started: bool,
        limiter: Limiter | None = None,
    ) -> None:
        """Add a pool (arguments checked here; ``limiter``'s rate by ``Rate``); once ``started``, a RuntimeError."""
        check_name("name", name)
        if name in self.pools:
            raise ValueError(f"name: a pool {name!r} already exists")
        check_int("concurrency", concurrency)
        check_int("max_queued", max_queued, optional=True)
        if started:
            raise RuntimeError("add_pool: pools are added before the engine starts")
        self.pools[name] = Pool(name, concurrency, max_queued, on_room=on_room, limiter=limiter)

    def task_maker(
        self, name: object, pool: str, priority: int, retry: Retry | None, timeout: float | None
    ) -> Callable[[Callable[..., Any]], TaskSpec]:
        """Check ``Engine.task``'s arguments now (``aliases`` is :meth:`check_aliases`'s); the spec comes later."""
        task_name = check_name("name", name, optional=True)
        if pool not in self.pools:
            raise ValueError(f"pool: no pool named {pool!r}; add it with add_pool() first")
        check_priority("priority", priority)
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a Retry or None, got {type(retry).__name__}")
        if timeout is not None:
            timeout = check_seconds("timeout", timeout, positive=True)

        def make(func: Callable[..., Any]) -> TaskSpec:
            return TaskSpec(task_name or f"{func.__module__}:{func.__qualname__}", func, pool, priority, retry, timeout)

        return make

    @staticmethod
    def check_aliases(aliases: object) -> tuple[str, ...]:
        """``aliases`` if it is a tuple or list of non-empty str; else an error naming it."""
        if not isinstance(aliases, tuple | list):
            raise TypeError(f"aliases must be a tuple of task names, got {type(aliases).__name__}")
        for alias in aliases:
            check_name("aliases", alias)
        return tuple(aliases)

    def register(
        self, func: Callable[..., Any], make: Callable[[Callable[..., Any]], TaskSpec], aliases: tuple[str, ...] = ()
    ) -> None:
        """Register ``func`` as the task ``make`` describes, also known by ``aliases``; name: ``module:qualname``."""
        if not callable(func):
            raise TypeError(f"task: expected a function, got {type(func).__name__}")
        spec = make(func)
        for name in (spec.name, *aliases):
            owner = self.tasks.get(name)
            if owner is not None and owner.func is not func:
                what = "name" if name == spec.name else "aliases"
                role = "the name" if owner.name == name else "an alias"
                raise ValueError(
                    f"{what}: {name!r} is already {role} of task {owner.name!r}"
                    f" ({getattr(owner.func, '__qualname__', owner.func)!r}); one name runs one function"
                )
        for name in (spec.name, *aliases):
            self.tasks[name] = spec
        self.by_function[func] = spec

    def spec(self, task: str | Callable[..., Any]) -> TaskSpec:
        """The registered task, by name or by function; :class:`UnknownTask` if there is none."""
        if isinstance(task, str):
            spec = self.tasks.get(task)
            if spec is None:
                raise UnknownTask(f"task: no task registered as {task!r}")
            return spec
        if not callable(task):
            raise TypeError(f"task must be a registered function or its name, got {type(task).__name__}")
        try:
            return self.by_function[task]
        except (KeyError, TypeError):
            raise UnknownTask(
                f"task: {getattr(task, '__qualname__', task)!r} is not registered; decorate it with @engine.task"
            ) from None

    def pool_of(self, job: Job) -> Pool:
        """The pool that runs this job's task."""
        return self.pools[self.tasks[job.task].pool]

    def release(self, job: Job) -> None:
        """The job no longer holds its key (it fired, was cancelled, or ended)."""
        if job.key is not None and self.keyed.get(job.key) is job:
            del self.keyed[job.key]

    def fired(self, job: Job) -> None:
        """A keyed job fired: its key is free for a new job, and still finds this one until it ends."""
        key = job.key
        if key is not None and self.keyed.get(key) is job:
            del self.keyed[key]
            self.started[key] = job

    def forget(self, job: Job) -> None:
        """The job ended (acknowledged, cancelled, dead): out of the indexes."""
        self.jobs.pop(job.id, None)
        key = job.key
        if key is not None and self.started.get(key) is job:
            del self.started[key]

    def waiting(self, key_or_job: str | Job, owner: object) -> Job | None:
        """The job if it waits in a wheel: pending, or failed and waiting for its retry, or a series between runs.

        A Job of another engine than ``owner`` is refused: its wheel handle
        would name one of this engine's own jobs.
        """
        if isinstance(key_or_job, Job):
            if key_or_job._engine is not owner:
                raise ValueError(f"key_or_job: job {key_or_job.id} is not a job of this engine")
            started_run = key_or_job._parent is not None and key_or_job._timer is None  # queued or running
            waiting = key_or_job.state in ("pending", "failed", "paused") and not started_run
            between_runs = key_or_job._series is not None and key_or_job.state == "running"
            return key_or_job if waiting or between_runs else None
        if isinstance(key_or_job, str):
            return self.keyed.get(key_or_job)
        raise TypeError(f"key_or_job must be a key (str) or a Job, got {type(key_or_job).__name__}")
