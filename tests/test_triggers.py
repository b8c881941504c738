"""Behaviour users rely on from Every, Cron and At: pure, exact, DST-correct fire times."""

from __future__ import annotations

import functools
import math
from contextlib import nullcontext
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._work import calls_during
from xtasks import At, ConfigError, Cron, CronError, Every, ShortIntervalWarning
from xtasks.abc import Trigger

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST shifts by 30 minutes
ZONES = [PARIS, NEW_YORK, LORD_HOWE, ZoneInfo("UTC")]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def every(**kwargs: Any) -> Every:
    """Build an Every, expecting ShortIntervalWarning exactly when the period is under 5 s."""
    total = sum(
        kwargs.get(k, 0) * m
        for k, m in (("seconds", 1), ("minutes", 60), ("hours", 3600), ("days", 86400))
    )
    with pytest.warns(ShortIntervalWarning) if total < 5 else nullcontext():
        return Every(**kwargs)


def fires(trigger: Trigger, after: datetime, until: datetime) -> list[datetime]:
    """Every fire in (after, until], by iterating next_fire as the scheduler does."""
    out: list[datetime] = []
    while (t := trigger.next_fire(after)) is not None and t <= until:
        out.append(t)
        after = t
    return out


# --------------------------------------------------------------------------- Every

aware = st.datetimes(  # hypothesis takes naive bounds and attaches the zones itself
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, PARIS, timezone(timedelta(hours=-3, minutes=-30))]),
)


@settings(deadline=None)
@given(period_us=st.integers(1, 10**12), start=aware, after=aware)
def test_every_next_fire_is_the_first_grid_point_after(period_us, start, after):
    trigger = every(seconds=period_us / 1e6, start=start)
    result = trigger.next_fire(after)
    assert result is not None and result.tzinfo is UTC
    assert result > after
    # Compare in UTC: Python never calls an ambiguous local time equal across zones.
    origin = start.astimezone(UTC)
    assert result >= origin and (result - origin) % trigger.period == timedelta(0)  # on grid
    assert result == origin or result - trigger.period <= after  # no grid point skipped


@pytest.mark.parametrize("period", [0.5, 1, 2, 3, 4, 5, 10, 15, 30, 60, 90, 300, 900, 1800, 3600])
def test_every_fires_exactly_3600_over_period_times_in_an_hour(period):
    start = datetime(2026, 3, 29, 1, 30, tzinfo=PARIS)  # across the DST jump: real time
    trigger = every(seconds=period, start=start)
    hour = fires(trigger, start - timedelta(microseconds=1), start + timedelta(hours=1))
    hour = [t for t in hour if t < start + timedelta(hours=1)]
    assert len(hour) == 3600 / period
    assert hour[0] == start
    assert {b - a for a, b in pairwise(hour)} <= {timedelta(seconds=period)}


@pytest.mark.parametrize("years", [1, 50])
def test_every_with_a_start_long_ago_answers_instantly_and_exactly(years):
    start = utc(2026, 1, 1) - timedelta(days=365 * years)
    trigger = every(seconds=0.5, start=start)
    n = 365 * years * 86400 * 2  # whole half-seconds elapsed
    after = start + n * timedelta(microseconds=500_000) + timedelta(microseconds=200_000)
    answers, calls = calls_during(lambda: [trigger.next_fire(after) for _ in range(1000)])
    assert calls < 10_000  # no replay: a few calls per answer (2 here), not one per fire
    result = answers[-1]
    assert result == start + (n + 1) * timedelta(microseconds=500_000)
    assert trigger.next_fire(result) == result + timedelta(microseconds=500_000)


def test_every_before_its_start_fires_at_start():
    start = utc(2026, 6, 1, 12)
    assert Every(hours=1, start=start).next_fire(utc(2020, 1, 1)) == start
    assert Every(hours=1, start=start).next_fire(start) == start + timedelta(hours=1)


def test_unanchored_every_fires_one_period_after():
    assert Every(minutes=5).next_fire(utc(2026, 1, 1, 10, 3)) == utc(2026, 1, 1, 10, 8)


