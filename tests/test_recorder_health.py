"""The recorder on its own, against a store that fails or hangs on request: what health
says at each moment (``stats()``, ``/health`` and ``/metrics`` read it), and what a stop
does with records still queued. Nothing here may be lost or miscounted."""

from __future__ import annotations

import itertools
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import pytest

from tests._log_lines import LogLines
from tests._virtual_time import in_virtual_time
from xtasks import RunCause, RunRecord, RunStatus, TaskState
from xtasks._decisions import SaveTask
from xtasks._recorder import Recorder, StoreHealth
from xtasks.abc import TaskRecord
from xtasks.events import RunChanged, TaskStateChanged
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FaultyStore
from xtasks.testing._delegating import DelegatingStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection

    from xtasks.events import Event

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PATIENCE = 10


def run(run_id: str, status: RunStatus = RunStatus.SUCCEEDED) -> RunRecord:
    return RunRecord(id=run_id, task="job", status=status, cause=RunCause.MANUAL, scheduled_at=T0)


class WatchedStore(DelegatingStore[FaultyStore]):
    """A store that fails or hangs on request (``faults``) and says when a write of runs
    begins (``writing``): to act while it is in flight."""

    def __init__(self) -> None:
        super().__init__(FaultyStore(MemoryStore()))
        self.faults = self.inner
        self.memory = self.inner.inner
        self.writing = anyio.Event()
        self.tries: list[float] = []  # when each write of runs began (anyio time)

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        self.writing.set()
        self.tries.append(anyio.current_time())
        return await self.inner.save_runs(records)


class Setup:
    def __init__(self) -> None:
        self.store = WatchedStore()
        self.events: list[Event] = []
        self.published = anyio.Event()  # set at each event
        self.recorder = Recorder(self.store, self._publish)

    def _publish(self, event: Event) -> None:
        self.events.append(event)
        self.published.set()

    async def published_runs(self, count: int, patience: float = PATIENCE) -> list[str]:
        """Wait until ``count`` run events went out; their run ids, in order."""
        with anyio.fail_after(patience):
            while len(self.run_ids()) < count:
                self.published = anyio.Event()
                await self.published.wait()
        return self.run_ids()

    async def task_states(self, count: int) -> None:
        """Wait until ``count`` task state events went out."""
        with anyio.fail_after(PATIENCE):
            while sum(isinstance(e, TaskStateChanged) for e in self.events) < count:
                self.published = anyio.Event()
                await self.published.wait()

    def run_ids(self) -> list[str]:
        return [e.record.id for e in self.events if isinstance(e, RunChanged)]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    s = Setup()
    await s.store.open()
    async with anyio.create_task_group() as tg:
        s.recorder.start(tg)
        yield s
        tg.cancel_scope.cancel()


async def test_a_fresh_recorder_reports_a_healthy_empty_store(setup: Setup) -> None:
    assert setup.recorder.health == StoreHealth(
        writable=True, backlog=0, write_failures=0, last_error=None, failing_since=None
    )


async def test_health_counts_the_queue_and_the_batch_in_flight_and_each_failure(
    setup: Setup,
) -> None:
    recorder, store = setup.recorder, setup.store
    store.faults.hang_writes()
    recorder.record(run("a"))
    recorder.record(run("b"))
    with anyio.fail_after(PATIENCE):
        await store.writing.wait()  # the batch of two is in flight, hanging
    assert recorder.health.backlog == 2
    recorder.record(run("c"))  # queued behind it
    assert recorder.health.backlog == 3
    store.faults.heal()
    store.faults.fail_writes(count=2, message="disk full")
    assert await setup.published_runs(3) == ["a", "b", "c"]
    health = recorder.health
    assert (health.writable, health.backlog, health.write_failures) == (True, 0, 2)
    assert health.last_error is None and health.failing_since is None
    assert [await store.memory.get_run(i) for i in "abc"] == [run(i) for i in "abc"]


async def test_a_task_state_alone_is_written_without_waiting_for_anything_else(
    setup: Setup,
) -> None:
    """A state another replica stored (``from_store``) is saved here as plain progress:
    not written again as a numbered change for the fleet to apply."""
    setup.recorder.save_task(SaveTask("job", TaskRecord(), state_changed=True, from_store=True))
    await setup.task_states(1)
    assert await setup.store.memory.load_task("job") == TaskRecord()
    assert await setup.store.memory.task_state_changes(0) == (0, {})


async def test_a_failed_task_state_write_counts_in_health_and_is_written_later(
    setup: Setup,
) -> None:
    setup.store.faults.fail_writes(count=1, message="disk full")
    paused = TaskRecord(state=TaskState.PAUSED)
    setup.recorder.save_task(SaveTask("job", paused, state_changed=True))
    await setup.task_states(1)
    health = setup.recorder.health
    assert (health.writable, health.write_failures, health.last_error) == (True, 1, None)
    assert await setup.store.memory.load_task("job") == paused
    assert await setup.store.memory.task_state_changes(0) == (1, {"job": TaskState.PAUSED})


async def test_a_stop_writes_what_was_queued_during_the_last_write(setup: Setup) -> None:
    recorder, store = setup.recorder, setup.store
    store.faults.hang_writes()
    recorder.record(run("a"))
    with anyio.fail_after(PATIENCE):
        await store.writing.wait()  # "a" is in flight, hanging
    recorder.record(run("b"))  # arrives during the write, then the scheduler stops
    with anyio.fail_after(PATIENCE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.stop, 5.0)  # stopping, while "a" is still in flight
            store.faults.heal()
    assert setup.run_ids() == ["a", "b"]
    assert [await store.memory.get_run(i) for i in "ab"] == [run(i) for i in "ab"]


async def test_a_stop_keeps_retrying_a_failing_store_within_its_grace(setup: Setup) -> None:
    recorder, store = setup.recorder, setup.store
    store.faults.fail_writes(count=2)
    recorder.record(run("a"))
    with anyio.fail_after(PATIENCE):
        await recorder.stop(5.0)  # the third try, 0.15 s later, is well within 5 s
    assert setup.run_ids() == ["a"]
    assert recorder.health.write_failures == 2


@in_virtual_time()
async def test_a_failing_write_is_tried_again_after_a_pause_doubling_up_to_five_seconds(
    setup: Setup,
) -> None:
    """Virtual time (trio's mock clock jumps over every sleep): the pauses are exact."""
    await anyio.sleep(100)  # virtual: the outage starts at 100 s, not at the clock's 0
    setup.store.faults.fail_writes(count=9, message="disk full")
    said = LogLines(logging.WARNING)
    logging.getLogger("xtasks").addHandler(said)
    try:
        setup.recorder.record(run("a"))
        assert await setup.published_runs(1, patience=60) == ["a"]  # 16.35 s of pauses
    finally:
        logging.getLogger("xtasks").removeHandler(said)
    failing = "the store cannot write (StoreError: disk full); 1 run record(s) and what "
    failing += "follows are kept in memory and written when it can: runs go on meanwhile, "
    failing += "their events wait"
    assert said.messages[0] == failing
    again = re.fullmatch(
        r"the store writes again after ([0-9.]+) s and 9 failed write\(s\); the records "
        r"kept meanwhile are being written",
        said.messages[1],
    )
    assert again is not None and float(again[1]) == pytest.approx(16.35, abs=0.051)
    assert len(said.messages) == 2
    tries = setup.store.tries
    pauses = [round(later - earlier, 6) for earlier, later in itertools.pairwise(tries)]
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
