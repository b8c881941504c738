"""The Scheduler's convenience API: ``run``, ``RunHandle.cancel``, the ``task`` decorator,
event filters, calls before start, and YAML ``enabled: false``.

On the real runtime and real stores (SQLite files in ``tmp_path``), on asyncio and trio;
schedules run on a FakeClock and tests wait on handles and events, never on sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.lowlevel
import pytest

from xtasks import (
    ConfigError,
    Every,
    Priority,
    RunCause,
    RunRecord,
    RunStatus,
    Scheduler,
    SchedulerStateError,
    Task,
    TaskNotFoundError,
    TaskState,
    TaskStateError,
)
from xtasks.events import Alert, AlertKind, RunChanged, TaskStateChanged
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FakeClock

if TYPE_CHECKING:
    from pathlib import Path

    from xtasks.events import Event

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, tzinfo=UTC)
#: Seconds any wait in these tests may take before it counts as a hang.
PATIENCE = 10


async def noop() -> None:
    pass


async def greet(name: str, punct: str = "!") -> str:
    return f"hello {name}{punct}"


async def settle(scheduler: Scheduler, task: str, count: int) -> list[RunRecord]:
    """Wait until ``task`` has ``count`` final runs in history (events, not sleeps)."""
    with anyio.fail_after(PATIENCE):
        async with scheduler.events() as events:
            while True:
                runs = await scheduler.history(task, limit=10_000)
                if sum(r.status.is_final for r in runs) >= count:
                    return runs
                await events.receive()


# --- run ---------------------------------------------------------------------------------


async def test_run_returns_the_final_record_with_the_task_s_or_the_given_arguments() -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("greet", greet, args=("world",)))
    async with scheduler:
        with anyio.fail_after(PATIENCE):
            own = await scheduler.run("greet")
            given = await scheduler.run("greet", "you", punct="?")
            again = await scheduler.run("greet")
        assert (own.status, own.result, own.cause) == (
            RunStatus.SUCCEEDED,
            "hello world!",
            RunCause.MANUAL,
        )
        assert given.result == "hello you?"  # for that run only:
        assert again.result == "hello world!"
        assert [r.id for r in await scheduler.history("greet")] == [again.id, given.id, own.id]


async def test_run_checks_the_arguments_against_the_task_before_queueing_anything() -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("greet", greet, args=("world",)))
    async with scheduler:
        with pytest.raises(ConfigError, match="greet") as bad:
            await scheduler.run("greet", "a", "b", "c")
        assert bad.value.task == "greet"
        with pytest.raises(ConfigError, match="greet"):
            await scheduler.run("greet", nickname="x")
        assert await scheduler.history("greet") == []


async def test_run_honours_dependencies_and_refuses_like_trigger() -> None:
    order: list[str] = []

    async def stats() -> None:
        order.append("stats")

    async def report() -> None:
        order.append("report")

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("report", report, depends_on=["stats"]))
    scheduler.add(Task("stats", stats))
    with pytest.raises(SchedulerStateError, match="not running"):
        await scheduler.run("report")
    async with scheduler:
        with anyio.fail_after(PATIENCE):
            rec = await scheduler.run("report")
        assert rec.status is RunStatus.SUCCEEDED and order == ["stats", "report"]
        with pytest.raises(TaskNotFoundError, match="repport"):
            await scheduler.run("repport")
        await scheduler.pause("report")
        with pytest.raises(TaskStateError):
            await scheduler.run("report")


async def test_a_cancelled_caller_of_run_leaves_the_run_going() -> None:
    started, release = anyio.Event(), anyio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "done"

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("slow", slow))
    async with scheduler:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, "slow")
            with anyio.fail_after(PATIENCE):
                await started.wait()
            tg.cancel_scope.cancel()
        release.set()
        [rec] = await settle(scheduler, "slow", 1)
    assert (rec.status, rec.result) == (RunStatus.SUCCEEDED, "done")


# --- RunHandle.cancel --------------------------------------------------------------------


async def test_cancelling_a_running_run_by_its_handle_leaves_the_task_alone() -> None:
    clock = FakeClock(T0)
    started = anyio.Event()

    async def long() -> None:
        started.set()
        await anyio.sleep_forever()

    scheduler = Scheduler(plugins=False, clock=clock)
    scheduler.add(Task("long", long, trigger=Every(minutes=1), max_retries=2))
    async with scheduler:
        handle = await scheduler.trigger("long")
        with anyio.fail_after(PATIENCE):
            await started.wait()
            assert handle.cancel() is True
            rec = await handle.wait()
        assert (rec.status, rec.reason, rec.attempts) == (
            RunStatus.CANCELLED,
            "cancelled by its handle",
            1,  # a cancellation is not a failure: not retried
        )
        info = await scheduler.describe("long")
        assert info.state is TaskState.ACTIVE and info.consecutive_failures == 0
        assert info.next_fire == T0 + timedelta(minutes=1)  # its schedule goes on
        assert handle.cancel() is False  # finished: nothing to do
        assert await scheduler.get_run(handle.id) == rec
        started = anyio.Event()
        await clock.advance(60)
        with anyio.fail_after(PATIENCE):
            await started.wait()  # the next fire runs


async def test_a_worker_goes_on_after_cancelled_runs_whether_or_not_they_swallow_it() -> None:
    """One slot, so one worker serves every run: each cancellation, taken or swallowed,
    is recorded, and the runs after it still run (and can be cancelled in turn)."""
    started = anyio.Event()

    async def long() -> None:
        started.set()
        await anyio.sleep_forever()

    async def stubborn() -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            return "swallowed"  # against the rules; recorded cancelled all the same
        return "unreachable"

    async with Scheduler(plugins=False, max_concurrency=1) as scheduler:
        for func in (long, stubborn, long):
            started = anyio.Event()
            handle = await scheduler.submit(func)
            with anyio.fail_after(PATIENCE):
                await started.wait()
                assert handle.cancel() is True
                record = await handle.wait()
            assert (record.status, record.reason) == (
                RunStatus.CANCELLED,
                "cancelled by its handle",
            )
        with anyio.fail_after(PATIENCE):
            after = await (await scheduler.submit(lambda: "fine")).wait()
    assert (after.status, after.result) == (RunStatus.SUCCEEDED, "fine")


async def test_waiting_on_the_handle_of_an_ended_run_returns_at_once() -> None:
    """No checkpoint once the run ended, as for a done future: collecting the handles
    of a burst costs no trip through the event loop each."""
    async with Scheduler(plugins=False) as scheduler:
        handle = await scheduler.submit(lambda: 42)
        with anyio.fail_after(PATIENCE):
            first = await handle.wait()
        with anyio.CancelScope() as scope:
            scope.cancel()  # a checkpoint here would raise
            again = await handle.wait()
    assert again is first and first.result == 42


async def test_cancelling_a_waiting_run_by_its_handle_leaves_its_dependency_running() -> None:
    started, release = anyio.Event(), anyio.Event()

    async def upstream() -> str:
        started.set()
        await release.wait()
        return "a"

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("a", upstream))
    scheduler.add(Task("b", noop, depends_on=["a"]))
    async with scheduler:
        b = await scheduler.trigger("b")
        with anyio.fail_after(PATIENCE):
            await started.wait()  # b waits for a fresh run of a
            assert b.cancel() is True
            rec = await b.wait()
        assert (rec.status, rec.reason, rec.started_at) == (
            RunStatus.CANCELLED,
            "cancelled by its handle",
            None,
        )
        release.set()
        [upstream_run] = await settle(scheduler, "a", 1)
        assert (upstream_run.status, upstream_run.result) == (RunStatus.SUCCEEDED, "a")
        assert scheduler.states() == {"a": TaskState.ACTIVE, "b": TaskState.ACTIVE}


# --- the task decorator ------------------------------------------------------------------


async def test_the_task_decorator_registers_the_function_and_returns_it_unchanged() -> None:
    clock = FakeClock(T0)
    scheduler = Scheduler(plugins=False, clock=clock)

    @scheduler.task(trigger=Every(minutes=1), max_retries=2, priority="high")
    async def rapport() -> str:
        return "ok"

    async def other() -> None:
        pass

    assert scheduler.task(name="billing.other")(other) is other
    assert await rapport() == "ok"  # still the plain function
    task = scheduler.tasks["rapport"]
    assert (task.func, task.trigger, task.max_retries, task.priority) == (
        rapport,
        Every(minutes=1),
        2,
        Priority.HIGH,
    )
    assert scheduler.tasks["billing.other"].trigger is None  # on demand
    async with scheduler:
        await clock.advance(60)
        [rec] = await settle(scheduler, "rapport", 1)
    assert (rec.result, rec.cause) == ("ok", RunCause.SCHEDULE)


async def test_the_task_decorator_validates_like_task() -> None:
    scheduler = Scheduler(plugins=False)
    with pytest.raises(ConfigError, match="max_retries"):

        @scheduler.task(max_retries=-1)
        async def bad() -> None:
            pass

    assert "bad" not in scheduler.tasks


# --- event filters -----------------------------------------------------------------------


async def test_subscribers_and_streams_get_only_the_event_types_they_ask_for() -> None:
    async def broken() -> None:
        raise ValueError("kaput")

    runs: list[RunChanged] = []
    states: list[TaskStateChanged] = []
    both: list[Event] = []
    everything: list[Event] = []
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("job", noop))
    scheduler.add(Task("broken", broken))
    scheduler.subscribe(runs.append, types=RunChanged)
    scheduler.subscribe(states.append, types=TaskStateChanged)
    scheduler.subscribe(both.append, types=(RunChanged, TaskStateChanged))
    scheduler.subscribe(everything.append)
    async with scheduler:
        async with scheduler.events(types=Alert) as alerts:
            with anyio.fail_after(PATIENCE):
                await scheduler.run("job")
                await scheduler.pause("job")
                await scheduler.run("broken")
                alert = await alerts.receive()  # the runs' events were not queued here
        assert (alert.kind, alert.task) == (AlertKind.FAILING, "broken")
    assert runs and all(type(e) is RunChanged for e in runs)
    assert states == [TaskStateChanged("job", TaskState.PAUSED)]
    assert both == [e for e in everything if not isinstance(e, Alert)]
    assert len(everything) == len(runs) + len(states) + 1


async def test_an_event_filter_that_matches_no_event_type_is_refused() -> None:
    scheduler = Scheduler(plugins=False)
    for types in (RunRecord, (RunChanged, TaskState), "RunChanged", ()):
        with pytest.raises(ConfigError, match="not an event type"):
            scheduler.subscribe(print, types=cast("Any", types))
        with pytest.raises(ConfigError, match="not an event type"):
            async with scheduler.events(types=cast("Any", types)):
                pass


# --- before start: what needs only the store --------------------------------------------


def build(url: str, clock: FakeClock) -> Scheduler:
    """The same scheduler, as each process of an application builds it."""
    scheduler = Scheduler(url, plugins=False, clock=clock)
    scheduler.add(Task("tick", noop, trigger=Every(minutes=1)))
    scheduler.add(Task("control", noop, trigger=Every(minutes=1)))
    return scheduler


async def test_a_task_paused_before_start_does_not_fire_and_another_process_sees_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    clock = FakeClock(T0)
    first = build(url, clock)
    await first.pause("tick", by="ops")
    info = await first.describe("tick")
    assert (info.state, info.next_fire, info.last_run) == (TaskState.PAUSED, None, None)
    assert not first.running
    async with first:
        assert first.states() == {"tick": TaskState.PAUSED, "control": TaskState.ACTIVE}
        await clock.advance(timedelta(minutes=3))
        await settle(first, "control", 3)  # fired with it, every minute
        assert await first.history("tick") == []
    second = build(url, clock)  # another process, on the same file, not started
    assert (await second.describe("tick")).state is TaskState.PAUSED
    assert [(a.action, a.task, a.outcome) for a in await second.audit()] == [
        ("pause", "tick", "ok")
    ]
    [last] = await second.history("control", limit=1)
    assert await second.get_run(last.id) == last
    await second.aclose()


async def test_resume_and_cancel_before_start_are_applied_at_start(tmp_path: Path) -> None:
    """Resume before start acts as resume while running: from now on, without replaying
    the fires missed while paused; cancel stops every fire."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    clock = FakeClock(T0)
    first = build(url, clock)
    async with first:
        await clock.advance(60)
        await settle(first, "tick", 1)
        await first.pause("tick")
    await clock.advance(timedelta(minutes=10, seconds=30))  # stopped and paused: 10 fires
    second = build(url, clock)
    await second.resume("tick")
    await second.cancel("control")
    assert (await second.describe("control")).state is TaskState.CANCELLED
    async with second:
        assert second.states() == {"tick": TaskState.ACTIVE, "control": TaskState.CANCELLED}
        assert (await second.describe("tick")).next_fire == T0 + timedelta(minutes=12)
        await clock.advance(30)
        runs = await settle(second, "tick", 2)
        assert [(r.status, r.scheduled_at) for r in runs] == [
            (RunStatus.SUCCEEDED, T0 + timedelta(minutes=12)),  # not a catch_up of the pause
            (RunStatus.SUCCEEDED, T0 + timedelta(minutes=1)),
        ]
        assert len(await second.history("control")) == 1  # before the first stopped


