"""PostgresStore: the fleet's store (``postgresql://user:pw@host/db``), for replicas on many hosts.

**Threading.** psycopg 3's sync API, in worker threads (``anyio.to_thread.run_sync``,
at most ``pool_size`` at once per store), with connections from a bounded
``psycopg_pool.ConnectionPool``: the event loop (asyncio or trio) never waits on the
network. A call whose caller is cancelled still completes in its thread.

**One round trip per call.** Connections are in autocommit mode and a batch is one
statement, atomic by itself: ``claim_fires`` inserts the claims from ``unnest`` arrays and
advances ``last_fire`` in data-modifying CTEs; ``save_runs`` upserts the whole batch from
one JSON array. Exactly one ``INSERT`` of a ``(task, fire_time)`` row succeeds fleet-wide
(its primary key), and claims are inserted in key order so that overlapping batches never
deadlock.

**Store time** is the server's clock (``statement_timestamp()``): leases are written and reaped
against it, never a replica's clock. ``reap_lost`` locks the expired rows
``FOR UPDATE SKIP LOCKED``, so concurrent reapers share them out and each lost run is
returned once; a ``lost`` row is fenced (the upsert skips it).

**Task state changes** are serialised by an advisory lock held by their transaction,
numbered one above every number made (``max(change) + 1``, an index lookup), and
announced with ``NOTIFY`` at commit; a number becomes visible only after every lower one,
so a replica polling from ``n`` misses none. A listener thread per store
(:mod:`._pg_listen`) turns the notifications into an early return of
:meth:`~PostgresStore.wait_for_changes`.

**Change feed and totals.** ``save_runs`` stays one statement: it first bumps the one
row of ``run_feed`` (a row lock held to commit, so change numbers follow commit order
across the fleet; every statement writing runs, the reaper's and retention's included,
takes it first, so they never deadlock), numbers the batch's rows from it, and adds the
runs it made final for the first time to ``run_totals``. Run writes of the fleet are
therefore serialised on that row, each for one statement.

**Schema** (:mod:`._pg_schema`): every table in the PostgreSQL schema ``schema``,
created and migrated at :meth:`~PostgresStore.open` in one transaction under an advisory
lock, so replicas starting together migrate once.

**Outages.** Every driver or pool error is a :class:`~xtasks.StoreError` naming the
redacted URL. A connection found broken makes the pool check its idle ones, so the next
call gets a working one; the pool reconnects by itself once the server is back.

**Retention** is SQLite's (``max_runs_per_task``, ``max_age``, claims pruned after a day
below a per-task floor), run after writes by one replica at a time (a
``pg_try_advisory_xact_lock``), in a transaction of its own.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
import anyio.lowlevel
import anyio.to_thread
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .._errors import ConfigError, StoreError
from .._feed import RunChanges, RunTotals, TotalsBatch, duration_bucket, run_seconds
from .._runs import RunStatus, TaskRecord, TaskState
from . import _sql
from ._batch_first import BatchFirstStore
from ._pg_listen import ChangeListener
from ._pg_rows import (
    decode_run,
    decode_task,
    escape,
    run_rows,
    task_row,
    task_rows,
    unescape,
    unescape_row,
)
from ._pg_schema import MIGRATIONS, Statements, channel_name, migrate
from ._registry import check_retention, redact_url, scrub

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence
    from datetime import datetime

    from .._runs import AuditRecord, RunRecord

__all__ = ["PostgresStore"]

_log = logging.getLogger("xtasks.stores")
_T = TypeVar("_T")
_Conn = psycopg.Connection[Any]

#: Claims whose fire time is older than this (seconds of server time) are pruned.
_CLAIM_HORIZON = 86400.0
#: Seconds one statement may run.
_STATEMENT_TIMEOUT = 60.0
#: The schema names taken: plain ones, that need no care in statements or messages.
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")


@final
class PostgresStore(BatchFirstStore):
    """Claims, runs, task state and the audit trail in a PostgreSQL database.

    :param conninfo: the server, as libpq takes it (``postgresql://user:pw@host/db``);
        ``open_store`` builds this store from such a URL with the options below.
    :param schema: the PostgreSQL schema holding the tables (created if missing): stores
        on different schemas of one database are independent.
    :param pool_size: connections at most (and calls running at once) per store object.
    :param lease_ttl: seconds a live record's lease lasts without renewal.
    :param connect_timeout: seconds to connect, or to wait for a free connection, before
        failing with :class:`~xtasks.StoreError`.
    :param max_runs_per_task: keep at most this many finished runs per task (``None``: all).
    :param max_age: drop finished runs, and audit records, older than this many seconds
        (``None``: never).
    :raises ConfigError: a bound that means nothing, naming it.
    """

    #: Retention runs after this many writes since it last ran...
    prune_every: int = 1000
    #: ...or after a write this many seconds after it last ran.
    prune_interval: float = 60.0

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "xtasks",
        pool_size: int = 4,
        lease_ttl: float = 10.0,
        connect_timeout: float = 5.0,
        max_runs_per_task: int | None = None,
        max_age: float | None = None,
    ) -> None:
        for name, value in (("lease_ttl", lease_ttl), ("connect_timeout", connect_timeout)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"must be > 0 seconds, not {value!r}", field=name)
        if pool_size < 1:
            raise ConfigError(f"must be at least 1, not {pool_size!r}", field="pool_size")
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"must be 1 to 63 letters, digits, '_' or '-', starting with a letter or "
                f"'_', not {schema!r}",
                field="schema",
            )
        check_retention(max_runs_per_task=max_runs_per_task, max_age=max_age)
        self._conninfo = conninfo
        self._shown = redact_url(conninfo)
        self.schema = schema
        self.pool_size = pool_size
        self.lease_ttl = lease_ttl
        self.connect_timeout = connect_timeout
        self.max_runs_per_task = max_runs_per_task
        self.max_age = max_age
        self._sql = Statements.for_schema(schema)
        self._channel = channel_name(schema)
        self._kwargs: dict[str, Any] = {
            "connect_timeout": max(2, math.ceil(connect_timeout)),  # libpq's minimum
            "keepalives": 1,  # a dead peer is found in about a minute, not hours
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        self._pool: ConnectionPool[_Conn] | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._listener: ChangeListener | None = None
        self._closed = False
        self._count_lock = threading.Lock()
        self._writes = 0  # since the last prune
        self._last_prune = 0.0  # time.monotonic()

    def __repr__(self) -> str:
        return f"PostgresStore({self._shown!r}, schema={self.schema!r})"

    # -- life cycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._closed = False  # opened again after close: a scheduler started again
        limiter = anyio.CapacityLimiter(self.pool_size)
        pool = await anyio.to_thread.run_sync(self._start, limiter=limiter)
        self._pool, self._limiter = pool, limiter
        self._last_prune = time.monotonic()
        self._listener = ChangeListener(
            self._conninfo,
            self._kwargs,
            self._channel,
            self._sql.latest_change,
            shown=self._shown,
            token=anyio.lowlevel.current_token(),
        )
        self._listener.start()

    def _start(self) -> ConnectionPool[_Conn]:
        """Migrate the schema, then open the pool (one connection at least).

        The migration connects on its own, outside the pool: a failure then says why
        (refused, no such database, authentication) at once, where the pool would retry
        until its timeout and only say that it timed out.
        """
        try:
            with psycopg.connect(self._conninfo, autocommit=True, **self._kwargs) as conn:
                _configure(conn)
                self._migrate(conn)
        except psycopg.Error as exc:
            raise self._error(
                "cannot open the database (is the server up, and the URL right?)", exc
            ) from _cause(exc, self._conninfo)
        pool: ConnectionPool[_Conn] = ConnectionPool(
            self._conninfo,
            kwargs={**self._kwargs, "autocommit": True},
            configure=_configure,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=self.connect_timeout,
            # The pool retries a lost connection with a doubling delay until this many
            # seconds, then starts over at the next call: kept short, so the store is
            # back within seconds of the server, however long it was away.
            reconnect_timeout=self.connect_timeout + 1.0,
            name=f"xtasks {self._shown}",
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout)
        except BaseException as exc:
            pool.close(timeout=0.5)
            if isinstance(exc, psycopg.Error):
                raise self._error("cannot open the connection pool", exc) from None
            raise
        return pool

    def _migrate(self, conn: _Conn) -> None:
        version, target = migrate(conn, self.schema), len(MIGRATIONS)
        if version > target:
            raise self._error(
                f"the database has schema version {version}, newer than this xtasks knows "
                f"({target}); upgrade xtasks to use it"
            )
        if version < target:
            _log.info(
                "PostgreSQL store %s: schema %s migrated v%d -> v%d",
                self._shown,
                self.schema,
                version,
                target,
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        listener, self._listener = self._listener, None
        self._closed = True
        if pool is None and listener is None:
            return

        def shut() -> None:
            if listener is not None and not listener.stop(self.connect_timeout + 1.0):
                _log.warning("PostgreSQL store %s: the change listener did not stop", self._shown)
            if pool is not None:
                pool.close(timeout=self.connect_timeout)

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shut)

    # -- claims and runs ---------------------------------------------------------------

    async def _claim(self, fires: Sequence[tuple[str, datetime]], replica: str) -> list[bool]:
        """Claim ``fires`` in one statement; the outcome of each, in order."""
        keys = [(escape(task), _sql.ts(at)) for task, at in fires]
        params = {
            "tasks": [task for task, _ in keys],
            "times": [at for _, at in keys],
            "replica": escape(replica),
        }

        def claim(conn: _Conn) -> set[tuple[str, str]]:
            return {(row[0], row[1]) for row in conn.execute(self._sql.claim, params)}

        won = await self._call("claim fires", claim, writes=len(keys))
        outcomes = []
        for key in keys:  # the same pair twice: the first wins, if any
            outcomes.append(key in won)
            won.discard(key)
        return outcomes

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        records = list(records)
        if not records:
            self._check_open()
            return []
        ids = list(dict.fromkeys(escape(record.id) for record in records))
        params = {
            "rows": run_rows(records),  # one row per id, as ids
            "n": len(ids),
            "ids": ids,
            "ttl": self.lease_ttl,
            "finals": _finals(records),
        }

        def save(conn: _Conn) -> set[str]:
            return {row[0] for row in conn.execute(self._sql.save_runs, params)}

        saved = await self._call("save runs", save, writes=len(records))
        return [record.id for record in records if escape(record.id) not in saved]

    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        ids = {escape(run_id): run_id for run_id in run_ids}
        if not ids:
            self._check_open()
            return set()
        params = {"ttl": self.lease_ttl, "replica": escape(replica), "ids": list(ids)}

        def renew(conn: _Conn) -> set[str]:
            return {row[0] for row in conn.execute(self._sql.renew, params)}

        held = await self._call("renew leases", renew)
        return {run_id for key, run_id in ids.items() if key not in held}

    async def reap_lost(self) -> list[RunRecord]:
        def reap(conn: _Conn) -> list[RunRecord]:
            with conn.transaction():
                row = conn.execute(self._sql.lock_feed).fetchone()  # first, as saves do
                base = int(row[0]) if row is not None else 0
                rows = conn.execute(self._sql.reap, {"base": base}).fetchall()
                if not rows:
                    return []
                latest = max(int(row[-1]) for row in rows)
                conn.execute(self._sql.set_latest, {"latest": latest})
                records = [decode_run(row[:-1]) for row in rows]
                totals = TotalsBatch()
                for record in records:
                    totals.add(record)
                conn.execute(self._sql.add_totals, {"totals": _totals_json(totals)})
            return records

        return await self._call("reap lost runs", reap)

    async def run_changes(self, after: int, limit: int = 1000) -> RunChanges:
        params = {"after": after, "limit": max(limit, 0)}

        def select(conn: _Conn) -> RunChanges:
            rows = conn.execute(self._sql.run_changes, params).fetchall()
            latest, pruned = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
            found = tuple(
                (int(row[-1]), decode_run(row[2:-1])) for row in rows if row[-1] is not None
            )
            return RunChanges(latest, pruned, found)

        return await self._call("read run changes", select)

    async def run_totals(self) -> list[RunTotals]:
        def select(conn: _Conn) -> list[RunTotals]:
            return [
                RunTotals(
                    unescape(row[0]),
                    RunStatus(row[1]),
                    int(row[2]),
                    int(row[3]),
                    float(row[4]),
                    tuple(int(n) for n in row[5:]),
                )
                for row in conn.execute(self._sql.read_totals)
            ]

        return await self._call("read run totals", select)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(conn: _Conn) -> RunRecord | None:
            row = conn.execute(self._sql.get_run, {"id": escape(run_id)}).fetchone()
            return None if row is None else decode_run(row)

        return await self._call("get run", get)

    async def list_runs(
        self,
        *,
        task: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        where: list[str] = []
        params: dict[str, Any] = {"limit": max(limit, 0), "offset": max(offset, 0)}
        if task is not None:
            where.append("task = %(task)s")
            params["task"] = escape(task)
        if statuses is not None:
            params["statuses"] = sorted({str(status) for status in statuses})
            if not params["statuses"]:
                self._check_open()
                return []
            where.append("status = ANY(%(statuses)s::text[])")
        query = f"SELECT {_sql.RUN_COLUMNS} FROM {self._sql.runs}"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY scheduled_at DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s"

        def select(conn: _Conn) -> list[RunRecord]:
            rows = conn.execute(query, params)
            return [decode_run(row) for row in rows]

        return await self._call("list runs", select)

    # -- task state --------------------------------------------------------------------

    async def load_tasks(self, tasks: Collection[str]) -> dict[str, TaskRecord]:
        params = {"names": [escape(task) for task in tasks]}

        def load(conn: _Conn) -> dict[str, TaskRecord]:
            return dict(decode_task(row) for row in conn.execute(self._sql.load_tasks, params))

        return await self._call("load tasks", load)

    async def save_tasks(self, records: Mapping[str, TaskRecord]) -> None:
        if not records:
            self._check_open()
            return
        rows = task_rows(records)

        def save(conn: _Conn) -> None:
            conn.execute(self._sql.save_tasks, {"rows": rows})

        await self._call("save tasks", save, writes=len(records))

    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        params = task_row(task, record)
        lock = (f"{self.schema}:changes",)
        notify = "SELECT pg_notify(%s, %s)"

        def change(conn: _Conn) -> int:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", lock)
                row = conn.execute(self._sql.change_task, params).fetchone()
                number = int(row[0]) if row is not None else 0
                conn.execute(notify, (self._channel, str(number)))  # delivered at commit
            return number

        return await self._call("change task state", change)

    async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
        def changes(conn: _Conn) -> tuple[int, dict[str, TaskState]]:
            highest, states = after, {}
            for name, state, number in conn.execute(self._sql.changes, {"after": after}):
                states[unescape(name)] = TaskState(state)
                highest = max(highest, int(number))
            return highest, states

        return await self._call("read task state changes", changes)

    async def wait_for_changes(self, after: int, at_most: float) -> None:
        listener = self._listener
        if listener is None:  # closed: the next poll says so
            await anyio.sleep(at_most)
        else:
            await listener.wait(after, at_most)

    # -- audit trail -------------------------------------------------------------------

    async def add_audit(self, record: AuditRecord) -> None:
        params = {
            k: escape(v) if type(v) is str else v for k, v in _sql.encode_audit(record).items()
        }

        def add(conn: _Conn) -> None:
            conn.execute(self._sql.add_audit, params)

        await self._call("add audit record", add, writes=1)

    async def list_audit(
        self, *, task: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AuditRecord]:
        query = f"SELECT {_sql.AUDIT_COLUMNS} FROM {self._sql.audit}"
        params: dict[str, Any] = {"limit": max(limit, 0), "offset": max(offset, 0)}
        if task is not None:
            query += " WHERE task = %(task)s"
            params["task"] = escape(task)
        query += " ORDER BY at DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s"

        def select(conn: _Conn) -> list[AuditRecord]:
            rows = conn.execute(query, params)
            return [_sql.decode_audit(unescape_row(row)) for row in rows]

        return await self._call("list audit records", select)

    # -- retention ---------------------------------------------------------------------

    async def prune(self) -> int:
        """Apply retention now (it also runs by itself after writes).

        :return: the number of run records deleted (audit records are not counted);
            0 when another replica is pruning at this moment.
        """
        return await self._call("prune", self._prune)

    def _prune(self, conn: _Conn) -> int:
        deleted = 0
        with conn.transaction():
            row = conn.execute(
                "SELECT pg_try_advisory_xact_lock(hashtext(%s)), "
                "extract(epoch FROM clock_timestamp())::float8",
                (f"{self.schema}:prune",),
            ).fetchone()
            if row is not None and row[0]:  # else another replica prunes right now
                now = float(row[1])
                conn.execute(self._sql.lock_feed)  # first, as writers of runs do
                changes: list[int] = []  # the latest change of each run deleted
                if self.max_runs_per_task is not None:
                    keep = {"keep": self.max_runs_per_task}
                    changes += (r[0] for r in conn.execute(self._sql.prune_count, keep))
                if self.max_age is not None:
                    cutoff = {"cutoff": _sql.ts_epoch(now - self.max_age)}
                    changes += (r[0] for r in conn.execute(self._sql.prune_age, cutoff))
                    conn.execute(self._sql.prune_audit_age, cutoff)
                deleted = len(changes)
                if changes:
                    conn.execute(self._sql.set_pruned, {"pruned": max(changes)})
                cutoff = {"cutoff": _sql.ts_epoch(now - _CLAIM_HORIZON)}
                conn.execute(self._sql.prune_claims, cutoff)
        with self._count_lock:
            self._writes = 0
            self._last_prune = time.monotonic()
        if deleted:
            _log.debug("PostgreSQL store %s: retention deleted %d run(s)", self._shown, deleted)
        return deleted

    def _maybe_prune(self, conn: _Conn, writes: int) -> None:
        with self._count_lock:
            self._writes += writes
            due = time.monotonic() - self._last_prune >= self.prune_interval
            if self._writes < self.prune_every and not due:
                return
            self._writes = 0  # one call prunes; the others go on
            self._last_prune = time.monotonic()
        try:
            self._prune(conn)
        except psycopg.Error as exc:  # the write itself succeeded: retry at a later one
            _log.warning(
                "PostgreSQL store %s: retention failed, will retry: %s",
                self._shown,
                scrub(str(exc), self._conninfo),
            )

    # -- plumbing ----------------------------------------------------------------------

    def _error(self, message: str, exc: BaseException | None = None) -> StoreError:
        text = f"PostgreSQL store {self._shown} (schema {self.schema}): {message}"
        if exc is not None:
            detail = scrub(str(exc).strip(), self._conninfo) or type(exc).__name__
            text += f": {detail}"
        return StoreError(text)

    def _check_open(self) -> ConnectionPool[_Conn]:
        if self._pool is None:
            raise self._error("store is closed" if self._closed else "store is not open")
        return self._pool

    async def _call(self, what: str, func: Callable[[_Conn], _T], *, writes: int = 0) -> _T:
        """Run ``func(connection)`` in a worker thread with a connection of the pool."""
        self._check_open()

        def run() -> _T:
            pool = self._check_open()  # close() may have run while this call queued
            broken = False
            try:
                with pool.connection(timeout=self.connect_timeout) as conn:
                    try:
                        result = func(conn)
                    except psycopg.Error:
                        broken = conn.broken
                        raise
                    if writes:
                        self._maybe_prune(conn, writes)
            except psycopg.Error as exc:
                if broken:
                    _recheck(pool)
                hint = ""
                if broken or isinstance(exc, PoolTimeout):
                    hint = " (is the server up? the store reconnects by itself)"
                raise self._error(f"{what} failed{hint}", exc) from _cause(exc, self._conninfo)
            return result

        return await anyio.to_thread.run_sync(run, limiter=self._limiter)


def _finals(records: Collection[RunRecord]) -> str:
    """The records of a batch final for the first time within it (an earlier live one,
    or none), as the JSON rows ``save_runs`` adds to the totals when the stored row was
    not final either."""
    final: set[str] = set()
    rows = []
    for record in records:
        if not record.status.is_final:
            final.discard(record.id)
            continue
        if record.id in final:
            continue
        final.add(record.id)
        seconds = run_seconds(record)
        rows.append(
            {
                "id": escape(record.id),
                "task": escape(record.task),
                "status": str(record.status),
                "seconds": seconds,
                "bucket": None if seconds is None else duration_bucket(seconds),
            }
        )
    return json.dumps(rows)


def _totals_json(totals: TotalsBatch) -> str:
    """``totals`` as the JSON rows of ``run_totals``."""
    keys = ("task", "status", *_sql.TOTALS_COLUMNS)
    return json.dumps(
        [dict(zip(keys, (escape(row[0]), *row[1:]), strict=True)) for row in totals.rows()]
    )


def _configure(conn: _Conn) -> None:
    """Bound every statement of a new connection (a SET, not the ``options`` startup
    parameter, which poolers such as PgBouncer may refuse)."""
    conn.execute(f"SET statement_timeout = {round(_STATEMENT_TIMEOUT * 1000)}")


def _recheck(pool: ConnectionPool[_Conn]) -> None:
    """A connection broke (the server restarted, or ended it): the idle ones may be
    broken too. Test them now, so that the next call gets a working one."""
    try:
        pool.check()
    except psycopg.Error:
        pass  # the server is still away: the pool reconnects by itself


def _cause(exc: BaseException, conninfo: str) -> BaseException | None:
    """``exc``, unless its text shows a secret of ``conninfo`` (a traceback prints it)."""
    text = str(exc)
    return exc if scrub(text, conninfo) == text else None
