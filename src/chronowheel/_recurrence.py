"""Recurrence rules for recurring jobs, sans-IO.

Everything here is a pure value or a pure function: no event loop, no clock
reads, no I/O. Every function takes the instants it needs as POSIX timestamps
(UTC seconds, ``float``) and returns POSIX timestamps, so the engine owns the
clock and the tests own time.

* :class:`Every` -- a fixed period, at a fixed *rate* (``anchor + k * period``,
  no drift) or with a fixed *delay* after the previous run finished.
* :class:`Cron` (from ``_cron``) -- a cron expression in an IANA time zone, with explicit
  daylight-saving rules (see :class:`Cron`).
* :func:`plan_misfire` -- what to fire when the engine wakes up late.
* :data:`OVERLAP` / :func:`check_overlap` -- what to do when a run is due while
  the previous one is still running (enforced by the engine).
* :func:`jittered` -- spread runs out without ever firing early.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, TypeAlias

from ._cron import Cron, Frozen
from ._limits import MIN_PERIOD, check_choice, check_instant, check_int, check_seconds

__all__ = [
    "DEFAULT_MAX_CATCH_UP",
    "DEFAULT_MISFIRE",
    "DEFAULT_MISFIRE_GRACE",
    "DEFAULT_OVERLAP",
    "FIXED",
    "MISFIRE",
    "OVERLAP",
    "Cron",
    "Every",
    "MisfirePlan",
    "Recurrence",
    "check_misfire",
    "check_overlap",
    "jittered",
    "plan_misfire",
    "recurrence_from_spec",
]

FIXED: Final[tuple[str, ...]] = ("rate", "delay")
"""``Every(fixed=...)``: ``"rate"`` keeps a grid from the anchor, ``"delay"`` waits after each finish."""

OVERLAP: Final[tuple[str, ...]] = ("skip", "queue", "allow")
"""What the engine does when a run comes due while the previous run of the same job is still going.

* ``"skip"`` (the default): drop the new run. A slow job then cannot pile up
  work or run against itself, which is what most periodic jobs (reports,
  polls, clean-ups) assume.
* ``"queue"``: keep at most one pending run and start it as soon as the
  current one finishes; further runs while one is already pending are dropped,
  so the backlog is bounded at one.
* ``"allow"``: start the new run concurrently with the old one, for jobs that
  are safe to run in parallel.
"""

DEFAULT_OVERLAP: Final = "skip"

MISFIRE: Final[tuple[str, ...]] = ("fire_once", "fire_all", "skip")
"""What :func:`plan_misfire` does with runs that were missed (late by more than the grace).

