"""Triggers: pure values that answer "when is the next fire after this instant?".

No clock, no I/O, no mutable state: the planner drives them with virtual time, and every
replica computes the same fire instants. Results are aware datetimes in UTC.
"""

from __future__ import annotations

import copy
import math
import re
import sys
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, cast
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from xtasks._errors import ConfigError, CronError, ShortIntervalWarning
from xtasks._frozen import writable_twin

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["At", "Cron", "Every", "Trigger", "warn_short_interval"]

_ZERO = timedelta(0)
_SHORT = timedelta(seconds=5)  # a shorter period warns
_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 -- Cron works on naive UTC internally


def _utc(value: object, what: str) -> datetime:
    """Return *value* as an aware UTC datetime; a naive one is ambiguous, so refuse it."""
    if value.__class__ is datetime and value.tzinfo is UTC:
        return value  # the usual case: what astimezone would return
    if not isinstance(value, datetime):
        raise ConfigError(f"{what} must be a datetime, got {value!r}", field="trigger")
    if value.utcoffset() is None:
        raise ConfigError(
            f"{what} {value.isoformat()} is naive (it has no tzinfo); pass a "
            "timezone-aware datetime, e.g. datetime.now(timezone.utc)",
            field="trigger",
        )
    return value.astimezone(UTC)


class Trigger(ABC):
    """The extension point: anything that can tell its next fire instant.

    Implementations must be pure (same answer for the same argument, no clock) and cheap:
    the answer comes from *after* directly, never from replaying past fires.
    """

    __slots__ = ()

    @abstractmethod
    def next_fire(self, after: datetime) -> datetime | None:
        """The smallest fire instant strictly greater than *after*.

        :param after: a timezone-aware instant; a naive one raises :class:`ConfigError`.
        :returns: an aware datetime in UTC, or None when the trigger never fires again.
        """

    def anchored(self, registered_at: datetime) -> Trigger:
        """This trigger bound to the instant its task was registered (default: unchanged).

        :param registered_at: when the task was added to the scheduler (aware).
        """
        return self

    def first_fire(self, registered_at: datetime) -> datetime | None:
        """The first fire of a task registered at *registered_at* that never fired yet.

        Defaults to :meth:`next_fire`; a one-shot trigger whose instant has already
        passed answers that instant, so the scheduler runs it late (or records it
        missed) instead of dropping it.
        """
        return self.next_fire(registered_at)

    def describe(self) -> str:
        """Short words for people and the API."""
        return repr(self)


