"""A real restart on SQLite: the fires due while the scheduler was down go by ``catch_up``.

An every-second task, a scheduler stopped for about 3 s and started again on the same
file: the late fires (all of them within ``misfire_grace``) are due at the same moment, so
``catch_up="once"`` runs one, the latest, and records the others ``missed`` in one record
with their count; no burst of late runs, and no ``skipped (overlap)`` since nothing ran.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import pytest

from xtasks import Every, RunCause, RunStatus, Scheduler, ShortIntervalWarning, Task
from xtasks.events import RunChanged

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from xtasks import RunRecord

pytestmark = pytest.mark.anyio

DOWNTIME = 3.2  # seconds: three fires or more pass while no scheduler runs
SECOND = timedelta(seconds=1)


async def tick() -> None:
    pass


def build(url: str, replica: str) -> Scheduler:
    """The same application, as each process start builds it."""
    scheduler = Scheduler(url, plugins=False, replica_id=replica)
    with pytest.warns(ShortIntervalWarning):
        trigger = Every(seconds=1)
    scheduler.add(Task("tick", tick, trigger=trigger))  # catch_up="once", misfire_grace=60
    return scheduler


async def history_when(
    scheduler: Scheduler, done: Callable[[list[RunRecord]], bool]
) -> list[RunRecord]:
    """The task's history once ``done`` holds for it (woken by run events, not polling)."""
    with anyio.fail_after(15):
        async with scheduler.events(types=RunChanged) as events:
            while True:
                runs = await scheduler.history("tick", limit=1000)
                if done(runs):
                    return runs
                await events.receive()


def settled_since(restarted: datetime) -> Callable[[list[RunRecord]], bool]:
    """The second process ran a fire on time, a second after its start, and every run it
    made for the late fires is final."""

    def settled(runs: list[RunRecord]) -> bool:
        mine = [r for r in runs if r.replica == "second"]
        on_time = [r for r in mine if r.scheduled_at > restarted + SECOND and r.status.is_final]
        return bool(on_time) and all(r.status.is_final for r in mine if r not in on_time)

    return settled


async def test_a_short_restart_runs_the_late_fires_once_and_records_the_rest_missed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    first = build(url, "first")
    async with first:
        await history_when(first, lambda runs: any(r.status.is_final for r in runs))
    stopped = datetime.now(UTC)
    await anyio.sleep(DOWNTIME)  # the downtime itself, not a wait for something to happen
    restarted = datetime.now(UTC)
    second = build(url, "second")
    async with second:
        runs = await history_when(second, settled_since(restarted))

    story = sorted(
        (r.scheduled_at.time().isoformat(), r.replica, r.cause.value, r.status.value) for r in runs
    )
    assert not [r for r in runs if r.status is RunStatus.SKIPPED], f"nothing overlapped: {story}"
    last_before = max(r.scheduled_at for r in runs if r.replica == "first")
    assert last_before <= stopped
    catch_ups = [r for r in runs if r.cause is RunCause.CATCH_UP]
    assert len(catch_ups) == 1, f"one run for the late fires: {story}"
    (caught_up,) = catch_ups
    assert caught_up.status is RunStatus.SUCCEEDED and caught_up.replica == "second"
    late = round((caught_up.scheduled_at - last_before) / SECOND)  # every fire in between
    assert late >= 3, (last_before, caught_up.scheduled_at)
    (missed,) = [r for r in runs if r.status is RunStatus.MISSED]
    assert missed.scheduled_at == last_before + SECOND  # the range starts at the first late fire
    assert missed.reason is not None
    found = re.match(r"missed (\d+) fire\(s\) from (\S+) to (\S+) \(catch_up=once\)", missed.reason)
    assert found, missed.reason
    assert int(found[1]) == late - 1  # all but the one that ran, counted in one record
    assert datetime.fromisoformat(found[3]) == caught_up.scheduled_at - SECOND
    # No late fire ran as a scheduled run: the second process's own fires come after.
    scheduled = [
        r.scheduled_at
        for r in runs
        if r.replica == "second" and r.cause is RunCause.SCHEDULE and r is not missed
    ]
    assert scheduled and min(scheduled) == caught_up.scheduled_at + SECOND


async def test_fires_due_while_down_before_a_tasks_first_fire_are_caught_up(
    tmp_path: Path,
) -> None:
    """Registered, stopped before its first fire, started again three fires later: those
    fires were missed like any other (catch_up once: the latest runs, the others are
    recorded missed), not dropped because the task had never fired."""
    from xtasks.testing import FakeClock

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    clock = FakeClock(t0)
    url = f"sqlite:///{tmp_path / 'x.db'}"

    def build_on(replica: str) -> Scheduler:
        scheduler = Scheduler(url, plugins=False, replica_id=replica, clock=clock)
        scheduler.add(Task("tick", tick, trigger=Every(seconds=60)))
        return scheduler

    async with build_on("first"):
        await clock.advance(30)  # stopped before the first fire, at t0 + 60
    await clock.advance(170)  # down until t0 + 200: the fires at 60, 120 and 180 are due
    again = build_on("second")
    async with again:
        runs = await history_when(again, lambda runs: sum(r.status.is_final for r in runs) == 2)
    ran, missed = sorted(runs, key=lambda r: r.status is RunStatus.MISSED)
    assert (ran.status, ran.cause) == (RunStatus.SUCCEEDED, RunCause.CATCH_UP)
    assert ran.scheduled_at == t0 + 3 * timedelta(minutes=1)  # the latest
    assert missed.status is RunStatus.MISSED
    assert missed.reason == (
        "missed 2 fire(s) from 2026-03-01T00:01:00+00:00 to 2026-03-01T00:02:00+00:00 "
        "(catch_up=once)"
    )
