"""End-to-end behaviour of the real runtime: anyio task group, threads, processes.

Schedules run on a FakeClock; tests wait on run handles and events, never on sleeps.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import pytest

from tests._virtual_time import in_virtual_time
from xtasks import (
    Cron,
    Every,
    RunCause,
    RunStatus,
    Scheduler,
    SchedulerStateError,
    StoreError,
    Task,
    TaskState,
    TaskStateError,
    UnknownDependencyError,
)
from xtasks.abc import Alerter
from xtasks.events import Alert, AlertKind, RunChanged
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FakeClock
from xtasks.testing._delegating import DelegatingStore

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def noop() -> None:
    pass


async def test_readme_example_runs_dependency_first_then_submit_is_tracked() -> None:
    order: list[str] = []
    threads: list[int] = []

    def calculer_statistiques() -> int:
        threads.append(threading.get_ident())
        order.append("calcul_stats")
        return 42

    async def exporter_rapport() -> str:
        order.append("export_rapport")
        return "rapport.pdf"

    sent: list[str] = []

    async def envoyer_email(to: str) -> None:
        sent.append(to)

    scheduler = Scheduler()
    scheduler.add(Task("nettoyage_cache", noop, trigger=Every(hours=1)))
    scheduler.add(
        Task(
            "export_rapport",
            exporter_rapport,
            depends_on=["calcul_stats"],
            max_retries=3,
            retry_delay=60,
            timeout=300,
        )
    )
    scheduler.add(Task("calcul_stats", calculer_statistiques, priority="high"))
    async with scheduler:
        rec = await (await scheduler.trigger("export_rapport")).wait()
        assert rec.status is RunStatus.SUCCEEDED
        assert rec.result == "rapport.pdf"
        assert order == ["calcul_stats", "export_rapport"]
        assert threads and threads[0] != threading.get_ident()  # sync ran in a thread
        stats = await scheduler.history("calcul_stats")
        assert [r.cause for r in stats] == [RunCause.DEPENDENCY]
        assert stats[0].finished_at is not None and rec.started_at is not None
        assert stats[0].finished_at <= rec.started_at

        handle = await scheduler.submit(envoyer_email, "a@b.c")
        done = await handle.wait()
        assert done.status is RunStatus.SUCCEEDED and done.cause is RunCause.SUBMIT
        assert sent == ["a@b.c"]
        assert await scheduler.get_run(handle.id) == done
        assert (await scheduler.history(done.task))[0].id == handle.id


async def test_a_failing_periodic_task_keeps_its_schedule_and_records_each_error() -> None:
    clock = FakeClock(T0)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"failure {calls}")

    scheduler = Scheduler(clock=clock)
    scheduler.add(Task("flaky", flaky, trigger=Every(minutes=1)))
    async with scheduler:
        await clock.advance(timedelta(minutes=5))
        await _settle(scheduler, "flaky", 5)
        runs = await scheduler.history("flaky")
    assert [r.status for r in runs] == [RunStatus.FAILED] * 5
    assert [r.scheduled_at for r in reversed(runs)] == [
        T0 + timedelta(minutes=k) for k in range(1, 6)
    ]
    assert runs[0].error is not None
    assert runs[0].error.type == "ValueError" and runs[0].error.message == "failure 5"
    assert "raise ValueError" in runs[0].error.traceback


async def test_every_fires_exactly_once_per_period_over_a_virtual_hour() -> None:
    clock = FakeClock(T0)
    scheduler = Scheduler(clock=clock)
    scheduler.add(Task("tick", noop, trigger=Every(seconds=30)))
    async with scheduler:
        await clock.advance(3600)
        await _settle(scheduler, "tick", 120)
        runs = await scheduler.history("tick", limit=1000)
    assert len(runs) == 120
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)
    assert sorted(r.scheduled_at for r in runs) == [
        T0 + timedelta(seconds=30 * k) for k in range(1, 121)
    ]


async def test_cron_fires_in_its_time_zone() -> None:
    clock = FakeClock(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))
    scheduler = Scheduler(clock=clock)
    scheduler.add(Task("morning", noop, trigger=Cron("0 9 * * *", tz="Europe/Paris")))
    async with scheduler:
        await clock.advance(timedelta(days=2))
        await _settle(scheduler, "morning", 2)
        runs = await scheduler.history("morning")
    assert sorted(r.scheduled_at for r in runs) == [
        datetime(2026, 1, 5, 8, 0, tzinfo=UTC),
        datetime(2026, 1, 6, 8, 0, tzinfo=UTC),
    ]


async def test_retries_wait_their_delay_then_succeed() -> None:
    clock = FakeClock(T0)
    attempts: list[datetime] = []

    async def twice_broken() -> str:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise ConnectionError("not yet")
        return "ok"

    scheduler = Scheduler(clock=clock)
    scheduler.add(Task("retry", twice_broken, max_retries=3, retry_delay=10, retry_backoff=2))
    async with scheduler:
        handle = await scheduler.trigger("retry")
        await clock.advance(10)  # first retry due after 10 s
        await clock.advance(20)  # second after 10 * 2 s
        rec = await handle.wait()
        stored = await scheduler.get_run(handle.id)
    assert rec.status is RunStatus.SUCCEEDED and rec.attempts == 3
    assert attempts == [T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=30)]
    # Both failures stay in history, each with its error and times (an attempt that
    # raises at once ends when it started, on the fake clock).
    earlier = [(a.number, a.started_at, a.finished_at, str(a.error)) for a in rec.earlier_attempts]
    assert earlier == [
        (1, T0, T0, "ConnectionError: not yet"),
        (2, T0 + timedelta(seconds=10), T0 + timedelta(seconds=10), "ConnectionError: not yet"),
    ]
    assert all("raise ConnectionError" in a.error.traceback for a in rec.earlier_attempts)
    assert stored == rec


async def test_a_timeout_is_a_failure_and_is_retried() -> None:
    async def hangs() -> None:
        await anyio.sleep_forever()

    scheduler = Scheduler()
    scheduler.add(Task("hangs", hangs, timeout=0.05, max_retries=1))
    async with scheduler:
        with anyio.fail_after(10):
            rec = await (await scheduler.trigger("hangs")).wait()
    assert rec.status is RunStatus.FAILED
    assert rec.attempts == 2
    assert rec.error is not None and rec.error.type == "RunTimeoutError"
    assert "timeout of 0.05 s" in rec.error.message


async def test_ready_runs_start_by_priority_then_arrival() -> None:
    release = anyio.Event()
    started: list[str] = []

    async def blocker() -> None:
        await release.wait()

    def make(name: str):
        async def job() -> None:
            started.append(name)

        return job

    scheduler = Scheduler(max_concurrency=1)
    scheduler.add(Task("blocker", blocker))
    for name, priority in [
        ("low1", "low"),
        ("normal1", "normal"),
        ("high1", "high"),
        ("low2", "basse"),
        ("high2", "haute"),
    ]:
        scheduler.add(Task(name, make(name), priority=priority))
    async with scheduler:
        await scheduler.trigger("blocker")
        handles = [
            await scheduler.trigger(n) for n in ("low1", "normal1", "high1", "low2", "high2")
        ]
        release.set()
        for h in handles:
            await h.wait()
    assert started == ["high1", "high2", "normal1", "low1", "low2"]


async def test_overlap_skip_records_the_skipped_fire() -> None:
    clock = FakeClock(T0)
    release = anyio.Event()

    async def slow() -> None:
        await release.wait()

    scheduler = Scheduler(clock=clock)
    scheduler.add(Task("slow", slow, trigger=Every(minutes=1)))
    async with scheduler:
        await clock.advance(timedelta(minutes=3))
        runs = await scheduler.history("slow")
        release.set()
        await _settle(scheduler, "slow", 3)
        runs = await scheduler.history("slow")
    by_status = sorted((r.status.value, r.reason) for r in runs)
    assert by_status == [("skipped", "overlap"), ("skipped", "overlap"), ("succeeded", None)]


async def test_consecutive_failures_alert_once_and_recovery_alerts_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[Alert] = []
    got_recovered = anyio.Event()

    class Collecting(Alerter):
        async def send(self, alert: Alert) -> None:
            received.append(alert)
            if alert.kind is AlertKind.RECOVERED:
                got_recovered.set()

    class Hanging(Alerter):
        timeout = 0.05

        async def send(self, alert: Alert) -> None:
            await anyio.sleep_forever()

    outcomes = iter([False, False, False, True])

    async def job() -> None:
        if not next(outcomes):
            raise RuntimeError("down")

    scheduler = Scheduler(alerters=[Hanging(), Collecting()])
    scheduler.add(Task("job", job, alert_after=2))
    caplog.set_level(logging.INFO, logger="xtasks")
    async with scheduler:
        for expected in ["failed", "failed", "failed", "succeeded"]:
            rec = await (await scheduler.trigger("job")).wait()
            assert rec.status.value == expected
        with anyio.fail_after(10):
            await got_recovered.wait()
        info = await scheduler.describe("job")
    assert [(a.kind, a.consecutive_failures) for a in received] == [
        (AlertKind.FAILING, 2),
        (AlertKind.RECOVERED, 0),
    ]
    assert info.consecutive_failures == 0
    alert_logs = [r for r in caplog.records if r.name == "xtasks.alerts"]  # LoggingAlerter
    failing_logs = [r for r in alert_logs if "is failing" in r.getMessage()]
    recovered_logs = [r for r in alert_logs if "recovered" in r.getMessage()]
    assert len(failing_logs) == 1 and failing_logs[0].levelno == logging.WARNING
    assert len(recovered_logs) == 1
    # The hung alerter delays nobody: each of its sends ends at its own timeout, logged.
    gave_up = [r.getMessage() for r in caplog.records if "gave up on" in r.getMessage()]
    assert len(gave_up) == 2 and all("after 0.05 s" in m for m in gave_up)


async def test_cancel_stops_fires_cancels_the_running_run_and_resume_reactivates() -> None:
    clock = FakeClock(T0)
    started = anyio.Event()

    async def long() -> None:
        started.set()
        await anyio.sleep_forever()

    scheduler = Scheduler(clock=clock)
    scheduler.add(Task("long", long, trigger=Every(minutes=1)))
    async with scheduler:
        await clock.advance(60)
        with anyio.fail_after(5):
            await started.wait()
        await scheduler.cancel("long")
        await _settle(scheduler, "long", 1)
        [run] = await scheduler.history("long")
        assert (run.status, run.reason) == (RunStatus.CANCELLED, "cancelled")
        info = await scheduler.describe("long")
        assert info.state is TaskState.CANCELLED and info.next_fire is None
        await clock.advance(600)
        assert len(await scheduler.history("long")) == 1  # no fires while cancelled
        with pytest.raises(TaskStateError, match="is cancelled; resume it"):
            await scheduler.trigger("long")
        await scheduler.resume("long")
        assert (await scheduler.describe("long")).next_fire == clock.now() + timedelta(minutes=1)


async def test_a_removed_task_s_running_run_is_recorded_and_saves_no_state() -> None:
    clock = FakeClock(T0)
    store = MemoryStore()
    started, release = anyio.Event(), anyio.Event()

    async def doomed() -> None:
        started.set()
        await release.wait()
        raise ValueError("failed after its task was removed")

    scheduler = Scheduler(store, clock=clock)
    scheduler.add(Task("doomed", doomed, trigger=Every(minutes=1), max_retries=2))
    async with scheduler:
        await clock.advance(60)
        with anyio.fail_after(5):
            await started.wait()
        before = await store.load_task("doomed")
        scheduler.remove("doomed")
        assert "doomed" not in scheduler.tasks
        release.set()
        await _settle(scheduler, "doomed", 1)
        await clock.advance(600)  # no more fires
    async with scheduler:  # leaving flushed every write; the store is open again here
        assert await store.load_task("doomed") == before, "a removed task's state was saved"
        runs = await scheduler.history("doomed")
    assert [(r.status, r.attempts) for r in runs] == [(RunStatus.FAILED, 1)]
    assert runs[0].error is not None and runs[0].error.message.endswith("was removed")


async def test_pause_stops_fires_until_resume() -> None:
    clock = FakeClock(T0)
    scheduler = Scheduler(clock=clock)
    scheduler.add(Task("tick", noop, trigger=Every(minutes=1)))
    async with scheduler:
        await clock.advance(60)
        await _settle(scheduler, "tick", 1)
        await scheduler.pause("tick")
        await clock.advance(600)
        assert len(await scheduler.history("tick")) == 1
        assert (await scheduler.describe("tick")).state is TaskState.PAUSED
        await scheduler.resume("tick")
        await clock.advance(60)
        await _settle(scheduler, "tick", 2)


async def test_shutdown_waits_for_grace_then_cancels_and_records() -> None:
    quick_started = anyio.Event()
    stuck_started = anyio.Event()
    finish_quick = anyio.Event()

    async def quick() -> str:
        quick_started.set()
        await finish_quick.wait()
        return "done"

    async def stuck() -> None:
        stuck_started.set()
        await anyio.sleep_forever()

    scheduler = Scheduler(shutdown_grace=0.2)
    scheduler.add(Task("quick", quick))
    scheduler.add(Task("stuck", stuck))
    async with scheduler:
        hq = await scheduler.trigger("quick")
        hs = await scheduler.trigger("stuck")
        with anyio.fail_after(5):
            await quick_started.wait()
            await stuck_started.wait()
        finish_quick.set()
    assert hq.record is not None and hq.record.status is RunStatus.SUCCEEDED
    assert hs.record is not None
    assert (hs.record.status, hs.record.reason) == (RunStatus.CANCELLED, "shutdown")
    await scheduler.store.open()  # closed by the scheduler's exit; the data stays
    stored = await scheduler.store.get_run(hs.id)
    assert stored is not None and stored.status is RunStatus.CANCELLED


async def test_process_mode_runs_in_another_process() -> None:
    scheduler = Scheduler()
    scheduler.add(Task("pid", "tests._sample_funcs:current_pid", mode="process"))
    async with scheduler:
        with anyio.fail_after(60):
            rec = await (await scheduler.trigger("pid")).wait()
    assert rec.status is RunStatus.SUCCEEDED
    assert isinstance(rec.result, int) and rec.result != os.getpid()


async def test_events_stream_shows_each_transition_in_order() -> None:
    scheduler = Scheduler()
    scheduler.add(Task("job", noop))
    seen: list[tuple[str, str]] = []
    async with scheduler, scheduler.events() as events:
        handle = await scheduler.trigger("job")
        with anyio.fail_after(5):
            async for event in events:
                if isinstance(event, RunChanged) and event.record.id == handle.id:
                    seen.append((event.record.status.value, event.record.cause.value))
                    if event.record.status.is_final:
                        break
    assert seen == [("queued", "manual"), ("running", "manual"), ("succeeded", "manual")]


async def test_unknown_dependency_is_an_error_at_start_not_at_add() -> None:
    scheduler = Scheduler()
    scheduler.add(Task("report", noop, depends_on=["stats"]))  # order does not matter...
    with pytest.raises(UnknownDependencyError, match="depends on 'stats'"):
        async with scheduler:
            pass
    scheduler.add(Task("stats", noop))  # ...once it is there, start works
    async with scheduler:
        rec = await (await scheduler.trigger("report")).wait()
    assert rec.status is RunStatus.SUCCEEDED


async def test_calls_that_need_a_running_scheduler_say_so() -> None:
    scheduler = Scheduler()
    scheduler.add(Task("job", noop))
    with pytest.raises(SchedulerStateError, match="async with scheduler"):
        await scheduler.trigger("job")


async def test_a_scheduler_can_be_started_again_after_it_stopped() -> None:
    scheduler = Scheduler()
    scheduler.add(Task("job", noop))
    for _ in range(2):
        async with scheduler:
            rec = await (await scheduler.trigger("job")).wait()
            assert rec.status is RunStatus.SUCCEEDED


async def _settle(scheduler: Scheduler, task: str, count: int) -> None:
    """Wait until ``task`` has ``count`` final runs in history (events, not sleeps)."""
    with anyio.fail_after(10):
        async with scheduler.events() as events:
            while True:
                runs = await scheduler.history(task, limit=10_000)
                if sum(r.status.is_final for r in runs) >= count:
                    return
                await events.receive()


async def test_a_restarted_scheduler_fires_again_and_catches_up_what_it_missed() -> None:
    clock = FakeClock(T0)
    scheduler = Scheduler(clock=clock)
    scheduler.add(Task("tick", noop, trigger=Every(minutes=1), misfire_grace=10))
    async with scheduler:
        await clock.advance(60)
        await _settle(scheduler, "tick", 1)
    await clock.advance(timedelta(minutes=5, seconds=30))  # stopped: 5 fires pass unseen
    async with scheduler:
        await _settle(scheduler, "tick", 3)
        await clock.advance(30)
        await _settle(scheduler, "tick", 4)
        runs = await scheduler.history("tick")
    summary = sorted((r.scheduled_at - T0, r.status.value, r.cause.value) for r in runs)
    assert summary == [
        (timedelta(minutes=1), "succeeded", "schedule"),
        (timedelta(minutes=2), "missed", "schedule"),  # minutes 2..5, one record
        (timedelta(minutes=6), "succeeded", "catch_up"),  # catch_up="once": the latest
        (timedelta(minutes=7), "succeeded", "schedule"),  # then the grid goes on
    ]
    missed = next(r for r in runs if r.status is RunStatus.MISSED)
    assert missed.reason is not None and missed.reason.startswith("missed 4 fire(s)")


async def test_lifespan_runs_the_scheduler_for_an_asgi_app() -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("job", noop))
    async with scheduler.lifespan(object()):  # what Starlette/FastAPI call with the app
        assert scheduler.running
        rec = await (await scheduler.trigger("job")).wait()
    assert rec.status is RunStatus.SUCCEEDED
    assert not scheduler.running


@pytest.mark.parametrize("recover", [True, False])
async def test_a_run_left_running_by_a_dead_replica_is_marked_lost_and_recovered_on_request(
    recover: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from xtasks.stores.memory import MemoryStore

    store = MemoryStore(lease_ttl=0.1)
    await store.save_run(  # what a replica that crashed mid-run leaves behind
        RunRecordFactory.running("ghost-run", "report", replica="dead-host:1")
    )
    ran = anyio.Event()

    async def report() -> None:
        ran.set()

    scheduler = Scheduler(store, plugins=False)
    scheduler.add(Task("report", report, recover=recover))
    lost, rerun = anyio.Event(), anyio.Event()

    def watch(event: object) -> None:
        if isinstance(event, RunChanged):
            if event.record.status is RunStatus.LOST:
                lost.set()
            elif event.record.status is RunStatus.SUCCEEDED:
                rerun.set()

    scheduler.subscribe(watch)
    async with scheduler:
        with anyio.fail_after(5):
            await lost.wait()
            if recover:
                await rerun.wait()
        ghost = await scheduler.get_run("ghost-run")
        runs = await scheduler.history("report")
        assert ghost is not None
        assert not await store.save_run(ghost.evolve(status=RunStatus.SUCCEEDED))  # fenced
    assert ghost is not None and ghost.status is RunStatus.LOST
    assert ghost.reason == "lost: its replica dead-host:1 went silent past its lease"
    said = "1 run(s) of silent replicas marked lost (report), e.g. run ghost-run of task "
    said += "'report': lost: its replica dead-host:1 went silent past its lease"
    assert said in [r.getMessage() for r in caplog.records if r.name == "xtasks"]
    assert ran.is_set() is recover
    if recover:
        assert any(r.status is RunStatus.SUCCEEDED and r.id != "ghost-run" for r in runs)


class RunRecordFactory:
    @staticmethod
    def running(run_id: str, task: str, *, replica: str):
        from xtasks import RunRecord

        return RunRecord(
            id=run_id,
            task=task,
            status=RunStatus.RUNNING,
            cause=RunCause.SCHEDULE,
            scheduled_at=T0,
            started_at=T0,
            attempts=1,
            replica=replica,
        )


async def test_history_and_task_state_survive_a_restart_on_sqlite(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"

    def build() -> Scheduler:
        scheduler = Scheduler(url, plugins=False)
        scheduler.add(Task("job", noop, trigger=Every(hours=1)))
        scheduler.add(Task("other", noop))
        return scheduler

    first = build()
    async with first:
        done = await (await first.trigger("job")).wait()
        await first.pause("job")
        await first.cancel("other")
    second = build()  # a new process would build the same scheduler
    async with second:
        assert [r.id for r in await second.history("job")] == [done.id]
        assert (await second.get_run(done.id)) == done
        assert (await second.describe("job")).state is TaskState.PAUSED
        assert (await second.describe("job")).next_fire is None
        assert (await second.describe("other")).state is TaskState.CANCELLED
        with pytest.raises(TaskStateError):
            await second.trigger("job")


async def test_a_task_added_while_running_takes_its_stored_state_on_sqlite(tmp_path) -> None:
    """``add`` while running loads what the store keeps under the name, as start does:
    paused stays paused, cancelled stays cancelled, a grid keeps its stored anchor; a
    task never seen stores its own anchor (first writer wins)."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    clock = FakeClock(T0)
    first = Scheduler(url, plugins=False, clock=clock)
    first.add(Task("paused", noop, trigger=Every(hours=1)))
    first.add(Task("cancelled", noop))
    first.add(Task("grid", noop, trigger=Every(hours=1)))  # anchored at T0 in the store
    async with first:
        await first.pause("paused")
        await first.cancel("cancelled")
    await clock.advance(timedelta(minutes=25))
    second = Scheduler(url, plugins=False, clock=clock)  # built without those tasks
    second.add(Task("other", noop))
    async with second:
        second.add(Task("paused", noop, trigger=Every(hours=1)))
        second.add(Task("cancelled", noop))
        second.add(Task("grid", noop, trigger=Every(hours=1)))
        second.add(Task("fresh", noop, trigger=Every(hours=1)))
        assert {"paused", "cancelled", "grid", "fresh"} <= set(second.tasks)
        paused = await second.describe("paused")
        assert paused.state is TaskState.PAUSED and paused.next_fire is None
        with pytest.raises(TaskStateError):
            await second.trigger("paused")
        assert (await second.describe("cancelled")).state is TaskState.CANCELLED
        grid = await second.describe("grid")
        assert grid.state is TaskState.ACTIVE
        assert grid.next_fire == T0 + timedelta(hours=1)  # the stored grid, not ours
        fresh = await second.describe("fresh")
        assert fresh.next_fire == T0 + timedelta(minutes=25, hours=1)
        stored = await second.store.load_task("fresh")
        assert stored is not None and stored.anchor == T0 + timedelta(minutes=25)
        await clock.advance(timedelta(minutes=35))  # T0 + 1 h: only the grid fires
        await _settle(second, "grid", 1)
        assert [r.scheduled_at for r in await second.history("grid")] == [T0 + timedelta(hours=1)]
        assert await second.history("paused") == []
        kept = await second.store.load_task("paused")
        assert kept is not None and kept.state is TaskState.PAUSED