def _split(period: timedelta) -> list[tuple[str, int | float]]:
    """Break *period* into (unit, amount) pairs, largest first, for repr and describe."""
    parts: list[tuple[str, int | float]] = []
    us = period // _US
    for unit, size in (("days", 86_400_000_000), ("hours", 3_600_000_000), ("minutes", 60_000_000)):
        amount, us = divmod(us, size)
        parts.append((unit, amount))
    parts.append(("seconds", us // 1_000_000 if us % 1_000_000 == 0 else us / 1_000_000))
    return [(unit, amount) for unit, amount in parts if amount]


@lru_cache(maxsize=256)  # a program uses few periods; every task's definition shows one
def _args(period: timedelta) -> str:
    return ", ".join(f"{unit}={amount!r}" for unit, amount in _split(period))


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Every(Trigger):
    """Fires on the grid ``start + k * period`` (k = 0, 1, 2, ...).

    The period is the sum of the arguments: finite and > 0; under 5 s it is allowed but
    warns :class:`ShortIntervalWarning` at the line that builds it (for a seed or YAML
    entry: naming the task, at the entry's line). Grid maths is exact integer microseconds, so a
    ``start`` decades back costs the same as one a second back.

    :param start: first grid point (aware). None means "when the task is registered": the
        scheduler calls :meth:`anchored`; unanchored, each fire is ``after + period``.
    :ivar period: the interval, a :class:`~datetime.timedelta` (microsecond precision).
    :ivar start: the grid origin in UTC, or None while not anchored.
    """

    period: timedelta
    start: datetime | None
    _unwarned: bool = field(default=False, compare=False, repr=False)
    """A short period built inside xtasks (seed, YAML): the task it joins warns, by name."""

    def __init__(
        self,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        *,
        start: datetime | None = None,
    ) -> None:
        period = _period_of(seconds, minutes, hours, days)
        anchor = None if start is None else _utc(start, "Every start")
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "start", anchor)
        short = period < _SHORT
        if short and _is_ours(sys._getframe(1)):
            object.__setattr__(self, "_unwarned", True)  # built for a seed or YAML entry
        else:
            object.__setattr__(self, "_unwarned", False)
            if short:  # the user's own Every(...) line
                warnings.warn(_short(self), ShortIntervalWarning, stacklevel=2)

    def next_fire(self, after: datetime) -> datetime | None:
        if after.__class__ is not datetime or after.tzinfo is not UTC:  # else UTC already
            after = _utc(after, "after")
        try:
            if self.start is None:
                return after + self.period
            if after < self.start:
                return self.start
            k = (after - self.start) // self.period + 1  # exact integer maths
            return self.start + k * self.period
        except OverflowError:  # beyond year 9999: nothing representable is left
            return None

    def anchored(self, registered_at: datetime) -> Every:
        if self.start is not None:
            return self
        anchored = _WritableEvery()  # no __init__: validated already, warned already
        anchored.period = self.period
        if registered_at.__class__ is not datetime or registered_at.tzinfo is not UTC:
            registered_at = _utc(registered_at, "registered_at")  # else UTC already (the clock's)
        anchored.start = registered_at
        anchored._unwarned = False
        anchored.__class__ = Every
        return anchored  # type: ignore[no-any-return]  # an Every now

    def describe(self) -> str:
        units = {"days": "d", "hours": "h", "minutes": "m", "seconds": "s"}
        return "every " + " ".join(f"{n}{units[u]}" for u, n in _split(self.period))

    def __repr__(self) -> str:
        start = "" if self.start is None else f", start={self.start!r}"
        return f"Every({_args(self.period)}{start})"


#: Every task's trigger is anchored once registered: filled without object.__setattr__.
_WritableEvery = writable_twin(Every)


@lru_cache(maxsize=256, typed=True)  # typed: True is no 1, it is refused
def _period(seconds: float, minutes: float, hours: float, days: float) -> timedelta:
    """The validated period of ``Every(...)``; cached, as a program uses few periods, and
    its tasks then share one ``timedelta``."""
    given = {"seconds": seconds, "minutes": minutes, "hours": hours, "days": days}
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"Every({name}={value!r}): {name} must be a number (int or "
                f"float), not {type(value).__name__}",
                field="trigger",
            )
        if not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"Every({name}={value!r}): {name} must be a finite number "
                ">= 0; the period is the sum of seconds, minutes, hours and "
                "days",
                field="trigger",
            )
    try:
        period = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ConfigError(
            "Every(...): the period is too long; the maximum is 999999999 days", field="trigger"
        ) from None
    if period <= _ZERO:
        raise ConfigError(
            "Every(...): the period is zero; give a total > 0 (at least "
            "1 microsecond), e.g. Every(minutes=5)",
            field="trigger",
        )
    return period


def _period_of(seconds: float, minutes: float, hours: float, days: float) -> timedelta:
    try:
        return _period(seconds, minutes, hours, days)
    except TypeError:  # an unhashable amount, so not a number: the check says so, below
        pass
    return _period.__wrapped__(seconds, minutes, hours, days)


def _short(every: Every, task: str | None = None) -> str:
    named = f"task {task!r}: " if task is not None else ""
    return (
        f"{named}Every({_args(every.period)}): an interval under 5 s is allowed, but it "
        "keeps the scheduler and the store busy"
    )


def _is_ours(frame: FrameType) -> bool:
    """Whether code of this package (not a user's, nor a plugin's) runs in ``frame``."""
    module = frame.f_globals.get("__name__", "")
    return isinstance(module, str) and (module == "xtasks" or module.startswith("xtasks."))


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the innermost caller outside xtasks, for ``warnings.warn``
    called by this function's caller (``dataclasses`` frames count as ours)."""
    level, frame = 2, cast("FrameType | None", sys._getframe(2))
    while frame is not None and (
        _is_ours(frame)
        or frame.f_code.co_filename.startswith("<")  # dataclass-made __init__
        or frame.f_globals.get("__name__") == "dataclasses"  # dataclasses.replace
    ):
        frame, level = frame.f_back, level + 1
    return level


def warn_short_interval(
    trigger: Trigger | None,
    task: str,
    *,
    where: str | None = None,
    site: tuple[str, int] | None = None,
) -> None:
    """Warn once that ``task`` fires under every 5 s, when xtasks built its trigger.

    An ``Every`` built by the user warned at its own line already. One built for a seed
    or YAML entry warns here, naming the task, at ``site`` (file, line) when known, else
    at the user's line that led here.

    :param where: where the entry came from, e.g. ``"PLUGIN_TASKS[0] of billing"``.
    """
    if not isinstance(trigger, Every) or not trigger._unwarned:
        return
    object.__setattr__(trigger, "_unwarned", False)
    message = _short(trigger, task) + (f" (set in {where})" if where else "")
    if site is not None:
        warnings.warn_explicit(message, ShortIntervalWarning, site[0], site[1])
    else:
        warnings.warn(message, ShortIntervalWarning, stacklevel=_user_stacklevel())