async def test_calls_before_start_open_the_store_once_and_leaving_closes_it() -> None:
    store = MemoryStore()
    calls: list[str] = []
    real_open, real_close = store.open, store.close

    async def open_() -> None:
        calls.append("open")
        await anyio.lowlevel.checkpoint()  # let a concurrent first call arrive meanwhile
        await real_open()

    async def close_() -> None:
        calls.append("close")
        await real_close()

    store.open = open_  # type: ignore[method-assign]
    store.close = close_  # type: ignore[method-assign]
    scheduler = Scheduler(store, plugins=False)
    scheduler.add(Task("job", noop))
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.history, "job")
        tg.start_soon(scheduler.describe, "job")
    await scheduler.pause("job")
    assert calls == ["open"]
    async with scheduler:
        assert calls == ["open"]  # start uses the store the calls opened
        assert scheduler.states() == {"job": TaskState.PAUSED}
    assert calls == ["open", "close"]
    await scheduler.aclose()  # nothing left to close
    assert calls == ["open", "close"]


async def test_a_scheduler_on_a_store_url_starts_again_after_a_stop(tmp_path: Path) -> None:
    """Leaving closes the store; the next start (or a store call) opens it again, with
    everything written before."""
    scheduler = Scheduler(f"sqlite:///{tmp_path / 'x.db'}", plugins=False)
    scheduler.add(Task("job", noop))
    async with scheduler:
        first = await scheduler.run("job")
    await scheduler.pause("job")  # between two starts: the stored state
    async with scheduler:
        assert scheduler.states() == {"job": TaskState.PAUSED}
        await scheduler.resume("job")
        second = await scheduler.run("job")
    assert [r.id for r in await scheduler.history("job")] == [second.id, first.id]
    await scheduler.aclose()


