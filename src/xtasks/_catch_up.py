"""Catch-up arithmetic: what to do with fires that are late beyond ``misfire_grace``.

Late fires come from downtime, or from a timer that woke very late. The task's
``catch_up`` policy decides: ``once`` replays the latest of them, ``skip`` none, ``all``
the oldest :data:`CATCH_UP_CAP`; one ``missed`` record counts the others and names their
range. The latest late fire and the count come from grid arithmetic for ``Every`` (exact,
O(1)); for another trigger the latest comes from a bisection over ``next_fire`` and the
count is exact up to ``_COUNT_LIMIT``, a lower bound ("N+") past it: the cost never grows
with the downtime.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from ._decisions import ClaimFire
from ._runs import RunCause
from ._task import CatchUp
from ._triggers import Every

if TYPE_CHECKING:
    from datetime import datetime

    from ._task import Task
    from ._triggers import Trigger

__all__ = ["CATCH_UP_CAP", "late_claims"]

#: Most fires one catch-up replays with ``catch_up="all"``; the rest are recorded missed.
CATCH_UP_CAP: Final = 100
#: Late fires counted one by one, at most, for a trigger without grid arithmetic (``Cron``
#: or a custom one); past that, a ``missed`` record's count is a lower bound ("N+"). Its
#: range stays exact: the latest late fire is found by bisection, whatever the downtime.
_COUNT_LIMIT: Final = CATCH_UP_CAP + 1
_TICK: Final = timedelta(microseconds=1)
_log = logging.getLogger("xtasks")


def late_claims(
    task: Task, trigger: Trigger, first: datetime, cutoff: datetime
) -> tuple[list[ClaimFire], datetime]:
    """The claims for the late fires from ``first`` (a fire before ``cutoff``) to the
    latest one before ``cutoff``, per ``task.catch_up``; and that latest fire, from which
    the normal grid resumes.

    The ``missed`` claim (if any fire goes unrun) comes first, then the replays
    (cause ``catch_up``), oldest first.
    """
    last, count, exact = _late_span(trigger, first, cutoff)
    policy = task.catch_up
    replay: list[datetime] = []
    missed_from: datetime | None = first
    missed_until = last
    n_missed = count
    if policy is CatchUp.ALL:
        replay.append(first)
        while len(replay) < min(count, CATCH_UP_CAP):
            nxt = trigger.next_fire(replay[-1])
            assert nxt is not None and nxt <= last
            replay.append(nxt)
        n_missed = count - len(replay)
        missed_from = trigger.next_fire(replay[-1]) if n_missed else None
        if n_missed:
            _log.warning(
                "task %r missed more than %d fires; replaying %d, recording the rest missed",
                task.name,
                CATCH_UP_CAP,
                CATCH_UP_CAP,
            )
    elif policy is CatchUp.ONCE:
        replay.append(last)
        n_missed = count - 1
        if n_missed:
            missed_until = _previous_fire(trigger, first, last)
        else:
            missed_from = None
    claims: list[ClaimFire] = []
    if missed_from is not None:
        claims.append(
            ClaimFire(
                task.name,
                missed_from,
                RunCause.SCHEDULE,
                n_missed,
                missed_until,
                missed_more=not exact,
            )
        )
    claims.extend(ClaimFire(task.name, f, RunCause.CATCH_UP) for f in replay)
    return claims, last


def _late_span(trigger: Trigger, first: datetime, cutoff: datetime) -> tuple[datetime, int, bool]:
    """The fires from ``first`` (a fire, before ``cutoff``) to the latest before ``cutoff``:
    that latest fire, how many they are, and whether that count is exact.

    ``Every``: grid arithmetic, exact, O(1). Any other trigger: the latest by bisection
    (:func:`_previous_fire`), the count one fire at a time up to ``_COUNT_LIMIT`` (then a
    lower bound). Either way the cost does not grow with the downtime.
    """
    if isinstance(trigger, Every):  # fires from ``first`` on are ``first + k * period``
        period = trigger.period
        steps = (cutoff - _TICK - first) // period
        return first + steps * period, steps + 1, True
    last = _previous_fire(trigger, first, cutoff)
    count, fire = 1, first
    while fire < last and count < _COUNT_LIMIT:
        nxt = trigger.next_fire(fire)
        assert nxt is not None and nxt <= last
        fire, count = nxt, count + 1
    return last, count, fire == last


def _previous_fire(trigger: Trigger, first: datetime, end: datetime) -> datetime:
    """The latest fire before ``end``, knowing ``first`` is a fire before ``end``.

    Bisection on ``next_fire``, which is monotonic: about log2 of the span in microseconds
    calls (45 for a year), whatever the number of fires in it.
    """
    lo_next = trigger.next_fire(first)
    if lo_next is None or lo_next >= end:
        return first
    lo, hi = first, end - _TICK  # next_fire(lo) < end <= next_fire(hi)
    while hi - lo > _TICK:
        mid = lo + (hi - lo) // 2
        nxt = trigger.next_fire(mid)
        if nxt is not None and nxt < end:
            lo, lo_next = mid, nxt
        else:
            hi = mid
    return lo_next
