"""What the planner's surviving mutants showed untested: the count of runs waiting for a slot
(``stats().queued``) as runs queue, start and end, and a run's own keyword arguments.

Through a real :class:`~xtasks.Scheduler` on a memory store: what a user sees.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio
import pytest

from xtasks import ConfigError, Every, RunStatus, Scheduler, Task, TaskState
from xtasks.events import TaskStateChanged
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FakeClock

pytestmark = pytest.mark.anyio

PATIENCE = 10


async def test_queued_counts_exactly_the_runs_waiting_for_a_slot() -> None:
    """With one slot, n triggered runs of a blocking task: one runs, n-1 are queued; each
    end lets exactly one more start, and at the end nothing is queued or running."""
    release = anyio.Event()
    started = 0

    async def block() -> None:
        nonlocal started
        started += 1
        await release.wait()

    scheduler = Scheduler(MemoryStore(), plugins=False, max_concurrency=1)
    scheduler.add(Task("job", block, overlap="allow"))
    async with scheduler:
        handles = [await scheduler.trigger("job") for _ in range(4)]
        with anyio.fail_after(PATIENCE):
            while started < 1:  # noqa: ASYNC110 - stats() has no event to wait on
                await anyio.sleep(0.01)
        stats = scheduler.stats()
        assert (stats.running, stats.queued) == (1, 3)
        release.set()
        with anyio.fail_after(PATIENCE):
            records = [await h.wait() for h in handles]
        assert {r.status for r in records} == {RunStatus.SUCCEEDED}
        assert started == 4
        stats = scheduler.stats()
        assert (stats.running, stats.queued) == (0, 0)


async def test_the_runs_of_a_cancelled_task_leave_the_queue_count() -> None:
    """Runs of a task cancelled while they wait for a slot are no longer counted queued."""
    release = anyio.Event()
    started = anyio.Event()

    async def block() -> None:
        started.set()
        await release.wait()

    async def quick() -> None:
        pass

    scheduler = Scheduler(MemoryStore(), plugins=False, max_concurrency=1)
    scheduler.add(Task("slow", block))
    scheduler.add(Task("waiting", quick, overlap="allow"))
    async with scheduler:
        first = await scheduler.trigger("slow")
        with anyio.fail_after(PATIENCE):
            await started.wait()
        waiting = [await scheduler.trigger("waiting") for _ in range(2)]
        assert scheduler.stats().queued == 2
        await scheduler.cancel("waiting")
        with anyio.fail_after(PATIENCE):
            for handle in waiting:
                assert (await handle.wait()).status is RunStatus.CANCELLED
        assert scheduler.stats().queued == 0
        release.set()
        with anyio.fail_after(PATIENCE):
            assert (await first.wait()).status is RunStatus.SUCCEEDED
        assert scheduler.stats().queued == 0


async def test_run_with_keyword_arguments_replaces_the_tasks_own() -> None:
    seen: list[dict[str, int]] = []

    async def job(a: int = 0, b: int = 0) -> None:
        seen.append({"a": a, "b": b})

    scheduler = Scheduler(MemoryStore(), plugins=False)
    scheduler.add(Task("job", job, kwargs={"a": 1, "b": 2}))
    async with scheduler:
        with anyio.fail_after(PATIENCE):
            await scheduler.run("job", a=5)
            await scheduler.run("job")
    assert seen == [{"a": 5, "b": 0}, {"a": 1, "b": 2}]


async def test_remove_returns_the_task_it_removed() -> None:
    async def job() -> None:
        pass

    scheduler = Scheduler(MemoryStore(), plugins=False)
    task = scheduler.add(Task("job", job))
    async with scheduler:
        assert scheduler.remove("job") is task
        assert "job" not in scheduler.tasks


def test_a_task_others_depend_on_cannot_be_removed_until_they_are() -> None:
    """Removing a task that others depend on is refused, naming them and what to do; the
    task stays. Once its dependents are removed, it can be, and it can be added again."""

    async def job() -> None:
        pass

    scheduler = Scheduler(MemoryStore(), plugins=False)
    scheduler.add(Task("extract", job))
    scheduler.add(Task("load", job, depends_on=["extract"]))
    scheduler.add(Task("report", job, depends_on=["extract"]))
    with pytest.raises(ConfigError) as refused:
        scheduler.remove("extract")
    assert str(refused.value) == (
        "task 'extract': cannot remove it: load, report depend on it; remove those tasks first"
    )
    assert set(scheduler.tasks) == {"extract", "load", "report"}
    scheduler.remove("load")
    with pytest.raises(ConfigError, match="report depend on it"):
        scheduler.remove("extract")
    scheduler.remove("report")
    removed = scheduler.remove("extract")  # nothing depends on it any more
    assert removed.name == "extract" and not scheduler.tasks
    scheduler.add(Task("extract", job))
    scheduler.add(Task("load", job, depends_on=["extract"]))
    assert scheduler.check() == []


async def test_cancelling_a_task_is_published_and_stored() -> None:
    """A subscriber hears a task's cancellation, and a later start reads it from the store."""

    async def job() -> None:
        pass

    store = MemoryStore()
    heard = anyio.Event()
    states: list[TaskState] = []

    def on_change(event: object) -> None:
        assert isinstance(event, TaskStateChanged)
        states.append(event.state)
        heard.set()

    scheduler = Scheduler(store, plugins=False)
    scheduler.add(Task("job", job))
    scheduler.subscribe(on_change, types=TaskStateChanged)
    async with scheduler:
        await scheduler.cancel("job")
        with anyio.fail_after(PATIENCE):
            await heard.wait()
    assert states == [TaskState.CANCELLED]
    again = Scheduler(store, plugins=False)
    again.add(Task("job", job))
    async with again:
        assert again.states()["job"] is TaskState.CANCELLED


async def test_a_retry_is_due_on_time_while_other_tasks_have_timers() -> None:
    """The scheduler wakes for whichever comes first, a retry or a periodic fire: a retry
    due in 5 s runs at 5 s although the next periodic fire is a minute away."""
    clock = FakeClock()
    attempts: list[datetime] = []

    async def flaky() -> None:
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    async def tick() -> None:
        pass

    scheduler = Scheduler(MemoryStore(), plugins=False, clock=clock)
    scheduler.add(Task("tick", tick, trigger=Every(minutes=1)))
    scheduler.add(Task("flaky", flaky, max_retries=1, retry_delay=5))
    async with scheduler:
        start = clock.now()
        handle = await scheduler.trigger("flaky")
        for _ in range(10):
            await clock.advance(1)
        with anyio.fail_after(3):
            record = await handle.wait()
    assert record.status is RunStatus.SUCCEEDED
    assert attempts == [start, start + timedelta(seconds=5)]