async def test_a_task_removed_while_its_stored_state_loads_is_not_armed() -> None:
    clock = FakeClock(T0)
    scheduler = Scheduler(plugins=False, clock=clock)
    async with scheduler:
        scheduler.add(Task("tick", noop, trigger=Every(minutes=1)))
        scheduler.remove("tick")  # before its load is applied
        with pytest.raises(UnknownDependencyError):
            scheduler.add(Task("report", noop, depends_on=["nothing"]))
        assert "report" not in scheduler.tasks
        scheduler.add(Task("tick", noop, trigger=Every(minutes=2)))
        assert (await scheduler.describe("tick")).next_fire == T0 + timedelta(minutes=2)
        await clock.advance(120)
        await _settle(scheduler, "tick", 1)
        assert len(await scheduler.history("tick")) == 1


async def test_states_reads_every_task_s_state_from_memory() -> None:
    scheduler = Scheduler(plugins=False)
    for name in ("a", "b", "c"):
        scheduler.add(Task(name, noop))
    with pytest.raises(SchedulerStateError, match="not running"):
        scheduler.states()
    async with scheduler:
        await scheduler.pause("b")
        await scheduler.cancel("c")
        states = scheduler.states()
        assert states == {"a": TaskState.ACTIVE, "b": TaskState.PAUSED, "c": TaskState.CANCELLED}
        states["a"] = TaskState.PAUSED  # a copy: the scheduler is not changed through it
        assert scheduler.states()["a"] is TaskState.ACTIVE


