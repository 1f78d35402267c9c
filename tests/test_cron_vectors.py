"""Cron as cron does: vectors from crontab(5), the ``a-a`` and day-of-month/day-of-week rules, DST edges.

Every expected run below was worked out by hand from the calendar (2026-01-01
is a Thursday) and the rule quoted next to it, not taken from an
implementation. A differential test checks the rest of the syntax against
croniter where croniter and cron agree.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from zoneinfo import ZoneInfo

import croniter as croniter_module
import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from chronowheel import Cron

START = "2026-01-01 00:00"  # a Thursday, at midnight UTC


def instant(text: str, tz: str = "UTC") -> float:
    """POSIX seconds of ``YYYY-MM-DD HH:MM[:SS]`` on the wall clock of ``tz``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def utc(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def following(expr: str, start: str, count: int, tz: str = "UTC") -> list[str]:
    """The next ``count`` runs strictly after ``start`` (UTC), as UTC strings."""
    cron = Cron(expr, tz=tz)
    out: list[str] = []
    at = instant(start)
    for _ in range(count):
        at = cron.next_after(at)
        out.append(utc(at))
    return out


def check(expr: str, expected: list[str], start: str = START, tz: str = "UTC") -> None:
    full = [day if day[4] == "-" else f"2026-{day}" for day in expected]  # "MM-DD ..." is in 2026
    assert following(expr, start, len(full), tz) == full


# crontab(5) of Vixie cron, cronie and Debian: the field syntax and the examples of its EXAMPLE CRON FILE.
CRONTAB_5 = [
    # "run five minutes after midnight, every day"
    ("5 0 * * *", ["01-01 00:05", "01-02 00:05", "01-03 00:05"]),
    # "run at 2:15pm on the first of every month"
    ("15 14 1 * *", ["01-01 14:15", "02-01 14:15", "03-01 14:15"]),
    # "run at 10 pm on weekdays"
    ("0 22 * * 1-5", ["01-01 22:00", "01-02 22:00", "01-05 22:00", "01-06 22:00"]),
    # "run 23 minutes after midn, 2am, 4am ..., everyday"
    ("23 0-23/2 * * *", ["01-01 00:23", "01-01 02:23", "01-01 04:23", "01-01 06:23"]),
    # "run at 5 after 4 every sunday"
    ("5 4 * * sun", ["01-04 04:05", "01-11 04:05", "01-18 04:05"]),
    # "8-11 for an 'hours' entry specifies execution at hours 8, 9, 10, and 11"
    ("0 8-11 * * *", ["01-01 08:00", "01-01 09:00", "01-01 10:00", "01-01 11:00", "01-02 08:00"]),
    # lists: "1,2,5,9", "0-4,8-12"
    ("1,2,5,9 0 * * *", ["01-01 00:01", "01-01 00:02", "01-01 00:05", "01-01 00:09", "01-02 00:01"]),
    ("0-4,8-12 0 * * *", ["01-01 00:01", "01-01 00:02", "01-01 00:03", "01-01 00:04", "01-01 00:08"]),
    # steps after an asterisk: "*/2" in the hours field is every two hours
    ("0 */2 * * *", ["01-01 02:00", "01-01 04:00", "01-01 06:00"]),
    ("*/20 * * * *", ["01-01 00:20", "01-01 00:40", "01-01 01:00"]),
    # "0 or 7 is Sun"; names are the first three letters, case does not matter
    ("0 0 * * 0", ["01-04 00:00", "01-11 00:00"]),
    ("0 0 * * 7", ["01-04 00:00", "01-11 00:00"]),
    ("0 0 * * SuN", ["01-04 00:00", "01-11 00:00"]),
    ("0 0 1 jan,JUL *", ["07-01 00:00", "2027-01-01 00:00"]),
    ("0 0 * * mon-wed", ["01-05 00:00", "01-06 00:00", "01-07 00:00", "01-12 00:00"]),
    ("0 0 * * 5-7", ["01-02 00:00", "01-03 00:00", "01-04 00:00", "01-09 00:00"]),
    # "30 4 1,15 * 5 would cause a command to be run at 4:30 am on the 1st and 15th of each month, plus every Friday"
    ("30 4 1,15 * 5", ["01-01 04:30", "01-02 04:30", "01-09 04:30", "01-15 04:30", "01-16 04:30"]),
    # "Run on every second Saturday of the month" is "0 4 8-14 * *" plus a test of the weekday
    ("0 4 8-14 * *", ["01-08 04:00", "01-09 04:00", "01-10 04:00"]),
    # aliases
    ("@monthly", ["02-01 00:00", "03-01 00:00"]),
    ("@weekly", ["01-04 00:00", "01-11 00:00"]),
    ("@yearly", ["2027-01-01 00:00"]),
]


@pytest.mark.parametrize(("expr", "expected"), CRONTAB_5)
def test_crontab_5(expr: str, expected: list[str]) -> None:
    check(expr, expected)


# D20: "a-a" is the single value a, in every field, in lists, with steps, as names.
EQUAL_RANGES = [
    ("0 9-9 * * *", ["01-01 09:00", "01-02 09:00"]),
    ("0 9 * * 1-1", ["01-05 09:00", "01-12 09:00"]),
    ("0 0 15-15 * *", ["01-15 00:00", "02-15 00:00"]),
    ("5-5 * * * *", ["01-01 00:05", "01-01 01:05"]),
    ("0 0 * * 0-0", ["01-04 00:00", "01-11 00:00"]),
    ("0 0 * * 7-7", ["01-04 00:00", "01-11 00:00"]),
    ("0 0 * * Sun-Sun", ["01-04 00:00", "01-11 00:00"]),
    ("0 0 * * sat-sat", ["01-03 00:00", "01-10 00:00"]),
    ("0 0 1 Mar-Mar *", ["03-01 00:00", "2027-03-01 00:00"]),
    ("0 0 1 6-6 *", ["06-01 00:00", "2027-06-01 00:00"]),
    ("0-0 0-0 1-1 1-1 *", ["2027-01-01 00:00", "2028-01-01 00:00"]),
    ("30-30 0 0 * * *", ["01-01 00:00:30", "01-02 00:00:30"]),  # six fields: seconds
    ("0 0 * * 1-1,5-5", ["01-02 00:00", "01-05 00:00", "01-09 00:00"]),  # in a list
    ("0 0 * * 6-6,7-7", ["01-03 00:00", "01-04 00:00", "01-10 00:00"]),
    ("9-9/2 * * * *", ["01-01 00:09", "01-01 01:09"]),  # with a step
    ("0 12-12/5 * * *", ["01-01 12:00", "01-02 12:00"]),
    ("0 0 * * sun-sun/2", ["01-04 00:00", "01-11 00:00"]),
    ("0 0 20-20,1-2 * *", ["01-02 00:00", "01-20 00:00", "02-01 00:00"]),
]


@pytest.mark.parametrize(("expr", "expected"), EQUAL_RANGES)
def test_an_equal_range_is_its_one_value(expr: str, expected: list[str]) -> None:
    check(expr, expected)


# D21: day-of-month and day-of-week are OR-ed when both are restricted, AND-ed when either starts with "*".
DAY_RULE = [
    # odd-dated Saturdays: 3, 17, 31 Jan; 7, 21 Feb
    ("0 16 */2 * sat", ["01-03 16:00", "01-17 16:00", "01-31 16:00", "02-07 16:00", "02-21 16:00"]),
    # "the first Sunday": dow */7 is Sunday (0 and 7)
    ("1 1 1-7 * */7", ["01-04 01:01", "02-01 01:01", "03-01 01:01", "04-05 01:01", "05-03 01:01"]),
    # "the first Monday": */100 is the 1st only, and the field starts with "*"
    ("1 1 */100,1-7 * MON", ["01-05 01:01", "02-02 01:01", "03-02 01:01", "04-06 01:01", "05-04 01:01"]),
    # a 1st that is a Sunday, Tuesday, Thursday or Saturday: Feb 1 (Sun), Mar 1 (Sun), Aug 1 (Sat)
    ("0 0 1 * */2", ["02-01 00:00", "03-01 00:00", "08-01 00:00"]),
    # a 1st, 11th, 21st or 31st that is a Friday
    ("0 0 */10 * fri", ["05-01 00:00", "07-31 00:00", "08-21 00:00", "09-11 00:00", "12-11 00:00"]),
    # a plain "*" leaves the other field alone
    ("0 0 * * mon", ["01-05 00:00", "01-12 00:00"]),
    ("0 0 13 * *", ["01-13 00:00", "02-13 00:00"]),
    ("0 0 13 * ?", ["01-13 00:00", "02-13 00:00"]),
    ("0 0 ? * mon", ["01-05 00:00", "01-12 00:00"]),
    # both restricted: either matches (Friday the 2nd, 9th, the 13th, Friday the 16th)
    ("0 0 13 * fri", ["01-02 00:00", "01-09 00:00", "01-13 00:00", "01-16 00:00"]),
    # both restricted, one of them every day: every day
    ("0 0 1-31 * mon", ["01-02 00:00", "01-03 00:00", "01-04 00:00"]),
    ("0 0 1 * 0-6", ["01-02 00:00", "01-03 00:00", "01-04 00:00"]),
    ("0 0 1 * 1-7", ["01-02 00:00", "01-03 00:00", "01-04 00:00"]),
]


@pytest.mark.parametrize(("expr", "expected"), DAY_RULE)
def test_day_of_month_and_day_of_week_as_in_vixie_cron(expr: str, expected: list[str]) -> None:
    check(expr, expected)


# D22: "a/step" runs from a to the field's end, also when a is the end (croniter 6.2.4 read these as "*").
START_STEP = [
    ("59/15 * * * *", ["01-01 00:59", "01-01 01:59"]),
    ("10/20 * * * *", ["01-01 00:10", "01-01 00:30", "01-01 00:50", "01-01 01:10"]),
    ("0 23/5 * * *", ["01-01 23:00", "01-02 23:00"]),
    ("0 0 31/2 * *", ["01-31 00:00", "03-31 00:00"]),
    ("0 0 1 DEC/3 *", ["12-01 00:00", "2027-12-01 00:00"]),
    ("0 0 1 12/1 *", ["12-01 00:00", "2027-12-01 00:00"]),
    ("0 0 * * 6/1", ["01-03 00:00", "01-10 00:00"]),
    ("0 0 * * 5/1", ["01-02 00:00", "01-03 00:00", "01-09 00:00"]),
    ("59/15 0 0 * * *", ["01-01 00:00:59", "01-02 00:00:59"]),
    # a range that runs past the field's end wraps around
    ("0 22-2 * * *", ["01-01 01:00", "01-01 02:00", "01-01 22:00", "01-01 23:00", "01-02 00:00"]),
    ("0 0 * * fri-mon", ["01-02 00:00", "01-03 00:00", "01-04 00:00", "01-05 00:00", "01-09 00:00"]),
]


@pytest.mark.parametrize(("expr", "expected"), START_STEP)
def test_a_start_with_a_step_and_wrapping_ranges(expr: str, expected: list[str]) -> None:
    check(expr, expected)


# croniter's extensions, which the docs name: the last day, the n-th and the last weekday of the month.
EXTENSIONS = [
    ("0 0 L * *", ["01-31 00:00", "02-28 00:00", "03-31 00:00"]),
    ("0 0 * * 5#2", ["01-09 00:00", "02-13 00:00", "03-13 00:00"]),
    ("0 0 * * L1", ["01-26 00:00", "02-23 00:00", "03-30 00:00"]),
]


@pytest.mark.parametrize(("expr", "expected"), EXTENSIONS)
def test_last_day_and_nth_weekday(expr: str, expected: list[str]) -> None:
    check(expr, expected)


@pytest.mark.parametrize(
    "expr",
    ["0 0 * * 8", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "*/0 * * * *", "0 0 * * sun-", "0 0 * * 1,", "0 ? * * *"],
)
def test_out_of_range_and_malformed_fields_name_the_expression(expr: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"expr {expr!r}")):
        Cron(expr)


