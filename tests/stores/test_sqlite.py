"""SQLiteStore: durability, several store objects (and processes) on one file, leases, fencing."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import textwrap
import threading
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from xtasks import AuditRecord, RunRecord, RunStatus, StoreError
from xtasks._errors import ConfigError
from xtasks._runs import ErrorInfo, RunCause, TaskRecord, TaskState
from xtasks.stores import _sql, open_store
from xtasks.stores import sqlite as sqlite_module
from xtasks.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
#: The schema version a database is migrated to.
LATEST = len(_sql.MIGRATIONS)


def run(run_id: str, *, task: str = "t", status: RunStatus = RunStatus.SUCCEEDED, **kw: Any):
    kw.setdefault("scheduled_at", T0)
    kw.setdefault("cause", RunCause.SCHEDULE)
    return RunRecord(id=run_id, task=task, status=status, **kw)


@asynccontextmanager
async def opened(path: Path, **kw: Any) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(path, **kw)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "xtasks.db"


# -- URL, life cycle, schema ----------------------------------------------------------


def test_open_store_url(tmp_path: Path) -> None:
    store = open_store("sqlite:///some/dir/x.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == "some/dir/x.db"
    absolute = open_store(f"sqlite:///{tmp_path}/x.db")  # sqlite:////tmp/...
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == f"{tmp_path}/x.db"
    for bad in ("sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:x.db"):
        with pytest.raises(ConfigError, match=r"sqlite:///relative/path\.db"):
            open_store(bad)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="lease_ttl"):
        SQLiteStore("x.db", lease_ttl=0)
    with pytest.raises(ConfigError, match="max_runs_per_task"):
        SQLiteStore("x.db", max_runs_per_task=0)
    with pytest.raises(ConfigError, match="max_age"):
        SQLiteStore("x.db", max_age=-1)
    for busy in (-1, -0.5, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="busy_timeout.*must be >= 0 seconds"):
            SQLiteStore("x.db", busy_timeout=busy)
    assert SQLiteStore("x.db", busy_timeout=0).busy_timeout == 0  # fail at once: allowed


async def test_wal_mode_and_schema_version(db: Path) -> None:
    async with opened(db):
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"claims", "runs", "tasks", "audit"} <= tables
    conn.close()


async def test_reopen_keeps_everything(db: Path) -> None:
    async with opened(db) as store:
        await store.save_run(run("r1", result={"n": 1}))
        await store.save_task("t", TaskRecord(state=TaskState.PAUSED, last_fire=T0))
    async with opened(db) as store:
        assert (await store.get_run("r1")) == run("r1", result={"n": 1})
        assert await store.load_task("t") == TaskRecord(state=TaskState.PAUSED, last_fire=T0)


async def test_newer_schema_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="upgrade xtasks") as info:
        await SQLiteStore(db).open()
    assert str(db) in str(info.value)


async def test_concurrent_openers_migrate_once(db: Path) -> None:
    stores = [SQLiteStore(db) for _ in range(6)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    try:
        assert await stores[0].claim_fire("t", T0, "a")
        assert not await stores[-1].claim_fire("t", T0, "b")
    finally:
        for store in stores:
            await store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    conn.close()


async def test_a_v1_database_migrates_keeping_its_data(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from xtasks.stores import _sql

    caplog.set_level(logging.INFO, "xtasks.stores")
    conn = sqlite3.connect(db, isolation_level=None)
    for statement in _sql.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (id, task, status, trigger, scheduled_at) VALUES (?, ?, ?, ?, ?)",
        ("old", "t", "succeeded", "schedule", _sql.ts(T0)),
    )
    conn.close()
    async with opened(db) as store:
        # a column added since (NULL in the old row) reads as its default
        assert [(r.id, r.earlier_attempts) for r in await store.list_runs()] == [("old", ())]
        record = AuditRecord(at=T0, actor="ops", action="pause", task="t", outcome="ok")
        await store.add_audit(record)
        assert await store.list_audit(task="t") == [record]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    conn.close()
    said = [r.getMessage() for r in caplog.records if r.name == "xtasks.stores"]
    assert said == [f"SQLite store {db}: schema migrated v1 -> v{LATEST}"]


async def test_a_v2_database_renames_trigger_to_cause_keeping_every_run(db: Path) -> None:
    """A file written before RunRecord.trigger became RunRecord.cause reads back whole."""
    from xtasks.stores import _sql

    conn = sqlite3.connect(db, isolation_level=None)
    for statements in _sql.MIGRATIONS[:2]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    v2_columns = (
        "id, task, status, trigger, scheduled_at, started_at, finished_at, attempts, "
        "error_type, error_message, error_traceback, reason, result, replica"
    )
    later = T0 + timedelta(seconds=3)
    conn.executemany(
        f"INSERT INTO runs ({v2_columns}) VALUES ({', '.join('?' * 14)})",
        [
            ("s", "t", "succeeded", "schedule", _sql.ts(T0), _sql.ts(T0), _sql.ts(later), 1,
             None, None, None, None, '{"rows": 3}', "host:1"),
            ("m", "t", "failed", "manual", _sql.ts(later), _sql.ts(later), _sql.ts(later), 2,
             "ValueError", "bad", "Traceback...", None, None, "host:2"),
            ("d", "u", "skipped", "dependency", _sql.ts(later), None, _sql.ts(later), 0,
             None, None, None, "upstream_failed: t", None, ""),
            ("c", "u", "missed", "catch_up", _sql.ts(T0), None, None, 0,
             None, None, None, "missed 4 fire(s)", None, ""),
        ],
    )  # fmt: skip
    conn.close()
    async with opened(db) as store:
        assert await store.get_run("s") == run(
            "s", started_at=T0, finished_at=later, attempts=1, result={"rows": 3},
            replica="host:1",
        )  # fmt: skip
        assert await store.get_run("m") == run(
            "m", status=RunStatus.FAILED, cause=RunCause.MANUAL, scheduled_at=later,
            started_at=later, finished_at=later, attempts=2,
            error=ErrorInfo("ValueError", "bad", "Traceback..."), replica="host:2",
        )  # fmt: skip
        causes = {r.id: r.cause for r in await store.list_runs(limit=10)}
        assert causes == {
            "s": RunCause.SCHEDULE,
            "m": RunCause.MANUAL,
            "d": RunCause.DEPENDENCY,
            "c": RunCause.CATCH_UP,
        }
        # The migrated table takes writes: an update of an old row and a new run.
        updated = run("c", task="u", cause=RunCause.CATCH_UP, reason="missed 5")
        assert await store.save_runs([updated, run("new")]) == []  # none fenced
        assert await store.get_run("c") == updated
        assert [r.id for r in await store.list_runs(task="t")] == ["m", "new", "s"]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    conn.close()
    assert "cause" in columns
    assert "trigger" not in columns


async def test_corrupted_file_names_the_path(db: Path) -> None:
    await anyio.Path(db).write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(StoreError, match="cannot open") as info:
        await SQLiteStore(db).open()
    assert str(db) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


async def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "x.db"
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="does not exist") as info:
        await store.open()
    assert str(path) in str(info.value)
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(StoreError, match="store is not open"):  # not "closed": it never was
        await store.get_run("x")


def _open_files(path: Path) -> list[str]:
    """This process's file descriptors open on ``path`` (or its -wal/-shm files)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(path)):
                found.append(target)
    return found


