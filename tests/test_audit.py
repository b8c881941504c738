"""The audit trail of manual actions, and ``Scheduler.stats``, on the real runtime.

Tests wait on run handles and anyio events under timeouts, never on sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import pytest

from xtasks import (
    AuditRecord,
    ErrorInfo,
    Every,
    RunRecord,
    RunStatus,
    Scheduler,
    SchedulerStateError,
    ShortIntervalWarning,
    StoreError,
    Task,
    TaskNotFoundError,
    TaskStateError,
)
from xtasks._decisions import StartAttempt
from xtasks._planner import Planner
from xtasks.events import RunChanged
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FakeClock

if TYPE_CHECKING:
    from pathlib import Path

    from xtasks.abc import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ACTOR = "manager-token@127.0.0.1"
#: Seconds any wait in these tests may take before it counts as a hang.
PATIENCE = 10


async def noop() -> None:
    pass


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'audit.db'}"


def build(store: str | Store = "memory://", clock: FakeClock | None = None) -> Scheduler:
    scheduler = Scheduler(store, plugins=False, clock=clock or FakeClock(T0))
    scheduler.add(Task("job", noop))
    scheduler.add(Task("other", noop))
    return scheduler


def summary(records: list[AuditRecord]) -> list[tuple[str, str, str, str]]:
    return [(r.actor, r.action, r.task, r.outcome) for r in records]


# --- the audit trail ---------------------------------------------------------------------


async def test_each_manual_action_is_audited_with_its_outcome(store_url: str) -> None:
    clock = FakeClock(T0)
    scheduler = build(store_url, clock)
    async with scheduler:
        handle = await scheduler.trigger("job", by=ACTOR)
        await scheduler.pause("job", by="ops")
        with pytest.raises(TaskStateError) as refused:
            await scheduler.trigger("job", by="ops")
        await clock.advance(1)
        await scheduler.resume("job", by="ops")
        await scheduler.cancel("other", by="ünïcode ✓")
        with pytest.raises(TaskNotFoundError) as unknown:
            await scheduler.pause("nope", by="ops")
        with pytest.raises(TaskNotFoundError):
            await scheduler.trigger("nope", by="ops")
        assert (await handle.wait()).status is RunStatus.SUCCEEDED

        trail = await scheduler.audit()
        assert summary(trail) == [  # newest first; same `at`: later actions first
            ("ops", "run", "nope", "refused"),
            ("ops", "pause", "nope", "refused"),
            ("ünïcode ✓", "cancel", "other", "ok"),
            ("ops", "resume", "job", "ok"),
            ("ops", "run", "job", "refused"),
            ("ops", "pause", "job", "ok"),
            (ACTOR, "run", "job", "ok"),
        ]
        by_action = {(r.action, r.task): r for r in trail}
        assert by_action["run", "job"] == trail[-1]
        assert trail[-1].detail == handle.id
        assert trail[-3].detail == str(refused.value)
        assert by_action["pause", "nope"].detail == str(unknown.value)
        assert by_action["pause", "job"].detail is None
        assert [r.at for r in trail] == [T0 + timedelta(seconds=1)] * 4 + [T0] * 3
        assert all(r.at.utcoffset() == timedelta(0) for r in trail)
        assert len({r.id for r in trail}) == len(trail)
        assert all(len(r.id) == 32 and int(r.id, 16) >= 0 for r in trail)


async def test_the_exception_of_a_refused_action_is_raised_unchanged() -> None:
    scheduler = build()
    async with scheduler:
        await scheduler.pause("job")
        with pytest.raises(TaskStateError) as without:
            await scheduler.trigger("job")
        with pytest.raises(TaskStateError) as audited:
            await scheduler.trigger("job", by="ops")
        assert type(audited.value) is type(without.value)
        assert str(audited.value) == str(without.value)
        assert audited.value.__cause__ is None and audited.value.__context__ is None


async def test_without_by_nothing_is_written(store_url: str) -> None:
    scheduler = build(store_url)
    async with scheduler:
        await (await scheduler.trigger("job")).wait()
        await scheduler.pause("job")
        await scheduler.resume("job")
        await scheduler.cancel("other")
        with pytest.raises(TaskNotFoundError):
            await scheduler.trigger("nope")
        await scheduler.submit(noop)
        assert await scheduler.audit() == []


async def test_a_stopped_scheduler_refuses_runs_unaudited_and_audits_state_changes() -> None:
    """Before start, a manual run is refused (not an action on the task: not audited),
    while pause, resume and cancel work on the stored state and are audited."""
    store = MemoryStore()
    scheduler = build(store)
    with pytest.raises(SchedulerStateError):
        await scheduler.trigger("job", by="ops")
    assert await scheduler.audit() == []
    await scheduler.pause("job", by="ops")
    await scheduler.resume("job", by="ops")
    await scheduler.cancel("job", by="ops")
    with pytest.raises(TaskNotFoundError):
        await scheduler.pause("nope", by="ops")
    expected = [
        ("ops", "pause", "nope", "refused"),
        ("ops", "cancel", "job", "ok"),
        ("ops", "resume", "job", "ok"),
        ("ops", "pause", "job", "ok"),
    ]
    assert summary(await scheduler.audit()) == expected
    async with scheduler:
        assert summary(await scheduler.audit()) == expected


async def test_audit_filters_by_task_and_pages(store_url: str) -> None:
    clock = FakeClock(T0)
    scheduler = build(store_url, clock)
    async with scheduler:
        for i in range(7):
            await scheduler.pause("job", by=f"ops-{i}")
            await scheduler.resume("other", by=f"ops-{i}")
            await clock.advance(1)
        jobs = await scheduler.audit(task="job")
        assert [r.actor for r in jobs] == [f"ops-{i}" for i in reversed(range(7))]
        assert {r.task for r in jobs} == {"job"}
        assert await scheduler.audit(3, offset=2, task="job") == jobs[2:5]
        assert await scheduler.audit(task="job", offset=7) == []
        assert await scheduler.audit(0, task="job") == []
        everything = await scheduler.audit(100)
        assert len(everything) == 14
        assert [r.at for r in everything] == sorted((r.at for r in everything), reverse=True)
        pages = [await scheduler.audit(4, offset=o) for o in range(0, 14, 4)]
        assert [r for page in pages for r in page] == everything
        assert await scheduler.audit(task="nope") == []


async def test_the_audit_trail_survives_a_restart_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    first = build(url)
    async with first:
        handle = await first.trigger("job", by=ACTOR)
        await handle.wait()
        await first.cancel("other", by="ops")
        before = await first.audit()
    second = build(url)  # a new process would build the same scheduler
    async with second:
        after = await second.audit()
        assert after == before
        assert summary(after) == [("ops", "cancel", "other", "ok"), (ACTOR, "run", "job", "ok")]
        assert after[1].detail == handle.id
        with pytest.raises(TaskStateError):
            await second.trigger("other", by="ops")
        assert summary(await second.audit(1)) == [("ops", "run", "other", "refused")]


class _AuditFails(MemoryStore):  # type: ignore[misc]  # MemoryStore is final: a test double
    async def add_audit(self, record: AuditRecord) -> None:
        raise StoreError("disk full")


async def test_an_audit_write_failure_is_raised_but_the_action_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = build(_AuditFails())
    finished: dict[str, RunRecord] = {}
    done = anyio.Event()

    def watch(event: object) -> None:
        if isinstance(event, RunChanged) and event.record.status.is_final:
            finished[event.record.id] = event.record
            done.set()

    scheduler.subscribe(watch)
    async with scheduler:
        with pytest.raises(StoreError, match=r"run \w+ of task 'job' was done") as info:
            await scheduler.trigger("job", by="ops")
        assert isinstance(info.value.__cause__, StoreError)
        run_id = str(info.value).split()[1]
        with anyio.fail_after(PATIENCE):
            await done.wait()
        assert list(finished) == [run_id]  # the run went ahead
        assert finished[run_id].status is RunStatus.SUCCEEDED

        with pytest.raises(StoreError, match="pause 'job' was done"):
            await scheduler.pause("job", by="ops")
        assert (await scheduler.describe("job")).state.value == "paused"

        # A refusal wins over the store failure: the caller sees why it was refused.
        with pytest.raises(TaskStateError):
            await scheduler.trigger("job", by="ops")
    assert "could not be written" in caplog.text


# --- stats -------------------------------------------------------------------------------


async def test_stats_count_queued_and_running_runs() -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def block() -> None:
        started.set()
        await release.wait()

    scheduler = Scheduler(plugins=False, clock=FakeClock(T0), max_concurrency=1)
    scheduler.add(Task("block", block))
    scheduler.add(Task("job", noop))
    assert busy(scheduler) == (0, 0)
    async with scheduler:
        assert busy(scheduler) == (0, 0)
        blocked = await scheduler.trigger("block")
        with anyio.fail_after(PATIENCE):
            await started.wait()
        assert busy(scheduler) == (0, 1)
        waiting = [await scheduler.trigger("job"), await scheduler.trigger("job", by="ops")]
        assert scheduler.stats().queued == 1  # overlap="skip": the second is skipped
        submitted = await scheduler.submit(noop)
        assert busy(scheduler) == (2, 1)
        await scheduler.cancel("job")
        assert busy(scheduler) == (1, 1)
        release.set()
        with anyio.fail_after(PATIENCE):
            assert (await blocked.wait()).status is RunStatus.SUCCEEDED
            assert (await submitted.wait()).status is RunStatus.SUCCEEDED
            for handle in waiting:
                assert (await handle.wait()).status in (RunStatus.CANCELLED, RunStatus.SKIPPED)
        assert busy(scheduler) == (0, 0)
    assert busy(scheduler) == (0, 0)


def busy(scheduler: Scheduler) -> tuple[int, int]:
    """Queued and running runs, as ``stats()`` says."""
    stats = scheduler.stats()
    return stats.queued, stats.running


class _LateClock:
    """A FakeClock whose timer wakes up ``late`` seconds after each deadline."""

    def __init__(self, inner: FakeClock, late: float) -> None:
        self.inner = inner
        self.late = timedelta(seconds=late)
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self.inner.now() + self.offset

    async def sleep_until(self, deadline: datetime | None) -> None:
        target = None if deadline is None else deadline - self.offset
        await self.inner.sleep_until(target)
        self.offset = self.late


async def test_timer_lag_measures_how_late_the_timer_handled_a_fire() -> None:
    fake = FakeClock(T0)
    clock = _LateClock(fake, 0.25)
    fired = anyio.Event()

    async def tick() -> None:
        fired.set()

    scheduler = Scheduler(plugins=False, clock=clock)
    scheduler.add(Task("tick", tick, trigger=Every(seconds=10)))
    async with scheduler:
        assert scheduler.stats().timer_lag == 0.0  # no fire yet
        await fake.advance(10)
        with anyio.fail_after(PATIENCE):
            await fired.wait()
        assert scheduler.stats().timer_lag == pytest.approx(0.25)


async def test_timer_lag_goes_back_to_zero_when_a_fire_is_handled_on_time() -> None:
    fake = FakeClock(T0)
    clock = _LateClock(fake, 0.25)
    fires: list[anyio.Event] = [anyio.Event(), anyio.Event()]

    async def tick() -> None:
        next(f for f in fires if not f.is_set()).set()

    scheduler = Scheduler(plugins=False, clock=clock)
    scheduler.add(Task("tick", tick, trigger=Every(seconds=10)))
    async with scheduler:
        await fake.advance(10)
        with anyio.fail_after(PATIENCE):
            await fires[0].wait()
        assert scheduler.stats().timer_lag == pytest.approx(0.25)
        clock.late = timedelta(0)  # from now on the timer wakes right at its deadline
        await fake.advance(10)
        with anyio.fail_after(PATIENCE):
            await fires[1].wait()
        assert scheduler.stats().timer_lag == 0.0


async def test_timer_lag_is_small_and_not_negative_on_the_system_clock() -> None:
    fired = anyio.Event()

    async def tick() -> None:
        fired.set()

    with pytest.warns(ShortIntervalWarning):
        every = Every(seconds=0.05)
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("tick", tick, trigger=every, misfire_grace=60))
    async with scheduler:
        with anyio.fail_after(PATIENCE):
            await fired.wait()
        lag = scheduler.stats().timer_lag
        assert 0.0 <= lag < PATIENCE


def test_ready_count_is_kept_in_step_with_the_ready_heaps() -> None:
    """The O(1) counter behind ``stats().queued`` equals a count of the live heap entries."""
    planner = Planner(max_concurrency=2, thread_slots=1, process_slots=1)
    for name in ("a", "b", "c"):
        planner.add_task(Task(name, noop, overlap="allow"), T0)
    planner.add_task(Task("s", lambda: None, overlap="allow"), T0)  # sync: one thread slot
    planner.start(T0)

    def check() -> None:
        live = sum(
            1
            for heap in planner._life.ready._heaps.values()
            for item in heap
            if item[4].token == item[3]
        )
        assert planner.ready_count == live

    def started() -> list[str]:
        return [d.run_id for d in planner.drain(T0) if isinstance(d, StartAttempt)]

    runs = [planner.request(name, T0) for name in ("a", "b", "s", "s", "c", "a")]
    check()
    running = started()  # as many as the slots allow
    check()
    assert running
    planner.cancel("b", T0)  # a queued run of b: its heap entry goes stale
    check()
    planner.attempt_failed(running.pop(0), T0, _error())  # no retries: final
    check()
    running += started()
    while running:
        check()
        planner.attempt_succeeded(running.pop(0), T0, None)
        check()
        running += started()
    planner.shutdown(T0)
    check()
    assert planner.ready_count == 0
    assert all(run.status.is_final for run in runs)


def _error() -> ErrorInfo:
    return ErrorInfo("ValueError", "boom")
