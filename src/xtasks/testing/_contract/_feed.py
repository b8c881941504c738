"""The fleet's change feed and run totals: every replica's writes, numbered and counted."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio

from ..._feed import DURATION_BUCKETS, RunChanges, RunTotals
from ..._runs import RunStatus
from ._support import (
    StoreFactory,
    _at,
    _check,
    _prefix,
    _replicas,
    _require,
    _require_record,
    _run,
)

if TYPE_CHECKING:
    from ...abc import Store


async def _changes(store: Store, after: int, prefix: str, limit: int = 1000) -> RunChanges:
    """``run_changes(after, limit)``, checked for order, with this check's runs only."""
    answer = await store.run_changes(after, limit)
    _require(
        isinstance(answer, RunChanges),
        f"run_changes returned {type(answer).__name__}, not RunChanges",
    )
    numbers = [number for number, _ in answer.changes]
    _require(
        numbers == sorted(set(numbers)) and all(n > after for n in numbers),
        f"run_changes({after}) numbers {numbers}: must be strictly increasing, above {after}",
    )
    _require(len(numbers) <= max(limit, 0), f"run_changes(limit={limit}) returned {len(numbers)}")
    _require(
        not numbers or numbers[-1] <= answer.latest,
        f"run_changes: latest {answer.latest} is below a number it returned ({numbers[-1:]})",
    )
    mine = tuple((n, r) for n, r in answer.changes if r.id.startswith(prefix))
    return RunChanges(answer.latest, answer.pruned, mine)


