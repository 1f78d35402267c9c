"""The durability seam: the job changes the engine hands a store, and what it asks of one.

The engine's parts talk to durability only through :class:`Store`; they never
import the journal, never touch a file, never decide a compaction. An
in-memory engine has no store at all (``None``), so its hot paths pay nothing.
:class:`chronowheel._journal.store.JournalStore` is one implementation, the
cluster's :class:`chronowheel._cluster.store.ClusterStore` (a database shared
by several engines) another: that is what :attr:`Store.claim` is for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

if TYPE_CHECKING:
    from ._job import Job
    from ._outcome import Outcome

__all__ = ["Claim", "Gone", "Store"]

Gone = Literal["ack", "cancel", "discard"]
# claim(due jobs, hand_out): the store calls hand_out(the ones this engine may start), now or once its claim commits.
Claim: TypeAlias = "Callable[[list[Job], Callable[[list[Job]], None]], None]"


class Store(Protocol):
    """Where durable jobs are kept across restarts.

    A change the store cannot keep raises ``OSError`` (the journal's
    :class:`~chronowheel.JournalFailed`), from then on until a restart: a
    store never retries a failed write, as a failed fsync may have lost it.
    The engine's own bookkeeping carries on in memory then (see
    ``_placement.Placement``, the one part that hands changes to the store).

    ``claim`` is None when every due job is this engine's (the journal: one
    engine per journal), and the driver hands due jobs straight to their
    pool. A shared store takes a fenced claim of each batch of due jobs,
    and hands on only those it won: two engines never start one job.
    """

    claim: Claim | None

    async def restore(self, tasks: Collection[str]) -> list[Job]:
        """At start: the stored live jobs of the registered ``tasks``, ready to place (runs linked to their series).

        Jobs of other tasks are parked (:meth:`parked`) or refused with
        :class:`~chronowheel.UnknownTask`, as the store was told to.
        """
        ...

    def check(self, job: Job, if_exists: str = "error") -> object:
        """Before anything changes: refuse (``TypeError``/``ValueError``) a new job the store cannot keep.

        Returns a token for :meth:`recorded` (the journal's: the encoded record).
        ``if_exists`` is the schedule's: a shared store applies it to keys
        taken by other engines (the engine has applied it to its own).
        """
        ...

    def recorded(self, job: Job, token: object = None) -> None:
        """The job's whole state changed (scheduled, a retry, a run, a redrive, dead, paused, resumed); it is live.

        What :meth:`restore` must give back of it: ``id``, ``key``, ``task``,
        ``args``, ``kwargs``, ``priority``, ``attempt``, the deadline
        (``job._due_wall``, POSIX seconds), ``state`` (``pending``, ``failed``,
        ``dead``, ``paused``; ``running`` only for a series between runs, and
        a one-shot job that is ``running`` is stored as ``pending`` with one
        attempt less: at-least-once), the series and a run's parent id, the
        parents a job still waits for (``job._after``, a list of ids, or
        None), and the last failure: ``job.traceback`` and, for
        ``job.error``, its type name (``chronowheel._errors.error_type``) and
        ``str()``, restored as a :class:`~chronowheel.RecordedError`.
        """
        ...

    def moved(self, job: Job) -> None:
        """A live job's deadline moved (a reschedule); nothing for a job the store does not keep."""
        ...

    def gone(self, job: Job, why: Gone, kept: Outcome | None = None) -> None:
        """The job ran to success (``"ack"``), was cancelled, or was a dead letter discarded: it is live no longer.

        With ``kept`` (``result_ttl`` > 0) the store keeps that outcome until
        ``kept.expires`` (POSIX seconds) and hands it back from
        :meth:`outcomes` until then: the id, task, key, deadline and state of
        the job, and its return value (``kept.value``, JSON only) or the
        reason it was cancelled (``kept.reason``). A value the store cannot
        keep is not an error: the store sets ``kept.unkept`` to why (the job
        did succeed) and keeps the rest. Past ``expires`` a store may drop
        the outcome whenever it likes (the journal: at its next compaction).
        """
        ...

    def outcomes(self) -> list[Outcome]:
        """After :meth:`restore`: the kept outcomes (see :meth:`gone`), their jobs rebuilt with empty args."""
        ...

    def commit(self, job: Job) -> Awaitable[Job]:
        """Wait until every change so far is durable under the store's policy (an awaited ``schedule()``).

        Returns ``job``, or the job a shared store kept under its key
        (``if_exists="keep"``); raises :class:`~chronowheel.DuplicateKey` for
        a key another engine holds (``"error"``).
        """
        ...

    async def flush(self) -> None:
        """Wait until every change so far is durable, whatever the policy."""
        ...

    def parked(self) -> list[Job]:
        """Copies of the stored jobs whose task is not registered, set aside by :meth:`restore`."""
        ...

    async def close(self) -> None:
        """Write out what is pending and let go of the store; raises if it failed."""
        ...
