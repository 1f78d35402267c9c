"""Recurrence rules for recurring jobs, sans-IO.

Everything here is a pure value or a pure function: no event loop, no clock
reads, no I/O. Every function takes the instants it needs as POSIX timestamps
(UTC seconds, ``float``) and returns POSIX timestamps, so the engine owns the
clock and the tests own time.

* :class:`Every` -- a fixed period, at a fixed *rate* (``anchor + k * period``,
  no drift) or with a fixed *delay* after the previous run finished.
* :class:`Cron` -- a cron expression in an IANA time zone, with explicit
  daylight-saving rules (see :class:`Cron`).
* :func:`plan_misfire` -- what to fire when the engine wakes up late.
* :data:`OVERLAP` / :func:`check_overlap` -- what to do when a run is due while
  the previous one is still running (enforced by the engine).
* :func:`jittered` -- spread runs out without ever firing early.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import random
import re
import sys
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

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

_EPOCH: Final = _dt.datetime(1970, 1, 1)  # naive: local wall clock "seconds since 1970" origin
_DAY: Final = 86_400
_VALIDATION_WALL: Final = 946_684_800.0  # 2000-01-01T00:00 wall time: a fixed point to probe "never matches"
_ALIASES: Final[Mapping[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# croniter's "R" (random) and "H" (hashed) fields are not functions of the expression alone.
_NONDETERMINISTIC: Final = re.compile(r"(?<![A-Za-z])[RrHh](?![A-Za-z])")


class _Field(NamedTuple):
    """One cron field: its name (for errors), its bounds, and the names it accepts."""

    name: str
    low: int
    high: int  # the top of ``*`` and of ``a/step``
    top: int  # the largest value that may be written (7 is Sunday in day-of-week)
    names: Mapping[str, int]


_MONTHS: Final = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS: Final = (
    _Field("second", 0, 59, 59, {}),
    _Field("minute", 0, 59, 59, {}),
    _Field("hour", 0, 23, 23, {}),
    _Field("day-of-month", 1, 31, 31, {}),
    _Field("month", 1, 12, 12, {name: k for k, name in enumerate(_MONTHS, 1)}),
    _Field("day-of-week", 0, 6, 7, {name: k for k, name in enumerate(_DAYS)}),
)
_DOM: Final = 3
_DOW: Final = 5
_TERM: Final = re.compile(r"(?:(?P<star>\*)|(?P<lo>[a-z0-9]+)(?:-(?P<hi>[a-z0-9]+))?)(?:/(?P<step>[0-9]+))?")
# Passed to croniter as written: the last day of the month, the n-th or the last given weekday of the month.
_SPECIAL: Final = {_DOM: re.compile(r"l"), _DOW: re.compile(r"[0-7]#[1-5]|l[0-7]")}


def _canonical(fields: list[str], expr: str) -> tuple[str, bool]:
    """croniter's expression for ``fields`` (seconds first, if six) and its ``day_or``.

    Every field is expanded here to an explicit list of numbers, so croniter
    only ever matches lists: ``a-a`` is ``a`` and ``59/15`` is ``59`` whatever
    croniter's version reads them as. The day rule is Vixie cron's: when
    day-of-month or day-of-week starts with ``*``, the two are AND-ed (so a
    plain ``*`` leaves the other field alone), otherwise they are OR-ed.
    """
    six = fields if len(fields) == 6 else ["0", *fields]
    sets = [_field(text, field, index, expr) for index, (text, field) in enumerate(zip(six, _FIELDS, strict=True))]
    day_or = not (six[_DOM][0] in "*?" or six[_DOW][0] in "*?")
    if day_or and "*" in (sets[_DOM], sets[_DOW]):  # OR with a field that is every day: every day
        sets[_DOM] = sets[_DOW] = "*"
    second, *rest = sets
    return " ".join(rest if len(fields) == 5 else [*rest, second]), day_or  # croniter puts seconds last


def _field(text: str, field: _Field, index: int, expr: str) -> str:
    """One field as croniter should read it: ``*`` when it is every value, else a sorted list."""
    if text in ("*", "?"):
        if text == "?" and index not in (_DOM, _DOW):
            raise ValueError(f"invalid cron expr {expr!r}: '?' is only for day-of-month and day-of-week")
        return "*"
    values: set[int] = set()
    special: list[str] = []
    for term in text.lower().split(","):
        pattern = _SPECIAL.get(index)
        if pattern is not None and pattern.fullmatch(term):
            special.append(term)
            continue
        values.update(_term(term, field, expr))
    if index == _DOW and 7 in values:  # 7 is Sunday, as 0 is
        values.discard(7)
        values.add(0)
    if not special and values.issuperset(range(field.low, field.high + 1)):
        return "*"
    return ",".join([*map(str, sorted(values)), *special])


def _term(term: str, field: _Field, expr: str) -> range | list[int]:
    """The values of one list element: ``a``, ``a-b``, ``*``, each with an optional ``/step``.

    ``a-a`` is ``a``, as in every cron; ``a/step`` runs from ``a`` to the
    field's end; ``a-b`` with ``a > b`` wraps around the field's end.
    """
    where = f"invalid cron expr {expr!r}: {field.name} {term!r}"
    match = _TERM.fullmatch(term)
    if match is None:
        raise ValueError(where)
    step = int(match["step"] or 1)
    if step == 0:
        raise ValueError(f"{where}: the step must be at least 1")
    if match["star"]:
        lo, hi = field.low, field.high
    else:
        lo = _value(match["lo"], field, where)
        if match["hi"] is not None:
            hi = _value(match["hi"], field, where)
        elif match["step"] is not None:
            hi = max(lo, field.high)
        else:
            hi = lo
    if lo <= hi:
        return range(lo, hi + 1, step)
    return [*range(lo, field.high + 1), *range(field.low, hi + 1)][::step]  # 22-2 is 22, 23, 0, 1, 2


def _value(text: str, field: _Field, where: str) -> int:
    value = field.names.get(text)
    if value is None:
        if not text.isdigit():
            raise ValueError(f"{where}: {text!r} is not a number{' or name' if field.names else ''}")
        value = int(text)
    if not field.low <= value <= field.top:
        raise ValueError(f"{where}: {value} is out of range {field.low}-{field.top}")
    return value


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


class _Frozen:
    """Slots-based immutable value: recurrences are shared and used as dict keys."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class Every(_Frozen):
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


