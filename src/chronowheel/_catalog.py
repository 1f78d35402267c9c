"""Queries over the jobs an engine knows: one page at a time, ordered by deadline, with a cursor.

Read from the engine's own memory (its indexes, pools, dead letters, finished
jobs' outcomes); only the parked jobs come from the store, which alone keeps them.
A finished job is matched on its outcome, and only those on the page are
shown as ``Job`` objects.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from ._job import JOB_STATES, Job
from ._limits import check_choice, check_int, check_name
from ._outcome import Outcome
from ._registry import Registry

__all__ = ["MAX_PAGE", "Catalog"]

MAX_PAGE: Final = 10_000  # jobs in one page: a bigger listing is paged
_CURSORS: Final = 1024  # page ends remembered: a cursor keeps its place when its job moves or ends

Position = tuple[float, str]


def _position(job: Job) -> Position:
    return (job._due_wall, job.id)


class Catalog:
    """Every job the engine can show: waiting, queued, running, paused, dead, parked, and recently finished.

    ``sources`` are the other places jobs are kept (the dead letters, the
    store's parked jobs), each a callable returning them; ``finished``
    returns the kept outcomes of finished jobs matching a state, a task and
    a key prefix (each None: any), and ``shown`` the ``Job`` a page shows
    for one.
    """

    def __init__(
        self,
        registry: Registry,
        sources: Iterable[Callable[[], Iterable[Job]]],
        finished: Callable[[str | None, str | None, str | None], Iterable[Outcome]],
        shown: Callable[[Outcome], Job],
    ) -> None:
        self._registry = registry
        self._sources = tuple(sources)
        self._finished = finished
        self._shown = shown
        self._ends: dict[str, Position] = {}  # the last job of each page handed out -> where it stood then

    def _everything(self) -> Iterator[Job]:
        yield from self._registry.jobs.values()  # every unfinished job: filed, held, queued or running
        for source in self._sources:
            yield from source()

    def page(
        self,
        state: object = None,
        task: str | None = None,
        key_prefix: object = None,
        limit: object = 100,
        after: object = None,
    ) -> list[Job]:
        """At most ``limit`` jobs matching every filter given, ordered by (deadline, id), past ``after``.

        ``after`` is the last job of the previous page: the page starts where
        that job stood when it was handed out, so jobs added or removed
        meanwhile never shift a page (no job is shown twice, none that stayed
        is skipped), even if the cursor's own job has since moved or ended.
        """
        wanted = None if state is None else check_choice("state", state, JOB_STATES)
        prefix = None if key_prefix is None else check_name("key_prefix", key_prefix)
        count = check_int("limit", limit)
        assert count is not None
        if count > MAX_PAGE:
            raise ValueError(f"limit must be an int from 1 to {MAX_PAGE}, got {count!r}")
        start: Position | None = None
        if after is not None:
            if not isinstance(after, Job):
                kind = type(after).__name__
                raise TypeError(f"after must be a Job (the last of the previous page) or None, got {kind}")
            start = self._ends.get(after.id, _position(after))
        seen: set[str] = set()
        matches: list[tuple[Position, Job | Outcome]] = []
        for job in self._everything():
            if job.id in seen:
                continue
            seen.add(job.id)
            if wanted is not None and job.state != wanted:
                continue
            if task is not None and job.task != task:
                continue
            if prefix is not None and (job.key is None or not job.key.startswith(prefix)):
                continue
            position = _position(job)
            if start is not None and position <= start:
                continue
            matches.append((position, job))
        for outcome in self._finished(wanted, task, prefix):  # those the filters match
            position = (outcome.due, outcome.id)
            if outcome.id not in seen and (start is None or position > start):
                matches.append((position, outcome))
        chosen = [
            (position, job if isinstance(job, Job) else self._shown(job))
            for position, job in heapq.nsmallest(count, matches, key=lambda match: match[0])
        ]
        if chosen:
            last_position, last = chosen[-1]
            ends = self._ends
            ends.pop(last.id, None)
            ends[last.id] = last_position
            if len(ends) > _CURSORS:
                del ends[next(iter(ends))]
        return [job for _, job in chosen]
