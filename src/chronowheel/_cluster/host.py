"""``Host``: what the cluster store needs of its engine, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._job import Job

__all__ = ["Host"]


@dataclass(frozen=True, slots=True)
class Host:
    """What the store needs of its engine: its wall clock, and its wheel, changed without telling the store.

    ``load`` files jobs read from the database (overdue ones at once, dead
    ones into the dead letters); ``drop`` takes a job out of the wheel, as it
    is not this engine's to fire (any more); ``let_go`` forgets a job the
    wheel already handed out whose claim this engine did not win; ``after``
    calls back in so many seconds of the engine's clock, and returns what
    cancels that; ``cancelled`` counts and reports (the ``"cancelled"`` hooks)
    a job this engine's write cancelled in the database, with the reason:
    one taken by ``engine.cluster.cancel``, or a child whose parent ended
    dead or cancelled; ``ttl`` is the engine's ``result_ttl``.
    """

    wall: Callable[[], float]
    load: Callable[[list[Job]], None]
    drop: Callable[[Job], None]
    let_go: Callable[[Job], None]
    after: Callable[[float, Callable[[], None]], Callable[[], object]]
    cancelled: Callable[[Job, str], None]
    ttl: float