def test_anchored_sets_the_grid_start_to_registration_time():
    registered = datetime(2026, 5, 4, 10, 17, 3, tzinfo=PARIS)
    plain = Every(hours=1)
    anchored = plain.anchored(registered)
    assert anchored.start == registered and anchored.start.tzinfo is UTC
    assert anchored.period == timedelta(hours=1) and plain.start is None  # a copy
    assert anchored.next_fire(registered + timedelta(minutes=1)) == registered + timedelta(hours=1)
    assert anchored.anchored(registered + timedelta(days=1)) is anchored  # start kept
    with pytest.raises(ConfigError, match="naive"):
        plain.anchored(datetime(2026, 5, 4))


def test_anchoring_a_short_every_does_not_warn_twice():
    short = every(seconds=1)
    short.anchored(utc(2026, 1, 1))  # filterwarnings=error would turn a warning into a failure


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"seconds": -1}, ["seconds", ">= 0"]),
        ({"minutes": -0.5}, ["minutes", ">= 0"]),
        ({"seconds": NAN}, ["seconds", "finite"]),
        ({"hours": INF}, ["hours", "finite"]),
        ({"days": -INF}, ["days", "finite"]),
        ({}, ["zero", "> 0"]),
        ({"seconds": 0, "minutes": 0, "hours": 0, "days": 0}, ["zero", "> 0"]),
        ({"seconds": 1e-9}, ["zero", "1 microsecond"]),
        ({"seconds": True}, ["seconds", "number", "bool"]),
        ({"minutes": "5"}, ["minutes", "number", "str"]),
        ({"days": 1e12}, ["too long"]),
        ({"hours": 1, "start": datetime(2026, 1, 1)}, ["naive", "tzinfo", "timezone.utc"]),
    ],
)
def test_every_rejects_bad_values_with_an_actionable_message(kwargs, words):
    with pytest.raises(ConfigError) as info:
        Every(**kwargs)
    assert info.value.field == "trigger"
    for word in words:
        assert word in str(info.value)


def test_every_refuses_a_bool_even_after_the_same_number_was_accepted():
    assert Every(hours=1).period == timedelta(hours=1)  # True == 1: periods are cached by type
    with pytest.raises(ConfigError, match="bool"):
        Every(hours=True)


def test_every_refuses_an_unhashable_amount_as_a_config_error():
    with pytest.raises(ConfigError, match="seconds must be a number") as info:
        Every(seconds=[5])  # type: ignore[arg-type]
    assert info.value.__context__ is None  # not "during handling of TypeError: unhashable"


def test_every_under_five_seconds_warns_at_the_callers_line():
    with pytest.warns(ShortIntervalWarning, match="under 5 s") as record:
        Every(seconds=4.999)
    assert record[0].filename == __file__
    with pytest.warns(ShortIntervalWarning):
        Every(minutes=0.05)
    Every(seconds=5)  # exactly 5 s is fine: no warning (warnings are errors here)


def test_every_is_an_immutable_value():
    assert Every(hours=1) == Every(minutes=60) == Every(seconds=3600)
    assert hash(Every(hours=1)) == hash(Every(minutes=60))
    assert Every(hours=1) != Every(hours=1, start=utc(2026, 1, 1))
    with pytest.raises(AttributeError):
        Every(hours=1).period = timedelta(hours=2)  # type: ignore[misc]
    start = datetime(2026, 1, 1, 9, tzinfo=PARIS)
    value = Every(hours=1, minutes=30, start=start)
    assert eval(repr(value), {"Every": Every, "datetime": __import__("datetime")}) == value


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"hours": 1}, "every 1h"),
        ({"seconds": 30}, "every 30s"),
        ({"hours": 1, "minutes": 30}, "every 1h 30m"),
        ({"days": 1}, "every 1d"),
        ({"seconds": 90}, "every 1m 30s"),
        ({"seconds": 0.5}, "every 0.5s"),
    ],
)
def test_every_describe(kwargs, text):
    assert every(**kwargs).describe() == text