# DST rules (a) gap coalescing, (b) the first of a repeated wall time, (c) interval-style expressions in
# both passes, in zones whose changes are not all at 02:00 or an hour long.
DST = [
    # (a) New York, 2026-03-08 02:00 EST -> 03:00 EDT: 02:00 and 02:30 coalesce at 03:00 EDT
    ("America/New_York", "0,30 2 * * *", "2026-03-07 12:00", ["03-08 07:00", "03-09 06:00", "03-09 06:30"]),
    # (a) with the run due at the gap's end itself: Berlin 01:45 CET, then 02:xx and 03:00 as one at 03:00 CEST
    ("Europe/Berlin", "*/15 * * * *", "2026-03-29 00:40", ["03-29 00:45", "03-29 01:00", "03-29 01:15"]),
    # (a) Lord Howe, 2026-10-04 02:00 +10:30 -> 02:30 +11: 02:15 runs at 02:30 +11
    ("Australia/Lord_Howe", "15 2 * * *", "2026-10-02 12:00", ["10-02 15:45", "10-03 15:30", "10-04 15:15"]),
    # (a) Santiago, 2026-09-06 00:00 -04 -> 01:00 -03: midnight runs at 01:00 -03
    ("America/Santiago", "0 0 * * *", "2026-09-05 00:00", ["09-05 04:00", "09-06 04:00", "09-07 03:00"]),
    ("America/Santiago", "30 0 * * *", "2026-09-05 00:00", ["09-05 04:30", "09-06 04:00", "09-07 03:30"]),
    # (a) Havana, 2026-03-08 00:00 -05 -> 01:00 -04
    ("America/Havana", "0 0 * * *", "2026-03-07 00:00", ["03-07 05:00", "03-08 05:00", "03-09 04:00"]),
    # (b) Lord Howe, 2026-04-05 02:00 +11 -> 01:30 +10:30: 01:45 happens twice, runs at the first
    ("Australia/Lord_Howe", "45 1 * * *", "2026-04-03 12:00", ["04-03 14:45", "04-04 14:45", "04-05 15:15"]),
    # (b) Santiago, 2026-04-05 00:00 -03 -> 23:00 -04 (Apr 4): 23:30 twice, runs at the first
    ("America/Santiago", "30 23 * * *", "2026-04-04 12:00", ["04-05 02:30", "04-06 03:30"]),
    # (b) Havana, 2026-11-01 01:00 -04 -> 00:00 -05: 00:30 twice, runs at the first
    ("America/Havana", "30 0 * * *", "2026-10-31 12:00", ["11-01 04:30", "11-02 05:30"]),
    # (c) interval-style: both passes through Lord Howe's repeated half hour, every 15 real minutes
    (
        "Australia/Lord_Howe",
        "*/15 * * * *",
        "2026-04-04 14:20",
        ["04-04 14:30", "04-04 14:45", "04-04 15:00", "04-04 15:15", "04-04 15:30"],
    ),
    # (c) Havana's repeated midnight hour: 00:00 -04, 00:00 -05, 01:00 -05
    ("America/Havana", "0 * * * *", "2026-11-01 03:30", ["11-01 04:00", "11-01 05:00", "11-01 06:00"]),
    # (c) but a fixed hour never runs twice: 00:00 -04 only, then the next day
    ("America/Havana", "0 0 * * *", "2026-11-01 03:30", ["11-01 04:00", "11-02 05:00"]),
]