class Cron(_Frozen):
    """Run on a cron schedule, evaluated in the local wall time of ``tz``.

    ``expr`` has 5 fields (``minute hour day-of-month month day-of-week``) or
    6 with *seconds first* (``second minute hour day-of-month month
    day-of-week``). Fields are read as crontab(5) says (lists, ranges, steps,
    names; ``a-a`` is ``a``), plus ``a/step`` (from ``a`` to the field's end),
    wrapping ranges (``22-2``) and croniter's ``L``, ``n#k`` and ``Ln``. As in
    Vixie cron, day-of-month and day-of-week are OR-ed when both are
    restricted and AND-ed when either starts with ``*``. The aliases
    ``@yearly @annually @monthly @weekly @daily @midnight @hourly`` are
    accepted. croniter's ``R`` and ``H`` fields are rejected: they are not a
    function of the expression alone. An invalid expression, one that can never
    match (``0 0 30 2 *``) or an unknown zone raises ``ValueError`` naming
    ``expr`` or ``tz`` here, not at fire time.

    Daylight-saving rules (croniter's own time zone handling runs some jobs
    twice on fall-back days, so matching is done on the naive wall clock and
    each wall time is mapped to UTC with ``zoneinfo``):

    (a) Spring forward: a run whose wall time does not exist that day (02:30
        when clocks jump 02:00 -> 03:00) runs once, at the first valid instant
        after the gap (03:00 local). Several gap times coalesce into that one
        run, and with a run due at 03:00 itself.
    (b) Fall back: a run whose wall time occurs twice (02:30 when Berlin
        clocks go 03:00 -> 02:00, 01:30 when New York clocks go 02:00 -> 01:00)
        runs once, at the first occurrence (``fold=0``).
    (c) Exception to (b) for interval-style expressions, those whose *hour*
        field starts with ``*`` (``* * * * *``, ``*/15 * * * *``, ``0 * * * *``,
        ``@hourly``): they follow real elapsed time and also run in the
        repeated hour, so "every 15 minutes" stays every 15 real minutes.
        An expression with a fixed hour (``30 1 * * *``, ``*/5 1 * * *``)
        never runs a wall time twice.
    """

    __slots__ = ("_follows_real_time", "_template", "_zone", "expr", "jitter", "tz")

    expr: str
    tz: str
    jitter: float
    _zone: ZoneInfo
    _template: Any
    _follows_real_time: bool

    def __init__(self, expr: str, *, tz: str | ZoneInfo = "UTC", jitter: float = 0.0) -> None:
        if not isinstance(expr, str):
            raise TypeError(f"expr must be a str, not {type(expr).__name__}")
        normal = " ".join(expr.split())
        fields = _ALIASES.get(normal.lower(), normal).split()
        if len(fields) not in (5, 6):
            raise ValueError(
                f"expr must have 5 fields (minute hour day month weekday) or 6 with seconds first, got {expr!r}"
            )
        if _NONDETERMINISTIC.search(" ".join(fields)):
            raise ValueError(f"expr {expr!r}: random (R) and hashed (H) fields are not supported")
        zone = _zone(tz)
        canonical, day_or = _canonical(fields, expr)
        try:
            template = croniter(canonical, _VALIDATION_WALL, day_or=day_or)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # croniter's errors are ValueErrors
            raise ValueError(f"invalid cron expr {expr!r}: {exc}") from exc
        try:
            copy.copy(template).get_next(float)  # "0 0 30 2 *" parses but never matches
        except ValueError as exc:
            raise ValueError(f"cron expr {expr!r} never matches") from exc
        object.__setattr__(self, "expr", normal)
        object.__setattr__(self, "tz", zone.key)
        object.__setattr__(self, "jitter", check_seconds("jitter", jitter, high=sys.float_info.max))
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_template", template)
        object.__setattr__(self, "_follows_real_time", fields[len(fields) - 4].startswith("*"))

    def next_after(self, after: float, anchor: float | None = None) -> float:
        """The next nominal run time (POSIX seconds), strictly greater than ``after``.

        ``anchor`` is accepted and ignored so that ``Every`` and ``Cron`` can be
        called alike. Results are whole seconds.
        """
        after = check_instant("after", after)
        wall = self._wall(after)
        # First occurrences (and normal times, and gap ends) come in wall-time
        # order: the answer among them is the first wall time later than any
        # wall reading up to `after`, which only differs from `after`'s own
        # reading just after a fall-back.
        seen = math.floor(wall)
        earlier = after - _DAY
        if self._offset(earlier) > self._offset(after):
            change = self._transition(earlier, after)
            seen = max(seen, math.floor(change + self._offset(change - 1)) - 1)
        best = self._first_from(seen + 1, after)
        if self._follows_real_time:
            # Repeated occurrences (rule c) also come in wall-time order, from
            # the lowest wall reading still to come, which only differs from
            # `after`'s own reading just before a fall-back.
            lowest = math.floor(wall)
            later = after + _DAY
            if self._offset(later) < self._offset(after):
                lowest = min(lowest, math.floor(self._wall(self._transition(after, later))))
            best = min(best, self._first_from(lowest, after))
        return best

    def _first_from(self, wall: int, after: float) -> float:
        """The earliest instant ``> after`` of the first matching wall time ``>= wall`` that has one."""
        walls = copy.copy(self._template)
        walls.set_current(float(wall - 1), force=True)
        while True:
            for instant in self._instants(int(walls.get_next(float))):
                if instant > after:
                    return instant

    def _runs(self, lo: float, hi: float, limit: int) -> list[float]:
        """The last ``limit`` runs in ``[lo, hi)``, looking back from ``hi`` in growing windows.

        Enumerating from ``lo`` would take millions of steps for an every-second
        job after a long outage; only the tail is needed.
        """
        first = self.next_after(math.ceil(lo) - 1.0)  # runs are whole seconds
        if first >= hi:
            return []
        width = 64.0
        while True:
            start = max(lo, hi - width)
            runs: deque[float] = deque(maxlen=limit)
            run = first if start <= lo else self.next_after(math.ceil(start) - 1.0)
            while run < hi:
                runs.append(run)
                run = self.next_after(run)
            if start <= lo or len(runs) == limit:
                return list(runs)
            width *= 8

    def _offset(self, instant: float) -> float:
        """The UTC offset at ``instant`` exactly.

        Offsets change on whole seconds, so the offset at ``instant`` is the
        one at its floor; ``fromtimestamp(instant)`` itself rounds to the
        microsecond and reads an instant 0.4 us before a change as after it.
        """
        offset = _dt.datetime.fromtimestamp(math.floor(instant), self._zone).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        return offset.total_seconds()

    def _wall(self, instant: float) -> float:
        """Local wall time at ``instant`` as naive seconds since 1970-01-01 00:00."""
        return instant + self._offset(instant)

    def _transition(self, lo: float, hi: float) -> float:
        """First whole second in ``(lo, hi]`` whose UTC offset differs from ``lo``'s (one assumed)."""
        reference = self._offset(lo)
        low, high = math.floor(lo), math.ceil(hi)
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(middle) != reference:
                high = middle
            else:
                low = middle
        return float(high)

    def _instants(self, wall: int) -> tuple[float, ...]:
        """The UTC instants a matching wall time runs at, earliest first (rules a, b, c)."""
        local = (_EPOCH + _dt.timedelta(seconds=wall)).replace(tzinfo=self._zone)
        first = local.timestamp()
        second = local.replace(fold=1).timestamp()
        if first == second:
            return (first,)
        if first < second:  # the wall time occurs twice (fall back)
            return (first, second) if self._follows_real_time else (first,)
        # The wall time falls in a gap (spring forward): run at the gap's end,
        # the first instant whose wall time is past it. second < gap end <= first.
        low, high = int(second), int(first)
        while high - low > 1:
            middle = (low + high) // 2
            if self._wall(middle) >= wall:
                high = middle
            else:
                low = middle
        return (float(high),)

    def to_spec(self) -> dict[str, object]:
        """A JSON-ready dict for the journal; :func:`recurrence_from_spec` reverses it."""
        return {"cron": self.expr, "tz": self.tz, "jitter": self.jitter}

    def __reduce__(self) -> tuple[Any, ...]:
        return (recurrence_from_spec, (self.to_spec(),))

    def __repr__(self) -> str:
        return f"Cron({self.expr!r}, tz={self.tz!r}, jitter={self.jitter!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cron):
            return NotImplemented
        return (self.expr, self.tz, self.jitter) == (other.expr, other.tz, other.jitter)

    def __hash__(self) -> int:
        return hash((Cron, self.expr, self.tz, self.jitter))


def _zone(tz: object) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        if tz.key is None:  # ZoneInfo.from_file(): nothing to journal or compare by
            raise ValueError("tz must be a named zone; a ZoneInfo built from a file has no key")
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"tz must be an IANA zone name (str) or ZoneInfo, not {type(tz).__name__}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone tz={tz!r}") from exc


Recurrence: TypeAlias = Every | Cron


def recurrence_from_spec(spec: Mapping[str, object]) -> Recurrence:
    """Rebuild an :class:`Every` or :class:`Cron` from its ``to_spec()`` dict (e.g. read from the journal)."""
    if "every" in spec:
        return Every(spec["every"], fixed=spec.get("fixed", "rate"), jitter=spec.get("jitter", 0.0))  # type: ignore[arg-type]
    if "cron" in spec:
        return Cron(spec["cron"], tz=spec.get("tz", "UTC"), jitter=spec.get("jitter", 0.0))  # type: ignore[arg-type]
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
            return recurrence._runs(lo, hi, limit)
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