# --------------------------------------------------------------------------- Cron


def test_cron_five_fields_next_fire_is_strictly_after():
    cron = Cron("*/15 * * * *")
    assert cron.next_fire(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 15)
    assert cron.next_fire(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 30)
    assert cron.next_fire(datetime(2026, 1, 1, 11, 7, tzinfo=PARIS)) == utc(2026, 1, 1, 10, 15)


def test_cron_six_fields_put_seconds_first():
    cron = Cron("5 0 * * * *")  # second 5 of minute 0 of every hour
    assert cron.next_fire(utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 10, 0, 5)
    assert cron.next_fire(utc(2026, 1, 1, 10, 0, 5)) == utc(2026, 1, 1, 11, 0, 5)
    assert fires(Cron("*/20 * * * * *"), utc(2026, 1, 1), utc(2026, 1, 1, 0, 1)) == [
        utc(2026, 1, 1, 0, 0, 20),
        utc(2026, 1, 1, 0, 0, 40),
        utc(2026, 1, 1, 0, 1),
    ]


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", utc(2026, 1, 7, 11)),
        ("@daily", utc(2026, 1, 8)),
        ("@DAILY", utc(2026, 1, 8)),
        ("@weekly", utc(2026, 1, 11)),  # next Sunday
        ("@monthly", utc(2026, 2, 1)),
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
    ],
)
def test_cron_aliases(alias, expected):
    assert Cron(alias).next_fire(utc(2026, 1, 7, 10, 30)) == expected


def test_cron_is_evaluated_in_its_time_zone():
    cron = Cron("0 9 * * *", tz="Europe/Paris")
    assert cron.next_fire(utc(2026, 1, 10)) == utc(2026, 1, 10, 8)  # CET, UTC+1
    assert cron.next_fire(utc(2026, 7, 10)) == utc(2026, 7, 10, 7)  # CEST, UTC+2
    summer = cron.next_fire(utc(2026, 7, 10))
    assert summer is not None and summer.tzinfo is UTC


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_daily_0230_paris_runs_exactly_once_on_dst_change_days(day):
    cron = Cron("30 2 * * *", tz="Europe/Paris")
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    week = fires(cron, noon - timedelta(days=3), noon + timedelta(days=3))
    per_day: dict[date, int] = {}
    for t in week:
        per_day[t.astimezone(PARIS).date()] = per_day.get(t.astimezone(PARIS).date(), 0) + 1
    assert per_day[day] == 1
    assert set(per_day.values()) == {1}
    (fire,) = [t for t in week if t.astimezone(PARIS).date() == day]
    # Spring: 02:30 does not exist, it runs at 03:30 CEST. Autumn: the first 02:30 (CEST).
    assert fire == (utc(2026, 3, 29, 1, 30) if day.month == 3 else utc(2026, 10, 25, 0, 30))


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25)])
def test_every_five_minutes_keeps_a_real_five_minute_beat_across_dst(day, hours):
    midnight = datetime(day.year, day.month, day.day, tzinfo=PARIS)
    next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), PARIS)
    got = fires(
        Cron("*/5 * * * *", tz="Europe/Paris"),
        midnight - timedelta(minutes=1),
        next_midnight - timedelta(minutes=1),
    )
    assert len(got) == len(set(got)) == hours * 12  # the local day is 23 h or 25 h long
    assert got[0] == midnight
    assert {b - a for a, b in pairwise(got)} == {timedelta(minutes=5)}