class CountingRenewals(DelegatingStore[MemoryStore]):
    """Counts the lease renewals that include one run."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.watched = ""
        self.renewed = 0
        self.enough = anyio.Event()  # renewed 6 times: twice the lease, at every third

    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        gone = await self.inner.renew_leases(replica, run_ids)
        if self.watched in run_ids and self.watched not in gone:
            self.renewed += 1
            if self.renewed >= 6:
                self.enough.set()
        return gone


async def test_a_run_longer_than_its_lease_is_renewed_in_time_and_not_reaped() -> None:
    shared = MemoryStore(lease_ttl=0.3)
    store = CountingRenewals(shared)

    async def long_report() -> str:
        with anyio.fail_after(10):
            await store.enough.wait()  # outlived its lease twice over, renewed
        return "done"

    a = Scheduler(store, plugins=False, replica_id="a")
    a.add(Task("long_report", long_report))
    reaper = Scheduler(shared, plugins=False, replica_id="b")  # reaps what a lets expire
    async with reaper, a:
        handle = await a.trigger("long_report")
        store.watched = handle.id
        with anyio.fail_after(15):
            record = await handle.wait()
    assert (record.status, record.result) == (RunStatus.SUCCEEDED, "done")


async def test_after_a_run_is_cancelled_the_next_runs_still_start() -> None:
    """Cancelling a run ends its worker's cancel scope: the worker goes on under a new
    one and takes the next runs (none waits for a worker that is gone)."""
    hanging = anyio.Event()

    async def hang() -> None:
        hanging.set()
        await anyio.sleep_forever()

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("hang", hang))
    scheduler.add(Task("quick", noop))
    async with scheduler:
        hung = await scheduler.trigger("hang")
        with anyio.fail_after(5):
            await hanging.wait()
        await scheduler.cancel("hang")
        with anyio.fail_after(5):
            assert (await hung.wait()).status is RunStatus.CANCELLED
            records = [await (await scheduler.trigger("quick")).wait() for _ in range(3)]
    assert [r.status for r in records] == [RunStatus.SUCCEEDED] * 3


async def test_the_runs_one_end_lets_start_run_side_by_side() -> None:
    """Three runs wait on one dependency: its end starts all three at once, each on a
    worker of its own (none queues behind another), and no more workers than that."""
    release_root = anyio.Event()
    together = anyio.Event()
    arrived = 0

    root_running = anyio.Event()

    async def root() -> None:
        root_running.set()
        await release_root.wait()

    async def branch() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            together.set()
        await together.wait()  # returns only once all three are running

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("root", root))
    for name in ("b1", "b2", "b3"):
        scheduler.add(Task(name, branch, depends_on=["root"]))
    async with scheduler:
        handles = [await scheduler.trigger(name) for name in ("b1", "b2", "b3")]
        with anyio.fail_after(5):
            await root_running.wait()  # pulled by the first; the others wait on it too
        release_root.set()
        with anyio.fail_after(5):
            records = [await handle.wait() for handle in handles]
        workers = [t for t in anyio.get_running_tasks() if t.name == "xtasks worker"]
    assert [r.status for r in records] == [RunStatus.SUCCEEDED] * 3
    assert len(workers) == 3


async def test_a_run_cancelled_before_a_worker_took_it_never_runs() -> None:
    """Cancelled between its dispatch and its pickup (the same turn of the loop), a run
    ends ``cancelled`` and its body is never called."""
    called = False

    async def job() -> None:
        nonlocal called
        called = True

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("job", job))
    async with scheduler:
        handle = await scheduler.trigger("job")
        await scheduler.cancel("job")
        with anyio.fail_after(5):
            record = await handle.wait()
    assert record.status is RunStatus.CANCELLED
    assert not called


async def test_stats_count_the_runs_executing_now_and_none_once_they_ended() -> None:
    go = anyio.Event()
    entered = anyio.Event()

    async def held() -> None:
        entered.set()
        await go.wait()

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("held", held))
    async with scheduler:
        handle = await scheduler.trigger("held")
        with anyio.fail_after(5):
            await entered.wait()
        assert (scheduler.stats().running, scheduler.stats().queued) == (1, 0)
        go.set()
        with anyio.fail_after(5):
            await handle.wait()
        assert (scheduler.stats().running, scheduler.stats().queued) == (0, 0)


async def test_bodies_that_never_await_do_not_hold_the_loop_between_runs() -> None:
    """One slot, twenty queued runs whose bodies never await: between two of them the
    worker gives the loop back, so other tasks (here an observer) run meanwhile."""
    release = anyio.Event()
    poke = anyio.Event()
    observed = 0
    seen: list[int] = []

    async def hold() -> None:
        await release.wait()

    async def never_awaits() -> None:
        seen.append(observed)
        poke.set()

    async def observer() -> None:
        nonlocal poke, observed
        while True:
            await poke.wait()
            poke = anyio.Event()
            observed += 1

    scheduler = Scheduler(plugins=False, max_concurrency=1)
    scheduler.add(Task("hold", hold))
    scheduler.add(Task("quick", never_awaits, overlap="allow"))
    async with anyio.create_task_group() as tg, scheduler:
        tg.start_soon(observer)
        held = await scheduler.trigger("hold")
        handles = [await scheduler.trigger("quick") for _ in range(20)]
        release.set()
        with anyio.fail_after(10):
            await held.wait()
            for handle in handles:
                await handle.wait()
        tg.cancel_scope.cancel()
    assert len(seen) == 20
    assert seen[-1] > seen[0]  # the observer ran between the runs


@in_virtual_time()
async def test_shutdown_returns_once_the_last_run_ended_not_after_the_whole_grace(
    anyio_backend: object,
) -> None:
    """In virtual time (trio's MockClock: every sleep exact): leaving the block waits for
    the run's last 0.3 s, not for the 60 s of grace."""
    entered = anyio.Event()

    async def short() -> str:
        entered.set()
        await anyio.sleep(0.3)  # the work: still going when the block ends
        return "done"

    scheduler = Scheduler(plugins=False, shutdown_grace=60)
    scheduler.add(Task("short", short))
    async with scheduler:
        handle = await scheduler.trigger("short")
        with anyio.fail_after(5):
            await entered.wait()
        leaving = anyio.current_time()
    assert anyio.current_time() - leaving == pytest.approx(0.3)
    assert handle.record is not None and handle.record.result == "done"


class GatedClaims(DelegatingStore[MemoryStore]):
    """Claims wait at a gate while ``gated``: a store slow to answer one claim."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.gated = False
        self.claiming = anyio.Event()
        self.gate = anyio.Event()

    async def claim_fires(
        self, fires: Sequence[tuple[str, datetime]], replica: str
    ) -> list[bool | StoreError]:
        if self.gated:
            self.claiming.set()
            await self.gate.wait()
        return await self.inner.claim_fires(fires, replica)


async def test_a_fire_being_claimed_when_the_scheduler_stops_is_the_next_starts_to_run() -> None:
    """A claim still in flight at stop is abandoned, not completed for a planner that no
    longer runs anything: the fire stays unclaimed, and the next start's catch-up runs it."""
    clock = FakeClock(T0)
    shared = MemoryStore()
    gated = GatedClaims(shared)
    entered = anyio.Event()
    ticks: list[anyio.Event] = [anyio.Event(), anyio.Event()]

    async def long() -> None:
        entered.set()
        try:
            await anyio.sleep_forever()
        finally:  # cancelled when the grace is over: the store answers the claim then
            gated.gate.set()

    async def tick() -> None:
        next(t for t in ticks if not t.is_set()).set()

    def tasks(scheduler: Scheduler) -> None:
        scheduler.add(Task("tick", tick, trigger=Every(seconds=60)))
        scheduler.add(Task("long", long))

    first = Scheduler(gated, plugins=False, clock=clock, replica_id="a", shutdown_grace=0.1)
    tasks(first)
    async with first:
        await clock.advance(60)
        with anyio.fail_after(5):
            await ticks[0].wait()  # the first fire ran: the store knows the last fire
        await first.trigger("long")
        with anyio.fail_after(5):
            await entered.wait()
        gated.gated = True
        await clock.advance(60)  # the second fire comes due; its claim waits
        with anyio.fail_after(5):
            await gated.claiming.wait()
    assert not ticks[1].is_set()
    await clock.advance(1)
    again = Scheduler(shared, plugins=False, clock=clock, replica_id="b")
    tasks(again)
    async with again:
        with anyio.fail_after(5):
            await ticks[1].wait()
        runs = await again.history("tick")
    assert sorted(r.scheduled_at for r in runs) == [T0 + timedelta(seconds=s) for s in (60, 120)]