@pytest.mark.parametrize(("tz", "expr", "start", "expected"), DST)
def test_dst_rules_in_many_zones(tz: str, expr: str, start: str, expected: list[str]) -> None:
    check(expr, expected, start=start, tz=tz)


# --- D23: the offset at an instant a fraction of a microsecond from a change -----------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "America/Havana"]
EDGE_EXPRS = ["30 2 * * *", "15 2 * * *", "0 0 * * *", "30 0 * * *", "*/15 * * * *", "0 * * * *", "45 1 * * *"]


def transitions(tz: str) -> list[int]:
    """The instants in 2026 at which ``tz``'s UTC offset changes (whole seconds)."""
    zone = ZoneInfo(tz)

    def offset(at: int) -> timedelta | None:
        return datetime.fromtimestamp(at, zone).utcoffset()

    out: list[int] = []
    at = int(instant("2026-01-01 00:00"))
    while at < instant("2027-01-01 00:00"):
        if offset(at + 1800) != offset(at):
            lo, hi = at, at + 1800
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if offset(mid) != offset(lo) else (mid, hi)
            out.append(hi)
        at += 1800
    return out


def reference(expr: str, tz: str, lo: int, hi: int) -> list[float]:
    """Runs in ``[lo, hi)`` by brute force: walk UTC minute by minute and read the zone's wall clock.

    A minute runs if its wall time matches and is the first pass (or the
    expression is interval-style), or if the wall clock jumped over a
    matching wall time to get there (the end of a gap).
    """
    zone = ZoneInfo(tz)
    naive = Cron(expr)  # field matching on the naive wall clock, read as UTC
    interval_style = expr.split()[1].startswith("*")

    def wall(at: int) -> datetime:
        return datetime.fromtimestamp(at, zone).replace(tzinfo=None)

    epoch = datetime(1970, 1, 1)
    matching: set[datetime] = set()
    at_wall = (wall(lo) - epoch).total_seconds() - 4 * 3600
    while (at_wall := naive.next_after(at_wall)) < (wall(hi) - epoch).total_seconds() + 4 * 3600:
        matching.add(epoch + timedelta(seconds=at_wall))
    matches = matching.__contains__

    out: list[float] = []
    for at in range(lo, hi, 60):
        here = datetime.fromtimestamp(at, zone)
        previous = wall(at - 60)
        jumped = round((here.replace(tzinfo=None) - previous) / timedelta(minutes=1))
        skipped = any(matches(previous + timedelta(minutes=m)) for m in range(1, jumped))
        if skipped or (matches(here.replace(tzinfo=None)) and (here.fold == 0 or interval_style)):
            out.append(float(at))
    return out


