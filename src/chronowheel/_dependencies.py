"""Jobs scheduled ``after=`` others: held out of the wheels until every parent succeeded.

A child waits in the engine's indexes (not in a wheel) with ``Job._after``,
the ids of the parents it still waits for; each parent's end is looked up in
``children``. A parent that succeeds is struck off (the child re-recorded, so
a restart resumes a chain where it was); the last one files the child at its
own deadline, or now if that has passed (a child paused meanwhile waits for
its resume). A parent that ends dead or cancelled cancels the child, with the
reason, and so on down the chain. Parents must exist when the child is
scheduled, so no cycle can be made.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Final

from ._job import Job
from ._limits import MAX_AHEAD
from ._placement import Placement
from ._ticks import Ticks

__all__ = ["Dependencies", "parent_ids"]

_HELD: Final = ("pending", "paused")  # the states of a child still waiting for its parents


def parent_ids(after: object, owner: object) -> list[tuple[str, Job | None]]:
    """``after=`` as (id, the Job if one was passed): a Job, a job id, or a non-empty list of them.

    A Job must be ``owner``'s, unless ``owner`` is None (cluster mode: any
    engine's job of the cluster, looked up in the database).
    """
    items = [after] if isinstance(after, Job | str) else after
    if not isinstance(items, list | tuple | set | frozenset) or not items:
        raise TypeError(
            f"after must be a Job, a job id, or a non-empty list of them, got {type(after).__name__}"
            + (" (empty)" if isinstance(items, list | tuple | set | frozenset) else "")
        )
    ids: list[tuple[str, Job | None]] = []
    for item in items:
        if isinstance(item, Job):
            if owner is not None and item._engine is not owner:
                raise ValueError(f"after: job {item.id} is not a job of this engine")
            ids.append((item.id, item))
        elif isinstance(item, str):
            ids.append((item, None))
        else:
            raise TypeError(f"after: each parent must be a Job or a job id (str), got {type(item).__name__}")
    return ids


class Dependencies:
    """The children waiting for their parents, by parent id; ``cancel`` cancels a child with a reason."""

    def __init__(self, ticks: Ticks, placement: Placement, cancel: Callable[[Job, str], object]) -> None:
        self._wall = ticks.wall
        self._placement = placement
        self._cancel = cancel
        self.children: dict[str, list[Job]] = {}

    def parents(
        self, after: object, owner: object, unfinished: Callable[[str], Job | None], ended: Callable[[str], str | None]
    ) -> list[str]:
        """``schedule(after=...)``: the ids of the parents not yet finished (a Job, a job id, or a list of them).

        A parent must be one of ``owner``'s jobs, unfinished or succeeded (and
        kept for ``result_ttl``); one that ``ended`` otherwise, or a recurring
        one (which never ends in success), is a ``ValueError``.
        """
        waiting: list[str] = []
        for parent_id, _ in parent_ids(after, owner):
            parent = unfinished(parent_id)
            if parent is not None:
                if parent._series is not None or parent._parent is not None:
                    raise ValueError(f"after: job {parent_id} is recurring; a job can only follow one-shot jobs")
                if parent_id not in waiting:
                    waiting.append(parent_id)
                continue
            how = ended(parent_id)
            if how == "succeeded":
                continue
            if how is not None:
                raise ValueError(f"after: job {parent_id} already ended {how}; a job after it could never run")
            raise ValueError(
                f"after: no job {parent_id} in this engine (unknown, or finished more than result_ttl ago)"
            )
        return waiting

    def hold(self, job: Job, parents: list[str]) -> None:
        """Keep a new job out of the wheels until ``parents`` (ids of unfinished jobs) all succeeded."""
        job._after = parents
        for parent in parents:
            self.children.setdefault(parent, []).append(job)
        self._placement.keep(job)

    def parent_ended(self, parent: Job) -> None:
        """A job ended (succeeded, dead, cancelled): strike it off its children's lists, or cancel them."""
        children = self.children.pop(parent.id, None)
        if children is None:
            return
        for child in children:
            waiting = child._after
            if waiting is None or parent.id not in waiting or child.state not in _HELD:
                continue  # cancelled meanwhile
            if parent.state == "succeeded":
                waiting.remove(parent.id)
                if waiting:
                    self._placement.record(child, own=True)
                else:
                    self._release(child)
            else:
                self._cancel(child, f"parent job {parent.id} of task {parent.task!r} ended {parent.state}")

    def _release(self, job: Job) -> None:
        """Every parent succeeded: file the job at its own deadline (due now if that has passed).

        A paused job is only recorded: ``resume()`` files it.
        """
        job._after = None
        placement = self._placement
        if job.state == "paused":
            placement.record(job, own=True)
            return
        deadline = job._due_wall
        placement.set_due(job, min(max(0.0, deadline - self._wall()), MAX_AHEAD))
        job._due_wall = deadline
        placement.record(job, own=True)
        placement.place(job)

    def restore(self, jobs: Iterable[Job], unfinished: Collection[str], failed: Callable[[str], str | None]) -> None:
        """At start: link restored children to their restored parents, or settle them.

        A parent no longer ``unfinished`` either ended in a way ``failed``
        names (dead, cancelled: the child is cancelled) or succeeded (the
        child's record was written before the parent's end reached the log).
        """
        for job in jobs:
            waiting = job._after
            if waiting is None or job.state not in _HELD:
                continue
            for parent in waiting:
                how = None if parent in unfinished else failed(parent)
                if how is not None:
                    job._after = None
                    self._cancel(job, f"parent job {parent} ended {how}")
                    break
            else:
                outstanding = [parent for parent in waiting if parent in unfinished]
                if outstanding:
                    job._after = outstanding
                    for parent in outstanding:
                        self.children.setdefault(parent, []).append(job)
                else:
                    self._release(job)