async def test_before_start_unknown_names_are_errors_and_runs_need_a_running_scheduler(
    tmp_path: Path,
) -> None:
    scheduler = build(f"sqlite:///{tmp_path / 'x.db'}", FakeClock(T0))
    for call in (scheduler.pause, scheduler.resume, scheduler.cancel, scheduler.describe):
        with pytest.raises(TaskNotFoundError, match="tock"):
            await call("tock")
    with pytest.raises(SchedulerStateError, match="not running"):
        await scheduler.trigger("tick")
    with pytest.raises(SchedulerStateError, match="not running"):
        await scheduler.submit(noop)
    with pytest.raises(SchedulerStateError, match="not running"):
        await scheduler.run("tick")
    with pytest.raises(SchedulerStateError, match="not running"):
        scheduler.states()
    assert await scheduler.history("tick") == []
    await scheduler.aclose()


# --- YAML enabled: false -----------------------------------------------------------------


async def test_yaml_enabled_false_keeps_the_task_listed_and_runnable_but_never_fired(
    tmp_path: Path,
) -> None:
    config = tmp_path / "app.yaml"
    config.write_text("tasks:\n  nightly:\n    enabled: false\n")
    clock = FakeClock(T0)
    scheduler = Scheduler(plugins=False, config=config, clock=clock)
    scheduler.add(Task("nightly", greet, args=("night",), trigger=Every(minutes=1)))
    scheduler.add(Task("control", noop, trigger=Every(minutes=1)))
    assert scheduler.tasks["nightly"].enabled is False
    assert scheduler.check() == []  # the entry names a registered task
    async with scheduler:
        await clock.advance(120)
        await settle(scheduler, "control", 2)
        assert await scheduler.history("nightly") == []
        info = await scheduler.describe("nightly")
        assert (info.state, info.next_fire) == (TaskState.ACTIVE, None)
        with anyio.fail_after(PATIENCE):
            rec = await scheduler.run("nightly")  # by hand: allowed
        assert (rec.status, rec.result) == (RunStatus.SUCCEEDED, "hello night!")