async def test_a_file_that_fails_to_open_is_not_left_open(db: Path) -> None:
    await anyio.Path(db).write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(StoreError, match="cannot open"):
        await SQLiteStore(db).open()
    assert _open_files(db) == []


async def test_close_closes_the_file_and_folds_the_write_ahead_log_back(db: Path) -> None:
    async with opened(db) as store:
        await store.save_runs([run(f"r{i}") for i in range(50)])
        assert (db.parent / f"{db.name}-wal").stat().st_size > 0
    assert _open_files(db) == []
    wal = db.parent / f"{db.name}-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed into the file


def test_a_store_shows_its_file() -> None:
    assert repr(SQLiteStore("/var/lib/app/xtasks.db")) == "SQLiteStore('/var/lib/app/xtasks.db')"


async def test_a_database_that_cannot_use_wal_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async with opened(":memory:"):  # type: ignore[arg-type]
        pass
    said = [r.getMessage() for r in caplog.records if r.name == "xtasks.stores"]
    assert "SQLite store :memory:: journal mode is memory, not WAL" in said


def _hold_lock(db: Path, *, write: bool) -> tuple[sqlite3.Connection, threading.Event]:
    """Another connection holding ``db``'s write lock (or, for a new file still in
    rollback mode, a read lock) until the returned event is set."""
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    if not write:
        other.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return other, threading.Event()


async def test_a_write_waits_for_a_lock_no_longer_than_busy_timeout(db: Path) -> None:
    """busy_timeout=0.05: a write meeting another connection's write lock fails quickly,
    naming the lock (the 5 s default of Python's driver is not what applies)."""
    async with opened(db, busy_timeout=0.05) as store:
        other, _ = _hold_lock(db, write=True)
        try:
            began = anyio.current_time()
            with pytest.raises(StoreError, match="locked"):
                await store.save_runs([run("r1")])
            assert anyio.current_time() - began < 2.5  # far below 5 s, however loaded
        finally:
            other.execute("ROLLBACK")
            other.close()
        await store.save_runs([run("r1")])  # the lock is gone: it goes through


async def test_a_new_file_switches_to_wal_once_a_writer_lets_go_within_busy_timeout(
    db: Path,
) -> None:
    """A brand-new file another process is writing (still in rollback mode) cannot switch
    to WAL at once, and SQLite answers "locked" there without waiting (its busy handler is
    not called): the store retries within its busy_timeout, and fails naming the lock
    once that is spent."""
    sqlite3.connect(db).close()  # created in rollback mode, as a racing opener may find it
    writer, _ = _hold_lock(db, write=True)
    with pytest.raises(StoreError, match="locked"):
        await SQLiteStore(db, busy_timeout=0.05).open()

    async def let_go_later() -> None:
        await anyio.sleep(0.3)  # the other process's write, going on meanwhile
        await anyio.to_thread.run_sync(writer.execute, "COMMIT")

    async with anyio.create_task_group() as tg:
        tg.start_soon(let_go_later)
        async with opened(db, busy_timeout=10) as store:
            assert await store.get_run("x") is None
    writer.close()
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


class VirtualTime:
    """The ``time`` the SQLite store module reads, in virtual seconds: ``sleep`` moves
    ``monotonic`` on at once and is noted, so a pause is asserted exactly, not by a wall
    clock. ``time()`` is Unix time, moved by hand. A loop that never pauses fails."""

    def __init__(self, unix: float) -> None:
        self.now = 0.0
        self.unix = unix
        self.slept: list[float] = []
        self._reads = 0

    def monotonic(self) -> float:
        self._reads += 1
        assert self._reads < 10_000, "read the clock 10,000 times without pausing"
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._reads = 0
        self.slept.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.unix


