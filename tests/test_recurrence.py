"""The sans-IO recurrence rules: Every, Cron (with DST), misfire and overlap policies."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel._recurrence import (
    DEFAULT_MAX_CATCH_UP,
    DEFAULT_MISFIRE,
    DEFAULT_OVERLAP,
    MISFIRE,
    OVERLAP,
    Cron,
    Every,
    MisfirePlan,
    check_misfire,
    check_overlap,
    jittered,
    plan_misfire,
    recurrence_from_spec,
)

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def ts(text: str) -> float:
    """POSIX seconds of an ISO-8601 instant ("...Z" for UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def runs(recurrence: Cron, start: str, count: int) -> list[str]:
    """The next ``count`` runs after ``start``, as UTC ISO strings."""
    out: list[str] = []
    instant = ts(start)
    for _ in range(count):
        instant = recurrence.next_after(instant)
        out.append(iso(instant))
    return out


# --- Every ------------------------------------------------------------------------------------------------


def test_fixed_rate_has_zero_drift_over_10000_late_runs() -> None:
    every = Every(0.1)  # 0.1 is not a binary fraction: adding it up drifts
    anchor = 1_700_000_000.123
    nominal = anchor
    summed = anchor
    drifted = False
    for k in range(1, 10_001):
        late = nominal + 0.07  # every run observed late, as a real engine would
        nominal = every.next_after(late, anchor)
        assert nominal == anchor + k * 0.1
        summed += 0.1
        drifted = drifted or summed != nominal
    assert drifted, "the test must be able to tell grid arithmetic from accumulation"
    assert nominal == anchor + 10_000 * 0.1


def test_fixed_rate_skips_whole_periods_but_stays_on_the_grid() -> None:
    every = Every(60)
    assert every.next_after(1000.0 + 150.5, 1000.0) == 1180.0  # k = 3
    assert every.next_after(1180.0, 1000.0) == 1240.0  # strictly after
    assert every.next_after(0.0, 1000.0) == 1000.0  # before the anchor: the anchor is the first run


def test_fixed_rate_needs_the_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        Every(5).next_after(10.0)


def test_fixed_delay_counts_from_the_finish() -> None:
    every = Every(300, fixed="delay")
    finished = 1_000.0 + 42.5  # a run at 1000 that took 42.5 s
    assert every.next_after(finished) == 1342.5
    assert every.next_after(finished, anchor=0.0) == 1342.5  # the anchor plays no part


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"seconds": 0}, ValueError, "seconds"),
        ({"seconds": -1}, ValueError, "seconds"),
        ({"seconds": math.nan}, ValueError, "seconds"),
        ({"seconds": math.inf}, ValueError, "seconds"),
        ({"seconds": "5"}, TypeError, "seconds"),
        ({"seconds": True}, TypeError, "seconds"),
        ({"seconds": 5, "fixed": "drift"}, ValueError, "fixed"),
        ({"seconds": 5, "jitter": -0.1}, ValueError, "jitter"),
        ({"seconds": 5, "jitter": math.inf}, ValueError, "jitter"),
    ],
)
def test_every_validates_its_arguments(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        Every(**kwargs)  # type: ignore[arg-type]


# --- jitter -----------------------------------------------------------------------------------------------


@given(
    nominal=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=86_400, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_jitter_is_never_early_and_never_more_than_jitter_late(nominal: float, jitter: float, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        fired = jittered(nominal, jitter, rng)
        assert nominal <= fired <= nominal + jitter


def test_jitter_spreads_over_the_whole_range_and_zero_is_exact() -> None:
    rng = random.Random(7)
    delays = [jittered(1000.0, 10.0, rng) - 1000.0 for _ in range(2000)]
    assert min(delays) < 0.5
    assert max(delays) > 9.5
    assert jittered(1000.0, 0.0, rng) == 1000.0


# --- Cron: DST ----------------------------------------------------------------------------------------------
# US 2026: spring forward 03-08 02:00 EST -> 03:00 EDT (07:00Z); fall back 11-01 02:00 EDT -> 01:00 EST (06:00Z).
# EU 2026: spring forward 03-29 02:00 CET -> 03:00 CEST (01:00Z); fall back 10-25 03:00 CEST -> 02:00 CET (01:00Z).


@pytest.mark.parametrize(
    ("tz", "expr", "day", "expected"),
    [
        # (a) spring forward: 02:30 does not exist that day, so it runs once at 03:00 local
        (NY, "30 2 * * *", "03-07", ["03-07T07:30", "03-08T07:00", "03-09T06:30"]),  # 02:30 EST, 03:00 EDT, 02:30 EDT
        (BERLIN, "30 2 * * *", "03-28", ["03-28T01:30", "03-29T01:00", "03-30T00:30"]),
        # 01:30 exists on spring-forward days: only the offset changes
        (NY, "30 1 * * *", "03-07", ["03-07T06:30", "03-08T06:30", "03-09T05:30"]),
        (BERLIN, "30 1 * * *", "03-28", ["03-28T00:30", "03-29T00:30", "03-29T23:30"]),
        # (b) fall back: 01:30 (NY) and 02:30 (Berlin) occur twice: run once, at the first (EDT / CEST) one
        (NY, "30 1 * * *", "10-31", ["10-31T05:30", "11-01T05:30", "11-02T06:30"]),
        (BERLIN, "30 2 * * *", "10-24", ["10-24T00:30", "10-25T00:30", "10-26T01:30"]),
        # not repeated on those days: only the offset changes
        (NY, "30 2 * * *", "10-31", ["10-31T06:30", "11-01T07:30", "11-02T07:30"]),
        (BERLIN, "30 1 * * *", "10-24", ["10-24T23:30", "10-26T00:30", "10-27T00:30"]),
    ],
)
def test_daily_runs_around_dst_at_exact_utc_instants(tz: str, expr: str, day: str, expected: list[str]) -> None:
    got = runs(Cron(expr, tz=tz), f"2026-{day}T00:00:00Z", len(expected))
    assert got == [f"2026-{utc}:00Z" for utc in expected]


@pytest.mark.parametrize("tz", [NY, BERLIN])
@pytest.mark.parametrize("expr", ["30 2 * * *", "30 1 * * *"])
def test_daily_expressions_run_exactly_once_per_local_day_through_2026(tz: str, expr: str) -> None:
    cron = Cron(expr, tz=tz)
    zone = ZoneInfo(tz)
    days: list[str] = []
    instant = datetime(2026, 1, 1, tzinfo=zone).timestamp()
    while (instant := cron.next_after(instant)) < datetime(2027, 1, 1, tzinfo=zone).timestamp():
        days.append(datetime.fromtimestamp(instant, zone).date().isoformat())
    assert len(days) == 365
    assert len(set(days)) == 365


@pytest.mark.parametrize(
    ("tz", "start", "expected"),
    [
        # (c) hour field "*": follows real time, so both passes through the repeated hour run
        (NY, "2026-11-01T03:30:00Z", ["04:00", "05:00", "06:00", "07:00", "08:00"]),  # 00 01EDT 01EST 02 03 local
        (BERLIN, "2026-10-24T22:30:00Z", ["23:00", "00:00", "01:00", "02:00", "03:00"]),  # 01 02CEST 02CET 03 04
        # spring: the skipped 02:00 coalesces with 03:00, still one run per real hour
        (NY, "2026-03-08T04:30:00Z", ["05:00", "06:00", "07:00", "08:00", "09:00"]),  # 00 01 03EDT 04 05 local
        (BERLIN, "2026-03-28T22:30:00Z", ["23:00", "00:00", "01:00", "02:00", "03:00"]),  # 00 01 03CEST 04 05
    ],
)
def test_hourly_expression_follows_real_time_across_dst(tz: str, start: str, expected: list[str]) -> None:
    assert [run[11:16] for run in runs(Cron("0 * * * *", tz=tz), start, 5)] == expected


def test_fixed_hour_expression_never_repeats_the_overlap() -> None:
    # "every 20 minutes during 01:xx": 01:00 01:20 01:40 EDT on 2026-11-01, not again in EST
    got = runs(Cron("*/20 1 * * *", tz=NY), "2026-11-01T04:00:00Z", 4)
    assert got == ["2026-11-01T05:00:00Z", "2026-11-01T05:20:00Z", "2026-11-01T05:40:00Z", "2026-11-02T06:00:00Z"]


def test_fixed_hour_expression_in_the_second_pass_waits_for_the_next_day() -> None:
    cron = Cron("30 1 * * *", tz=NY)
    assert iso(cron.next_after(ts("2026-11-01T06:10:00Z"))) == "2026-11-02T06:30:00Z"  # 01:10 EST


def test_every_15_minutes_through_the_gap_and_the_overlap() -> None:
    cron = Cron("*/15 * * * *", tz=NY)
    spring = runs(cron, "2026-03-08T06:40:00Z", 3)
    assert spring == ["2026-03-08T06:45:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"]  # 01:45 EST, 03:00 EDT
    fall = runs(cron, "2026-11-01T05:40:00Z", 6)  # from 01:40 EDT
    assert fall == [
        "2026-11-01T05:45:00Z",  # 01:45 EDT
        "2026-11-01T06:00:00Z",  # 01:00 EST
        "2026-11-01T06:15:00Z",
        "2026-11-01T06:30:00Z",
        "2026-11-01T06:45:00Z",  # 01:45 EST
        "2026-11-01T07:00:00Z",  # 02:00 EST
    ]


def reference_runs(expr: str, tz: str, lo: float, hi: float) -> list[float]:
    """The DST rules by brute force: walk UTC minute by minute and read the wall clock."""
    zone = ZoneInfo(tz)
    fields = expr.split()
    follows_real_time = fields[1].startswith("*")

    def wall(instant: float) -> datetime:
        return datetime.fromtimestamp(instant, zone).replace(tzinfo=None)

    matching: set[datetime] = set()
    it = croniter(expr, wall(lo - 4 * 3600).replace(tzinfo=UTC))  # naive wall times, matched as if UTC
    while (w := it.get_next(datetime).replace(tzinfo=None)) < wall(hi) + timedelta(hours=4):
        matching.add(w)
    out: list[float] = []
    for instant in range(int(lo), int(hi), 60):
        here = datetime.fromtimestamp(instant, zone)
        previous = wall(instant - 60)
        skipped = any(
            previous + timedelta(minutes=m) in matching
            for m in range(1, int((here.replace(tzinfo=None) - previous) / timedelta(minutes=1)))
        )
        if skipped or (here.replace(tzinfo=None) in matching and (here.fold == 0 or follows_real_time)):
            out.append(float(instant))
    return out


@pytest.mark.parametrize("tz", [NY, BERLIN])
@pytest.mark.parametrize(
    "expr", ["*/15 * * * *", "0 * * * *", "30 1 * * *", "30 2 * * *", "*/20 1 * * *", "45 2 * * *", "0 */2 * * *"]
)
def test_next_after_matches_the_brute_force_rules_around_both_transitions(tz: str, expr: str) -> None:
    cron = Cron(expr, tz=tz)
    days = {NY: ("2026-03-08", "2026-11-01"), BERLIN: ("2026-03-29", "2026-10-25")}[tz]
    for day in days:
        lo = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(tz)).timestamp() - 86_400
        expected = reference_runs(expr, tz, lo, lo + 3 * 86_400)
        got: list[float] = []
        instant = lo - 1
        while (instant := cron.next_after(instant)) < lo + 3 * 86_400:
            got.append(instant)
        assert [iso(t) for t in got] == [iso(t) for t in expected]
        # From any point in between (including mid-overlap), the answer is the next reference run.
        rng = random.Random(day)
        for _ in range(200):
            after = rng.uniform(lo, expected[-1] - 1)
            assert cron.next_after(after) == min(t for t in expected if t > after)


@settings(max_examples=60, deadline=None)
@given(after=st.floats(min_value=ts("2026-10-31T00:00:00Z"), max_value=ts("2026-11-03T00:00:00Z")))
def test_next_after_is_stable_until_the_run_it_names(after: float) -> None:
    cron = Cron("*/10 * * * * *", tz=NY)  # every 10 s, six fields
    run = cron.next_after(after)
    assert run > after
    assert cron.next_after(math.nextafter(run, -math.inf)) == run
    middle = after + (run - after) / 2
    assert cron.next_after(middle if middle < run else after) == run


@pytest.fixture
def croniter_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times croniter stepped to a next match: the work a cron query did, counted, not timed."""
    steps = [0]
    step = croniter.get_next

    def counted(self: croniter, *args: Any, **kwargs: Any) -> Any:
        steps[0] += 1
        return step(self, *args, **kwargs)

    monkeypatch.setattr(croniter, "get_next", counted)
    return steps


def test_every_second_expression_is_fast_around_a_fall_back(croniter_steps: list[int]) -> None:
    cron = Cron("* * * * * *", tz=NY)
    instant = ts("2026-11-01T05:58:00Z")  # 01:58 EDT, two minutes before the clocks go back
    seen = []
    for _ in range(600):
        instant = cron.next_after(instant)
        seen.append(instant)
    assert croniter_steps[0] <= 4 * 600  # a few steps per run (1,681 when written), however the hour repeats
    assert seen == [ts("2026-11-01T05:58:00Z") + k for k in range(1, 601)]  # every real second, no gap, no repeat


# --- Cron: calendar and syntax ---------------------------------------------------------------------------------


def test_day_31_runs_only_in_months_with_31_days() -> None:
    cron = Cron("0 0 31 * *")
    got: list[str] = []
    instant = ts("2027-01-01T00:00:00Z")
    while (instant := cron.next_after(instant)) < ts("2033-01-01T00:00:00Z"):
        got.append(iso(instant)[:10])
    assert len(got) == 6 * 7
    assert {day[5:7] for day in got} == {"01", "03", "05", "07", "08", "10", "12"}
    assert all(day.endswith("-31") for day in got)


def test_february_29_runs_only_in_leap_years() -> None:
    cron = Cron("0 0 29 2 *", tz=BERLIN)
    assert runs(cron, "2027-01-01T00:00:00Z", 2) == ["2028-02-28T23:00:00Z", "2032-02-28T23:00:00Z"]  # local midnight


def test_six_fields_put_seconds_first() -> None:
    cron = Cron("30 15 10 * * *")  # 10:15:30 every day; seconds-last would read "minute 30, hour 15, day 10"
    assert runs(cron, "2026-05-01T00:00:00Z", 2) == ["2026-05-01T10:15:30Z", "2026-05-02T10:15:30Z"]
    every_ten = Cron("*/10 * * * * *")
    assert runs(every_ten, "2026-05-01T00:00:05Z", 3) == [
        "2026-05-01T00:00:10Z",
        "2026-05-01T00:00:20Z",
        "2026-05-01T00:00:30Z",
    ]
    six, five = Cron("0 30 9 * * 1-5"), Cron("30 9 * * 1-5")
    assert runs(six, "2026-05-01T00:00:00Z", 3) == runs(five, "2026-05-01T00:00:00Z", 3)


def test_aliases_and_whitespace() -> None:
    assert Cron("@daily").expr == "@daily"
    assert runs(Cron("@daily", tz=NY), "2026-05-01T12:00:00Z", 1) == ["2026-05-02T04:00:00Z"]
    assert runs(Cron("@hourly", tz=NY), "2026-11-01T05:30:00Z", 2) == ["2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"]
    assert Cron("0  9 *  * 1-5").expr == "0 9 * * 1-5"


@pytest.mark.parametrize(
    "expr",
    [
        "61 * * * *",
        "* * * *",
        "a b c d e",
        "0 0 30 2 *",  # parses, never matches
        "0 0 * * * * 2027",  # croniter's year field is not part of the contract
        "R * * * *",  # random: not a function of the expression
        "H * * * *",
        "",
    ],
)
def test_invalid_expression_raises_value_error_naming_expr(expr: str) -> None:
    with pytest.raises(ValueError, match="expr"):
        Cron(expr)


def test_month_and_day_names_are_not_mistaken_for_random_fields() -> None:
    assert runs(Cron("0 12 * MAR THU"), "2026-03-01T00:00:00Z", 1) == ["2026-03-05T12:00:00Z"]


def test_non_string_expression_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expr"):
        Cron(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../../etc/passwd", "America/New York"])
def test_unknown_zone_raises_value_error_naming_tz(tz: str) -> None:
    with pytest.raises(ValueError, match="tz"):
        Cron("0 9 * * *", tz=tz)


def test_cron_validates_jitter() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Cron("0 9 * * *", jitter=-1)


# --- values ---------------------------------------------------------------------------------------------


def test_values_compare_hash_repr_and_round_trip() -> None:
    every = Every(300, fixed="delay", jitter=5)
    cron = Cron("0 9 * * 1-5", tz=ZoneInfo(BERLIN), jitter=1.5)
    assert every == Every(300.0, fixed="delay", jitter=5.0)
    assert every != Every(300, fixed="rate", jitter=5)
    assert cron == Cron("0 9 * * 1-5", tz=BERLIN, jitter=1.5)
    assert cron != Cron("0 9 * * 1-5", tz=NY, jitter=1.5)
    assert every != cron
    assert len({every, Every(300, fixed="delay", jitter=5), cron, Cron("0 9 * * 1-5", tz=BERLIN, jitter=1.5)}) == 2
    assert repr(every) == "Every(300.0, fixed='delay', jitter=5.0)"
    assert repr(cron) == "Cron('0 9 * * 1-5', tz='Europe/Berlin', jitter=1.5)"
    for value in (every, cron):
        assert recurrence_from_spec(value.to_spec()) == value
        assert pickle.loads(pickle.dumps(value)) == value
    with pytest.raises(ValueError, match="every"):
        recurrence_from_spec({"period": 5})


def test_values_are_immutable() -> None:
    every = Every(5)
    with pytest.raises(AttributeError):
        every.seconds = 6
    with pytest.raises(AttributeError):
        Cron("* * * * *").other = 1


# --- misfire ----------------------------------------------------------------------------------------------

MINUTE = Every(60)


def test_default_policy_is_fire_once() -> None:
    assert DEFAULT_MISFIRE == "fire_once"
    assert MISFIRE == ("fire_once", "fire_all", "skip")


def test_fire_once_coalesces_the_missed_runs_into_one() -> None:
    plan = plan_misfire(MINUTE, 0.0, 3630.0, anchor=0.0, misfire="fire_once", misfire_grace=1.0)
    assert plan == MisfirePlan([3600.0], 3660.0)  # 61 missed runs, one fired (the latest), then back on the grid


def test_fire_all_runs_each_missed_run() -> None:
    plan = plan_misfire(MINUTE, 0.0, 630.0, anchor=0.0, misfire="fire_all", misfire_grace=1.0)
    assert plan.fire == [60.0 * k for k in range(11)]
    assert plan.next_run == 660.0


def test_fire_all_is_bounded_keeping_the_most_recent() -> None:
    plan = plan_misfire(MINUTE, 0.0, 630.0, anchor=0.0, misfire="fire_all", max_catch_up=3)
    assert plan.fire == [480.0, 540.0, 600.0]
    week = plan_misfire(MINUTE, 0.0, 7 * 86_400 + 30.0, anchor=0.0, misfire="fire_all")
    assert len(week.fire) == DEFAULT_MAX_CATCH_UP == 100
    assert week.fire[-1] == 7 * 86_400.0
    assert week.fire == sorted(week.fire)


def test_skip_runs_none_of_the_missed_and_continues_on_schedule() -> None:
    plan = plan_misfire(MINUTE, 0.0, 630.0, anchor=0.0, misfire="skip", misfire_grace=1.0)
    assert plan == MisfirePlan([], 660.0)


def test_runs_within_grace_always_run() -> None:
    for policy in MISFIRE:
        assert plan_misfire(MINUTE, 600.0, 600.5, anchor=0.0, misfire=policy, misfire_grace=1.0).fire == [600.0]
    # the same lateness beyond a smaller grace is a miss
    assert plan_misfire(MINUTE, 600.0, 600.5, anchor=0.0, misfire="skip", misfire_grace=0.1).fire == []
    # a grace of 90 s keeps 540 and 600 on time; 0..480 are missed
    assert plan_misfire(MINUTE, 0.0, 630.0, anchor=0.0, misfire="skip", misfire_grace=90).fire == [540.0, 600.0]
    assert plan_misfire(MINUTE, 0.0, 630.0, anchor=0.0, misfire="fire_once", misfire_grace=90).fire == [
        480.0,
        540.0,
        600.0,
    ]


def test_jitter_is_not_counted_as_a_miss() -> None:
    jittery = Every(60, jitter=30)
    assert plan_misfire(jittery, 600.0, 625.0, anchor=0.0, misfire="skip", misfire_grace=1.0).fire == [600.0]
    assert plan_misfire(jittery, 600.0, 632.0, anchor=0.0, misfire="skip", misfire_grace=1.0).fire == []


def test_misfire_with_cron_after_a_month_long_outage_is_bounded_and_fast(croniter_steps: list[int]) -> None:
    cron = Cron("* * * * *", tz=BERLIN)
    due = ts("2026-10-01T00:00:00Z")
    now = ts("2026-11-01T00:00:30Z")  # includes the Berlin fall-back with its repeated hour
    all_runs = plan_misfire(cron, due, now, misfire="fire_all", misfire_grace=1.0)
    once = plan_misfire(cron, due, now, misfire="fire_once", misfire_grace=1.0)
    skip = plan_misfire(cron, due, now, misfire="skip", misfire_grace=1.0)
    assert croniter_steps[0] < 5_000  # a month holds 44,640 minutes; only the tail is walked (1,902 when written)
    assert len(all_runs.fire) == 100
    assert all_runs.fire[-1] == ts("2026-11-01T00:00:00Z")
    assert all_runs.fire[0] == ts("2026-11-01T00:00:00Z") - 99 * 60
    assert once.fire == [ts("2026-11-01T00:00:00Z")]
    assert skip.fire == []
    assert all_runs.next_run == once.next_run == skip.next_run == ts("2026-11-01T00:01:00Z")


def test_fixed_delay_has_at_most_one_outstanding_run() -> None:
    every = Every(60, fixed="delay")
    assert plan_misfire(every, 100.0, 10_000.0, misfire="fire_all") == MisfirePlan([100.0], 10_060.0)
    assert plan_misfire(every, 100.0, 10_000.0, misfire="skip") == MisfirePlan([], 10_060.0)


def test_not_yet_due_fires_nothing() -> None:
    assert plan_misfire(MINUTE, 120.0, 100.0, anchor=0.0) == MisfirePlan([], 120.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"misfire": "later"}, "misfire"),
        ({"misfire_grace": -1}, "misfire_grace"),
        ({"max_catch_up": 0}, "max_catch_up"),
        ({"anchor": None}, "anchor"),
    ],
)
def test_plan_misfire_validates(kwargs: dict[str, object], name: str) -> None:
    arguments: dict[str, object] = {"anchor": 0.0, **kwargs}
    with pytest.raises(ValueError, match=name):
        plan_misfire(MINUTE, 0.0, 100.0, **arguments)  # type: ignore[arg-type]


# --- overlap ----------------------------------------------------------------------------------------------


def test_overlap_policies() -> None:
    assert OVERLAP == ("skip", "queue", "allow")
    assert DEFAULT_OVERLAP == "skip"
    for value in OVERLAP:
        assert check_overlap(value) == value
    with pytest.raises(ValueError, match="overlap"):
        check_overlap("parallel")
    assert check_misfire("skip") == "skip"
    with pytest.raises(ValueError, match="misfire"):
        check_misfire(None)
