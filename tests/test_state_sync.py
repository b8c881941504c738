"""Pause, resume and cancel made on one replica take effect on the others.

Two schedulers share a store (one SQLite file through two store objects, or one
MemoryStore object); each is a replica of the other. The tests wait on the other
replica's ``TaskStateChanged`` events, with a timeout, never on sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING

import anyio
import pytest

from xtasks import Every, RunStatus, Scheduler, StoreError, Task, TaskState, TaskStateError
from xtasks.abc import TaskRecord
from xtasks.events import TaskStateChanged
from xtasks.stores import open_store
from xtasks.stores.memory import MemoryStore
from xtasks.testing._delegating import DelegatingStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from xtasks.abc import Store

pytestmark = pytest.mark.anyio

#: One poll interval (1 s) and then some: how long a change may take to arrive.
ARRIVES = 5.0


@pytest.fixture(params=["sqlite", "memory"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes the store object of one more replica on a shared backend."""
    if request.param == "memory":
        one = MemoryStore()
        return lambda: one
    return lambda: open_store(f"sqlite:///{tmp_path / 'fleet.db'}")


async def tick() -> None:
    pass


def replica(store: Store, name: str, *tasks: Task) -> Scheduler:
    scheduler = Scheduler(store, plugins=False, replica_id=name)
    for task in tasks:
        scheduler.add(Task(task.name, task.func, trigger=task.trigger, overlap=task.overlap))
    return scheduler


@contextlib.asynccontextmanager
async def state_changes(
    scheduler: Scheduler,
) -> AsyncIterator[anyio.abc.ObjectReceiveStream[TaskStateChanged]]:
    send, receive = anyio.create_memory_object_stream[TaskStateChanged](100)
    unsubscribe = scheduler.subscribe(send.send_nowait, types=TaskStateChanged)
    try:
        yield receive
    finally:
        unsubscribe()
        send.close()
        receive.close()


async def next_state(changes: anyio.abc.ObjectReceiveStream[TaskStateChanged]) -> TaskStateChanged:
    with anyio.fail_after(ARRIVES):
        return await changes.receive()


async def test_a_pause_resume_and_cancel_on_one_replica_reach_the_other(
    shared: Callable[[], Store],
) -> None:
    job = Task("job", tick, trigger=Every(seconds=3600))
    a, b = replica(shared(), "a", job), replica(shared(), "b", job)
    async with a, b, state_changes(b) as seen_by_b, state_changes(a) as seen_by_a:
        await a.pause("job")
        assert await next_state(seen_by_b) == TaskStateChanged("job", TaskState.PAUSED)
        assert b.states() == {"job": TaskState.PAUSED}
        assert (await b.describe("job")).next_fire is None
        assert await next_state(seen_by_a) == TaskStateChanged("job", TaskState.PAUSED)

        await b.resume("job")
        assert await next_state(seen_by_a) == TaskStateChanged("job", TaskState.ACTIVE)
        assert a.states() == {"job": TaskState.ACTIVE}
        assert (await a.describe("job")).next_fire is not None

        await b.cancel("job")
        assert await next_state(seen_by_a) == TaskStateChanged("job", TaskState.CANCELLED)
        assert a.states() == {"job": TaskState.CANCELLED}
        with pytest.raises(Exception, match="cancelled"):
            await a.run("job")


async def test_a_cancel_on_one_replica_stops_the_run_going_on_another(
    shared: Callable[[], Store],
) -> None:
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    a = replica(shared(), "a", Task("long", tick))
    b = replica(shared(), "b", Task("long", forever))
    async with a, b:
        handle = await b.trigger("long")
        with anyio.fail_after(ARRIVES):
            await started.wait()
        await a.cancel("long")
        with anyio.fail_after(ARRIVES):
            record = await handle.wait()
        assert (record.status, record.replica) == (RunStatus.CANCELLED, "b")
        assert (await a.get_run(record.id)) == record