@pytest.fixture
def virtual_time(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    clock = VirtualTime(time.time())
    monkeypatch.setattr(sqlite_module, "time", clock)
    return clock


async def test_a_new_file_locked_by_another_writer_is_retried_with_growing_pauses(
    db: Path, virtual_time: VirtualTime
) -> None:
    """Switching a new file to WAL while another connection writes it answers "locked" at
    once: the store tries again after 1 ms, doubling to at most 50 ms, as long as the next
    pause ends within busy_timeout (0.3 s here), then fails naming the lock."""
    sqlite3.connect(db).close()  # created in rollback mode, as a racing opener may find it
    writer, _ = _hold_lock(db, write=True)
    try:
        with pytest.raises(StoreError, match="locked"):
            await SQLiteStore(db, busy_timeout=0.3).open()
    finally:
        writer.close()
    assert virtual_time.slept == pytest.approx(
        [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05, 0.05, 0.05]
    )
    assert sum(virtual_time.slept) + 0.05 > 0.3  # one more pause would end past it


async def test_retention_runs_after_1000_writes_or_a_minute(
    db: Path, virtual_time: VirtualTime
) -> None:
    """Retention is off the hot path: it runs by itself once ``prune_every`` (1,000) writes
    went by since it last ran, each run, task state and audit record counting one, or
    at the first write ``prune_interval`` (60 s) after it last ran."""

    async def runs_left() -> int:
        return len(await store.list_runs(limit=2000))

    audit = AuditRecord(at=T0, actor="ops", action="pause", task="t", outcome="ok")
    later = iter(range(1, 10_000))

    def runs(count: int) -> list[RunRecord]:
        return [
            run(f"r{next(later)}", scheduled_at=T0 + timedelta(seconds=i)) for i in range(count)
        ]

    async with opened(db, max_runs_per_task=1) as store:
        assert (store.prune_every, store.prune_interval) == (1000, 60.0)
        await store.save_runs(runs(500))
        virtual_time.now = 59.999
        await store.save_runs(runs(1))
        assert await runs_left() == 501  # not yet a minute since it opened
        virtual_time.now = 60.0
        await store.save_runs(runs(1))
        assert await runs_left() == 1  # a minute: retention ran
        await store.save_runs(runs(997))
        await store.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
        await store.add_audit(audit)
        assert await runs_left() == 998  # 999 writes since
        await store.save_runs(runs(1))
        assert await runs_left() == 1  # the 1,000th


async def test_claims_are_kept_a_day_after_their_fire(db: Path, virtual_time: VirtualTime) -> None:
    """Retention forgets a claim once its fire is more than a day (86,400 s) old, by the
    wall clock: a day and half a second ago is forgotten, a day less half a second kept."""
    now = virtual_time.unix
    day = 86_400
    old = datetime.fromtimestamp(now - day - 0.5, UTC)
    recent = datetime.fromtimestamp(now - day + 0.5, UTC)
    async with opened(db) as store:
        assert await store.claim_fire("old", old, "a")
        assert await store.claim_fire("recent", recent, "a")
        await store.prune()
        assert not await store.claim_fire("recent", recent, "b")  # still claimed
    with sqlite3.connect(db) as conn:
        left = conn.execute("SELECT task FROM claims").fetchall()
    assert left == [("recent",)]


async def test_close_is_idempotent_and_calls_after_close_fail(db: Path) -> None:
    store = SQLiteStore(db)
    with pytest.raises(StoreError, match="not open"):
        await store.get_run("x")
    await store.open()
    await store.save_run(run("r1"))
    await store.close()
    await store.close()
    for call in (
        store.get_run("r1"),
        store.list_runs(),
        store.list_runs(statuses=[]),  # nothing to read, but still a closed store
        store.claim_fire("t", T0, "a"),
        store.save_runs([run("r2")]),
        store.save_runs([]),
        store.renew_leases("a", []),
        store.reap_lost(),
        store.load_task("t"),
        store.save_task("t", TaskRecord()),
    ):
        with pytest.raises(StoreError, match="store is closed"):
            await call
    async with opened(db) as again:  # what was written before close is there
        assert await again.get_run("r1") is not None
    await store.open()  # the same object opens again (a scheduler started again)
    try:
        assert await store.get_run("r1") is not None
    finally:
        await store.close()


async def test_driver_errors_are_wrapped(db: Path) -> None:
    async with opened(db, busy_timeout=0.05) as store:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match="claim failed.*locked") as info:
                await store.claim_fire("t", T0, "a")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert str(db) in str(info.value)
        assert await store.claim_fire("t", T0, "a")  # the failed claim was not made


# -- round trips ----------------------------------------------------------------------


async def test_round_trip_every_field(db: Path) -> None:
    paris = timezone(timedelta(hours=2))
    record = RunRecord(
        id="r1",
        task="billing.export",
        status=RunStatus.FAILED,
        cause=RunCause.CATCH_UP,
        scheduled_at=datetime(2026, 3, 29, 4, 30, 0, 1, tzinfo=paris),
        started_at=datetime(2026, 3, 29, 2, 30, 1, 999999, tzinfo=UTC),
        finished_at=datetime(2026, 3, 29, 2, 30, 2, tzinfo=UTC),
        attempts=3,
        error=ErrorInfo("ValueError", "bad 'x' — é", "Traceback...\n  line 1\n"),
        reason="because",
        result={"rows": [1, 2.5, None, True], "name": "ü"},
        replica="host-1:42",
    )
    async with opened(db) as store:
        assert await store.save_run(record)
        got = await store.get_run("r1")
        assert got == record
        assert got is not None
        for value in (got.scheduled_at, got.started_at, got.finished_at):
            assert value is not None and value.tzinfo is UTC
        assert got.scheduled_at.hour == 2 and got.scheduled_at.microsecond == 1
        assert await store.get_run("nope") is None

        empty = run("r2", status=RunStatus.QUEUED, cause=RunCause.SUBMIT)
        await store.save_run(empty)
        assert await store.get_run("r2") == empty
        no_message = run("r3", error=ErrorInfo("KeyError", ""))
        await store.save_run(no_message)
        assert await store.get_run("r3") == no_message


