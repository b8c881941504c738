"""Jitter happens: each fire and each retry of a task with ``jitter`` starts at its own
random offset within the bound, drawn from the planner's source (seeded here), so a
fleet of tasks due together does not hit a shared resource at one instant.

The properties in ``test_planner.py`` check that offsets stay within their bounds; a
planner that dropped jitter altogether would pass them. These check the spread."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from xtasks import ErrorInfo, Every, Task
from xtasks._decisions import ClaimFire, StartAttempt
from xtasks._planner import Planner

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
JITTER = 30.0
PERIOD = 60.0


def noop() -> None:
    pass


@dataclass
class Started:
    """One attempt as it started: when, its run's fire time, which attempt."""

    at: datetime
    scheduled_at: datetime
    number: int


def _drive(planner: Planner, until: datetime, *, failures: int = 0) -> list[Started]:
    """Step virtual time from wake-up to wake-up until ``until``: claim every fire, end
    each attempt as it starts (the first ``failures`` attempts of each run fail)."""
    started: list[Started] = []
    now = T0
    while (wake := planner.next_wakeup()) is not None and wake <= until:
        now = max(now, wake)
        planner.advance(now)
        while decisions := planner.drain(now):
            for decision in decisions:
                if isinstance(decision, ClaimFire):
                    planner.fire_claimed(decision, now)
                elif isinstance(decision, StartAttempt):
                    record = planner.live_record(decision.run_id)
                    assert record is not None
                    started.append(Started(now, record.scheduled_at, decision.number))
                    if decision.number <= failures:
                        error = ErrorInfo("RuntimeError", "boom", "")
                        planner.attempt_failed(decision.run_id, now, error)
                    else:
                        planner.attempt_succeeded(decision.run_id, now, None)
    return started


def _planner(seed: int, **options: Any) -> Planner:
    planner = Planner(rng=random.Random(seed))
    task = Task("spread", noop, trigger=Every(seconds=PERIOD, start=T0), jitter=JITTER, **options)
    planner.add_task(task, T0)
    planner.start(T0)
    return planner


def test_each_fire_starts_at_its_own_offset_spread_over_the_jitter() -> None:
    planner = _planner(seed=1)
    starts = _drive(planner, T0 + timedelta(seconds=PERIOD * 200))
    offsets = [(s.at - s.scheduled_at).total_seconds() for s in starts]
    assert len(offsets) >= 190
    assert all(0 <= offset <= JITTER for offset in offsets)
    # Spread over the whole bound, not one fixed delay: a uniform draw has a mean near
    # half the bound and a wide spread; none of it happens without jitter.
    assert len({round(offset, 3) for offset in offsets}) > 0.9 * len(offsets)
    # Near both ends: 190 uniform draws leave gaps of about JITTER / 190 at each end.
    assert min(offsets) < JITTER * 0.02 and max(offsets) > JITTER * 0.98
    assert JITTER * 0.35 < statistics.mean(offsets) < JITTER * 0.65
    assert statistics.pstdev(offsets) > JITTER * 0.2


def test_the_same_seed_gives_the_same_offsets_and_another_seed_others() -> None:
    until = T0 + timedelta(seconds=PERIOD * 20)
    first = [s.at for s in _drive(_planner(seed=7), until)]
    again = [s.at for s in _drive(_planner(seed=7), until)]
    other = [s.at for s in _drive(_planner(seed=8), until)]
    assert first == again
    assert first != other


def test_each_retry_waits_its_delay_plus_its_own_jitter() -> None:
    planner = _planner(seed=3, max_retries=1, retry_delay=5)
    starts = _drive(planner, T0 + timedelta(seconds=PERIOD * 200), failures=1)
    by_fire: dict[datetime, list[Started]] = {}
    for start in starts:
        by_fire.setdefault(start.scheduled_at, []).append(start)
    gaps = [
        (pair[1].at - pair[0].at).total_seconds() - 5 for pair in by_fire.values() if len(pair) == 2
    ]
    assert len(gaps) >= 150
    assert all(0 <= gap <= JITTER for gap in gaps)
    assert len({round(gap, 3) for gap in gaps}) > 0.9 * len(gaps)
    assert JITTER * 0.35 < statistics.mean(gaps) < JITTER * 0.65