_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FORMAT = (
    "5 fields 'minute hour day-of-month month day-of-week' (e.g. '*/5 * * * *'), "
    "6 fields with seconds first 'second minute hour day-of-month month day-of-week', "
    "or one of @hourly @daily @weekly @monthly @yearly"
)
_HASHED = re.compile(r"[hr](\(\d+-\d+\))?(/\d+)?", re.IGNORECASE)
_PROBE = datetime(2000, 1, 1)  # noqa: DTZ001 -- croniter then searches 50 years: any cycle
_SPAN = 26 * 3600  # no UTC offset change is larger than 26 h


def _zone(tz: object) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        return tz
    if not isinstance(tz, str):
        raise ConfigError(
            f"tz must be an IANA time zone name such as 'Europe/Paris', or a ZoneInfo; got {tz!r}",
            field="trigger",
        )
    try:
        return ZoneInfo(tz)
    except (KeyError, ValueError, OSError) as exc:  # not found, malformed key, a directory
        raise ConfigError(
            f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Paris' or 'UTC'",
            field="trigger",
        ) from exc


def _offset(tz: ZoneInfo, ts: float) -> timedelta:
    return datetime.fromtimestamp(ts, tz).utcoffset() or _ZERO


@lru_cache(maxsize=4096)
def _day_changes(tz: ZoneInfo, day: int) -> tuple[tuple[int, timedelta, timedelta], ...]:
    """UTC offset changes within _SPAN of UTC day *day*: (epoch second, before, after).

    Hourly samples, then bisection to the second; cached because every evaluation in one
    zone on one day asks the same question.
    """
    lo, hi = day * 86400 - _SPAN, (day + 1) * 86400 + _SPAN
    found = []
    prev_ts, prev = lo, _offset(tz, lo)
    for ts in range(lo + 3600, hi + 1, 3600):
        cur = _offset(tz, ts)
        if cur != prev:
            a, b = prev_ts, ts
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (mid, b) if _offset(tz, mid) == prev else (a, mid)
            found.append((b, prev, cur))
        prev_ts, prev = ts, cur
    return tuple(found)


def _near(tz: ZoneInfo, at: datetime) -> list[tuple[datetime, timedelta, timedelta]]:
    """Offset changes closer to *at* (naive UTC) than their own size: (instant, before, after).

    Only these can make wall-clock order differ from instant order around *at*.
    """
    ts = (at - _EPOCH).total_seconds()
    return [
        (_EPOCH + timedelta(seconds=t), before, after)
        for t, before, after in _day_changes(tz, math.floor(ts / 86400))
        if abs(t - ts) <= abs(after - before).total_seconds()
    ]