@pytest.mark.parametrize("tz", ZONES)
def test_next_after_is_exact_at_and_around_every_change(tz: str) -> None:
    changes = transitions(tz)
    assert len(changes) == 2
    for change in changes:
        lo, hi = change - 86_400, change + 2 * 86_400
        for expr in EDGE_EXPRS:
            cron = Cron(expr, tz=tz)
            expected = reference(expr, tz, lo, hi)
            for delta in (-60.0, -1.0, -1e-3, -1e-6, -5e-7, -4e-7, -2.5e-7, 0.0, 2.5e-7, 4e-7, 5e-7, 1e-6, 1.0):
                after = change + delta
                assert cron.next_after(after) == min(t for t in expected if t > after), (expr, utc(change), delta)
            just_before = math.nextafter(float(change), -math.inf)
            assert cron.next_after(just_before) == min(t for t in expected if t > just_before), (expr, "nextafter")


def test_a_run_within_half_a_microsecond_before_a_spring_forward_is_not_skipped() -> None:
    change = instant("2026-03-29 01:00")  # Berlin: 02:00 CET -> 03:00 CEST
    cron = Cron("30 2 * * *", tz="Europe/Berlin")
    for delta in (4e-7, 4.9e-7, 2.5e-7):  # 2.5e-7 is about one float step at 2026's timestamps
        assert cron.next_after(change - delta) == change  # 02:30 does not exist: it runs at 03:00 CEST


