"""Catch-up arithmetic: what to do with the fires of one task that are due at once.

Fires pile up behind downtime (a restart), a blocked event loop or a stalled store. When
the timer of a task is handled at ``now``, every fire from the timer's own up to ``now``
is due together. One fire alone, late by no more than ``misfire_grace``, is a normal
scheduled run. Otherwise the task's ``catch_up`` policy decides over the whole set,
whatever the lateness of each: ``once`` runs the latest, ``all`` each in order (the oldest
:data:`CATCH_UP_CAP`), ``skip`` the latest only if it is within the grace; one ``missed``
record counts the others and names their range. The runs the policy picks have cause
``catch_up``.

The latest due fire and the count come from grid arithmetic for ``Every`` (exact, O(1));
for another trigger the latest comes from a bisection over ``next_fire`` and the count is
exact up to ``_COUNT_LIMIT``, a lower bound ("N+") past it: the cost never grows with the
number of fires missed.
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

__all__ = ["CATCH_UP_CAP", "due_claims"]

#: Most fires one catch-up replays with ``catch_up="all"``; the rest are recorded missed.
CATCH_UP_CAP: Final = 100
#: Due fires counted one by one, at most, for a trigger without grid arithmetic (``Cron``
#: or a custom one); past that, a ``missed`` record's count is a lower bound ("N+"). Its
#: range stays exact: the latest due fire is found by bisection, whatever the downtime.
_COUNT_LIMIT: Final = CATCH_UP_CAP + 1
_TICK: Final = timedelta(microseconds=1)
_log = logging.getLogger("xtasks")


def due_claims(
    task: Task, trigger: Trigger, first: datetime, now: datetime
) -> tuple[list[ClaimFire], datetime | None]:
    """The claims for the fires of ``task`` due at ``now``, from ``first`` (its timer's
    fire, at or before ``now``) to the latest at or before ``now``; and the fire after
    them (``None``: none), where the timer goes next.

    ``first`` alone and within ``misfire_grace``: one scheduled claim. Otherwise the
    ``catch_up`` policy decides: the ``missed`` claim (if any fire goes unrun) comes first,
    then the replays (cause ``catch_up``), oldest first.
    """
    cutoff = now - timedelta(seconds=task.misfire_grace)  # a fire before it is too late
    second = trigger.next_fire(first)
    if first >= cutoff and (second is None or second > now):  # the common case: cheap
        return [ClaimFire(task.name, first, RunCause.SCHEDULE)], second
    last, count, exact = _late_span(trigger, first, now + _TICK)
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
    elif policy is CatchUp.ONCE or last >= cutoff:  # skip: the latest runs if within grace
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
    return claims, (second if last == first else trigger.next_fire(last))


def _late_span(trigger: Trigger, first: datetime, end: datetime) -> tuple[datetime, int, bool]:
    """The fires from ``first`` (a fire, before ``end``) to the latest before ``end``:
    that latest fire, how many they are, and whether that count is exact.

    ``Every``: grid arithmetic, exact, O(1). Any other trigger: the latest by bisection
    (:func:`_previous_fire`), the count one fire at a time up to ``_COUNT_LIMIT`` (then a
    lower bound). Either way the cost does not grow with the downtime.
    """
    if isinstance(trigger, Every):  # fires from ``first`` on are ``first + k * period``
        period = trigger.period
        steps = (end - _TICK - first) // period
        return first + steps * period, steps + 1, True
    last = _previous_fire(trigger, first, end)
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
