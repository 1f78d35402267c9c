"""A recovery's waiting jobs back in their wheels: the loop a start runs a million times, sans-IO.

:func:`refill` is the reference and the pure fallback of ``_cwheel.refill``
(which :mod:`._selection` picks where it is built): both file the usual job
(pending, or failed and waiting for its retry; not waiting for parents) from
``start`` on, and stop at the first other one, returning its index, so
:meth:`._placement.Placement.restore` takes that one and then hands the rest
back. One order of filing whichever runs: a key goes to the first job that
names it, as before a restart. tests/test_refill.py holds the two alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from ._limits import MAX_AHEAD

if TYPE_CHECKING:
    from ._job import Job
    from ._wheel_api import Wheel

__all__ = ["refill"]

_ceil: Final = math.ceil


def refill(
    jobs: list[Job],
    start: int,
    owner: object,
    now: float,
    since_epoch: float,
    rate: float,
    wheels: dict[str, Wheel],
    indexed: dict[str, Job],
    keyed: dict[str, Job],
) -> int:
    """File ``jobs`` from ``start`` in ``wheels`` (by task), due ``due_wall - now`` from ``since_epoch``.

    Each gets its engine (``owner``), its tick and its handle, and goes into
    ``indexed`` by id and ``keyed`` by key (the first job of a key keeps it).
    Overdue jobs are due now; one further out than the wheel reaches from now
    (a hand-made record, or a clock set back by ages) fires at the wheel's
    farthest, ``MAX_AHEAD`` out. The index of the first job that is not
    pending or failed, or waits for parents; ``len(jobs)`` if none.
    """
    for index in range(start, len(jobs)):
        job: Any = jobs[index]
        state = job.state
        if (state not in {"pending", "failed"}) or job._after is not None:
            return index
        job._engine = owner
        seconds = job._due_wall - now
        seconds = 0.0 if seconds < 0.0 else MAX_AHEAD if seconds > MAX_AHEAD else seconds
        tick = job._due_tick = _ceil((since_epoch + seconds) * rate)
        job._timer = wheels[job.task].add(tick, job, -job.priority)
        indexed[job.id] = job
        if job.key is not None:
            keyed.setdefault(job.key, job)
    return len(jobs)