async def test_a_read_or_an_action_right_after_a_change_elsewhere_goes_by_that_change(
    shared: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """b answers from the fleet's state at once, not one poll later: its describe right
    after a's pause says paused, a person's run is refused, and its resume resumes
    (not a no-op on a task it still thought active). The sync's own poll is put off
    for the whole test, so only these reads can bring a's changes to b."""
    import xtasks._state_sync

    monkeypatch.setattr(xtasks._state_sync, "POLL_INTERVAL", 3600.0)
    job = Task("job", tick, trigger=Every(seconds=3600))
    a, b = replica(shared(), "a", job), replica(shared(), "b", job)
    async with a, b:
        await a.pause("job")
        info = await b.describe("job")
        assert (info.state, info.next_fire) == (TaskState.PAUSED, None)
        with pytest.raises(TaskStateError, match="paused"):
            await b.trigger("job", by="tester")
        await b.resume("job")
        assert b.states() == {"job": TaskState.ACTIVE}
        assert (await a.describe("job")).state is TaskState.ACTIVE
        await a.cancel("job")
        assert (await b.describe("job")).state is TaskState.CANCELLED


async def test_reads_arriving_together_share_one_read_of_the_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page listing a hundred tasks, or many clients at once, does not cost a read
    of the changes each: a reader waits for the next read that begins after it asked."""
    import xtasks._state_sync
    from xtasks.testing._delegating import DelegatingStore

    class Counting(DelegatingStore[MemoryStore]):
        def __init__(self) -> None:
            super().__init__(MemoryStore())
            self.polls = 0

        async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
            self.polls += 1
            return await self.inner.task_state_changes(after)

    monkeypatch.setattr(xtasks._state_sync, "POLL_INTERVAL", 3600.0)
    store = Counting()
    scheduler = replica(store, "a", *(Task(f"job{i}", tick) for i in range(20)))
    async with scheduler:
        await scheduler.describe("job0")  # the sync's first poll is behind us
        before = store.polls
        async with anyio.create_task_group() as tg:
            for name in scheduler.tasks:
                tg.start_soon(scheduler.describe, name)
        assert store.polls - before <= 2


async def test_a_replica_saving_its_progress_does_not_undo_a_pause_made_elsewhere(
    shared: Callable[[], Store],
) -> None:
    """b ends a run of a task a paused meanwhile, and saves the task's failure streak:
    the pause stays, in the store too."""
    release = anyio.Event()

    async def slow() -> None:
        await release.wait()
        raise RuntimeError("a failure moves the streak: b saves the task's progress")

    a = replica(shared(), "a", Task("job", tick))
    b = replica(shared(), "b", Task("job", slow))
    async with a, b, state_changes(b) as seen_by_b:
        handle = await b.trigger("job")
        await a.pause("job")
        assert await next_state(seen_by_b) == TaskStateChanged("job", TaskState.PAUSED)
        release.set()
        with anyio.fail_after(ARRIVES):
            assert (await handle.wait()).status is RunStatus.FAILED
    store = shared()
    await store.open()
    try:
        stored = await store.load_task("job")
    finally:
        await store.close()
    assert stored is not None
    assert (stored.state, stored.consecutive_failures) == (TaskState.PAUSED, 1)


async def test_a_replica_defining_a_task_differently_is_reported(
    shared: Callable[[], Store], caplog: pytest.LogCaptureFixture
) -> None:
    """Same name, another trigger: the replica that registers second says so (log and
    stats), naming both definitions; the same definition everywhere is not reported."""
    a = replica(shared(), "a", Task("job", tick, trigger=Every(seconds=45)))
    b = replica(shared(), "b", Task("job", tick, trigger=Every(seconds=30)))
    same = replica(shared(), "c", Task("job", tick, trigger=Every(seconds=30)))
    async with a:
        assert a.stats().mismatched_tasks == ()
        async with b:
            assert b.stats().mismatched_tasks == ("job",)
            async with same:
                assert same.stats().mismatched_tasks == ()
    warnings = [r.getMessage() for r in caplog.records if "defined differently" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "Every(seconds=45)" in warnings[0] and "Every(seconds=30)" in warnings[0]


async def test_a_running_replica_finds_a_definition_another_stored_after_it_started(
    shared: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """a runs with one definition; b starts with another (and reports it). a finds it
    at a later look at the stored definitions, which reads a slice of the tasks at a
    time (one here: two looks go by before it reaches the task); once the store holds
    a's own again (b left, a third replica with a's definition started), a no longer
    reports it."""
    import xtasks._stored

    monkeypatch.setattr(xtasks._stored, "DEFINITIONS_EVERY", 0.05)
    monkeypatch.setattr(xtasks._stored, "DEFINITIONS_PER_LOOK", 1)
    before = [Task(name, tick, trigger=Every(hours=1)) for name in ("first", "second")]
    a = replica(shared(), "a", *before, Task("job", tick, trigger=Every(seconds=45)))
    b = replica(shared(), "b", *before, Task("job", tick, trigger=Every(seconds=30)))
    c = replica(shared(), "c", *before, Task("job", tick, trigger=Every(seconds=45)))
    async with a:
        async with b:
            assert b.stats().mismatched_tasks == ("job",)
            await wait_until(lambda: a.stats().mismatched_tasks == ("job",))
        async with c:  # it finds b's, the last stored, and stores a's again
            await wait_until(lambda: a.stats().mismatched_tasks == ())


async def wait_until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(ARRIVES):
        while not predicate():  # noqa: ASYNC110 - stats() has no event to wait on
            await anyio.sleep(0.02)


async def test_a_failing_poll_is_tried_again_a_second_later_not_at_once() -> None:
    """While the store cannot say what changed, the sync waits a poll interval before
    asking again, even though a change it has not seen exists (a notification would
    end its wait at once)."""
    from xtasks._state_sync import POLL_INTERVAL
    from xtasks.testing._delegating import DelegatingStore

    class Unreadable(DelegatingStore[MemoryStore]):
        def __init__(self) -> None:
            super().__init__(MemoryStore())
            self.polls: list[float] = []
            self.polled = anyio.Event()

        async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
            self.polls.append(anyio.current_time())
            if len(self.polls) >= 3:
                self.polled.set()
            raise StoreError("the database is down")

    store = Unreadable()
    scheduler = replica(store, "a", Task("job", tick))
    await store.inner.open()
    await store.inner.change_task_state("job", TaskRecord(state=TaskState.PAUSED))
    async with scheduler:
        with anyio.fail_after(ARRIVES):
            await store.polled.wait()
    gaps = [b - a for a, b in itertools.pairwise(store.polls)]
    assert min(gaps) >= POLL_INTERVAL * 0.9, gaps


async def test_reads_and_actions_go_on_from_this_replica_s_view_while_changes_cannot_be_read() -> (
    None
):
    """The store cannot say what changed elsewhere: describe, pause and a person's run
    still answer, from what this replica knows, rather than fail."""
    from xtasks.testing._delegating import DelegatingStore

    class Unreadable(DelegatingStore[MemoryStore]):
        def __init__(self) -> None:
            super().__init__(MemoryStore())

        async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
            raise StoreError("the database is down")

    scheduler = replica(Unreadable(), "a", Task("job", tick))
    async with scheduler:
        assert (
            await (await scheduler.trigger("job", by="tester")).wait()
        ).status is RunStatus.SUCCEEDED
        await scheduler.pause("job")
        assert (await scheduler.describe("job")).state is TaskState.PAUSED


class HeldChanges(DelegatingStore[MemoryStore]):
    """The state changes of one replica wait at ``gate`` on their way to the store."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.writing = anyio.Event()
        self.gate = anyio.Event()

    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        self.writing.set()
        await self.gate.wait()
        return await self.inner.change_task_state(task, record)


async def test_changes_read_while_this_replicas_own_change_is_unstored_do_not_undo_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """a pauses; before its pause is stored, b pauses and resumes. a's read of b's
    changes must not undo a's newer pause (only a's stored change may); once stored,
    the fleet goes by a's pause, the last change made."""
    import xtasks._state_sync

    monkeypatch.setattr(xtasks._state_sync, "POLL_INTERVAL", 3600.0)
    shared = MemoryStore()
    held = HeldChanges(shared)
    job = Task("job", tick, trigger=Every(seconds=3600))
    a, b = replica(held, "a", job), replica(shared, "b", job)
    async with a, b, anyio.create_task_group() as tg:
        tg.start_soon(a.pause, "job")  # returns once stored: after the gate
        try:
            with anyio.fail_after(ARRIVES):
                await held.writing.wait()
            await b.pause("job")
            await b.resume("job")  # stored after a's pause was made, before it is stored
            await a.describe("job")  # a reads b's two changes
            assert a.states() == {"job": TaskState.PAUSED}
        finally:
            held.gate.set()
    async with a, b:  # restarted: both read the fleet's state from the store
        assert a.states() == b.states() == {"job": TaskState.PAUSED}
