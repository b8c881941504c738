"""RedisStore: claims, runs, task state and the audit trail in one Redis (``redis://``).

For replicas on several hosts sharing a plain Redis 7 (no modules). Every key starts with
``{<prefix>}:``, one hash tag, so a cluster keeps them in one slot; ``_redis_scripts``
describes them.

**Threading.** redis-py's sync client never runs on the event loop: every call goes through
``anyio.to_thread.run_sync`` under a ``CapacityLimiter`` of ``pool_size``, the size of the
bounded ``BlockingConnectionPool``. A call whose caller is cancelled still completes in its
thread. Each write, and each read that spans keys, is one Lua script: one round trip,
atomic (Redis runs one script at a time), loaded with ``register_script`` (``EVALSHA``, and
``SCRIPT LOAD`` again after a restart wiped the cache: ``NOSCRIPT``).

**Claims** are ``SET NX`` on a key per ``(task, fire_time)``, expiring
:attr:`RedisStore.claim_horizon` seconds after the claim (``max_age``, at least a day; a day
when ``max_age`` is unset, as SQLite prunes claims after a day). Before a task's claims are
checked, those whose key may have expired raise the task's claim floor: a fire at or below
it counts as taken, so an expired claim is never won twice.

**Store time** is Redis ``TIME``, read inside the scripts for leases, renewals and
reaping: one clock for the whole fleet, never a replica's.

**Retries.** A connection error or timeout is retried twice (50-500 ms apart), then raised
as :class:`~xtasks.StoreError`. A retry may repeat a script whose reply was lost: claims,
reaping and the audit trail carry a per-call token so the repeat answers as the first run
did (a won claim stays won, reaped runs are returned again) instead of acting twice.

**Retention** holds after every write, in the scripts: ``max_runs_per_task`` (1,000 by
default: Redis keeps everything in memory) final runs per task, the first to finish going
first; ``max_age`` drops final runs (by ``finished_at``, else ``scheduled_at``) and audit
records (by ``at``) older than it, a bounded batch per write. Live runs are never dropped.

**Run changes and totals** live in the scripts that write runs: ``INCR`` of ``rchg``
and a ``ZADD`` to ``rfeed`` per run written, ``HINCRBY`` of ``tot`` for a run's first
final write; ``run_changes`` reads ``rfeed`` by score.

**Changes of task state** are numbered by ``INCR`` in the script that makes them, published
on the channel ``{<prefix>}:changes``; a listener thread per store object keeps the highest
number heard (reconnecting with backoff), which :meth:`RedisStore.wait_for_changes` waits on.
"""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any, TypeVar, cast, final
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .._errors import ConfigError, StoreError
from .._feed import RunChanges, RunTotals, duration_bucket, run_seconds
from .._runs import AuditRecord, RunRecord, RunStatus, TaskRecord, TaskState
from . import _redis_rows as rows
from . import _redis_scripts as scripts
from ._batch_first import BatchFirstStore
from ._redis_listen import Listener, dispose
from ._registry import check_retention, redact_url, scrub

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence
    from datetime import datetime

__all__ = ["RedisStore"]

_T = TypeVar("_T")

#: Claims live at least this long (seconds), as SQLite's are pruned after a day.
_CLAIM_HORIZON = 86400
#: Runs one reap_lost call marks lost at most (the next call, seconds later, takes the rest).
_REAP_BATCH = 10_000


