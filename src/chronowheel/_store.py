"""The durability seam: the job changes the engine hands a store, and what it asks of one.

The engine's parts talk to durability only through :class:`Store`; they never
import the journal, never touch a file, never decide a compaction. An
in-memory engine has no store at all (``None``), so its hot paths pay nothing.
:class:`chronowheel._journal.store.JournalStore` is one implementation; a
cluster store (a database shared by several engines) is meant to be another,
plugged in without touching the driver: that is what :meth:`Store.claim` is for.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ._job import Job
    from ._outcome import Outcome

__all__ = ["Gone", "Store"]

Gone = Literal["ack", "cancel", "discard"]


class Store(Protocol):
    """Where durable jobs are kept across restarts.

    A change the store cannot keep raises ``OSError`` (the journal's
    :class:`~chronowheel.JournalFailed`), from then on until a restart: a
    store never retries a failed write, as a failed fsync may have lost it.
    The engine's own bookkeeping carries on in memory then (see
    ``_placement.Placement``, the one part that hands changes to the store).
    """

    async def restore(self, tasks: Collection[str]) -> list[Job]:
        """At start: the stored live jobs of the registered ``tasks``, ready to place (runs linked to their series).

        Jobs of other tasks are parked (:meth:`parked`) or refused with
        :class:`~chronowheel.UnknownTask`, as the store was told to.
        """
        ...

    def check(self, job: Job) -> object:
        """Before anything changes: refuse (``TypeError``/``ValueError``) a new job the store cannot keep.

        Returns a token for :meth:`recorded` (the journal's: the encoded record).
        """
        ...

    def recorded(self, job: Job, token: object = None) -> None:
        """The job's whole state changed (scheduled, a retry, a run, a redrive, dead); it is live."""
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

    def claim(self, job: Job) -> bool:
        """Asked before a due job goes to a worker: False if it is not this engine's to run.

        The journal always says yes (one engine per journal); a shared store
        takes a fenced claim here, so two engines never run one job.
        """
        ...

    async def commit(self) -> None:
        """Wait until every change so far is durable under the store's policy (an awaited ``schedule()``)."""
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