def _oracle(
    minutes: set[int], hours: set[int], tz: ZoneInfo, lo: datetime, hi: datetime
) -> list[datetime]:
    """Brute force of the documented DST rules for 'M H * * *', minute by minute of the
    wall clock (second by second where the zone's offsets are not whole minutes)."""
    every_hour = hours == set(range(24))
    samples = (lo + timedelta(hours=h) for h in range(int((hi - lo) / timedelta(hours=1)) + 1))
    odd = any((t.astimezone(tz).utcoffset() or timedelta(0)).seconds % 60 for t in samples)
    step = timedelta(seconds=1 if odd else 60)
    out = set()
    t = lo
    while t <= hi:  # real wall times; a repeated one only counts twice if every hour
        local = t.astimezone(tz)
        if (
            local.second == 0
            and local.minute in minutes
            and local.hour in hours
            and (every_hour or not local.fold)
        ):
            out.add(t)
        t += step
    wall = lo.astimezone(tz).replace(tzinfo=None, second=0) - timedelta(hours=3)
    while not every_hour and wall <= hi.astimezone(tz).replace(tzinfo=None):
        aware = wall.replace(tzinfo=tz)
        skipped = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall
        if skipped and wall.minute in minutes and wall.hour in hours:
            out.add(aware.astimezone(UTC))  # a nonexistent time runs at its fold=0 instant
        wall += timedelta(minutes=1)
    return sorted(x for x in out if lo < x <= hi)


DST_DAYS = [
    (PARIS, date(2026, 3, 29)),
    (PARIS, date(2026, 10, 25)),
    (NEW_YORK, date(2026, 3, 8)),
    (NEW_YORK, date(2026, 11, 1)),
    (LORD_HOWE, date(2026, 4, 5)),
    (LORD_HOWE, date(2026, 10, 4)),
    # centuries ahead (the zones' rules, not their tables): offset changes are searched
    # around the right day whatever its number
    (NEW_YORK, date(2400, 3, 12)),
    (PARIS, date(2400, 10, 29)),
    (LORD_HOWE, date(2400, 4, 1)),
    # offsets that are not whole minutes, changing at odd seconds: a 44.5-minute gap,
    # a summer time starting at 01:40:28 UTC, a 27-minute-49-second repeat
    (ZoneInfo("Africa/Monrovia"), date(1972, 1, 7)),
    (ZoneInfo("Europe/Amsterdam"), date(1937, 5, 22)),
    (ZoneInfo("America/Detroit"), date(1905, 1, 1)),
]
ORACLE_CASES = [
    ("*/5 * * * *", frozenset(range(0, 60, 5)), frozenset(range(24))),
    ("30 2 * * *", frozenset({30}), frozenset({2})),
    ("*/15 1,2 * * *", frozenset({0, 15, 30, 45}), frozenset({1, 2})),
    ("10,40 1-3 * * *", frozenset({10, 40}), frozenset({1, 2, 3})),
    ("45 1 * * *", frozenset({45}), frozenset({1})),
    ("20 0 * * *", frozenset({20}), frozenset({0})),
    ("0 * * * *", frozenset({0}), frozenset(range(24))),  # hourly: one fire per pass
    ("0,30 * * * *", frozenset({0, 30}), frozenset(range(24))),
]


def _window(day: date) -> tuple[datetime, datetime]:
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    return lo, lo + timedelta(days=3)


@functools.cache
def _oracle_window(case: int, dst_day: int) -> list[datetime]:
    (tz, day), (_, minutes, hours) = DST_DAYS[dst_day], ORACLE_CASES[case]
    return _oracle(set(minutes), set(hours), tz, *_window(day))


@pytest.mark.parametrize("dst_day", range(len(DST_DAYS)))
@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
def test_cron_matches_a_brute_force_oracle_on_dst_days(case, dst_day):
    (tz, day), expression = DST_DAYS[dst_day], ORACLE_CASES[case][0]
    assert fires(Cron(expression, tz=tz), *_window(day)) == _oracle_window(case, dst_day)


@settings(deadline=None, max_examples=500)
@given(
    case=st.integers(0, len(ORACLE_CASES) - 1),
    dst_day=st.integers(0, len(DST_DAYS) - 1),
    offset=st.integers(12 * 3600 * 10**6, 48 * 3600 * 10**6),
)
def test_cron_from_any_instant_near_a_dst_change_agrees_with_the_oracle(case, dst_day, offset):
    (tz, day), expression = DST_DAYS[dst_day], ORACLE_CASES[case][0]
    after = _window(day)[0] + timedelta(microseconds=offset)
    expected = next(t for t in _oracle_window(case, dst_day) if t > after)
    assert Cron(expression, tz=tz).next_fire(after) == expected