@final
class RedisStore(BatchFirstStore):
    """Claims, runs, task state and the audit trail in Redis.

    :param url: ``redis://[[user]:password@]host[:port][/db]``, or ``rediss://`` for TLS,
        without options: ``open_store`` takes those from the URL's query.
    :param prefix: every key starts with ``{prefix}:``; stores with other prefixes share
        a server without seeing each other.
    :param pool_size: connections at most, and calls in flight at once.
    :param lease_ttl: seconds a live record's lease lasts without renewal.
    :param connect_timeout: seconds to connect (``open`` fails within it).
    :param socket_timeout: seconds a command may take, and a call may wait for a connection.
    :param max_runs_per_task: final runs kept per task (``None``: all).
    :param max_age: drop final runs, and audit records, older than this many seconds
        (``None``: never).
    :raises ConfigError: a bad URL or option, naming it.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "xtasks",
        pool_size: int = 4,
        lease_ttl: float = 10.0,
        connect_timeout: float = 5.0,
        socket_timeout: float = 10.0,
        max_runs_per_task: int | None = 1000,
        max_age: float | None = None,
    ) -> None:
        check_retention(max_runs_per_task=max_runs_per_task, max_age=max_age)
        for name, value in (
            ("lease_ttl", lease_ttl),
            ("connect_timeout", connect_timeout),
            ("socket_timeout", socket_timeout),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"must be > 0 seconds, not {value!r}", field=name)
        if pool_size < 1:
            raise ConfigError(f"must be at least 1, not {pool_size!r}", field="pool_size")
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigError(f"must be non-empty, without braces: {prefix!r}", field="prefix")
        _check_url(url)
        self.url = url
        self.prefix = prefix
        self.pool_size = pool_size
        self.lease_ttl = lease_ttl
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.max_runs_per_task = max_runs_per_task
        self.max_age = max_age
        #: Seconds a claim key lives; older claims are summarised by the task's floor.
        self.claim_horizon = max(_CLAIM_HORIZON, math.ceil(max_age or 0))
        self._shown = redact_url(url)
        self._p = "{" + prefix + "}:"
        self._channel = self._p + "changes"
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._limiter: anyio.CapacityLimiter | None = None
        self._closed = False
        self._listener: Listener | None = None

    def __repr__(self) -> str:
        return f"RedisStore({self._shown!r}, prefix={self.prefix!r})"

    # -- life cycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        self._closed = False
        self._limiter = anyio.CapacityLimiter(self.pool_size)
        client, top = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        self._scripts = {
            name: client.register_script(getattr(scripts, name)) for name in scripts.__all__
        }
        self._listener = Listener(self, top)
        self._client = client

    def _connect(self) -> tuple[redis.Redis, int]:
        """Check the server once, without retries (so within ``connect_timeout``), then
        build the pooled client; the highest change number so far."""
        try:
            with redis.Redis.from_url(
                self.url,
                socket_connect_timeout=self.connect_timeout,
                socket_timeout=self.connect_timeout,
                retry=Retry(NoBackoff(), 0),
                single_connection_client=True,
            ) as probe:
                top = int(probe.get(self._p + "chg") or 0)
        except (redis.RedisError, OSError) as exc:
            raise self._error("cannot connect", exc) from self._cause(exc)
        return self._pool_client(self.pool_size, self.socket_timeout), top

    def _pool_client(
        self, size: int, timeout: float, *, retries: int = 2, **kwargs: Any
    ) -> redis.Redis:
        pool = redis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=size,
            timeout=timeout,  # waiting for a free connection
            socket_timeout=timeout,
            socket_connect_timeout=self.connect_timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError] if retries else [],
            decode_responses=True,
            client_name=f"xtasks:{self.prefix}",  # CLIENT LIST shows whose connection it is
            **kwargs,
        )
        return redis.Redis(connection_pool=pool)

    async def close(self) -> None:
        client, self._client = self._client, None
        listener, self._listener = self._listener, None
        self._closed = True
        if client is None:
            return
        with anyio.CancelScope(shield=True):
            if listener is not None:
                await anyio.to_thread.run_sync(listener.stop)
            # Calls already in their thread finish first (their connection would otherwise
            # reconnect after the pool closed, and leak); new ones fail: the store is closed.
            held: list[object] = []
            limiter = self._limiter or anyio.CapacityLimiter(1)
            with anyio.move_on_after(self.socket_timeout + 1):
                while len(held) < limiter.total_tokens:
                    borrower = object()
                    await limiter.acquire_on_behalf_of(borrower)
                    held.append(borrower)
            await anyio.to_thread.run_sync(dispose, client)
            for borrower in held:  # calls queued meanwhile now fail: the store is closed
                limiter.release_on_behalf_of(borrower)

    # -- claims and runs ---------------------------------------------------------------

    async def _claim(self, fires: Sequence[tuple[str, datetime]], replica: str) -> list[bool]:
        args: list[Any] = [self._p, uuid.uuid4().hex, self.claim_horizon]
        for task, fire_time in fires:
            args += [task, rows.key(fire_time)]
        won = await self._script("claim", "CLAIM", args)
        return [bool(w) for w in won]

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        records = list(records)
        if not records:
            self._check_open()
            return []
        head = [self._p, self.lease_ttl, self.max_runs_per_task or 0, self.max_age or 0]

        def save(client: redis.Redis) -> list[str]:
            args = head + [field for record in records for field in _fields(record)]
            script = self._scripts["SAVE_RUNS"]
            return list(script(keys=[self._p + "seq"], args=args, client=client))

        return await self._call("save runs", save)

    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            self._check_open()
            return set()
        gone = await self._script("renew leases", "RENEW", [self._p, self.lease_ttl, replica, *ids])
        return set(gone)

    async def reap_lost(self) -> list[RunRecord]:
        args = [self._p, uuid.uuid4().hex, self.max_runs_per_task or 0, _REAP_BATCH]
        out = await self._script("reap lost runs", "REAP", args)
        return [
            rows.decode_run(out[i + 1], RunStatus.LOST, out[i + 2]) for i in range(0, len(out), 3)
        ]

    async def run_changes(self, after: int, limit: int = 1000) -> RunChanges:
        out = await self._script("read run changes", "RUN_CHANGES", [self._p, after, limit])
        found = tuple(
            (int(out[i]), rows.decode_run(out[i + 1], out[i + 2], out[i + 3]))
            for i in range(2, len(out), 4)
            if out[i + 1] is not None  # (dropped between the two reads: cannot happen)
        )
        return RunChanges(int(out[0]), int(out[1]), found)

    async def run_totals(self) -> list[RunTotals]:
        def read(client: redis.Redis) -> dict[str, str]:
            return cast("dict[str, str]", client.hgetall(self._p + "tot"))

        sums: dict[tuple[str, str], dict[str, str]] = {}
        for field, value in (await self._call("read run totals", read)).items():
            what, status, task = field.split("|", 2)
            sums.setdefault((task, status), {})[what] = value
        buckets = range(len(RunTotals.BOUNDS) + 1)
        return [
            RunTotals(
                task,
                RunStatus(status),
                int(got.get("r", 0)),
                int(got.get("m", 0)),
                float(got.get("s", 0.0)),
                tuple(int(got.get(f"b{i}", 0)) for i in buckets),
            )
            for (task, status), got in sums.items()
        ]

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(client: redis.Redis) -> RunRecord | None:
            data, status, reason = cast(
                "list[str | None]", client.hmget(self._p + "r:" + run_id, ["d", "s", "n"])
            )
            return None if data is None or status is None else rows.decode_run(data, status, reason)

        return await self._call("get run", get)

    async def list_runs(
        self,
        *,
        task: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        if statuses is None:
            indexes = ["ix" if task is None else f"ix:t:{task}"]
        else:
            wanted = sorted({str(status) for status in statuses})
            indexes = [f"ix:s:{s}" if task is None else f"ix:ts:{s}:{task}" for s in wanted]
        if not indexes or limit <= 0:
            self._check_open()
            return []
        args = [self._p, max(offset, 0), limit, *indexes]
        out = await self._script("list runs", "LIST_RUNS", args)
        return [rows.decode_run(out[i], out[i + 1], out[i + 2]) for i in range(0, len(out), 3)]

    # -- task state --------------------------------------------------------------------

    async def load_tasks(self, tasks: Collection[str]) -> dict[str, TaskRecord]:
        names = list(dict.fromkeys(tasks))
        if not names:
            self._check_open()
            return {}

        def load(client: redis.Redis) -> dict[str, TaskRecord]:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hmget(self._p + "t:" + name, ["st", "lf", "cf", "al", "an", "df"])
            found = {}
            for name, (state, last, failures, alerting, anchor, definition) in zip(
                names, pipe.execute(), strict=True
            ):
                if state is None and last is None and failures is None:
                    continue
                found[name] = TaskRecord(
                    state=TaskState(state or TaskState.ACTIVE),
                    last_fire=rows.maybe_time(last),
                    consecutive_failures=int(failures or 0),
                    alerting=alerting == "1",
                    anchor=rows.maybe_time(anchor),
                    definition=definition,
                )
            return found

        return await self._call("load tasks", load)

    async def save_tasks(self, records: Mapping[str, TaskRecord]) -> None:
        if not records:
            self._check_open()
            return
        args = [self._p]
        for task, record in records.items():
            args += [task, *rows.task_fields(record)]
        await self._script("save tasks", "SAVE_TASKS", args)

    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        args = [self._p, self._channel, task, *rows.task_fields(record)]
        return int(await self._script("change task state", "CHANGE_STATE", args))

    async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
        out = await self._script("read task state changes", "CHANGES", [self._p, int(after)])
        changed = {out[i]: TaskState(out[i + 1]) for i in range(1, len(out), 2)}
        return max(int(after), int(out[0])), changed

    async def wait_for_changes(self, after: int, at_most: float) -> None:
        listener = self._listener
        if listener is None:  # not open: nothing will wake us; polling reports it
            await anyio.sleep(at_most)
        elif listener.heard <= after and at_most > 0:
            await anyio.to_thread.run_sync(listener.wait, after, at_most, abandon_on_cancel=True)

    # -- audit trail -------------------------------------------------------------------

    async def add_audit(self, record: AuditRecord) -> None:
        args = [
            self._p,
            record.id,
            rows.key(record.at),
            repr(record.at.timestamp()),
            record.task,
            rows.encode_audit(record),
            self.max_age or 0,
        ]
        await self._script("add audit record", "ADD_AUDIT", args)

    async def list_audit(
        self, *, task: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AuditRecord]:
        if limit <= 0:
            self._check_open()
            return []
        key = self._p + ("au" if task is None else f"au:t:{task}")
        start = max(offset, 0)

        def select(client: redis.Redis) -> list[AuditRecord]:
            members = cast("list[str]", client.zrevrange(key, start, start + limit - 1))
            return [rows.decode_audit(member) for member in members]

        return await self._call("list audit records", select)

    # -- plumbing ----------------------------------------------------------------------

    def _error(self, what: str, exc: BaseException | None = None) -> StoreError:
        if exc is None:
            return StoreError(f"Redis store {self._shown}: {what}")
        detail = scrub(f"{type(exc).__name__}: {exc}", self.url)
        if isinstance(exc, redis.ResponseError):
            advice = (
                f"if another program writes keys under {{{self.prefix}}}:, give this store "
                "a prefix of its own (?prefix=...)"
            )
        else:
            advice = "check that the server is up and reachable; the call may be retried"
        return StoreError(f"Redis store {self._shown}: {what}: {detail}; {advice}")

    def _cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` to chain to a StoreError, or ``None`` when its text holds a secret (a
        traceback would print it)."""
        return exc if scrub(str(exc), self.url) == str(exc) else None

    def _check_open(self) -> redis.Redis:
        client = self._client
        if client is None:
            raise self._error(
                "the store is closed; open() it again" if self._closed else "store is not open"
            )
        return client

    async def _script(self, what: str, name: str, args: list[Any]) -> Any:
        def run(client: redis.Redis) -> Any:
            return self._scripts[name](keys=[self._p + "seq"], args=args, client=client)

        return await self._call(what, run)

    async def _call(self, what: str, func: Callable[[redis.Redis], _T]) -> _T:
        """Run ``func(client)`` in a worker thread; a driver error becomes StoreError."""
        self._check_open()

        def run() -> _T:
            client = self._check_open()  # close() may have run while this call queued
            try:
                return func(client)
            except (redis.RedisError, UnicodeError) as exc:
                raise self._error(f"{what} failed", exc) from self._cause(exc)

        return await anyio.to_thread.run_sync(run, limiter=self._limiter)


def _fields(record: RunRecord) -> list[Any]:
    """The fields of ``record`` as ``SAVE_RUNS`` takes them: those stored, then its
    duration and bucket for the totals ('' when it has none)."""
    seconds = run_seconds(record)
    if seconds is None:
        return [*rows.encode_run(record), "", ""]
    return [*rows.encode_run(record), repr(seconds), duration_bucket(seconds)]


def _check_url(url: str) -> None:
    """:raises ConfigError: ``url`` is not ``redis[s]://[[user]:password@]host[:port][/db]``."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/")
    try:
        parts.port  # noqa: B018 - raises ValueError when not a number
        good = parts.scheme in ("redis", "rediss") and bool(parts.hostname)
    except ValueError:
        good = False
    if not good or not (db == "" or db.isdigit()) or parts.query or parts.fragment:
        raise ConfigError(
            f"bad Redis store URL {redact_url(url)!r}; expected "
            "redis://[[user]:password@]host[:port][/db] (or rediss:// for TLS)",
            field="store",
        )