async def test_result_not_json_is_stored_as_repr(db: Path) -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<Thing 7>"

    loop: list[Any] = []
    loop.append(loop)
    async with opened(db) as store:
        await store.save_runs(
            [
                run("a", result=Thing()),
                run("b", result={"at": T0}),
                run("c", result=loop),
                run("d", result=(1, "x")),
                run("e", result="text"),
            ]
        )
        results = {r.id: r.result for r in await store.list_runs()}
    assert results == {
        "a": "<Thing 7>",
        "b": repr({"at": T0}),
        "c": "[[...]]",
        "d": [1, "x"],
        "e": "text",
    }


async def test_naive_datetime_is_refused(db: Path) -> None:
    async with opened(db) as store:
        with pytest.raises(ValueError, match="naive"):
            await store.claim_fire("t", datetime(2026, 1, 1), "a")


async def test_save_is_an_upsert_keeping_insertion_order(db: Path) -> None:
    async with opened(db) as store:
        await store.save_runs([run("a"), run("b")])
        await store.save_run(run("a", status=RunStatus.FAILED, attempts=2))
        assert [r.id for r in await store.list_runs()] == ["b", "a"]
        assert (await store.get_run("a")) == run("a", status=RunStatus.FAILED, attempts=2)


# -- claims and task state ------------------------------------------------------------


async def test_claim_is_exclusive_across_two_stores(db: Path) -> None:
    wins: list[str] = []
    async with opened(db) as one, opened(db) as two:

        async def contend(store: SQLiteStore, name: str) -> None:
            if await store.claim_fire("t", T0, name):
                wins.append(name)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(contend, (one, two)[i % 2], f"r{i}")
        assert len(wins) == 1
        assert not await two.claim_fire("t", T0, "late")
        # the same instant written in another zone is the same fire
        assert not await one.claim_fire("t", T0.astimezone(timezone(timedelta(hours=-5))), "x")
        assert await one.claim_fire("other", T0, "x")  # another task, same time
        assert (await two.load_task("t")) == TaskRecord(last_fire=T0)


_CLAIMER = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime, timedelta, timezone
    import anyio
    from xtasks.stores.sqlite import SQLiteStore

    async def main():
        store = SQLiteStore(sys.argv[1])
        await store.open()
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        won = [i for i in range(int(sys.argv[2]))
               if await store.claim_fire("tick", t0 + timedelta(seconds=i), sys.argv[3])]
        await store.close()
        print(json.dumps(won))

    anyio.run(main)
    """
)


async def test_claim_is_exclusive_across_processes(db: Path) -> None:
    fires = 150
    results: list[list[int]] = []

    async def claimer(name: str) -> None:
        args = [sys.executable, "-c", _CLAIMER, str(db), str(fires), name]
        done = await anyio.run_process(args, check=True)
        results.append(json.loads(done.stdout))

    async with anyio.create_task_group() as tg:  # three processes open a fresh file at once
        for name in ("p1", "p2", "p3"):
            tg.start_soon(claimer, name)
    won = sorted(i for result in results for i in result)
    assert won == list(range(fires))
    async with opened(db) as store:
        last = T0.replace(2026, 1, 1, 0, 0, 0, 0) + timedelta(seconds=fires - 1)
        assert (await store.load_task("tick")) == TaskRecord(last_fire=last)


_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    import anyio
    from xtasks import RunRecord, RunStatus
    from xtasks._runs import RunCause

    async def main():
        from xtasks.stores.sqlite import SQLiteStore
        store = SQLiteStore(sys.argv[1])
        await store.open()
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        for i in range(100_000):
            batch = [
                RunRecord(id=f"r{i}-{j}", task="t", status=RunStatus.SUCCEEDED,
                          cause=RunCause.SUBMIT, scheduled_at=t0, result=[i, j])
                for j in range(5)
            ]
            await store.save_runs(batch)
            print(i, flush=True)

    anyio.run(main)
    """
)