def _offset_change(tz: ZoneInfo, day: date) -> tuple[datetime, timedelta]:
    """The instant ``tz`` changes its UTC offset within ``day``'s window, to the second,
    and by how much (found minute by minute, then second by second)."""
    lo, hi = _window(day)
    t, offset = lo, lo.astimezone(tz).utcoffset()
    while t < hi:
        t += timedelta(minutes=1)
        now = t.astimezone(tz).utcoffset()
        if now != offset:
            assert now is not None and offset is not None
            t -= timedelta(minutes=1)
            while t.astimezone(tz).utcoffset() == offset:
                t += timedelta(seconds=1)
            return t, abs(now - offset)
    raise AssertionError(f"no offset change in {tz} near {day}")


US, SECOND = timedelta(microseconds=1), timedelta(seconds=1)


@pytest.mark.parametrize("dst_day", range(len(DST_DAYS)))
@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
def test_cron_from_the_instants_around_an_offset_change_agrees_with_the_oracle(case, dst_day):
    """From just before, at and just after the change, and one change's size either side
    of it (where the repeated or skipped wall times begin and end), to the microsecond."""
    (tz, day), expression = DST_DAYS[dst_day], ORACLE_CASES[case][0]
    change, size = _offset_change(tz, day)
    cron = Cron(expression, tz=tz)
    for edge in (change - size, change, change + size):
        for step in (-SECOND, -US, timedelta(0), US, SECOND):
            after = edge + step
            expected = next(t for t in _oracle_window(case, dst_day) if t > after)
            assert cron.next_fire(after) == expected, (expression, tz, after)


EXPRESSIONS = [
    "*/5 * * * *",
    "30 2 * * *",
    "15 1,2,3 * * *",
    "0 9 * * 1-5",
    "*/20 * * * * *",
    "0 0 29 2 *",
    "@hourly",
    "0,30 * * * *",
]


@settings(deadline=None, max_examples=300)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    tz=st.sampled_from(ZONES),
    after=st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2099, 1, 1),
        timezones=st.just(UTC),
    ),
    fraction=st.floats(0, 1, exclude_max=True),
)
def test_cron_next_fire_properties(expression, tz, after, fraction):
    cron = Cron(expression, tz=tz)
    first = cron.next_fire(after)
    assert first is not None and first.tzinfo is UTC and first > after
    # Any instant between *after* and the answer has the same answer: nothing in between.
    between = after + (first - after) * fraction
    assert cron.next_fire(min(between, first - timedelta(microseconds=1))) == first
    chain = [first]
    for _ in range(4):
        nxt = cron.next_fire(chain[-1])
        assert nxt is not None and nxt.tzinfo is UTC
        chain.append(nxt)
    assert all(a < b for a, b in pairwise(chain))
    if expression == "*/5 * * * *":  # every zone here shifts by a multiple of 5 minutes
        assert {b - a for a, b in pairwise(chain)} == {timedelta(minutes=5)}


def test_cron_on_february_29th_is_rare_but_valid():
    assert Cron("0 0 29 2 *").next_fire(utc(2026, 1, 1)) == utc(2028, 2, 29)


@pytest.mark.parametrize(
    "expression", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6 *", "0 0 0 31 11 *"]
)
def test_cron_that_can_never_fire_is_refused_quickly(expression):
    def refuse() -> pytest.ExceptionInfo[CronError]:
        with pytest.raises(CronError, match="can never fire") as info:
            Cron(expression)
        return info

    info, calls = calls_during(refuse)
    assert calls < 100_000  # a few thousand: no search through the years
    assert repr(expression) in str(info.value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * *", "3 field"),
        ("61 * * * *", "out of range"),
        ("bad", "1 field"),
        ("* * * * * * *", "7 field"),
        ("*/0 * * * *", "step"),
        ("@reboot", "unknown alias"),
        ("H * * * *", "not supported"),
        ("", "0 field"),
    ],
)
def test_malformed_cron_names_the_expression_reason_and_format(expression, reason):
    with pytest.raises(CronError) as info:
        Cron(expression)
    message = str(info.value)
    assert repr(expression) in message and reason in message
    assert "second minute hour" in message and info.value.field == "trigger"