@dataclass(frozen=True, slots=True, init=False, repr=False, eq=False)
class Cron(Trigger):
    """Fires at the wall-clock times a cron expression names, in time zone *tz*.

    Five fields ``minute hour day-of-month month day-of-week``, or six with SECONDS FIRST
    (``second minute hour ...``, the Quartz/Spring/node-cron order), or an alias
    (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``). When both
    day fields are restricted, a day matching either one matches (classic cron).

    Daylight saving time is decided here, not left to croniter, which only sees naive
    wall times:

    * a wall time that does not exist (spring forward): a fixed-hour job still runs once,
      at the instant that wall time maps to with ``fold=0`` (02:30 Paris -> 03:30 CEST),
      merged with a real match at that instant; a job whose hour field is every hour skips
      it, as the real hour after the jump covers it;
    * a wall time that happens twice (fall back): it fires at the first occurrence, and at
      the second too only when the hour field is every hour, so ``*/5 * * * *`` keeps a
      5-minute beat while a daily 02:30 job runs exactly once.

    :param expression: malformed, or never firing, raises :class:`CronError`.
    :param tz: an IANA zone name or a :class:`~zoneinfo.ZoneInfo`; unknown raises ConfigError.
    """

    expression: str
    tz: ZoneInfo
    _cron: croniter[datetime]
    _every_hour: bool

    def __init__(self, expression: str, *, tz: str | ZoneInfo = "UTC") -> None:
        zone = _zone(tz)
        if not isinstance(expression, str):
            raise CronError(
                f"a cron expression must be a string such as '*/5 * * * *', got {expression!r}",
                field="trigger",
            )
        text = " ".join(expression.split())
        fields = _ALIASES.get(text.lower(), text).split()

        def bad(reason: str) -> CronError:
            return CronError(
                f"invalid cron expression {expression!r}: {reason}; expected {_FORMAT}",
                field="trigger",
            )

        if text.startswith("@") and text.lower() not in _ALIASES:
            raise bad(f"unknown alias {text!r}")
        if len(fields) not in (5, 6):
            raise bad(f"it has {len(fields)} field(s)")
        if any(_HASHED.fullmatch(part) for f in fields for part in f.split(",")):
            raise bad("hashed or random values (H, R) are not supported")
        try:
            cron = croniter(
                " ".join(fields), _PROBE, ret_type=datetime, second_at_beginning=len(fields) == 6
            )
            copy.copy(cron).get_next(datetime)
        except CroniterBadDateError:
            raise CronError(
                f"cron expression {expression!r} can never fire: no date matches "
                "it (e.g. February 30th or April 31st); check the day-of-month and "
                "month fields",
                field="trigger",
            ) from None
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise bad(str(exc) or type(exc).__name__) from exc
        object.__setattr__(self, "expression", text)
        object.__setattr__(self, "tz", zone)
        object.__setattr__(self, "_cron", cron)
        object.__setattr__(self, "_every_hour", cron.expanded[1] == ["*"])

    def next_fire(self, after: datetime) -> datetime | None:
        try:
            return self._next(_utc(after, "after").replace(tzinfo=None)).replace(tzinfo=UTC)
        except (CroniterBadDateError, OverflowError, ValueError):
            return None  # the next match lies beyond year 9999

    def _next(self, after: datetime) -> datetime:
        """Smallest fire instant > *after*, both naive UTC.

        Existing wall times read with fold=0 map to increasing instants, so one forward scan
        finds the first; the only exceptions, the second pass of a repeated hour and the
        wall times inside a gap, are handled next to their offset change.
        """
        tz, cron, every_hour = self.tz, copy.copy(self._cron), self._every_hour
        found: list[datetime] = []
        cur = after + _offset(tz, (after - _EPOCH).total_seconds())  # the wall clock
        for at, before, later in _near(tz, after):
            if later < before and after < at + before - later:  # a repeated hour
                if every_hour:  # its second pass fires too: first match in it
                    cron.set_current(max(at + later - _US, after + later), force=True)
                    wall = cron.get_next(datetime)
                    if wall < at + before:
                        found.append(wall - later)
                if at <= after:  # in the second pass: all first-pass times are behind
                    cur = at + before - _US
            elif later > before and at <= after < at + later - before and not every_hour:
                cur = min(cur, after + before)  # gap wall times ahead still map past *after*
        cron.set_current(cur, force=True)
        while True:
            wall = cron.get_next(datetime)
            off0 = wall.replace(tzinfo=tz).utcoffset() or _ZERO
            off1 = wall.replace(tzinfo=tz, fold=1).utcoffset() or _ZERO
            t = wall - off0
            if off1 <= off0:  # exists (fold=0 is its first occurrence)
                if t > after:
                    return min([*found, t])
                continue
            # In a gap: a fixed-hour job fires at the fold=0 instant (the first such wall
            # time is the earliest); then jump past the gap, whose far side may map earlier.
            if not every_hour and t > after and not found:
                found.append(t)
            for at, before, later in _near(tz, t):
                if before < later and at <= t < at + later - before:
                    cron.set_current(max(at + later - _US, after + later), force=True)

    def describe(self) -> str:
        return f"cron {self.expression!r} ({self.tz.key or self.tz})"

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, tz={self.tz.key or str(self.tz)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cron):
            return NotImplemented
        return self.expression == other.expression and (
            self.tz is other.tz or (self.tz.key is not None and self.tz.key == other.tz.key)
        )

    def __hash__(self) -> int:
        return hash((self.expression, self.tz.key))


@dataclass(frozen=True, slots=True, init=False, repr=False)
class At(Trigger):
    """Fires once, at *when*.

    :param when: the instant (aware; stored in UTC). A naive datetime raises ConfigError.
    """

    when: datetime

    def __init__(self, when: datetime) -> None:
        object.__setattr__(self, "when", _utc(when, "At when"))

    def next_fire(self, after: datetime) -> datetime | None:
        return self.when if self.when > _utc(after, "after") else None

    def first_fire(self, registered_at: datetime) -> datetime | None:
        return self.when

    def describe(self) -> str:
        return f"at {self.when.isoformat()}"

    def __repr__(self) -> str:
        return f"At({self.when!r})"
