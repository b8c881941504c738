"""What the PostgreSQL store does beyond the shared contract (``test_contract.py`` runs that
on it): its URL, its secrets, migrating beside other replicas, surviving a server that ends
its connections, numbered state changes and ``LISTEN``/``NOTIFY``, retention.

Every test works in a PostgreSQL schema of its own, dropped at the end.
"""

from __future__ import annotations

import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import psycopg
import pytest
from psycopg import sql

from tests._proxy import TcpProxy
from tests.stores._postgres import isolated_schema
from xtasks import ConfigError, RunCause, RunRecord, RunStatus, StoreError
from xtasks._runs import AuditRecord, ErrorInfo, TaskRecord, TaskState
from xtasks.stores import builtin_stores, open_store
from xtasks.stores._pg_rows import escape, unescape
from xtasks.stores._pg_schema import MIGRATIONS
from xtasks.stores.postgres import PostgresStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

# The URL tests need no server; the rest of the module does.
pytestmark = [pytest.mark.anyio, pytest.mark.external_service]

SECRET = "s3cr3t-Pa55word"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def pg() -> Iterator[tuple[str, str]]:
    """The server's URL and a schema of this test's own."""
    with isolated_schema() as found:
        yield found


def _store(pg: tuple[str, str], **options: Any) -> PostgresStore:
    url, schema = pg
    return PostgresStore(url, schema=schema, **options)


async def _opened(pg: tuple[str, str], **options: Any) -> PostgresStore:
    store = _store(pg, **options)
    await store.open()
    return store


def _sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``query`` on a connection of the test's own; its rows."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


def _listener_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("xtasks-listen")]


# -- the URL -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_the_url_carries_the_server_and_the_options(scheme: str) -> None:
    url = (
        f"{scheme}://app:{SECRET}@db.example:6543/orders?schema=jobs&pool_size=2&lease_ttl=3"
        "&connect_timeout=1.5&max_runs_per_task=10&max_age=60&sslmode=require"
    )
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    assert (store.schema, store.pool_size, store.lease_ttl) == ("jobs", 2, 3.0)
    assert (store.connect_timeout, store.max_runs_per_task, store.max_age) == (1.5, 10, 60.0)
    # libpq's own options go to the server connection; the store's stay out of it.
    assert store._conninfo == f"{scheme}://app:{SECRET}@db.example:6543/orders?sslmode=require"
    assert SECRET not in repr(store)
    assert repr(store) == (
        f"PostgresStore('{scheme}://app:***@db.example:6543/orders?sslmode=require', schema='jobs')"
    )


def test_libpq_parameters_in_the_query_go_to_the_connection_and_stay_secret() -> None:
    store = open_store(
        f"postgresql:///app?host=/run/postgresql&user=app&password={SECRET}&schema=jobs"
    )
    assert isinstance(store, PostgresStore)
    assert store.schema == "jobs"
    assert store._conninfo == (
        f"postgresql:///app?host=%2Frun%2Fpostgresql&user=app&password={SECRET}"
    )
    assert SECRET not in repr(store) and "password=***" in repr(store)


def test_the_defaults() -> None:
    store = open_store("postgresql://db/app")
    assert isinstance(store, PostgresStore)
    assert (store.schema, store.pool_size, store.lease_ttl, store.connect_timeout) == (
        "xtasks",
        4,
        10.0,
        5.0,
    )
    assert (store.max_runs_per_task, store.max_age) == (None, None)


def test_postgresql_is_a_built_in_scheme() -> None:
    registry = builtin_stores()
    assert "postgresql" in registry and "postgres" in registry