async def test_sigkill_during_writes_loses_no_reported_run(db: Path) -> None:
    """Every batch whose save returned before a SIGKILL is in the database afterwards."""
    async with await anyio.open_process([sys.executable, "-c", _WRITER, str(db)]) as process:
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        reported = -1
        while reported < 200:  # stop it in the middle of a burst of writes
            reported = int(await lines.receive_until(b"\n", 100))
        process.kill()
        await process.wait()
    async with opened(db) as store:
        for i in (0, reported // 2, reported):
            assert await store.get_run(f"r{i}-4") is not None
        assert len(await store.list_runs(limit=10**6)) >= 5 * (reported + 1)


async def test_last_fire_never_moves_backwards(db: Path) -> None:
    later, earlier = T0 + timedelta(minutes=5), T0 - timedelta(minutes=5)
    async with opened(db) as store:
        assert await store.load_task("t") is None
        assert await store.claim_fire("t", later, "a")
        assert await store.claim_fire("t", earlier, "a")  # a claim, but last_fire stays
        assert (await store.load_task("t")) == TaskRecord(last_fire=later)

        await store.change_task_state("t", TaskRecord(state=TaskState.CANCELLED, last_fire=T0))
        await store.save_task("u", TaskRecord(consecutive_failures=3, alerting=True))
        assert (await store.load_task("t")) == TaskRecord(
            state=TaskState.CANCELLED, last_fire=later
        )
        await store.save_task("t", TaskRecord(last_fire=None))  # the state stays
        assert (await store.load_task("t")) == TaskRecord(
            state=TaskState.CANCELLED, last_fire=later
        )
        assert (await store.load_task("u")) == TaskRecord(consecutive_failures=3, alerting=True)
        await store.save_task("u", TaskRecord(last_fire=later))
        assert (await store.load_task("u")) == TaskRecord(last_fire=later)
        assert await store.claim_fire("t", later + timedelta(seconds=1), "a")
        state = await store.load_task("t")
        assert state is not None and state.last_fire == later + timedelta(seconds=1)


async def test_old_claims_are_pruned_behind_a_floor(db: Path) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    async with opened(db) as store:
        for minutes in (0, 1, 3):
            assert await store.claim_fire("t", old + timedelta(minutes=minutes), "a")
        await store.prune()
        assert not await store.claim_fire("t", old + timedelta(minutes=2), "a")  # below floor
        assert not await store.claim_fire("t", old + timedelta(minutes=3), "a")
        assert await store.claim_fire("t", old + timedelta(minutes=4), "a")
        assert await store.claim_fire("u", old, "a")  # floors are per task
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT fire_time FROM claims WHERE task = 't'").fetchall() == [
        ((old + timedelta(minutes=4)).isoformat(timespec="microseconds"),)
    ]
    conn.close()


async def test_claims_of_the_last_day_are_kept_and_raise_no_floor(db: Path) -> None:
    """Only claims older than a day are pruned: an hour-old claim stays (claimed once),
    and an earlier fire nobody claimed yet can still be claimed (no floor above it)."""
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    async with opened(db) as store:
        assert await store.claim_fire("t", hour_ago, "a")
        await store.prune()
        assert not await store.claim_fire("t", hour_ago, "b")
        assert await store.claim_fire("t", hour_ago - timedelta(hours=1), "b")


# -- leases and fencing ---------------------------------------------------------------


async def test_lease_expiry_reaps_once_and_fences_late_writes(db: Path) -> None:
    async with opened(db, lease_ttl=0.2) as one, opened(db, lease_ttl=0.2) as two:
        running = run("r1", status=RunStatus.RUNNING, replica="a", attempts=1)
        await one.save_runs([running, run("r2", status=RunStatus.RUNNING, replica="a")])
        await one.save_run(run("r2", status=RunStatus.SUCCEEDED, replica="a"))  # releases
        assert await two.reap_lost() == []  # not expired yet
        await anyio.sleep(0.25)

        reaped: list[RunRecord] = []

        async def reap(store: SQLiteStore) -> None:
            reaped.extend(await store.reap_lost())

        async with anyio.create_task_group() as tg:
            for store in (one, two, one, two):
                tg.start_soon(reap, store)
        lost = running.evolve(
            status=RunStatus.LOST, reason="lost: its replica a went silent past its lease"
        )
        assert reaped == [lost]
        assert await one.reap_lost() == []

        late = running.evolve(status=RunStatus.SUCCEEDED, result=1)
        assert not await one.save_run(late)
        assert await one.save_runs([run("r3"), late, run("r4")]) == ["r1"]
        assert await two.get_run("r1") == lost
        assert await two.get_run("r3") is not None
        assert await one.renew_leases("a", ["r1"]) == {"r1"}
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT epoch, lease_owner FROM runs WHERE id = 'r1'").fetchone() == (
        1,
        None,
    )
    conn.close()


async def test_renew_keeps_a_run_alive(db: Path) -> None:
    async with opened(db, lease_ttl=0.25) as one, opened(db, lease_ttl=0.25) as two:
        await one.save_run(run("mine", status=RunStatus.RUNNING, replica="a"))
        await one.save_run(run("theirs", status=RunStatus.RUNNING, replica="b"))
        for _ in range(4):  # 0.4 s in all: longer than the lease
            await anyio.sleep(0.1)
            assert await one.renew_leases("a", ["mine", "theirs", "ghost"]) == {"theirs", "ghost"}
            assert await two.renew_leases("b", ["theirs"]) == set()
        assert await two.reap_lost() == []
        assert await one.renew_leases("a", []) == set()
        await anyio.sleep(0.3)
        assert {r.id for r in await two.reap_lost()} == {"mine", "theirs"}


