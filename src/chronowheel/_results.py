"""Results: finished jobs' outcomes kept for ``result_ttl``, and the callers waiting for them.

A success keeps what ``result()`` and ``jobs()`` need of its job, in a tuple
the collector does not walk (:data:`~chronowheel._outcome.Record`), not the
job: the Job is released at its end, and ``jobs()`` shows one rebuilt from
the record (:meth:`Results.shown`).

Outcomes are kept in the order they were made, which (one TTL per engine) is
the order they expire in: expiry pops the front of a dict lazily, when the
next outcome is kept or they are read, so it costs no timer and no scan.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any

from ._dependencies import Dependencies
from ._errors import EngineClosed, JobCancelled, JobFailed
from ._job import Job
from ._outcome import EXPIRES, KEY, REASON, TASK, Outcome, Record
from ._placement import Placement
from ._ticks import Ticks
from ._timers import Timers

__all__ = ["Results"]


class Results:
    """The outcomes of finished jobs for ``ttl`` seconds, by job id; and the futures of :meth:`wait`.

    A dead job's outcome is its error, kept in the dead letters until discarded.
    Each end is told to ``dependencies`` too, when some job waits for another.
    """

    def __init__(
        self,
        ttl: float,
        ticks: Ticks,
        timers: Timers,
        placement: Placement,
        dependencies: Dependencies,
        owner: object,
    ) -> None:
        self.ttl = ttl
        self._owner = owner
        self._dependencies = dependencies
        self._wall = ticks.wall
        self._ticks = ticks
        self._timers = timers
        self._placement = placement
        self._kept: dict[str, Record] = {}  # in the order they were kept, which (one ttl) is their expiry order
        self._sweep_at = ticks.wall() + ttl  # no kept outcome expires before this
        self._waiters: dict[str, list[asyncio.Future[Outcome | None]]] = {}
        self._shown: weakref.WeakValueDictionary[str, Job] = weakref.WeakValueDictionary()  # see shown()

    # -- outcomes -------------------------------------------------------------------

    def succeeded(self, job: Job, value: Any) -> None:
        """The job ran to success: acknowledge it, keeping its value (with the store too) for ``ttl``.

        Every success comes here: the expiry sweep runs only once the oldest
        kept outcome is due to go (``_sweep_at``), and the rest is inline.
        """
        ttl = self.ttl
        if ttl:
            now = self._wall()
            if now >= self._sweep_at:
                self._expire(now)
            # Outcome(job, value, now + ttl).record without its __init__ (a Python frame: 2,300 instructions a job).
            # What result() and jobs() need of the job, in a tuple the collector lets go; the Job itself goes.
            record: Record = (
                job.task, job.key, job.args, job.kwargs or None, job.priority, job.attempt, job._due_wall, value,
                now + ttl, None, None, None,
            )  # fmt: skip
            if self._placement.store is None:
                self._placement.gone(job, "ack", own=True)
            else:
                outcome = Outcome.of(job.id, record)
                self._placement.gone(job, "ack", own=True, kept=outcome)
                record = outcome.record  # with why the store could not keep the value, if it could not
            self._kept[job.id] = record
            if self._waiters:
                self._wake(job.id, Outcome.of(job.id, record))
        else:
            self._placement.gone(job, "ack", own=True)
            if self._waiters:
                self._wake(job.id, Outcome(job, value, 0.0))
        if self._dependencies.children:
            self._dependencies.parent_ended(job)

    def cancelled(self, job: Job, reason: str) -> Outcome:
        """The outcome a cancellation keeps (with its job); hand it to ``Placement.take_out``, then to :meth:`ended`."""
        return Outcome(job, None, self._wall() + self.ttl, reason=reason)

    def ended(self, outcome: Outcome) -> None:
        """A cancellation was carried out: keep its outcome, wake whoever waits, cancel its children."""
        if self.ttl:
            now = self._wall()
            if now >= self._sweep_at:
                self._expire(now)
            self._kept[outcome.id] = outcome.record
        if self._waiters:
            self._wake(outcome.id, outcome)
        if self._dependencies.children:
            self._dependencies.parent_ended(outcome.job)

    def died(self, job: Job) -> None:
        """The job went to the dead letters: whoever waits learns it failed; its children are cancelled."""
        if self._waiters:
            self._wake(job.id, None)
        if self._dependencies.children:
            self._dependencies.parent_ended(job)

    def close(self, durable: bool) -> None:
        """``stop()``: the jobs still waited for will not end in this engine; their waiters get EngineClosed."""
        waiters, self._waiters = self._waiters, {}
        later = "; it runs again at the next start" if durable else ""
        for job_id, futures in waiters.items():
            for future in futures:
                if not future.done():
                    future.set_exception(EngineClosed(f"job {job_id}: the engine stopped before it ended{later}"))

    def _wake(self, job_id: str, outcome: Outcome | None) -> None:
        for future in self._waiters.pop(job_id, ()):
            if not future.done():
                future.set_result(outcome)

    def restore(self, outcomes: list[Outcome]) -> None:
        """At start: the outcomes a store kept, those not yet expired, in the order they expire."""
        now = self._wall()
        for outcome in sorted(outcomes, key=lambda outcome: outcome.expires):
            if outcome.expires > now:
                self._kept[outcome.id] = outcome.record
        first = next(iter(self._kept.values()), None)
        if first is not None:
            self._sweep_at = min(self._sweep_at, first[EXPIRES])

    def _expire(self, now: float) -> None:
        """Drop the kept outcomes expired by ``now``, oldest first; the next sweep is when the oldest left expires."""
        kept = self._kept
        while kept:
            job_id, first = next(iter(kept.items()))
            if first[EXPIRES] > now:
                self._sweep_at = first[EXPIRES]
                return
            del kept[job_id]
        self._sweep_at = now + self.ttl  # whatever is kept from now on expires no sooner

    def finished(self, state: str | None, task: str | None, prefix: str | None) -> list[Outcome]:
        """The kept outcomes of the jobs that ended in ``state``, of ``task``, with a key starting with ``prefix``.

        Each filter None matches any. Read off the records, so that only the
        outcomes a page may show are made; :meth:`shown` is the ``Job`` for one.
        """
        now = self._wall()
        self._expire(now)
        if state is not None and state not in ("succeeded", "cancelled"):
            return []
        cancelled = state == "cancelled"
        return [
            Outcome.of(job_id, record)
            for job_id, record in self._kept.items()
            if record[EXPIRES] > now
            and (state is None or (record[REASON] is not None) is cancelled)
            and (task is None or record[TASK] == task)
            and (prefix is None or (record[KEY] is not None and record[KEY].startswith(prefix)))
        ]

    def shown(self, outcome: Outcome) -> Job:
        """The ``Job`` that ``jobs()`` and ``JobCancelled`` show for a finished job: one object while it is in use.

        A cancellation kept its job. A success's is rebuilt from its outcome
        the first time it is asked for, and is that same object for as long
        as the caller holds it (a page, a cursor, a ``job in engine.jobs()``):
        the engine holds it weakly, so the outcome stays small once it is dropped.
        """
        if outcome.cancelled is not None:
            return outcome.cancelled
        job = self._shown.get(outcome.id)
        if job is None:
            job = outcome.rebuilt()
            job._engine = self._owner  # cancel() and the like answer for it, as for the job it was
            self._shown[outcome.id] = job
        return job

    # -- reading --------------------------------------------------------------------

    def kept(self, job_id: str) -> Outcome | None:
        """The job's outcome if it is kept and has not expired."""
        record = self._kept.get(job_id)
        return None if record is None or record[EXPIRES] <= self._wall() else Outcome.of(job_id, record)

    async def wait(self, job_id: str, timeout: float | None) -> Outcome | None:  # noqa: ASYNC109 (result()'s)
        """Wait until the unfinished job ``job_id`` ends: its outcome, or None if it went to the dead letters.

        ``timeout`` runs on the engine's clock (a virtual one in tests), as a
        timer of the engine's own: ``TimeoutError`` when it fires first.
        """
        future: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(job_id, [])
        waiters.append(future)

        def expire() -> None:
            if not future.done():
                future.set_exception(TimeoutError(f"job {job_id} did not end within {timeout:g}s"))

        alarm = None if timeout is None else self._timers.file_timer(self._ticks.after(timeout), expire)
        try:
            return await future
        finally:
            if alarm is not None:
                alarm.cancel()
            if future in waiters:  # timed out or cancelled: not woken
                waiters.remove(future)
                if not waiters and self._waiters.get(job_id) is waiters:
                    del self._waiters[job_id]

    def settle(self, job_id: str, outcome: Outcome | None, dead: Mapping[str, Job]) -> Any:
        """The value of the outcome; :class:`JobCancelled`, :class:`JobFailed` or ``KeyError`` as it ended."""
        if outcome is not None:
            if outcome.reason is not None:
                raise JobCancelled(self.shown(outcome), outcome.reason)
            if outcome.unkept is not None and outcome.value is None:
                raise KeyError(f"job {job_id} succeeded, but its return value was not kept: {outcome.unkept}")
            return outcome.value
        job = dead.get(job_id)
        if job is not None:
            raise JobFailed(job)
        raise KeyError(f"job {job_id}: no such job, or it finished more than result_ttl ({self.ttl:g}s) ago")