# --- the differential test against croniter -------------------------------------------------------------------

RANGES = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12), "dow": (0, 6)}
NAMES = {
    "month": ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    "dow": ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}


@st.composite
def fields(draw: st.DrawFn, name: str) -> str:
    """One field in the syntax cron and croniter read alike: no ``a-a``, no ``a/step``, no wrapping ranges."""
    low, high = RANGES[name]

    def value(number: int) -> str:
        if name in NAMES and draw(st.booleans()):
            return NAMES[name][number - low]
        return str(number)

    def term() -> str:
        kind = draw(st.sampled_from(["value", "range", "star-step", "range-step"]))
        if kind == "value":
            return value(draw(st.integers(low, high)))
        step = draw(st.integers(1, high - low + 2))
        if kind == "star-step":
            return f"*/{step}"
        a = draw(st.integers(low, high - 1))
        b = draw(st.integers(a + 1, high))
        return f"{value(a)}-{value(b)}" + (f"/{step}" if kind == "range-step" else "")

    if draw(st.integers(0, 3)) == 0:
        return "*"
    return ",".join(term() for _ in range(draw(st.integers(1, 3))))


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, str]:
    """A chronowheel expression (seconds first, if six fields) and the same in croniter's order."""
    five = [draw(fields(name)) for name in ("minute", "hour", "dom", "month", "dow")]
    if draw(st.booleans()):
        second = draw(fields("second"))
        return " ".join([second, *five]), " ".join([*five, second])
    return " ".join(five), " ".join(five)


