"""Nothing reported is lost when the store fails: writes are kept and retried, events and
handles wait for the commit, fires that cannot be claimed are recorded missed, and health
says so meanwhile. First through :class:`xtasks.testing.FaultyStore` (any backend), then
with real faults on SQLite files: another process holding the write lock, a full disk.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import pytest

from tests._log_lines import LogLines
from tests._virtual_time import in_virtual_time
from xtasks import Every, RunStatus, Scheduler, StoreError, Task
from xtasks.events import RunChanged, TaskStateChanged
from xtasks.stores.memory import MemoryStore
from xtasks.stores.sqlite import SQLiteStore
from xtasks.testing import FakeClock, FaultyStore
from xtasks.testing._delegating import DelegatingStore

if TYPE_CHECKING:
    from pathlib import Path

    from xtasks import RunRecord
    from xtasks.events import Event

pytestmark = pytest.mark.anyio

PATIENCE = 10


async def noop() -> str:
    return "done"


def final_events_only_after_commit(
    store: FaultyStore, scheduler: Scheduler
) -> tuple[list[RunRecord], list[RunRecord]]:
    """Subscribe a check: every final run event names a snapshot the store already took.

    Returns the final records published, and those published before the store had them
    (a subscriber's exceptions are only logged, so the test asserts on this list)."""
    published: list[RunRecord] = []
    unstored: list[RunRecord] = []

    def check(event: Event) -> None:
        assert isinstance(event, RunChanged)
        record = event.record
        if record.status.is_final:
            if (record.id, record.status) not in store.committed:
                unstored.append(record)
            published.append(record)

    scheduler.subscribe(check, types=RunChanged)
    return published, unstored


async def wait_until(predicate: object, what: str) -> None:
    assert callable(predicate)
    with anyio.fail_after(PATIENCE):
        while not predicate():  # noqa: ASYNC110 - stats() has no event to wait on
            await anyio.sleep(0.01)


async def test_runs_finished_while_writes_fail_are_stored_then_reported() -> None:
    store = FaultyStore(MemoryStore())
    scheduler = Scheduler(store, plugins=False)
    scheduler.add(Task("job", noop, overlap="allow"))
    published, unstored = final_events_only_after_commit(store, scheduler)
    async with scheduler:
        store.fail_writes()
        handles = [await scheduler.trigger("job") for _ in range(30)]
        await wait_until(lambda: scheduler.stats().store_write_failures >= 2, "failures")
        stats = scheduler.stats()
        assert not stats.store_writable and stats.store_backlog >= 1
        assert stats.store_error is not None and "injected store failure" in stats.store_error
        assert not any(h.record for h in handles), "a handle resolved before its commit"
        assert not published
        store.heal()
        with anyio.fail_after(PATIENCE):
            records = [await h.wait() for h in handles]
        assert {r.status for r in records} == {RunStatus.SUCCEEDED}
        stats = scheduler.stats()
        assert stats.store_writable and stats.store_error is None
    await store.open()  # as a later start would: everything written is there
    stored = {r.id: r for r in await store.inner.list_runs(task="job", limit=100)}
    assert {h.id for h in handles} <= set(stored)
    assert all(stored[h.id].status is RunStatus.SUCCEEDED for h in handles)
    assert len(published) == 30 and not unstored


async def test_one_warning_per_outage_not_per_record(caplog: pytest.LogCaptureFixture) -> None:
    store = FaultyStore(MemoryStore())
    scheduler = Scheduler(store, plugins=False)
    scheduler.add(Task("job", noop, overlap="allow"))
    caplog.set_level(logging.WARNING, logger="xtasks")
    async with scheduler:
        store.fail_writes()
        handles = [await scheduler.trigger("job") for _ in range(20)]
        await wait_until(lambda: scheduler.stats().store_write_failures >= 3, "failures")
        store.heal()
        with anyio.fail_after(PATIENCE):
            for handle in handles:
                await handle.wait()
    messages = [r.getMessage() for r in caplog.records if r.name == "xtasks"]
    assert sum("the store cannot write" in m for m in messages) == 1
    assert sum("the store writes again" in m for m in messages) == 1


async def test_fires_the_store_could_not_claim_are_recorded_missed_once_it_can() -> None:
    clock = FakeClock()
    store = FaultyStore(MemoryStore())
    scheduler = Scheduler(store, plugins=False, clock=clock)
    scheduler.add(Task("tick", noop, trigger=Every(minutes=1)))
    async with scheduler:
        await clock.advance(60)  # the first fire runs
        await scheduler._runtime.flush()  # type: ignore[union-attr]
        store.fail_writes()
        await clock.advance(180)  # three fires while the store fails
        await wait_until(lambda: scheduler.stats().fires_unclaimed == 3, "unclaimed")
        # No record was written meanwhile: failing claims alone say the store is down.
        assert scheduler.stats().store_backlog == 0
        stats = scheduler.stats()
        assert (stats.store_writable, stats.store_error) == (False, "injected store failure")
        store.heal()
        await wait_until(lambda: scheduler.stats().fires_unclaimed == 0, "recorded")
        await wait_until(lambda: scheduler.stats().store_backlog == 0, "written")
        await clock.advance(60)  # and the schedule goes on
        await scheduler._runtime.flush()  # type: ignore[union-attr]
        assert (scheduler.stats().store_writable, scheduler.stats().store_error) == (True, None)
    await store.open()
    runs = await store.inner.list_runs(task="tick", limit=10)
    by_status = sorted((r.status.value, r.reason or "") for r in runs)
    missed = [r for r in runs if r.status is RunStatus.MISSED]
    assert len(missed) == 1, by_status
    assert missed[0].reason is not None
    assert missed[0].reason.startswith("missed 3 fire(s)")
    assert "injected store failure" in missed[0].reason
    assert sum(r.status is RunStatus.SUCCEEDED for r in runs) == 2, by_status


async def test_stopping_while_the_store_fails_says_what_was_not_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultyStore(MemoryStore())
    scheduler = Scheduler(store, plugins=False, shutdown_grace=0.2)
    scheduler.add(Task("job", noop))
    caplog.set_level(logging.ERROR, logger="xtasks")
    async with scheduler:
        store.fail_writes()
        handle = await scheduler.trigger("job")
        await wait_until(lambda: scheduler.stats().store_write_failures >= 1, "failing")
    with pytest.raises(StoreError, match="stopped before the store took its final record"):
        await handle.wait()
    assert any("could not be stored" in r.getMessage() for r in caplog.records)
    await store.open()
    assert await store.inner.get_run(handle.id) is None  # and it was never reported final


async def test_a_hanging_store_never_stalls_the_timer() -> None:
    """Claims are made off the timer loop: a store that stops answering delays nothing
    but the claims themselves; the timer keeps handling deadlines."""
    clock = FakeClock()
    store = FaultyStore(MemoryStore())
    scheduler = Scheduler(store, plugins=False, clock=clock)
    scheduler.add(Task("a", noop, trigger=Every(seconds=10)))
    async with scheduler:
        store.hang_writes()
        with anyio.fail_after(PATIENCE):
            await clock.advance(100)  # would hang if the timer waited for a claim
        assert clock.next_deadline is not None and clock.next_deadline > clock.now()
        store.heal()
        await scheduler._runtime.flush()  # type: ignore[union-attr]


# --- real faults on SQLite ----------------------------------------------------------------


def _hold_the_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another OS process takes SQLite's write lock (BEGIN EXCLUSIVE) and keeps it."""
    code = textwrap.dedent(
        f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        time.sleep({seconds})
        conn.execute("ROLLBACK")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _lock_until_told(path: Path) -> subprocess.Popen[str]:
    """Another OS process takes SQLite's write lock and keeps it until a line on its
    stdin (:func:`_release`): the test decides when the fault ends, not a clock."""
    code = textwrap.dedent(
        f"""
        import sqlite3, sys
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        sys.stdin.readline()
        conn.execute("ROLLBACK")
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.close()
    proc.wait(timeout=PATIENCE)
    proc.stdout.close()


async def test_leases_that_cannot_be_renewed_are_said_once_then_renewed_again(
    tmp_path: Path,
) -> None:
    """The lease heartbeat meets another process's write lock: one warning, health
    says why, and once the lock is gone one line says leases are renewed again; the run
    it kept alive meanwhile finishes and is stored."""
    db = tmp_path / "x.db"
    gate = anyio.Event()

    async def held() -> str:
        await gate.wait()
        return "done"

    lines = LogLines()
    logging.getLogger("xtasks").addHandler(lines)
    scheduler = Scheduler(f"sqlite:///{db}?busy_timeout=0.05&lease_ttl=1.5", plugins=False)
    scheduler.add(Task("held", held))
    try:
        async with scheduler:
            handle = await scheduler.trigger("held")
            await wait_until(lambda: scheduler.stats().running == 1, "running")
            locker = await anyio.to_thread.run_sync(_lock_until_told, db)
            try:
                await wait_until(lambda: lines.said("could not renew leases"), "warning")
            finally:
                await anyio.to_thread.run_sync(_release, locker)
            await wait_until(lambda: lines.said("leases are renewed again"), "recovery")
            gate.set()
            with anyio.fail_after(PATIENCE):
                record = await handle.wait()
    finally:
        logging.getLogger("xtasks").removeHandler(lines)
    assert record.status is RunStatus.SUCCEEDED
    assert sum("could not renew leases" in m for m in lines.messages) == 1
    assert (await anyio.to_thread.run_sync(_stored_statuses, db))[handle.id] == "succeeded"


class _ReapsFailing(DelegatingStore[MemoryStore]):
    """Reaping works once, fails three times in a row, then works again (``recovered``)."""

    def __init__(self) -> None:
        super().__init__(MemoryStore(lease_ttl=0.15))  # a heartbeat every 0.05 s
        self.calls = 0
        self.recovered = anyio.Event()

    async def reap_lost(self) -> list[RunRecord]:
        self.calls += 1
        if 2 <= self.calls <= 4:
            raise StoreError("the disk is full")
        if self.calls > 5:
            self.recovered.set()
        return await self.inner.reap_lost()


async def test_a_lease_outage_is_said_once_when_it_starts_and_once_when_it_ends() -> None:
    """The operator's log: one warning at the first failed heartbeat (not the second),
    none for the failures after it, one when it works again; none before any outage."""
    store = _ReapsFailing()
    lines = LogLines()
    logging.getLogger("xtasks").addHandler(lines)
    try:
        async with Scheduler(store, plugins=False):
            with anyio.fail_after(PATIENCE):
                await store.recovered.wait()
    finally:
        logging.getLogger("xtasks").removeHandler(lines)
    about_leases = [m for m in lines.messages if "lease" in m]
    assert about_leases == [
        "could not renew leases or reap lost runs: the disk is full",
        "leases are renewed again",
    ]


async def test_a_pause_while_the_file_is_locked_is_stored_then_announced(
    tmp_path: Path,
) -> None:
    """``pause`` returns once the state is stored; while another process holds the lock
    it waits, nothing is announced, and no other replica could have seen it either."""
    db = tmp_path / "x.db"
    scheduler = Scheduler(f"sqlite:///{db}?busy_timeout=0.05", plugins=False)
    scheduler.add(Task("job", noop, trigger=Every(hours=1)))
    announced: list[str] = []
    scheduler.subscribe(lambda event: announced.append(event.state.value), TaskStateChanged)
    paused = anyio.Event()

    async def pause() -> None:
        await scheduler.pause("job")
        paused.set()

    async with scheduler:
        await scheduler.run("job")  # the file exists, in WAL mode
        locker: subprocess.Popen[str] | None = await anyio.to_thread.run_sync(_lock_until_told, db)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pause)
                await wait_until(lambda: not scheduler.stats().store_writable, "lock seen")
                assert not paused.is_set() and announced == []
                assert locker is not None
                await anyio.to_thread.run_sync(_release, locker)
                locker = None
                with anyio.fail_after(PATIENCE):
                    await paused.wait()
        finally:
            if locker is not None:
                await anyio.to_thread.run_sync(_release, locker)
        assert announced == ["paused"]
    assert await anyio.to_thread.run_sync(_stored_state, db, "job") == "paused"


def _stored_state(path: Path, task: str) -> str | None:
    conn = sqlite3.connect(path)
    try:
        found = conn.execute("SELECT state FROM tasks WHERE name = ?", (task,)).fetchone()
        return None if found is None else str(found[0])
    finally:
        conn.close()


def _stored_statuses(path: Path) -> dict[str, str]:
    """What a fresh process reads from the file."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT id, status FROM runs").fetchall())
    finally:
        conn.close()


async def test_runs_finished_while_another_process_holds_the_lock_reach_the_file(
    tmp_path: Path,
) -> None:
    db = tmp_path / "x.db"
    scheduler = Scheduler(f"sqlite:///{db}?busy_timeout=0.2", plugins=False)
    scheduler.add(Task("job", noop, overlap="allow"))
    async with scheduler:
        await scheduler.run("job")  # the file exists, in WAL mode
        locker = await anyio.to_thread.run_sync(_hold_the_write_lock, db, 2.0)
        try:
            handles = [await scheduler.trigger("job") for _ in range(20)]
            await wait_until(lambda: not scheduler.stats().store_writable, "lock seen")
            assert not any(h.record for h in handles)
        finally:
            await anyio.to_thread.run_sync(locker.wait)
            assert locker.stdout is not None
            locker.stdout.close()
        with anyio.fail_after(PATIENCE):
            records = [await h.wait() for h in handles]
    assert {r.status for r in records} == {RunStatus.SUCCEEDED}
    stored = await anyio.to_thread.run_sync(_stored_statuses, db)
    assert all(stored.get(h.id) == "succeeded" for h in handles)


async def test_a_full_disk_loses_no_run_reported_finished(tmp_path: Path) -> None:
    """``PRAGMA max_page_count`` makes SQLite answer SQLITE_FULL as a full disk would."""
    db = tmp_path / "x.db"
    store = SQLiteStore(db)
    scheduler = Scheduler(store, plugins=False)
    scheduler.add(Task("job", noop, overlap="allow"))

    def cap(conn: sqlite3.Connection, pages: int | None) -> None:
        if pages is None:
            conn.execute("PRAGMA max_page_count = 1073741823")
        else:
            used = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {used + pages}")

    async with scheduler:
        await scheduler.run("job")
        await store._call("cap", lambda conn: cap(conn, 0))  # no page left to grow into
        handles = [await scheduler.trigger("job") for _ in range(300)]
        await wait_until(lambda: not scheduler.stats().store_writable, "disk full seen")
        assert "full" in (scheduler.stats().store_error or "").lower()
        await store._call("uncap", lambda conn: cap(conn, None))  # room again
        with anyio.fail_after(PATIENCE):
            records = [await h.wait() for h in handles]
    assert {r.status for r in records} == {RunStatus.SUCCEEDED}
    stored = await anyio.to_thread.run_sync(_stored_statuses, db)
    assert all(stored.get(h.id) == "succeeded" for h in handles)


async def test_a_database_file_deleted_while_running_is_said_not_silently_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "x.db"
    scheduler = Scheduler(f"sqlite:///{db}", plugins=False, shutdown_grace=0.2)
    scheduler.add(Task("job", noop, overlap="allow"))
    caplog.set_level(logging.WARNING, logger="xtasks")
    async with scheduler:
        await scheduler.run("job")

        def delete_all() -> None:
            for path in tmp_path.glob("x.db*"):  # the file, its -wal and -shm
                path.unlink()

        await anyio.to_thread.run_sync(delete_all)
        handle = await scheduler.trigger("job")
        await wait_until(lambda: not scheduler.stats().store_writable, "deletion seen")
        assert "deleted or replaced" in (scheduler.stats().store_error or "")
    with pytest.raises(StoreError):
        await handle.wait()  # never reported final: it could not be stored
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "deleted or replaced" in logged and "could not be stored" in logged


@in_virtual_time()
async def test_a_stop_tries_a_failing_store_for_a_second_then_says_what_is_lost(
    anyio_backend: object,
) -> None:
    """Virtual time: with a grace shorter than a second, the last records still get a
    whole second of tries (the pauses cut to what is left of it), then one error line."""
    store = FaultyStore(MemoryStore())
    ran = anyio.Event()

    async def job() -> None:
        ran.set()

    lines = LogLines()
    logging.getLogger("xtasks").addHandler(lines)
    scheduler = Scheduler(store, plugins=False, shutdown_grace=0.1)
    scheduler.add(Task("job", job))
    try:
        async with scheduler:
            store.fail_writes(message="disk full")
            await scheduler.trigger("job")
            with anyio.fail_after(PATIENCE):
                await ran.wait()
            leaving = anyio.current_time()
    finally:
        logging.getLogger("xtasks").removeHandler(lines)
    assert round(lines.times[-1] - leaving, 6) == 1.0
    assert lines.messages[-1] == (
        "stopping while the store cannot write (StoreError: disk full): the last changes "
        "of 1 run(s) and 0 task state(s) could not be stored, and were not published"
    )