class FakeTime:
    """Store time a test moves by hand: every store object on the file shares it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_queued_and_waiting_runs_are_reaped_unless_renewed(db: Path) -> None:
    """Every live run holds its replica's lease, not only a running one (abc.reap_lost)."""
    clock = FakeTime()
    async with opened(db, lease_ttl=10, clock=clock) as store:
        await store.save_run(run("q", status=RunStatus.QUEUED, replica="a"))
        await store.save_run(run("w", status=RunStatus.RUNNING, replica="a", attempts=1))
        await store.save_run(run("w", status=RunStatus.WAITING, replica="a", attempts=1))
        await store.save_run(run("f", status=RunStatus.QUEUED, replica="a"))
        await store.save_run(run("f", status=RunStatus.CANCELLED, replica="a"))
        clock.now += 9
        assert await store.renew_leases("a", ["q", "w", "f"]) == {"f"}  # f ended: not held
        clock.now += 2  # w was renewed too: nothing expired
        assert await store.reap_lost() == []
        assert await store.renew_leases("a", ["q"]) == set()
        clock.now += 9.5  # w's lease (renewed 11.5 s ago) expired, q's (9.5 s ago) holds
        reaped = await store.reap_lost()
        assert reaped == [
            run(
                "w",
                status=RunStatus.LOST,
                replica="a",
                attempts=1,
                reason="lost: its replica a went silent past its lease",
            )
        ]
        clock.now += 1
        assert [r.id for r in await store.reap_lost()] == ["q"]
        clock.now += 3600
        assert await store.reap_lost() == []  # a final run is never reaped
        assert (await store.get_run("f")).status is RunStatus.CANCELLED  # type: ignore[union-attr]
        # Fenced: the dead owner can neither start its reaped queued run nor finish it.
        assert await store.save_runs([run("q", status=RunStatus.RUNNING, replica="a")]) == ["q"]
        assert not await store.save_run(run("q", replica="a"))


async def test_renewal_of_thousands_of_queued_runs_in_one_call(db: Path) -> None:
    """A burst of submissions leaves thousands queued; one renewal covers them (in chunks)."""
    clock = FakeTime()
    ids = [f"r{i}" for i in range(1234)]
    async with opened(db, lease_ttl=10, clock=clock) as store:
        await store.save_runs([run(i, status=RunStatus.QUEUED, replica="a") for i in ids])
        clock.now += 9
        assert await store.renew_leases("a", [*ids, "ghost"]) == {"ghost"}
        assert await store.renew_leases("b", ids[:3]) == set(ids[:3])  # not b's
        clock.now += 9
        assert await store.reap_lost() == []
        clock.now += 2
        assert len(await store.reap_lost()) == len(ids)


async def test_reaping_scans_the_live_runs_index_not_the_history(db: Path) -> None:
    from xtasks.stores import _sql

    async with opened(db):
        pass
    conn = sqlite3.connect(db)
    plan = " ".join(
        str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + _sql.REAP_SCAN, {"now": 0.0})
    )
    conn.close()
    assert "runs_by_lease" in plan, plan


async def test_a_v4_database_keeps_its_task_states_and_reports_no_change(db: Path) -> None:
    """A pause stored before changes were numbered stays; replicas polling from 0 see no
    change to apply (they read the state at start), and the next change is numbered 1."""
    from xtasks import TaskState
    from xtasks.abc import TaskRecord
    from xtasks.stores import _sql

    conn = sqlite3.connect(db, isolation_level=None)
    for statements in _sql.MIGRATIONS[:4]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("INSERT INTO tasks (name, state) VALUES ('p', 'paused'), ('a', 'active')")
    conn.close()
    async with opened(db) as store:
        assert await store.task_state_changes(0) == (0, {})
        assert (await store.load_tasks(["p", "a"]))["p"].state is TaskState.PAUSED
        assert await store.change_task_state("a", TaskRecord(state=TaskState.CANCELLED)) == 1
        assert await store.task_state_changes(0) == (1, {"a": TaskState.CANCELLED})


async def test_a_v3_database_gives_its_live_runs_a_lease(db: Path) -> None:
    """Runs a v3 file holds queued or waiting had no lease: each gets one from the upgrade,
    so the orphans of a crash before it are reaped one default lease (10 s) later."""
    from xtasks.stores import _sql

    conn = sqlite3.connect(db, isolation_level=None)
    for statements in _sql.MIGRATIONS[:3]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    columns = "id, task, status, cause, scheduled_at, replica, lease_owner, lease_expires"
    conn.executemany(
        f"INSERT INTO runs ({columns}) VALUES (?, 't', ?, 'schedule', ?, ?, ?, ?)",
        [
            ("q", "queued", _sql.ts(T0), "host:1", None, None),
            ("w", "waiting", _sql.ts(T0), "host:1", None, None),
            ("r", "running", _sql.ts(T0), "host:2", "host:2", 5.0),  # long expired
            ("s", "succeeded", _sql.ts(T0), "host:1", None, None),
        ],
    )
    conn.close()
    before = time.time()
    async with opened(db) as store:
        assert [r.id for r in await store.reap_lost()] == ["r"]
    after = time.time()
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, lease_owner, lease_expires FROM runs")
    leases = {row[0]: row[1:] for row in rows}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    conn.close()
    assert leases["s"] == (None, None)
    assert leases["r"] == (None, None)  # reaped
    for run_id in ("q", "w"):
        owner, expires = leases[run_id]
        assert owner == "host:1"
        assert before + 10 - 1 <= expires <= after + 10 + 1
    clock = FakeTime()
    clock.now = after + 11
    async with opened(db, clock=clock) as store:
        assert sorted(r.id for r in await store.reap_lost()) == ["q", "w"]