* ``"fire_once"`` (the default): coalesce all missed runs into a single run now.
* ``"fire_all"``: run every missed run, at most ``max_catch_up`` of them.
* ``"skip"``: run none of the missed runs and continue with the next future one.
"""

DEFAULT_MISFIRE: Final = "fire_once"
"""``"fire_once"``: after downtime the job's work is done once (a report, a sync,
a clean-up only needs to catch up once) without a thundering herd of stale
runs, and without silently losing the work as ``"skip"`` would."""

DEFAULT_MISFIRE_GRACE: Final = 1.0
"""Seconds a run may be late and still count as on time: well above normal
firing latency (a tick plus loop latency), well below any sensible period."""

DEFAULT_MAX_CATCH_UP: Final = 100
"""Most runs ``plan_misfire`` ever returns at once, so a long outage of a
frequent job cannot flood the pools."""


def check_overlap(value: object) -> str:
    """Return ``value`` if it is one of :data:`OVERLAP`, else raise ``ValueError`` naming ``overlap``."""
    return check_choice("overlap", value, OVERLAP)


def check_misfire(value: object) -> str:
    """Return ``value`` if it is one of :data:`MISFIRE`, else raise ``ValueError`` naming ``misfire``."""
    return check_choice("misfire", value, MISFIRE)


def jittered(nominal: float, jitter: float, rng: random.Random) -> float:
    """``nominal`` plus a uniform random delay in ``[0, jitter]``.

    Jitter only ever delays: a run never fires before its nominal time, so a
    job that must not start before 09:00 still does not.
    """
    if jitter <= 0:
        return nominal
    return max(nominal, min(nominal + rng.uniform(0.0, jitter), nominal + jitter))


class Every(Frozen):
    """Run every ``seconds``.

    ``fixed="rate"`` (the default) runs at ``anchor + k * seconds`` for
    ``k = 0, 1, 2, ...`` whatever each run costs: run times are computed from
    the anchor (the first run) and ``k``, never by adding the period to a
    previous, possibly late, time, so there is no drift even over millions of
    runs. ``fixed="delay"`` waits ``seconds`` after the previous run
    *finished*, for work that must not run back-to-back.

    ``jitter`` is the most random delay (uniform in ``[0, jitter]``) the engine
    adds to each run via :func:`jittered`; it never makes a run early.

    ``seconds`` is from 1e-6 (the finest tick) to 1e10, ``jitter`` from 0 to
    1e10 (``_limits.MAX_DELAY``): every run stays one the engine can file.
    An engine also refuses a period shorter than its own tick.
    """

    __slots__ = ("fixed", "jitter", "seconds")

    seconds: float
    fixed: str
    jitter: float

    def __init__(self, seconds: float, *, fixed: str = "rate", jitter: float = 0.0) -> None:
        object.__setattr__(self, "seconds", check_seconds("seconds", seconds, low=MIN_PERIOD))
        object.__setattr__(self, "fixed", check_choice("fixed", fixed, FIXED))
        object.__setattr__(self, "jitter", check_seconds("jitter", jitter))

    def next_after(self, after: float, anchor: float | None = None) -> float:
        """The next nominal run time, strictly greater than ``after``.

        * ``fixed="rate"``: the first ``anchor + k * seconds`` (``k >= 0``) that
          is ``> after``; ``anchor`` (the first run's nominal time) is required.
          Pass the current time or the last nominal time as ``after``; either
          way the result stays on the grid.
        * ``fixed="delay"``: ``after + seconds``, where ``after`` is the time the
          previous run *finished* (or the scheduling time, for the first run);
          ``anchor`` is ignored.
        """
        after = check_instant("after", after)
        if self.fixed == "delay":
            result = after + self.seconds
            return result if result > after else math.nextafter(after, math.inf)
        if anchor is None:
            raise ValueError("anchor is required for Every(fixed='rate'): the grid is anchor + k * seconds")
        anchor = check_instant("anchor", anchor)
        return anchor + self._index(after, anchor, strict=True) * self.seconds

    def _index(self, bound: float, anchor: float, *, strict: bool) -> int:
        """Smallest ``k >= 0`` with ``anchor + k*seconds`` ``> bound`` (strict) or ``>= bound``.

        One division gives ``k`` up to float rounding. The rounded grid point
        never decreases as ``k`` grows, but far from 0 several ``k`` can round
        to the same float, so the estimate is corrected by a search that
        doubles its step, then bisects: a few dozen steps at most, never one
        per ``k``.
        """
        period = self.seconds

        def past(k: int) -> bool:
            value = anchor + k * period
            return value > bound if strict else value >= bound

        if past(0):
            return 0
        estimate = (bound - anchor) / period
        if not math.isfinite(estimate):
            raise ValueError(f"anchor ({anchor!r}) and {bound!r} are too far apart for a period of {period!r}s")
        k = max(1, math.floor(estimate))
        step = 1
        if past(k):  # the answer is k or below: find a `lo` that is not past
            hi, lo = k, k - 1
            while lo > 0 and past(lo):
                hi, step = lo, step * 2
                lo = max(0, hi - step)
        else:  # the answer is above k: find a `hi` that is past
            lo, hi = k, k + 1
            while not past(hi):
                lo, step = hi, step * 2
                hi = lo + step
        while hi - lo > 1:  # past(lo) is False (or lo == 0, not past), past(hi) is True
            mid = (lo + hi) // 2
            if past(mid):
                hi = mid
            else:
                lo = mid
        return hi

    def _runs(self, lo: float, hi: float, anchor: float, limit: int) -> list[float]:
        """The last ``limit`` grid points in ``[lo, hi)``, by arithmetic (no enumeration of the rest)."""
        first = self._index(lo, anchor, strict=False)
        stop = self._index(hi, anchor, strict=False)
        start = max(first, stop - limit)
        return [anchor + k * self.seconds for k in range(start, stop)]

    def to_spec(self) -> dict[str, object]:
        """A JSON-ready dict for the journal; :func:`recurrence_from_spec` reverses it."""
        return {"every": self.seconds, "fixed": self.fixed, "jitter": self.jitter}

    def __reduce__(self) -> tuple[Any, ...]:
        return (recurrence_from_spec, (self.to_spec(),))

    def __repr__(self) -> str:
        return f"Every({self.seconds!r}, fixed={self.fixed!r}, jitter={self.jitter!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Every):
            return NotImplemented
        return (self.seconds, self.fixed, self.jitter) == (other.seconds, other.fixed, other.jitter)

    def __hash__(self) -> int:
        return hash((Every, self.seconds, self.fixed, self.jitter))


Recurrence: TypeAlias = Every | Cron


def recurrence_from_spec(spec: Mapping[str, object]) -> Recurrence:
    """Rebuild an :class:`Every` or :class:`Cron` from its ``to_spec()`` dict (e.g. read from the journal)."""
    if "every" in spec:
        return Every(spec["every"], fixed=spec.get("fixed", "rate"), jitter=spec.get("jitter", 0.0))  # type: ignore[arg-type]
    if "cron" in spec:
        return Cron.from_spec(spec)
    raise ValueError(f"spec must have an 'every' or a 'cron' key, got {sorted(spec)!r}")


class MisfirePlan(NamedTuple):
    """What to do after waking up: ``fire`` these nominal run times now (oldest first), then wait for ``next_run``."""

    fire: list[float]
    next_run: float


def plan_misfire(
    recurrence: Recurrence,
    due: float,
    now: float,
    *,
    anchor: float | None = None,
    misfire: str = DEFAULT_MISFIRE,
    misfire_grace: float = DEFAULT_MISFIRE_GRACE,
    max_catch_up: int = DEFAULT_MAX_CATCH_UP,
) -> MisfirePlan:
    """Decide which runs to fire at ``now`` when the run due at ``due`` (nominal) has not fired yet.

    The candidate runs are the nominal run times ``due, next, next, ...`` up to
    and including ``now`` (for ``Every(fixed="delay")`` only ``due`` itself: the
    next run is defined by when this one finishes). A run is *missed* when
    ``now - nominal > misfire_grace + recurrence.jitter`` (jitter is deliberate
    lateness, not a misfire); runs within the grace are always fired. Then:

    * ``"fire_once"``: the missed runs coalesce into one (reported as the
      latest missed nominal time), plus the runs within grace;
    * ``"fire_all"``: every missed run, plus the runs within grace;
    * ``"skip"``: only the runs within grace.

    At most ``max_catch_up`` runs are returned, the most recent ones (the
    oldest are the stalest). ``next_run`` is ``recurrence.next_after(now,
    anchor)``; for ``fixed="delay"`` it is provisional, as the engine
    reschedules ``seconds`` after a fired run finishes. ``anchor`` is required
    for ``Every(fixed="rate")``. If ``due > now`` nothing fires and
    ``next_run`` is ``due``. Default ``"fire_once"``: see
    :data:`DEFAULT_MISFIRE`.
    """
    due = check_instant("due", due)
    now = check_instant("now", now)
    check_misfire(misfire)
    grace = check_seconds("misfire_grace", misfire_grace, high=sys.float_info.max) + recurrence.jitter
    check_int("max_catch_up", max_catch_up)
    if isinstance(recurrence, Every) and recurrence.fixed == "rate":
        if anchor is None:
            raise ValueError("anchor is required for Every(fixed='rate')")
        anchor = check_instant("anchor", anchor)
    if due > now:
        return MisfirePlan([], due)

    cut = now - grace  # runs at or after `cut` are within grace
    end = math.nextafter(now, math.inf)  # [lo, end) includes `now`

    def runs(lo: float, hi: float, limit: int) -> list[float]:
        """The last ``limit`` candidate runs in ``[lo, hi)``."""
        if lo >= hi:
            return []
        if isinstance(recurrence, Cron):
            return recurrence.runs(lo, hi, limit)
        if recurrence.fixed == "delay":
            return [due] if lo <= due < hi else []
        assert anchor is not None
        return recurrence._runs(lo, hi, anchor, limit)

    on_time = runs(max(due, cut), end, max_catch_up)
    if misfire == "skip":
        fire = on_time
    else:
        missed = runs(due, min(cut, end), 1 if misfire == "fire_once" else max_catch_up)
        fire = missed + on_time
    return MisfirePlan(fire[-max_catch_up:], recurrence.next_after(now, anchor))