def test_cron_expression_must_be_a_string():
    with pytest.raises(CronError, match="must be a string"):
        Cron(5)  # type: ignore[arg-type]


def test_unknown_time_zone_is_named():
    with pytest.raises(ConfigError, match="unknown time zone 'Europe/Pariss'"):
        Cron("* * * * *", tz="Europe/Pariss")
    with pytest.raises(ConfigError, match="IANA"):
        Cron("* * * * *", tz=3600)  # type: ignore[arg-type]


def test_cron_is_a_value_with_useful_words():
    paris = Cron("*/5 * * * *", tz="Europe/Paris")
    assert paris == Cron(" */5  * * * * ", tz=ZoneInfo("Europe/Paris"))
    assert hash(paris) == hash(Cron("*/5 * * * *", tz=PARIS))
    assert paris != Cron("*/5 * * * *") and paris.tz is PARIS
    assert paris.describe() == "cron '*/5 * * * *' (Europe/Paris)"
    assert eval(repr(paris), {"Cron": Cron}) == paris
    with pytest.raises(AttributeError):
        paris.expression = "* * * * *"  # type: ignore[misc]


def test_cron_and_every_refuse_a_naive_after():
    for trigger in (Cron("* * * * *"), Every(hours=1), At(utc(2026, 1, 1))):
        with pytest.raises(ConfigError, match="naive"):
            trigger.next_fire(datetime(2026, 1, 1))


def test_cron_beyond_year_9999_never_fires_again():
    assert Cron("0 0 1 1 *").next_fire(utc(9999, 6, 1)) is None


# --------------------------------------------------------------------------- At


def test_at_fires_once_then_never():
    when = datetime(2026, 12, 1, 10, tzinfo=PARIS)
    at = At(when)
    assert at.when == when and at.when.tzinfo is UTC
    assert at.next_fire(utc(2026, 1, 1)) == utc(2026, 12, 1, 9)
    assert at.next_fire(when) is None
    assert at.next_fire(utc(2027, 1, 1)) is None
    assert at.describe() == "at 2026-12-01T09:00:00+00:00"
    assert at == At(utc(2026, 12, 1, 9)) and hash(at) == hash(At(utc(2026, 12, 1, 9)))


def test_at_refuses_a_naive_datetime():
    with pytest.raises(ConfigError, match="tzinfo") as info:
        At(datetime(2026, 12, 1, 9))
    assert info.value.field == "trigger"


# --------------------------------------------------------------------------- Trigger


def test_trigger_is_an_extension_point():
    with pytest.raises(TypeError):
        Trigger()  # type: ignore[abstract]

    class Never(Trigger):
        def next_fire(self, after: datetime) -> datetime | None:
            return None

    never = Never()
    assert never.anchored(utc(2026, 1, 1)) is never
    assert "Never" in never.describe()


@pytest.mark.parametrize(
    ("tz", "before_gap"),
    [
        (PARIS, datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)),  # 02:00-03:00 never happens
        (LORD_HOWE, datetime(2026, 10, 3, 15, 29, 59, tzinfo=UTC)),  # 02:00-02:30 neither
    ],
)
def test_a_per_second_cron_steps_over_a_skipped_hour_at_once(tz, before_gap):
    """A cron firing every second does not walk the wall times a clock change skips one
    by one (3,600 of them for an hour): it jumps to the far side, at a bounded cost."""
    cron = Cron("* * * * * *", tz=tz)
    fire, calls = calls_during(lambda: cron.next_fire(before_gap))
    assert fire == before_gap + timedelta(seconds=1)  # the first second after the change
    assert calls < 500, calls