def test_an_unknown_option_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        open_store(f"postgresql://app:{SECRET}@db/app?schema=x&poolsize=3")
    message = str(info.value)
    assert "unknown option 'poolsize'" in message
    assert "known: max_runs_per_task, max_age, schema, pool_size, lease_ttl" in message
    assert SECRET not in message and "app:***@db" in message


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("pool_size=0", "pool_size"),
        ("lease_ttl=0", "lease_ttl"),
        ("connect_timeout=-1", "connect_timeout"),
        ("max_runs_per_task=0", "max_runs_per_task"),
        ("max_age=nan", "max_age"),
        ("schema=", "schema"),
        (f"schema={'x' * 64}", "schema"),
        ("schema=a%25b", "schema"),
        ("schema=1st", "schema"),
        ("schema=a.b", "schema"),
    ],
)
def test_meaningless_options_are_refused(query: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(f"postgresql://db/app?{query}")
    assert info.value.field == field


def test_a_badly_typed_option_is_refused() -> None:
    with pytest.raises(ConfigError, match="option 'pool_size' .* must be a int, got 'many'"):
        open_store("postgresql://db/app?pool_size=many")


# -- failures ------------------------------------------------------------------------------


def _everything_shown(exc: BaseException) -> list[str]:
    """What a user may see of ``exc``: its text, its repr, and its chained causes."""
    seen = [str(exc), repr(exc)]
    cause = exc.__cause__
    while cause is not None:  # a traceback prints the chained errors too
        seen.append(str(cause))
        cause = cause.__cause__
    return seen


async def test_a_refused_connection_fails_open_at_once_saying_why_without_the_password() -> None:
    # Port 1 of this host: nothing listens, so every connection attempt is refused.
    store = PostgresStore(f"postgresql://app:{SECRET}@127.0.0.1:1/app", connect_timeout=120)
    assert SECRET not in repr(store)
    # At once: not after the connect timeout (two minutes), nor after retries.
    with anyio.fail_after(60), pytest.raises(StoreError) as info:
        await store.open()
    assert all(SECRET not in text for text in _everything_shown(info.value))
    message = str(info.value)
    assert "PostgreSQL store postgresql://app:***@127.0.0.1:1/app" in message
    assert "cannot open the database" in message and "Connection refused" in message
    with pytest.raises(StoreError, match="store is not open"):
        await store.get_run("x")
    await store.close()  # harmless


async def test_a_silent_server_fails_open_within_the_connect_timeout() -> None:
    """A server that accepts the connection and never answers (a hung host, a black
    hole behind a proxy): ``open`` gives up after ``connect_timeout``."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        store = PostgresStore(f"postgresql://app:{SECRET}@127.0.0.1:{port}/app", connect_timeout=2)
        # It gives up (after its 2 s), rather than wait for the silent server for ever.
        with anyio.fail_after(60), pytest.raises(StoreError, match="timeout") as info:
            await store.open()
    assert all(SECRET not in text for text in _everything_shown(info.value))


async def test_a_call_on_a_closed_store_is_a_store_error(pg: tuple[str, str]) -> None:
    store = await _opened(pg)
    await store.close()
    for call in (
        lambda: store.change_task_state("t", TaskRecord()),
        lambda: store.task_state_changes(0),
        store.prune,
    ):
        with pytest.raises(StoreError, match="store is closed"):
            await call()
    with anyio.fail_after(5):  # a hint only: never raises, and still waits
        await store.wait_for_changes(0, 0.01)


async def test_a_terminated_connection_is_a_store_error_then_the_pool_recovers(
    pg: tuple[str, str],
) -> None:
    """The server ends every connection of the store (a restart, a failover, an admin):
    the next call succeeds or raises StoreError, never a driver error, and the store works
    again without being reopened, its change listener included."""
    url, schema = pg
    name = f"xt-fault-{uuid.uuid4().hex[:8]}"
    store = await _opened((f"{url}?application_name={name}", schema))
    other = await _opened(pg)
    try:
        record = RunRecord(
            id="r1", task="t", status=RunStatus.SUCCEEDED, cause=RunCause.MANUAL, scheduled_at=T0
        )
        assert await store.save_runs([record]) == []
        async with anyio.create_task_group() as group:  # use several pooled connections
            for _ in range(4):
                group.start_soon(store.list_runs)
        ended = _sql(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            name,
        )
        assert len(ended) >= 2  # a pooled connection and the listener's, at least
        try:
            assert await store.get_run("r1") == record
        except StoreError as exc:
            assert "get run failed" in str(exc)
        # A later call succeeds: the pool dropped the dead connections.
        assert await store.get_run("r1") == record
        assert await store.claim_fire("t", T0, "replica-a") is True
        # The listener reconnected too: a change through another store object wakes it.
        with anyio.fail_after(10):
            await _heard_from(other, store)
    finally:
        await other.close()
        await store.close()


@pytest.mark.slow
async def test_after_an_outage_the_store_works_again_without_reopening(
    pg: tuple[str, str],
) -> None:
    """The server goes away (every connection cut, new ones refused) for longer than the
    pool's reconnection budget, then comes back: meanwhile every call is a StoreError
    within the connect timeout; afterwards calls succeed, on the same store object, and a
    change made meanwhile by another replica wakes its waiters."""
    url, schema = pg
    server = urlsplit(url)
    proxy = TcpProxy((server.hostname or "127.0.0.1", server.port or 5432))
    user, at, _ = server.netloc.rpartition("@")
    through = url.replace(server.netloc, f"{user}{at}127.0.0.1:{proxy.port}", 1)
    store = await _opened((through, schema), connect_timeout=1)
    other = await _opened(pg)  # straight to the server
    try:
        assert await store.claim_fire("t", T0, "replica-a") is True
        proxy.cut()
        away = anyio.current_time()
        missed = await other.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
        while anyio.current_time() - away < 3:  # past the pool's budget of 1 + 1 s
            # Each call fails within the pool's budget (about 2 s), never hangs.
            with anyio.fail_after(30), pytest.raises(StoreError, match="failed"):
                await store.load_task("t")
        proxy.restore()
        with anyio.fail_after(10):
            while True:
                try:
                    record = await store.load_task("t")
                except StoreError:
                    await anyio.sleep(0.1)
                else:
                    break
        assert record == TaskRecord(state=TaskState.PAUSED, last_fire=T0)
        assert await store.claim_fire("t", T0, "replica-b") is False
        # The change made while it was away was never notified to it: its listener,
        # back, reads the latest number, and wakes the waiter well before at_most.
        with anyio.fail_after(10):
            await store.wait_for_changes(missed - 1, at_most=60)
        assert await store.task_state_changes(missed - 1) == (missed, {"t": TaskState.PAUSED})
    finally:
        await other.close()
        await store.close()
        proxy.stop()


async def _heard_from(changer: PostgresStore, listener: PostgresStore) -> None:
    """Until a change made through ``changer`` is heard by ``listener``'s listener."""
    while True:
        after, _ = await listener.task_state_changes(0)
        number = await changer.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
        await listener.wait_for_changes(after, 0.5)
        if listener._listener is not None and listener._listener.heard >= number:
            return


async def test_statements_failing_on_the_server_are_store_errors(pg: tuple[str, str]) -> None:
    url, schema = pg
    store = await _opened(pg)
    try:
        _sql(url, sql.SQL("DROP TABLE {}.runs").format(sql.Identifier(schema)).as_string(None))
        with pytest.raises(StoreError, match=r"save runs failed: .*runs"):
            await store.save_run(
                RunRecord(
                    id="r",
                    task="t",
                    status=RunStatus.QUEUED,
                    cause=RunCause.MANUAL,
                    scheduled_at=T0,
                )
            )
        assert await store.claim_fire("t", T0, "replica-a") is True  # the rest still works
    finally:
        await store.close()


# -- schema ----------------------------------------------------------------------------------


async def test_replicas_opening_together_migrate_a_fresh_schema_once(pg: tuple[str, str]) -> None:
    url, schema = pg
    stores = [_store(pg) for _ in range(4)]
    try:
        async with anyio.create_task_group() as group:
            for store in stores:
                group.start_soon(store.open)
        versions = _sql(url, f'SELECT version FROM "{schema}".schema_version')
        assert versions == [(len(MIGRATIONS),)]
        assert await stores[0].claim_fire("t", T0, "a") is True
        assert await stores[3].claim_fire("t", T0, "b") is False
    finally:
        for store in stores:
            await store.close()


async def test_a_schema_newer_than_this_xtasks_is_refused(pg: tuple[str, str]) -> None:
    url, schema = pg
    store = await _opened(pg)
    await store.close()
    _sql(url, f'UPDATE "{schema}".schema_version SET version = 99')
    with pytest.raises(StoreError, match="schema version 99, newer than this xtasks knows"):
        await store.open()


async def test_a_closed_store_opens_again_with_what_it_wrote(pg: tuple[str, str]) -> None:
    store = await _opened(pg)
    await store.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
    await store.close()
    await store.close()
    await store.open()
    try:
        assert await store.task_state_changes(0) == (1, {"t": TaskState.PAUSED})
    finally:
        await store.close()


async def test_text_with_nul_and_lone_surrogates_round_trips(pg: tuple[str, str]) -> None:
    """PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate; an exception message
    may hold either: they are escaped."""
    odd = "a\x00b\ue000c\ue0000\x00 \udcff\ud800 \ue0002d800"
    assert unescape(escape(odd)) == odd and escape("plain") == "plain"
    record = RunRecord(
        id=f"r{odd}",
        task=f"t{odd}",
        status=RunStatus.FAILED,
        cause=RunCause.MANUAL,
        scheduled_at=T0,
        error=ErrorInfo(odd, odd, odd),
        reason=odd,
        result=odd,
        replica=odd,
    )
    audit = AuditRecord(at=T0, actor=odd, action="run", task=odd, outcome="ok", detail=odd)
    store = await _opened(pg)
    try:
        assert await store.save_runs([record]) == []
        assert await store.get_run(record.id) == record
        assert await store.list_runs(task=record.task) == [record]
        await store.add_audit(audit)
        assert await store.list_audit(task=odd) == [audit]
        await store.change_task_state(odd, TaskRecord(state=TaskState.PAUSED))
        assert await store.task_state_changes(0) == (1, {odd: TaskState.PAUSED})
        assert await store.claim_fires([(odd, T0), (odd, T0)], odd) == [True, False]
    finally:
        await store.close()


# -- task state changes ---------------------------------------------------------------------


@pytest.fixture
async def two_stores(pg: tuple[str, str]) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a = await _opened(pg)
    b = await _opened(pg)
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


async def test_save_task_writes_the_state_of_a_new_task_only(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    await a.save_task("t", TaskRecord(state=TaskState.PAUSED, consecutive_failures=1))
    assert await b.load_task("t") == TaskRecord(state=TaskState.PAUSED, consecutive_failures=1)
    # A replica saving its progress does not undo a resume made meanwhile...
    number = await b.change_task_state("t", TaskRecord(state=TaskState.ACTIVE))
    await a.save_task("t", TaskRecord(state=TaskState.PAUSED, last_fire=T0))
    assert await b.load_task("t") == TaskRecord(state=TaskState.ACTIVE, last_fire=T0)
    # ...and a change writes the record as save_task does, with its state.
    later = T0 + timedelta(seconds=1)
    record = TaskRecord(state=TaskState.CANCELLED, last_fire=later, alerting=True)
    assert await a.change_task_state("t", record) == number + 1
    assert await b.load_task("t") == record
    assert await b.change_task_state("t", TaskRecord(state=TaskState.PAUSED)) == number + 2
    assert await a.load_task("t") == TaskRecord(state=TaskState.PAUSED, last_fire=later)


async def test_changes_are_numbered_fleet_wide_and_polled_without_a_miss(
    pg: tuple[str, str],
) -> None:
    """Changes raced through two store objects get the numbers 1..n, and a replica
    polling from the highest number it saw finds every one of them."""
    stores = [await _opened(pg) for _ in range(2)]
    count = 24
    numbers: list[int] = []
    seen: dict[str, TaskState] = {}
    done = anyio.Event()

    async def change(i: int) -> None:
        record = TaskRecord(state=TaskState.PAUSED)
        numbers.append(await stores[i % 2].change_task_state(f"task-{i}", record))

    async def poll() -> None:
        after = 0
        while True:
            finished = done.is_set()
            highest, states = await stores[1].task_state_changes(after)
            assert highest >= after
            seen.update(states)
            after = highest
            if finished:
                return
            await anyio.lowlevel.checkpoint()

    try:
        assert await stores[0].task_state_changes(0) == (0, {})
        async with anyio.create_task_group() as poller:
            poller.start_soon(poll)
            async with anyio.create_task_group() as group:
                for i in range(count):
                    group.start_soon(change, i)
            done.set()
        assert sorted(numbers) == list(range(1, count + 1))
        assert seen == {f"task-{i}": TaskState.PAUSED for i in range(count)}
        assert await stores[0].task_state_changes(count) == (count, {})
        assert await stores[0].task_state_changes(count + 5) == (count + 5, {})
        _, last = await stores[0].task_state_changes(count - 1)
        assert len(last) == 1
    finally:
        for store in stores:
            await store.close()


async def test_a_change_wakes_the_waiters_of_other_replicas(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    at_most = 30.0
    await _listening(b)
    after, _ = await b.task_state_changes(0)
    woke_after: list[float] = []

    async def wait() -> None:
        started = anyio.current_time()
        await b.wait_for_changes(after, at_most)
        woke_after.append(anyio.current_time() - started)

    with anyio.fail_after(10):  # well before at_most
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await anyio.sleep(0.1)  # it is waiting
            number = await a.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
        assert number == after + 1
        assert woke_after and woke_after[0] < at_most
        # Heard already: returns at once; nothing new: waits out at_most (short here).
        await b.wait_for_changes(after, at_most)
    started = anyio.current_time()
    await b.wait_for_changes(number, 0.3)
    assert anyio.current_time() - started >= 0.25


async def _listening(store: PostgresStore) -> None:
    """Wait until ``store``'s listener listens: a change of its own is heard."""
    with anyio.fail_after(10):
        while True:
            number = await store.change_task_state("warm-up", TaskRecord())
            await store.wait_for_changes(number - 1, 0.2)
            if store._listener is not None and store._listener.heard >= number:
                return


async def test_close_stops_the_listener_thread(pg: tuple[str, str]) -> None:
    before = set(_listener_threads())
    stores = [await _opened(pg) for _ in range(3)]
    assert len(set(_listener_threads()) - before) == 3
    for store in stores:
        await store.close()
    assert set(_listener_threads()) - before == set()


# -- retention -------------------------------------------------------------------------------


async def test_retention_keeps_live_runs_and_pruned_claims_stay_taken(pg: tuple[str, str]) -> None:
    url, schema = pg
    store = await _opened(pg, max_runs_per_task=2)
    try:

        def run(i: int, status: RunStatus) -> RunRecord:
            return RunRecord(
                id=f"r{i}",
                task="t",
                status=status,
                cause=RunCause.SCHEDULE,
                scheduled_at=T0 + timedelta(seconds=i),
                replica="replica-a",
            )

        runs = [run(i, RunStatus.SUCCEEDED) for i in range(5)] + [run(5, RunStatus.RUNNING)]
        runs.insert(0, run(9, RunStatus.QUEUED).evolve(scheduled_at=T0 - timedelta(days=1)))
        await store.save_runs(runs)
        assert await store.prune() == 3
        kept = [r.id for r in await store.list_runs(task="t")]
        assert kept == ["r5", "r4", "r3", "r9"]  # live runs never go, nor count

        old = datetime.now(UTC) - timedelta(days=2)
        assert await store.claim_fires([("t", old), ("t", old + timedelta(seconds=1))], "a") == [
            True,
            True,
        ]
        await store.prune()
        rows = _sql(url, f'SELECT count(*) FROM "{schema}".claims')
        assert rows == [(0,)]  # pruned...
        assert await store.claim_fire("t", old, "b") is False  # ...and still taken
        assert await store.claim_fire("t", old - timedelta(hours=1), "b") is False
        assert await store.claim_fire("t", datetime.now(UTC), "b") is True
    finally:
        await store.close()


# -- every field of a run record ------------------------------------------------------------


async def test_the_schema_has_a_column_for_every_record_field_and_keeps_them_all(
    pg: tuple[str, str],
) -> None:
    """A field added to RunRecord needs a migration here: without its column, a batch
    would drop it silently (json_populate_recordset ignores unknown keys)."""
    from tests.test_record_fields import FULL, same_fields
    from xtasks.stores._sql import RUN_COLUMNS

    url, schema = pg
    store = await _opened(pg)
    await store.close()
    columns = _sql(
        url,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'runs'",
        schema,
    )
    missing = sorted(set(RUN_COLUMNS.split(", ")) - {name for (name,) in columns})
    assert not missing, f"add a migration to _pg_schema.MIGRATIONS creating {missing}"
    store = await _opened(pg)
    try:
        assert await store.save_runs([FULL]) == []
    finally:
        await store.close()
    store = await _opened(pg)
    try:
        back = await store.get_run(FULL.id)
        assert back is not None
        same_fields(back, FULL)
        assert await store.list_runs(task=FULL.task) == [FULL]
    finally:
        await store.close()


# -- a fleet of schedulers ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::xtasks.ShortIntervalWarning")
async def test_three_replicas_run_each_fire_once_and_share_a_pause(pg: tuple[str, str]) -> None:
    """``Scheduler("postgresql://...")`` on three replicas: each due fire runs once in the
    whole fleet, and a pause made on one reaches the others."""
    from xtasks import Every, Scheduler, Task
    from xtasks.events import TaskStateChanged

    url, schema = pg
    ran: list[str] = []
    enough = anyio.Event()

    def replica(name: str) -> Scheduler:
        async def tick() -> None:
            ran.append(name)
            if len(ran) >= 6:
                enough.set()

        scheduler = Scheduler(f"{url}?schema={schema}", plugins=False, replica_id=name)
        scheduler.add(Task("tick", tick, trigger=Every(seconds=0.5)))
        return scheduler

    a, b, c = replica("a"), replica("b"), replica("c")
    send, heard = anyio.create_memory_object_stream[TaskStateChanged](10)
    with send, heard:
        async with a, b, c:
            with anyio.fail_after(10):
                await enough.wait()
            unsubscribe = c.subscribe(send.send_nowait, types=TaskStateChanged)
            try:
                await a.pause("tick")
                with anyio.fail_after(5):
                    assert await heard.receive() == TaskStateChanged("tick", TaskState.PAUSED)
            finally:
                unsubscribe()
    store = await _opened(pg)
    try:
        runs = await store.list_runs(task="tick", limit=1000)
    finally:
        await store.close()
    fires = [run.scheduled_at for run in runs]
    assert len(fires) == len(set(fires)), "a fire ran on more than one replica"
    assert 6 <= len(ran) <= len(runs)  # every execution has its record: none went unseen
    assert {run.replica for run in runs} <= {"a", "b", "c"}


async def test_a_schema_of_an_older_version_is_migrated_keeping_its_rows(
    pg: tuple[str, str],
) -> None:
    """A database made by an earlier xtasks (schema v1, before task definitions) opens:
    the later migrations run, once, and what it held is kept."""
    from xtasks.stores._pg_schema import MIGRATIONS as STEPS

    url, schema = pg
    quoted = f'"{schema}"'
    _sql(url, f"CREATE SCHEMA {quoted}")
    for statement in STEPS[0]:
        _sql(url, statement.replace("{s}", quoted))
    _sql(url, f"CREATE TABLE {quoted}.schema_version (version integer NOT NULL)")
    _sql(url, f"INSERT INTO {quoted}.schema_version VALUES (1)")
    _sql(url, f"INSERT INTO {quoted}.tasks (name, state, change) VALUES ('t', 'paused', 7)")
    store = await _opened(pg)
    try:
        assert _sql(url, f"SELECT version FROM {quoted}.schema_version") == [(len(STEPS),)]
        assert await store.load_task("t") == TaskRecord(state=TaskState.PAUSED)
        assert await store.task_state_changes(0) == (7, {"t": TaskState.PAUSED})
        await store.save_task("t", TaskRecord(definition="app:f, Every(seconds=5)"))
        stored = await store.load_task("t")
        assert stored is not None and stored.definition == "app:f, Every(seconds=5)"
    finally:
        await store.close()


async def test_runs_written_before_earlier_attempts_read_back_with_none(
    pg: tuple[str, str],
) -> None:
    """A schema at v2 (before runs kept their earlier attempts) opens: its runs read back
    with none, and take a write with some."""
    from xtasks import AttemptRecord
    from xtasks.stores._pg_schema import MIGRATIONS as STEPS

    url, schema = pg
    quoted = f'"{schema}"'
    _sql(url, f"CREATE SCHEMA {quoted}")
    for statements in STEPS[:2]:
        for statement in statements:
            _sql(url, statement.replace("{s}", quoted))
    _sql(url, f"CREATE TABLE {quoted}.schema_version (version integer NOT NULL)")
    _sql(url, f"INSERT INTO {quoted}.schema_version VALUES (2)")
    _sql(
        url,
        f"INSERT INTO {quoted}.runs (id, task, status, cause, scheduled_at, attempts,"
        " error_type, error_message, error_traceback)"
        " VALUES ('old', 't', 'failed', 'schedule', %s, 2, 'E', 'second', '')",
        T0.isoformat(timespec="microseconds"),
    )
    old = RunRecord(
        id="old",
        task="t",
        status=RunStatus.FAILED,
        cause=RunCause.SCHEDULE,
        scheduled_at=T0,
        attempts=2,
        error=ErrorInfo("E", "second"),
    )
    attempt = AttemptRecord(1, T0, T0 + timedelta(seconds=1), ErrorInfo("E", "first\x00"))
    store = await _opened(pg)
    try:
        assert _sql(url, f"SELECT version FROM {quoted}.schema_version") == [(len(STEPS),)]
        assert await store.get_run("old") == old
        await store.save_run(old.evolve(earlier_attempts=(attempt,)))
        assert await store.get_run("old") == old.evolve(earlier_attempts=(attempt,))
    finally:
        await store.close()


async def test_runs_written_before_executor_and_worker_read_back_without_them(
    pg: tuple[str, str],
) -> None:
    """A schema at v3 (before runs kept where they ran) opens: its runs read back with
    executor ``""`` and no worker, and take a write with both."""
    url, schema = pg
    quoted = f'"{schema}"'
    _sql(url, f"CREATE SCHEMA {quoted}")
    for statements in MIGRATIONS[:3]:
        for statement in statements:
            _sql(url, statement.replace("{s}", quoted))
    _sql(url, f"CREATE TABLE {quoted}.schema_version (version integer NOT NULL)")
    _sql(url, f"INSERT INTO {quoted}.schema_version VALUES (3)")
    _sql(
        url,
        f"INSERT INTO {quoted}.runs (id, task, status, cause, scheduled_at, finished_at,"
        " attempts, replica) VALUES ('old', 't', 'succeeded', 'manual', %s, %s, 1, 'host:1')",
        T0.isoformat(timespec="microseconds"),
        (T0 + timedelta(seconds=1)).isoformat(timespec="microseconds"),
    )
    old = RunRecord(
        id="old",
        task="t",
        status=RunStatus.SUCCEEDED,
        cause=RunCause.MANUAL,
        scheduled_at=T0,
        finished_at=T0 + timedelta(seconds=1),
        attempts=1,
        replica="host:1",
    )
    ran = old.evolve(executor="celery", worker="celery@hôte\x001")  # NUL: escaped
    store = await _opened(pg)
    try:
        assert _sql(url, f"SELECT version FROM {quoted}.schema_version") == [(len(MIGRATIONS),)]
        back = await store.get_run("old")
        assert back == old
        assert back is not None and (back.executor, back.worker) == ("", None)
        assert await store.list_runs() == [old]
        await store.save_run(ran)
        assert await store.get_run("old") == ran
    finally:
        await store.close()