async def test_a_v6_database_reads_its_runs_with_no_earlier_attempts(db: Path) -> None:
    """Rows written before runs kept their earlier attempts read back with none (the empty
    tuple), and take a write that has some."""
    from xtasks import AttemptRecord
    from xtasks.stores import _sql

    conn = sqlite3.connect(db, isolation_level=None)
    for statements in _sql.MIGRATIONS[:6]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 6")
    conn.execute(
        "INSERT INTO runs (id, task, status, cause, scheduled_at, attempts, error_type,"
        " error_message, error_traceback)"
        " VALUES ('old', 't', 'failed', 'schedule', ?, 2, 'E', 'second', '')",
        (_sql.ts(T0),),
    )
    conn.close()
    old = run("old", status=RunStatus.FAILED, attempts=2, error=ErrorInfo("E", "second"))
    attempt = AttemptRecord(1, T0, T0 + timedelta(seconds=1), ErrorInfo("E", "first"))
    async with opened(db) as store:
        assert await store.get_run("old") == old
        assert (await store.list_runs())[0].earlier_attempts == ()
        await store.save_run(old.evolve(earlier_attempts=(attempt,)))
        assert await store.get_run("old") == old.evolve(earlier_attempts=(attempt,))
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    stored = conn.execute("SELECT earlier_attempts FROM runs").fetchone()[0]
    conn.close()
    assert json.loads(stored) == [
        {
            "number": 1,
            "started_at": "2026-03-01T12:00:00.123456+00:00",
            "finished_at": "2026-03-01T12:00:01.123456+00:00",
            "error": {"type": "E", "message": "first", "traceback": ""},
        }
    ]


async def test_a_v7_database_reads_its_runs_with_no_executor_and_no_worker(db: Path) -> None:
    """Rows written before runs kept where they ran read back with executor ``""`` and no
    worker, and take a write that has both."""
    conn = sqlite3.connect(db, isolation_level=None)
    for statements in _sql.MIGRATIONS[:7]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 7")
    conn.execute(
        "INSERT INTO runs (id, task, status, cause, scheduled_at, finished_at, attempts,"
        " replica) VALUES ('old', 't', 'succeeded', 'manual', ?, ?, 1, 'host:1')",
        (_sql.ts(T0), _sql.ts(T0 + timedelta(seconds=1))),
    )
    conn.close()
    old = run(
        "old",
        cause=RunCause.MANUAL,
        finished_at=T0 + timedelta(seconds=1),
        attempts=1,
        replica="host:1",
    )
    async with opened(db) as store:
        back = await store.get_run("old")
        assert back == old
        assert back is not None and (back.executor, back.worker) == ("", None)
        assert await store.list_runs() == [old]
        ran = old.evolve(executor="celery", worker="celery@host1")
        await store.save_run(ran)
        assert await store.get_run("old") == ran
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert conn.execute("SELECT executor, worker FROM runs").fetchone() == (
        "celery",
        "celery@host1",
    )
    conn.close()


async def test_a_run_without_earlier_attempts_stores_null(db: Path) -> None:
    """The usual run never retried: no JSON is written for it."""
    async with opened(db) as store:
        await store.save_run(run("plain", attempts=1))
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT earlier_attempts FROM runs").fetchone() == (None,)
    conn.close()


# -- history --------------------------------------------------------------------------


async def test_list_runs_newest_first_with_filters_and_paging(db: Path) -> None:
    records = [
        run("a1", task="a", scheduled_at=T0),
        run("b1", task="b", scheduled_at=T0 + timedelta(seconds=1), status=RunStatus.FAILED),
        run("a2", task="a", scheduled_at=T0 + timedelta(seconds=2), status=RunStatus.FAILED),
        run("a3", task="a", scheduled_at=T0 + timedelta(seconds=2)),  # same time, later insert
        run("a0", task="a", scheduled_at=T0 - timedelta(days=400)),
    ]
    async with opened(db) as store:
        await store.save_runs(records)

        async def ids(**kw: Any) -> list[str]:
            return [r.id for r in await store.list_runs(**kw)]

        assert await ids() == ["a3", "a2", "b1", "a1", "a0"]
        assert await ids(task="a") == ["a3", "a2", "a1", "a0"]
        assert await ids(task="a", limit=2, offset=1) == ["a2", "a1"]
        assert await ids(task="a", offset=10) == []
        assert await ids(limit=0) == []
        assert await ids(statuses=[RunStatus.FAILED]) == ["a2", "b1"]
        assert await ids(task="b", statuses={RunStatus.FAILED, RunStatus.LOST}) == ["b1"]
        assert await ids(statuses=[]) == []
        assert await ids(task="zzz") == []


async def test_retention_prunes_but_keeps_live_runs(db: Path) -> None:
    def at(i: int) -> datetime:
        return T0 + timedelta(minutes=i)

    async with opened(db, max_runs_per_task=3) as store:
        store.prune_every = 10**9
        await store.save_runs(
            [run("old-running", status=RunStatus.RUNNING, scheduled_at=at(-1), replica="a")]
            + [run("old-queued", status=RunStatus.QUEUED, scheduled_at=at(-1))]
            + [run(f"t{i}", scheduled_at=at(i)) for i in range(6)]
            + [run(f"u{i}", task="u", scheduled_at=at(i)) for i in range(2)]
        )
        assert await store.prune() == 3
        left = {r.id for r in await store.list_runs(limit=100)}
        assert left == {"old-running", "old-queued", "t3", "t4", "t5", "u0", "u1"}

    now = datetime.now(UTC)
    async with opened(db, max_age=3600) as store:
        await store.save_runs(
            [
                run("ancient", scheduled_at=now - timedelta(days=2)),
                run("long", scheduled_at=now - timedelta(days=2), finished_at=now),
                run("stuck", status=RunStatus.RUNNING, scheduled_at=now - timedelta(days=2)),
                run("fresh", scheduled_at=now),
            ]
        )
        await store.prune()
        left = {r.id for r in await store.list_runs(limit=100)}
        assert {"long", "stuck", "fresh"} <= left and "ancient" not in left