@_check
async def check_run_changes(make_store: StoreFactory) -> None:
    """Every accepted write of a run is numbered store-wide; readers resume from a number.

    Verifies that through another store object ``run_changes(after)`` returns each run
    written after ``after`` once, with its current record, oldest change first; that a
    later write of a run moves it after the others with a higher number; that resuming
    after a returned number gives exactly what came after it; that ``limit`` keeps the
    oldest changes; that ``latest`` follows the writes and nothing is returned after it;
    and that two store objects writing at the same time never give one number twice.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    async with _replicas(make_store, 2) as (a, b):
        start = (await _changes(b, 0, prefix, limit=0)).latest
        one = _run(f"{prefix}-1", task, RunStatus.QUEUED)
        two = _run(f"{prefix}-2", task, RunStatus.QUEUED)
        three = _run(f"{prefix}-3", task, RunStatus.WAITING)
        _require(await a.save_run(one), "save_run of a new record returned False")
        seen = await _changes(b, start, prefix)
        _require(
            [r.id for _, r in seen.changes] == [one.id],
            f"run_changes({start}) after one write: {_ids(seen)}; expected [{one.id!r}]",
        )
        _require_record(f"run_changes({start})", one, seen.changes[0][1])
        first = seen.changes[0][0]
        _require(seen.latest >= first, f"latest {seen.latest} below the write's {first}")
        _require(await b.save_runs([two, three]) == [], "save_runs refused new records")
        running = one.evolve(status=RunStatus.RUNNING, started_at=_at(1), attempts=1)
        await a.save_run(running)
        seen = await _changes(a, start, prefix)
        _require(
            _ids(seen) == [two.id, three.id, one.id],
            f"run_changes({start}): {_ids(seen)}; expected {[two.id, three.id, one.id]} "
            "(each run once, by its latest change)",
        )
        for (_, got), want in zip(seen.changes, (two, three, running), strict=True):
            _require_record(f"run_changes({start})", want, got)
        numbers = [n for n, _ in seen.changes]
        _require(numbers[0] > first, f"a later write got {numbers[0]}, not above {first}")
        resumed = await _changes(b, numbers[0], prefix)
        _require(
            _ids(resumed) == [three.id, one.id] and [n for n, _ in resumed.changes] == numbers[1:],
            f"run_changes({numbers[0]}) (resuming after a returned number): {_ids(resumed)}; "
            f"expected {[three.id, one.id]} numbered {numbers[1:]}",
        )
        page = await b.run_changes(start, 1)
        _require(
            len(page.changes) == 1 and page.changes[0][0] == numbers[0],
            f"run_changes({start}, limit=1) returned numbers {[n for n, _ in page.changes]}; "
            f"expected the oldest, [{numbers[0]}]",
        )
        latest = (await _changes(a, 0, prefix, limit=0)).latest
        _require(latest >= numbers[-1], f"latest {latest} is below a change made, {numbers[-1]}")
        after = await b.run_changes(latest)
        _require(after.changes == (), f"run_changes(latest) returned {len(after.changes)} runs")

        # Two replicas writing at once: every run appears, with numbers never shared.
        before = latest
        rounds = 10

        async def write(store: Store, name: str) -> None:
            for i in range(rounds):
                batch = [_run(f"{prefix}-{name}{i}-{j}", task, RunStatus.QUEUED) for j in range(3)]
                await store.save_runs(batch)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(write, a, "a")
                tg.start_soon(write, b, "b")
        seen = await _changes(a, before, prefix)
        expected = {f"{prefix}-{n}{i}-{j}" for n in "ab" for i in range(rounds) for j in range(3)}
        _require(
            sorted(_ids(seen)) == sorted(expected),
            f"after concurrent writes, run_changes({before}) returned {len(seen.changes)} "
            f"runs; expected each of the {len(expected)} written, once",
        )
        numbers = [n for n, _ in seen.changes]
        _require(
            len(set(numbers)) == len(numbers),
            "two runs written by two store objects at the same time got the same number",
        )


@_check
async def check_run_totals(make_store: StoreFactory) -> None:
    """The fleet's totals count each run once, at its first final write, by any replica.

    Verifies that a run counts under its task and final status once, whether its final
    record is written again (by the same or another store object) or comes in one batch
    after its live one; that a run that never started counts with no duration; and that
    durations land in the buckets of :data:`RunTotals.BOUNDS` with their sum, as read
    through another store object.
    """
    prefix = _prefix()
    task = f"{prefix}-task"
    async with _replicas(make_store, 2) as (a, b):
        _require(
            [t for t in await b.run_totals() if t.task == task] == [],
            "run_totals counts a task no run of which was written",
        )
        quick = _run(f"{prefix}-quick", task, RunStatus.QUEUED)
        await a.save_run(quick)
        await a.save_run(quick.evolve(status=RunStatus.RUNNING, started_at=_at(0)))
        done = quick.evolve(status=RunStatus.SUCCEEDED, started_at=_at(0), finished_at=_at(0.3))
        await a.save_run(done)
        await b.save_run(done)  # a repeated write (a retry) counts no second time
        await a.save_runs([done])
        slow = _run(f"{prefix}-slow", task, RunStatus.QUEUED)
        slow_done = slow.evolve(status=RunStatus.SUCCEEDED, started_at=_at(0), finished_at=_at(2.0))
        await b.save_runs([slow, slow_done])
        skipped = _run(f"{prefix}-skipped", task, RunStatus.SKIPPED, reason="overlap")
        await a.save_runs([skipped])
        totals = {t.status: t for t in await b.run_totals() if t.task == task}
        _require(
            set(totals) == {RunStatus.SUCCEEDED, RunStatus.SKIPPED},
            f"run_totals statuses for {task!r}: {sorted(totals)}; expected succeeded, skipped",
        )
        for status, runs, timed, seconds, durations in (
            (RunStatus.SUCCEEDED, 2, 2, 2.3, (0.3, 2.0)),
            (RunStatus.SKIPPED, 1, 0, 0.0, ()),
        ):
            got = totals[status]
            _require(isinstance(got, RunTotals), f"run_totals item {got!r} is not RunTotals")
            buckets = [0] * (len(DURATION_BUCKETS) + 1)
            for duration in durations:
                buckets[RunTotals.bucket_of(duration)] += 1
            _require(
                (got.runs, got.timed, tuple(got.buckets)) == (runs, timed, tuple(buckets))
                and math.isclose(got.seconds, seconds, abs_tol=1e-6),
                f"run_totals for ({task!r}, {status}): runs={got.runs} timed={got.timed} "
                f"seconds={got.seconds} buckets={got.buckets}; expected runs={runs} "
                f"timed={timed} seconds={seconds} buckets={tuple(buckets)}",
            )


def _ids(changes: RunChanges) -> list[str]:
    return [record.id for _, record in changes.changes]
