"""Cron expressions in IANA time zones, sans-IO: parsing, canonical form, and the next run.

A pure value (no event loop, no clock reads, no I/O), as everything in
``_recurrence``: instants in and out are POSIX timestamps. ``Frozen`` is the
immutable base both recurrences share.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import re
import sys
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ._limits import check_instant, check_seconds

__all__ = ["Cron", "Frozen"]

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


class Frozen:
    """Slots-based immutable value: recurrences are shared and used as dict keys."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class Cron(Frozen):
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

    def runs(self, lo: float, hi: float, limit: int) -> list[float]:
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

    @classmethod
    def from_spec(cls, spec: Mapping[str, object]) -> Cron:
        """Rebuild a Cron from its ``to_spec()`` dict (e.g. read from the journal)."""
        return cls(spec["cron"], tz=spec.get("tz", "UTC"), jitter=spec.get("jitter", 0.0))  # type: ignore[arg-type]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Cron.from_spec, (self.to_spec(),))

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
