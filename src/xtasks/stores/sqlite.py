"""SQLiteStore: the durable default (``sqlite:///path``), for one process or several on one host.

**Threading.** The standard library's blocking ``sqlite3`` never runs on the event loop:
each store owns one connection (``check_same_thread=False``) and every call goes through
``anyio.to_thread.run_sync`` under a per-store ``CapacityLimiter(1)``, so calls on one
store are serialised and the loop (asyncio or trio) keeps running while SQLite waits for a
lock. A call whose caller is cancelled still completes in its thread (anyio's default),
so a transaction is never left half-done.

**Several processes** (``uvicorn --workers N``) share the file: WAL mode lets readers
run beside the writer, every write is a ``BEGIN IMMEDIATE`` transaction (the write lock is
taken up front, so no deadlocking lock upgrade), and ``busy_timeout`` makes a writer wait
for the lock instead of failing. A claim is a row under ``PRIMARY KEY (task, fire_time)``:
exactly one ``INSERT`` of it succeeds whichever process tries.

**Leases.** Every live row (``queued``, ``waiting``, ``running``) names the replica that
wrote it in ``lease_owner``, until ``lease_expires``; a final row has neither. So the
leased rows are the live ones, and :meth:`~SQLiteStore.reap_lost` finds those of a dead
replica through a partial index on ``lease_expires``, whatever their number: the cost of a
reap does not grow with history. A row it marked ``lost`` is fenced: the upsert skips it,
and its ``epoch`` is bumped. ``synchronous=NORMAL`` is safe in WAL mode: a committed transaction
survives a crash of the process (only a power loss may drop the last ones).

**Store time** for leases is ``time.time()`` (the ``clock`` argument, which only tests
change) read in the worker thread *after* the transaction took the write lock: every process of the host reads the same system clock,
which is also the clock SQLite's own ``julianday('now')`` reads, and SQLite serves one host
only. A step of the system clock moves every lease alike; a forward step may reap a run
early, which its fencing then makes safe (at most once).

**Encoding** (see ``_sql``): times are UTC ISO-8601 text with microseconds and come back
as equal, aware UTC datetimes; ``result`` is JSON text, or the ``repr()`` string of a
result JSON cannot encode.

**Retention.** ``max_runs_per_task`` and ``max_age`` (seconds since a run finished, or was
scheduled if it never finished) prune history after a write, at most once per
:attr:`~SQLiteStore.prune_every` writes or :attr:`~SQLiteStore.prune_interval` seconds, in
a transaction of its own; runs still queued, waiting or running are never deleted.
``max_age`` also drops audit records whose ``at`` is older than it; ``max_runs_per_task``
does not apply to the audit trail (it is not per task history). Claims
older than a day are pruned too, leaving a per-task floor at or below which a fire counts
as taken (as :class:`~xtasks.stores.memory.MemoryStore` does).

**Change feed and totals.** Each run write numbers its row's ``change`` from the
``counters`` table in the same ``BEGIN IMMEDIATE`` transaction (so numbers follow commit
order across the processes of the host), and a run's first final write adds it to
``run_totals`` there too: one more small ``UPDATE`` per batch, and one upsert per task and
status that the batch finished. Retention records the highest number it deleted.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
import anyio.to_thread

from .._errors import ConfigError, StoreError
from .._feed import RunChanges, RunTotals, TotalsBatch
from .._runs import RunStatus, TaskRecord, TaskState
from . import _sql
from ._batch_first import BatchFirstStore

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

    from .._runs import AuditRecord, RunRecord

__all__ = ["SQLiteStore"]

_log = logging.getLogger("xtasks.stores")
_T = TypeVar("_T")

#: Claims whose fire time is older than this (seconds of store time) are pruned.
_CLAIM_HORIZON = 86400.0
#: Ids per ``IN (...)`` list, well under SQLite's bound on variables.
_CHUNK = 500
#: The live statuses as stored.
_LIVE_TEXT = frozenset(str(s) for s in RunStatus if not s.is_final)


@final
class SQLiteStore(BatchFirstStore):
    """Claims, runs, task state and the audit trail in one SQLite file.

    :param path: the database file; its directory must exist. ``open_store`` builds this
        store from ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.
    :param lease_ttl: seconds a live record's lease lasts without renewal.
    :param busy_timeout: seconds a call waits for another process's write lock before
        failing with :class:`~xtasks.StoreError`.
    :param max_runs_per_task: keep at most this many finished runs per task (``None``: all).
    :param max_age: drop finished runs, and audit records, older than this many seconds
        (``None``: never).
    :param clock: store time for leases, Unix seconds; ``time.time`` (a test may pass a
        fake one that every store object on the file shares).
    """

    #: Retention runs after this many writes since it last ran...
    prune_every: int = 1000
    #: ...or after a write this many seconds after it last ran.
    prune_interval: float = 60.0

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease_ttl: float = 10.0,
        busy_timeout: float = 5.0,
        max_runs_per_task: int | None = None,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("lease_ttl", lease_ttl), ("max_age", max_age)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"must be > 0 seconds, not {value!r}", field=name)
        if not (math.isfinite(busy_timeout) and busy_timeout >= 0):
            raise ConfigError(f"must be >= 0 seconds, not {busy_timeout!r}", field="busy_timeout")
        if max_runs_per_task is not None and max_runs_per_task < 1:
            raise ConfigError(
                f"must be at least 1, not {max_runs_per_task!r}", field="max_runs_per_task"
            )
        self.path = os.fspath(path)
        self.lease_ttl = lease_ttl
        self.busy_timeout = busy_timeout
        self.max_runs_per_task = max_runs_per_task
        self.max_age = max_age
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._closed = False
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the open file
        self._writes = 0  # since the last prune
        self._last_prune = 0.0  # time.monotonic()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- life cycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._closed = False  # opened again after close: a scheduler started again
        self._limiter = anyio.CapacityLimiter(1)
        self._conn = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        self._file_id = await anyio.to_thread.run_sync(self._identify, limiter=self._limiter)
        self._last_prune = time.monotonic()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._closed = True
        if conn is None:
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._disconnect, conn, limiter=self._limiter)

    def _connect(self) -> sqlite3.Connection:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise self._error(f"directory {folder} does not exist; create it first")
        conn = None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {round(self.busy_timeout * 1000)}")
            mode = self._enable_wal(conn)
            if mode != "wal":
                _log.warning("SQLite store %s: journal mode is %s, not WAL", self.path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error(f"cannot open the database: {exc}") from exc
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        """Switch a new file to WAL (persistent), retrying within ``busy_timeout``.

        Processes racing to switch a brand-new file get ``SQLITE_BUSY`` at once: SQLite
        does not call the busy handler there.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)  # noqa: TID251 - a worker thread, not the event loop
            delay = min(delay * 2, 0.05)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema to the latest version; concurrent openers migrate it once."""
        target = len(_sql.MIGRATIONS)
        if self._schema_version(conn) == target:
            return
        with _immediate(conn):
            version = self._schema_version(conn)  # another process may have just migrated
            for statements in _sql.MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        if version < target:
            _log.info("SQLite store %s: schema migrated v%d -> v%d", self.path, version, target)

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(_sql.MIGRATIONS):
            raise self._error(
                f"the database has schema version {version}, newer than this xtasks knows "
                f"({len(_sql.MIGRATIONS)}); upgrade xtasks to use it"
            )
        return version

    def _disconnect(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass  # an optimisation only; closing matters
        try:
            conn.close()  # the last connection to close also checkpoints the WAL
        except sqlite3.Error as exc:
            raise self._error(f"close failed: {exc}") from exc

    # -- claims and runs ---------------------------------------------------------------

    async def _claim(self, fires: Sequence[tuple[str, datetime]], replica: str) -> list[bool]:
        """Claim ``fires`` in one transaction; the outcome of each, in order."""
        batch = [{"task": t, "fire_time": _sql.ts(at), "replica": replica} for t, at in fires]

        def claim(conn: sqlite3.Connection) -> list[bool]:
            outcomes = []
            with _immediate(conn):
                now = _sql.ts(datetime.now(UTC))
                for params in batch:
                    params["now"] = now
                    won = conn.execute(_sql.CLAIM, params).rowcount == 1
                    if won:
                        conn.execute(_sql.CLAIMED_LAST_FIRE, params)
                    outcomes.append(won)
            return outcomes

        return await self._call("claim", claim, writes=len(batch))

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        records = list(records)
        if not records:
            self._check_open()
            return []

        def save(conn: sqlite3.Connection) -> list[str]:
            with _immediate(conn):
                expires = self._clock() + self.lease_ttl
                ids = list(dict.fromkeys(record.id for record in records))
                stored: dict[str, str] = {}  # id -> status, of the rows there already
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    sql = f"SELECT id, status FROM runs WHERE id IN ({marks})"
                    stored.update(conn.execute(sql, chunk).fetchall())
                encoded = []
                totals = TotalsBatch()
                refused = []
                for record in records:
                    before = stored.get(record.id)
                    if before == "lost":  # fenced: the upsert skips it, no number
                        refused.append(record.id)
                        continue
                    encoded.append(_sql.encode_run(record, expires))
                    if record.status.is_final and (before is None or before in _LIVE_TEXT):
                        totals.add(record)
                    stored[record.id] = str(record.status)
                if encoded:  # numbered in one statement: the counter moves by the batch
                    end = conn.execute(_sql.ADVANCE_CHANGE, (len(encoded),)).fetchall()[0][0]
                    base = end - len(encoded)
                    conn.executemany(
                        _sql.SAVE_RUN, [(*row, base + i) for i, row in enumerate(encoded, 1)]
                    )
                if totals:
                    conn.executemany(_sql.ADD_TOTALS, totals.rows())
            return refused

        return await self._call("save runs", save, writes=len(records))

    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            self._check_open()
            return set()

        # One UPDATE and one SELECT per chunk, not one statement per id: a replica renews
        # every run it has queued, thousands after a burst of submissions.
        def renew(conn: sqlite3.Connection) -> set[str]:
            held: set[str] = set()
            with _immediate(conn):
                expires = self._clock() + self.lease_ttl
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    where = f"WHERE lease_owner = ? AND id IN ({marks})"
                    conn.execute(
                        f"UPDATE runs SET lease_expires = ? {where}", [expires, replica, *chunk]
                    )
                    held.update(
                        row[0]
                        for row in conn.execute(f"SELECT id FROM runs {where}", [replica, *chunk])
                    )
            return set(ids) - held

        return await self._call("renew leases", renew)

    async def reap_lost(self) -> list[RunRecord]:
        # SELECT then UPDATE inside one IMMEDIATE transaction: no other writer can come in
        # between, so each row is reaped once; and it needs no UPDATE ... RETURNING (3.35+).
        def reap(conn: sqlite3.Connection) -> list[RunRecord]:
            reaped: list[RunRecord] = []
            with _immediate(conn):
                rows = conn.execute(_sql.REAP_SCAN, {"now": self._clock()}).fetchall()
                if not rows:
                    return reaped
                end = conn.execute(_sql.ADVANCE_CHANGE, (len(rows),)).fetchall()[0][0]
                number = end - len(rows)
                updates = []
                totals = TotalsBatch()
                for row in rows:
                    reason = f"lost: its replica {row[-1]} went silent past its lease"
                    number += 1
                    updates.append({"id": row[0], "reason": reason, "change": number})
                    record = _sql.decode_run(row[:-1]).evolve(status=RunStatus.LOST, reason=reason)
                    reaped.append(record)
                    totals.add(record)
                conn.executemany(_sql.REAP, updates)
                conn.executemany(_sql.ADD_TOTALS, totals.rows())
            return reaped

        return await self._call("reap lost runs", reap)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(conn: sqlite3.Connection) -> RunRecord | None:
            sql = f"SELECT {_sql.RUN_COLUMNS} FROM runs WHERE id = ?"
            row = conn.execute(sql, (run_id,)).fetchone()
            return None if row is None else _sql.decode_run(row)

        return await self._call("get run", get)

    async def run_changes(self, after: int, limit: int = 1000) -> RunChanges:
        def select(conn: sqlite3.Connection) -> RunChanges:
            # One read transaction: the counters and the rows from one snapshot.
            conn.execute("BEGIN")
            try:
                latest, pruned = conn.execute(_sql.READ_CHANGE_COUNTERS).fetchone()
                found = []
                if limit > 0:
                    rows = conn.execute(_sql.RUN_CHANGES, (after, limit))
                    found = [(row[-1], _sql.decode_run(row[:-1])) for row in rows]
            finally:
                conn.execute("COMMIT")
            return RunChanges(latest, pruned, tuple(found))

        return await self._call("read run changes", select)

    async def run_totals(self) -> list[RunTotals]:
        def select(conn: sqlite3.Connection) -> list[RunTotals]:
            return [
                RunTotals(row[0], RunStatus(row[1]), row[2], row[3], row[4], tuple(row[5:]))
                for row in conn.execute(_sql.READ_TOTALS)
            ]

        return await self._call("read run totals", select)

    async def list_runs(
        self,
        *,
        task: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        if task is not None:
            where.append("task = ?")
            params.append(task)
        if statuses is not None:
            wanted = sorted({str(status) for status in statuses})
            if not wanted:
                self._check_open()
                return []
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        sql = f"SELECT {_sql.RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY scheduled_at DESC, seq DESC LIMIT ? OFFSET ?"
        params += [max(limit, 0), max(offset, 0)]

        def select(conn: sqlite3.Connection) -> list[RunRecord]:
            return [_sql.decode_run(row) for row in conn.execute(sql, params)]

        return await self._call("list runs", select)

    # -- task state --------------------------------------------------------------------

    async def load_tasks(self, tasks: Collection[str]) -> dict[str, TaskRecord]:
        names = list(tasks)

        def load(conn: sqlite3.Connection) -> dict[str, TaskRecord]:
            found: dict[str, TaskRecord] = {}
            for start in range(0, len(names), _CHUNK):  # SQLite caps bound parameters
                chunk = names[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT name, state, last_fire, consecutive_failures, alerting, anchor,"
                    f" definition FROM tasks WHERE name IN ({marks})",
                    chunk,
                )
                for row in rows:
                    found[row[0]] = TaskRecord(
                        state=TaskState(row[1]),
                        last_fire=_sql.dt(row[2]),
                        consecutive_failures=row[3],
                        alerting=bool(row[4]),
                        anchor=_sql.dt(row[5]),
                        definition=row[6],
                    )
            return found

        return await self._call("load tasks", load)

    async def save_tasks(self, records: Mapping[str, TaskRecord]) -> None:
        params = [_task_params(task, record) for task, record in records.items()]

        def save(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.executemany(_sql.SAVE_TASK, params)

        await self._call("save tasks", save, writes=len(params))

    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        params = _task_params(task, record)

        def change(conn: sqlite3.Connection) -> int:
            with _immediate(conn):
                conn.execute(_sql.SAVE_TASK, params)
                return int(conn.execute(_sql.CHANGE_TASK_STATE, params).fetchone()[0])

        return await self._call("change the state of a task", change, writes=1)

    async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
        def select(conn: sqlite3.Connection) -> tuple[int, dict[str, TaskState]]:
            rows = conn.execute(
                "SELECT name, state, state_change FROM tasks WHERE state_change > ?", (after,)
            ).fetchall()
            latest = max((row[2] for row in rows), default=after)
            return latest, {row[0]: TaskState(row[1]) for row in rows}

        return await self._call("read task state changes", select)

    # -- audit trail -------------------------------------------------------------------

    async def add_audit(self, record: AuditRecord) -> None:
        params = _sql.encode_audit(record)

        def add(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.execute(_sql.ADD_AUDIT, params)

        await self._call("add audit record", add, writes=1)

    async def list_audit(
        self, *, task: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AuditRecord]:
        sql = f"SELECT {_sql.AUDIT_COLUMNS} FROM audit"
        params: list[Any] = []
        if task is not None:
            sql += " WHERE task = ?"
            params.append(task)
        sql += " ORDER BY at DESC, seq DESC LIMIT ? OFFSET ?"
        params += [max(limit, 0), max(offset, 0)]

        def select(conn: sqlite3.Connection) -> list[AuditRecord]:
            return [_sql.decode_audit(row) for row in conn.execute(sql, params)]

        return await self._call("list audit records", select)

    # -- retention ---------------------------------------------------------------------

    async def prune(self) -> int:
        """Apply retention now (it also runs by itself after writes).

        :return: the number of run records deleted (audit records are not counted).
        """
        return await self._call("prune", self._prune)

    def _prune(self, conn: sqlite3.Connection) -> int:
        now = time.time()
        deleted = 0
        with _immediate(conn):
            changes: list[int] = []  # the latest change of each run deleted
            if self.max_runs_per_task is not None:
                keep = {"keep": self.max_runs_per_task}
                changes += (row[0] for row in conn.execute(_sql.PRUNE_COUNT, keep).fetchall())
            if self.max_age is not None:
                cutoff = {"cutoff": _sql.ts_epoch(now - self.max_age)}
                changes += (row[0] for row in conn.execute(_sql.PRUNE_AGE, cutoff).fetchall())
                conn.execute(_sql.PRUNE_AUDIT_AGE, cutoff)
            deleted = len(changes)
            if changes:
                conn.execute(_sql.SET_PRUNED_CHANGE, (max(changes),))
            cutoff = {"cutoff": _sql.ts_epoch(now - _CLAIM_HORIZON)}
            conn.execute(_sql.PRUNE_CLAIM_FLOORS, cutoff)
            conn.execute(_sql.PRUNE_CLAIMS, cutoff)
        self._writes = 0
        self._last_prune = time.monotonic()
        if deleted:
            _log.debug("SQLite store %s: retention deleted %d run(s)", self.path, deleted)
        return deleted

    def _maybe_prune(self, conn: sqlite3.Connection, writes: int) -> None:
        self._writes += writes
        due = time.monotonic() - self._last_prune >= self.prune_interval
        if self._writes < self.prune_every and not due:
            return
        try:
            self._prune(conn)
        except sqlite3.Error as exc:  # the write itself succeeded: retry at the next one
            _log.warning("SQLite store %s: retention failed, will retry: %s", self.path, exc)

    # -- plumbing ----------------------------------------------------------------------

    def _error(self, message: str) -> StoreError:
        return StoreError(f"SQLite store {self.path}: {message}")

    def _check_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise self._error("store is closed" if self._closed else "store is not open")
        return self._conn

    def _identify(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def _check_file(self) -> None:
        """A write to a file deleted or replaced under us would vanish: refuse it, so the
        records are kept in memory, health says so, and nothing is silently lost."""
        if self._file_id is not None and self._identify() != self._file_id:
            raise self._error(
                "the database file was deleted or replaced while the store had it open; "
                "what is written now would be lost: restore the file, or restart to use a "
                "new one"
            )

    async def _call(
        self, what: str, func: Callable[[sqlite3.Connection], _T], *, writes: int = 0
    ) -> _T:
        """Run ``func(connection)`` in a worker thread, one call at a time per store."""
        self._check_open()

        def run() -> _T:
            conn = self._check_open()  # close() may have run while this call queued
            if writes:
                self._check_file()
            try:
                result = func(conn)
            except sqlite3.Error as exc:
                raise self._error(f"{what} failed: {exc}") from exc
            if writes:
                self._maybe_prune(conn, writes)
            return result

        return await anyio.to_thread.run_sync(run, limiter=self._limiter)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at once (waiting ``busy_timeout``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _task_params(task: str, record: TaskRecord) -> dict[str, object]:
    return {
        "name": task,
        "state": str(record.state),
        "last_fire": _sql.ts(record.last_fire),
        "consecutive_failures": record.consecutive_failures,
        "alerting": int(record.alerting),
        "anchor": _sql.ts(record.anchor),
        "definition": record.definition,
    }