@pytest.mark.heavy
@settings(max_examples=300, deadline=None)
@given(pair=expressions(), start=st.integers(int(instant("2020-01-01 00:00")), int(instant("2030-01-01 00:00"))))
def test_agrees_with_croniter_where_cron_and_croniter_agree(pair: tuple[str, str], start: int) -> None:
    ours, theirs = pair
    dom, dow = theirs.split()[2], theirs.split()[4]
    expanded = croniter.expand(theirs)[0]
    # croniter reads a restricted field that lists every day as "*" and then ANDs; cron ORs it, so every day runs.
    assume(dom.startswith("*") or dow.startswith("*") or "*" not in (expanded[2][0], expanded[4][0]))
    # Vixie cron's day rule: AND when either field starts with "*". (croniter >= 1.4 has it as
    # implement_cron_bug=True; day_or says the same to every croniter from the declared floor on.)
    day_or = not (dom.startswith("*") or dow.startswith("*"))
    try:
        oracle = croniter(theirs, float(start), day_or=day_or)
        expected = [oracle.get_next(float) for _ in range(4)]
    except ValueError:  # "0 0 31 2 *": never matches
        with pytest.raises(ValueError, match="never matches"):
            Cron(ours)
        return
    cron = Cron(ours)
    got: list[float] = []
    at = float(start)
    for _ in range(4):
        at = cron.next_after(at)
        got.append(at)
    assert got == expected, (ours, utc(start))


# --- the croniter floor -------------------------------------------------------------------------------------


def declared_floor() -> str:
    """The croniter version pyproject.toml declares as the least it needs."""
    with open(Path(__file__).parent.parent / "pyproject.toml", "rb") as file:
        dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
    (floor,) = (spec.removeprefix("croniter>=") for spec in dependencies if spec.startswith("croniter"))
    return floor


def test_croniter_is_the_declared_floor_in_the_floor_run() -> None:
    """``make test`` runs the cron tests again with only the declared floor on PYTHONPATH: prove it is loaded."""
    floor = declared_floor()
    loaded = metadata.version("croniter")
    if os.environ.get("CHRONOWHEEL_CRONITER_FLOOR") != "1":
        assert Version(loaded) >= Version(floor)
        return
    assert loaded == floor
    assert Path(croniter_module.__file__).is_relative_to(Path(os.environ["PYTHONPATH"].split(os.pathsep)[0]).resolve())
