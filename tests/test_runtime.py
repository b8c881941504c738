"""The runtime alone: what reaches the store, and in what order, for each planner decision.

The runtime is driven as the scheduler drives it (planner commands through
``Runtime.command``), with the fake clock and a store that logs its calls next to the
events published and the steps of the task's body, in one timeline. The planner's
policies are tested in ``test_planner.py``; here only the order of I/O matters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from xtasks import Every, RunStatus, Task, TaskState
from xtasks._alert_delivery import AlertDelivery
from xtasks._executors import Executors
from xtasks._planner import Planner
from xtasks._runtime import Runtime
from xtasks.events import RunChanged, TaskStateChanged
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FakeClock
from xtasks.testing._delegating import DelegatingStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection
    from datetime import datetime

    from xtasks import RunRecord
    from xtasks.abc import TaskRecord
    from xtasks.events import Event

pytestmark = pytest.mark.anyio

Step = tuple[Any, ...]


class RecordingStore(DelegatingStore[MemoryStore]):
    """A memory store that writes each write into the shared timeline once it is done."""

    def __init__(self, timeline: list[Step]) -> None:
        super().__init__(MemoryStore())
        self.timeline = timeline

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        won = await self.inner.claim_fire(task, fire_time, replica)
        self.timeline.append(("claim", task, fire_time))
        return won

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        refused = await self.inner.save_runs(records)
        for record in records:
            self.timeline.append(("stored", record.status.value, record.attempts))
        return refused

    async def save_run(self, record: RunRecord) -> bool:
        return not await self.save_runs([record])

    async def save_task(self, task: str, record: TaskRecord) -> None:
        await self.inner.save_task(task, record)
        self.timeline.append(("stored task", task, record.state.value))

    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        change = await self.inner.change_task_state(task, record)
        self.timeline.append(("stored task", task, record.state.value))
        return change


class Harness:
    def __init__(self, runtime: Runtime, clock: FakeClock, timeline: list[Step]) -> None:
        self.runtime = runtime
        self.planner = runtime.planner
        self.clock = clock
        self.timeline = timeline
        self.final = anyio.Event()
        self.stopped = False

    def io(self) -> list[Step]:
        """The timeline without the claims (every fire has one)."""
        return [step for step in self.timeline if step[0] != "claim"]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    timeline: list[Step] = []
    clock = FakeClock()
    store = RecordingStore(timeline)
    await store.open()
    planner = Planner(max_concurrency=10, replica="r1")
    holder: list[Harness] = []

    def publish(event: Event) -> None:
        if isinstance(event, RunChanged):
            timeline.append(("event", event.record.status.value, event.record.attempts))
            if event.record.status.is_final:
                holder[0].final.set()
        elif isinstance(event, TaskStateChanged):
            timeline.append(("event task", event.task, event.state.value))

    runtime = Runtime(
        planner,
        store,
        clock,
        Executors(thread_slots=2, process_slots=1),
        alerts=AlertDelivery([], store, lambda task: None),
        publish=publish,
        replica="r1",
    )
    h = Harness(runtime, clock, timeline)
    holder.append(h)
    async with anyio.create_task_group() as tg:
        runtime.start(tg)
        yield h
        if not h.stopped:
            with anyio.fail_after(5):
                await runtime.stop(grace=0)
        tg.cancel_scope.cancel()
    await store.close()


async def wait_final(h: Harness) -> None:
    with anyio.fail_after(5):
        await h.final.wait()
    h.final = anyio.Event()
    await h.runtime.flush()


async def test_a_fire_is_stored_running_before_its_body_resumes(harness: Harness) -> None:
    h = harness
    timeline = h.timeline

    async def body() -> str:
        timeline.append(("body starts",))
        await anyio.lowlevel.checkpoint()  # the body's first await
        timeline.append(("body resumes",))
        return "done"

    h.runtime.command(
        h.planner.add_task, Task("tick", body, trigger=Every(seconds=10)), h.clock.now()
    )
    h.runtime.command(h.planner.start, h.clock.now())
    await h.clock.advance(10)
    await wait_final(h)

    assert h.timeline[0] == ("claim", "tick", h.clock.now())
    io = h.io()
    # The run is in the store as running before its body gets control back from its
    # first await (whichever of the two the event loop ran first).
    assert io.index(("stored", "running", 1)) < io.index(("body resumes",))
    assert [step for step in io if step[0] != "body starts"] == [
        ("stored", "running", 1),  # queued and running went out in one write: the newest
        ("event", "queued", 0),
        ("event", "running", 1),
        ("body resumes",),
        ("stored", "succeeded", 1),
        ("event", "succeeded", 1),
    ]
    # The run holds its lease from the start: the recorder hands it to the lease loop.
    assert not h.runtime.recorder.leased  # released once final


async def test_a_retry_is_stored_queued_then_running_again(harness: Harness) -> None:
    h = harness
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        await anyio.lowlevel.checkpoint()  # gives control back once, as real work would
        if calls == 1:
            raise ValueError("first attempt fails")

    task = Task("flaky", flaky, max_retries=1, retry_delay=5)
    h.runtime.command(h.planner.add_task, task, h.clock.now())
    h.runtime.command(h.planner.start, h.clock.now())
    h.runtime.command(h.planner.request, "flaky", h.clock.now())
    await h.runtime.flush()
    await h.clock.advance(0)
    await h.runtime.flush()
    first = h.io()
    assert first == [
        ("stored", "running", 1),
        ("event", "queued", 0),
        ("event", "running", 1),
        ("stored", "queued", 1),  # the failed attempt, waiting out its retry delay
        ("event", "queued", 1),
    ]
    await h.clock.advance(5)
    await wait_final(h)
    assert h.io()[len(first) :] == [
        ("stored", "running", 2),
        ("event", "running", 2),
        ("stored", "succeeded", 2),
        ("event", "succeeded", 2),
    ]


async def test_cancelling_a_task_stores_its_state_then_the_cancelled_run(harness: Harness) -> None:
    h = harness
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    h.runtime.command(h.planner.add_task, Task("long", forever), h.clock.now())
    h.runtime.command(h.planner.start, h.clock.now())
    h.runtime.command(h.planner.request, "long", h.clock.now())
    with anyio.fail_after(5):
        await started.wait()
    await h.runtime.flush()
    before = len(h.io())
    h.runtime.command(h.planner.cancel, "long", h.clock.now())
    await wait_final(h)
    assert h.io()[before:] == [
        ("stored task", "long", TaskState.CANCELLED.value),
        ("event task", "long", "cancelled"),
        ("stored", "cancelled", 1),
        ("event", "cancelled", 1),
    ]
    assert h.planner.state_of("long") is TaskState.CANCELLED


async def test_shutdown_cancels_and_stores_every_run_before_stop_returns(harness: Harness) -> None:
    h = harness
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    h.runtime.command(h.planner.add_task, Task("long", forever, overlap="queue"), h.clock.now())
    h.runtime.command(h.planner.start, h.clock.now())
    h.runtime.command(h.planner.request, "long", h.clock.now())
    h.runtime.command(h.planner.request, "long", h.clock.now())  # held behind the first
    with anyio.fail_after(5):
        await started.wait()
    await h.runtime.flush()
    before = len(h.io())
    with anyio.fail_after(5):
        await h.runtime.stop(grace=0)
    h.stopped = True
    after = h.io()[before:]
    # The held run is cancelled by the shutdown command itself, the running one when its
    # attempt ends; both are stored, then published, before stop() returns.
    assert after == [
        ("stored", "cancelled", 0),
        ("event", "cancelled", 0),
        ("stored", "cancelled", 1),
        ("event", "cancelled", 1),
    ]
    stored = await h.runtime.store.list_runs(task="long")
    assert [(r.status, r.reason) for r in stored] == [(RunStatus.CANCELLED, "shutdown")] * 2


def test_a_shutdown_warning_names_ten_runs_then_counts_the_rest() -> None:
    from types import SimpleNamespace

    from xtasks._runtime import _describe

    def starts(count: int) -> list[Any]:
        return [
            SimpleNamespace(task=SimpleNamespace(name=f"t{i}", runs_on="sync"), run_id=f"r{i}")
            for i in range(count)
        ]

    ten = ", ".join(f"'t{i}' (sync, run r{i})" for i in range(10))
    assert _describe(starts(10)) == ten
    assert _describe(starts(11)) == ten + " and 1 more"
    assert _describe(starts(12)) == ten + " and 2 more"