async def test_retention_by_age_prunes_the_audit_trail_but_not_by_count(db: Path) -> None:
    now = datetime.now(UTC)

    def audit(name: str, at: datetime) -> AuditRecord:
        return AuditRecord(id=name, at=at, actor="ops", action="run", task="t", outcome="ok")

    async with opened(db, max_runs_per_task=1) as store:
        for i in range(3):
            await store.add_audit(audit(f"a{i}", now - timedelta(days=2, seconds=i)))
        await store.prune()
        assert len(await store.list_audit()) == 3  # max_runs_per_task: not for audit
    async with opened(db, max_age=3600) as store:
        await store.add_audit(audit("fresh", now))
        await store.prune()
        assert [r.id for r in await store.list_audit()] == ["fresh"]


async def test_task_filtered_audit_pages_use_the_index(db: Path) -> None:
    async with opened(db):
        pass
    conn = sqlite3.connect(db)
    plan = " ".join(
        str(row[-1])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM audit WHERE task = ?"
            " ORDER BY at DESC, seq DESC LIMIT 10 OFFSET 20",
            ("t",),
        )
    )
    conn.close()
    assert "audit_by_task" in plan and "TEMP B-TREE" not in plan


async def test_retention_runs_by_itself_after_writes(db: Path) -> None:
    async with opened(db, max_runs_per_task=2) as store:
        store.prune_every = 5
        for i in range(4):
            await store.save_run(run(f"r{i}", scheduled_at=T0 + timedelta(seconds=i)))
        assert len(await store.list_runs()) == 4  # not yet: off the hot path
        await store.save_run(run("r4", scheduled_at=T0 + timedelta(seconds=4)))
        assert [r.id for r in await store.list_runs()] == ["r4", "r3"]


# -- the event loop -------------------------------------------------------------------


async def test_event_loop_is_not_blocked_while_sqlite_waits(db: Path) -> None:
    """A claim waiting for another connection's lock waits in its thread: the loop goes
    on meanwhile (ten ticks of another task), and the claim ends once the lock is gone."""
    async with opened(db) as store:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        ticked = anyio.Event()
        claimed = anyio.Event()

        async def tick() -> None:
            for _ in range(10):
                await anyio.sleep(0.01)
            ticked.set()

        async def claim() -> None:
            assert await store.claim_fire("t", T0, "a")  # waits for the lock in its thread
            claimed.set()

        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(tick)
                    tg.start_soon(claim)
                    await ticked.wait()
                    assert not claimed.is_set()  # still waiting for the lock
                    other.execute("COMMIT")
                    await claimed.wait()
        finally:
            other.close()


async def test_reaped_runs_are_numbered_in_the_run_feed_and_counted_lost(db: Path) -> None:
    """Two runs reaped in one call: each is a change of the feed, numbered in order after
    what was there, and each counts once in the totals as lost."""
    now = [1_000_000.0]
    async with opened(db, lease_ttl=5, clock=lambda: now[0]) as store:
        await store.save_runs([run(f"r{i}", status=RunStatus.RUNNING, replica="a") for i in (1, 2)])
        before = (await store.run_changes(0, 0)).latest
        now[0] += 6  # both leases expired
        reaped = await store.reap_lost()
        assert sorted(r.id for r in reaped) == ["r1", "r2"]
        changes = await store.run_changes(before)
        assert changes.latest == before + 2
        numbers = [number for number, _ in changes.changes]
        assert numbers == [before + 1, before + 2]
        assert sorted((r.id, r.status) for _, r in changes.changes) == [
            ("r1", RunStatus.LOST),
            ("r2", RunStatus.LOST),
        ]
        totals = [(t.task, t.status, t.runs) for t in await store.run_totals()]
        assert totals == [("t", RunStatus.LOST, 2)]


async def test_a_failing_retention_keeps_the_write_warns_and_runs_again_next_time(
    db: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Retention fails (its statement cannot run here: SQLite cannot be made to fail this
    one statement on demand): the write that triggered it stands, one warning says
    retention will retry, and the next write's retention does the work."""
    async with opened(db, max_runs_per_task=1) as store:
        store.prune_every = 1
        monkeypatch.setattr(_sql, "PRUNE_COUNT", "SELECT no_such_column FROM runs")
        await store.save_runs(
            [run("r1", scheduled_at=T0), run("r2", scheduled_at=T0 + timedelta(1))]
        )
        assert {r.id for r in await store.list_runs()} == {"r1", "r2"}  # the write stands
        said = [r.getMessage() for r in caplog.records if r.name == "xtasks.stores"]
        assert len(said) == 1 and said[0].startswith(f"SQLite store {db}: retention failed")
        monkeypatch.undo()
        caplog.set_level(logging.DEBUG, "xtasks.stores")
        await store.save_runs([run("r3", scheduled_at=T0 + timedelta(2))])
        assert [r.id for r in await store.list_runs()] == ["r3"]
        said = [r.getMessage() for r in caplog.records if r.name == "xtasks.stores"]
        assert said[-1] == f"SQLite store {db}: retention deleted 2 run(s)"


async def test_a_write_that_fails_midway_leaves_no_transaction_open(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement failing inside a write's transaction (made to fail here: SQLite cannot
    be made to fail one statement on demand) rolls it back: the error names the write,
    and the next write goes through instead of finding a transaction still open."""
    record = AuditRecord(at=T0, actor="ops", action="pause", task="t", outcome="ok")
    async with opened(db) as store:
        monkeypatch.setattr(_sql, "ADD_AUDIT", "INSERT INTO no_such_table VALUES (1)")
        with pytest.raises(StoreError, match="add audit record failed"):
            await store.add_audit(record)
        monkeypatch.undo()
        await store.add_audit(record)
        assert await store.list_audit(task="t") == [record]
