"""RedisStore on a real Redis: URL options, secrets, retention, claim floors, faults, pub/sub.

The contract suite (``test_contract.py``) and the state machine (``test_stateful.py``)
run on Redis too; these are what only Redis has. Each test uses a key prefix of its own
and deletes its keys afterwards, so runs on one server do not meet.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import pytest
import redis

from tests._proxy import TcpProxy
from tests._services import redis_url
from tests.stores._redis import redis_prefix
from xtasks import AuditRecord, RunRecord, RunStatus, StoreError
from xtasks._errors import ConfigError
from xtasks._runs import RunCause, TaskRecord, TaskState
from xtasks.stores import _sql, open_store
from xtasks.stores.redis import RedisStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

#: The columns of a run's JSON array, in order.
_COLUMNS = _sql.RUN_COLUMNS.split(", ")

pytestmark = [pytest.mark.anyio, pytest.mark.external_service]

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix() as prefix:
        yield prefix


@asynccontextmanager
async def opened(prefix: str, **options: Any) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url(), prefix=prefix, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def run(run_id: str, *, task: str = "t", status: RunStatus = RunStatus.SUCCEEDED, **kw: Any):
    kw.setdefault("scheduled_at", T0)
    kw.setdefault("cause", RunCause.SCHEDULE)
    return RunRecord(id=run_id, task=task, status=status, **kw)


def _admin() -> redis.Redis:
    return redis.Redis.from_url(redis_url(), socket_timeout=10, decode_responses=True)


# -- URL and options ---------------------------------------------------------------------


def test_url_options_are_parsed() -> None:
    url = (
        "redis://:s3cret-pw@cache.example:6380/2?prefix=app&pool_size=2&lease_ttl=3"
        "&connect_timeout=1.5&socket_timeout=4&max_runs_per_task=5&max_age=60"
    )
    store = open_store(url)
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.pool_size, store.lease_ttl) == ("app", 2, 3.0)
    assert (store.connect_timeout, store.socket_timeout) == (1.5, 4.0)
    assert (store.max_runs_per_task, store.max_age) == (5, 60.0)
    assert store.claim_horizon == 86400  # at least a day, and at least max_age
    assert store.url == "redis://:s3cret-pw@cache.example:6380/2"
    assert "s3cret-pw" not in repr(store)
    defaults = open_store("rediss://cache.example")
    assert isinstance(defaults, RedisStore)
    assert (defaults.prefix, defaults.pool_size, defaults.max_runs_per_task) == ("xtasks", 4, 1000)
    assert defaults.max_age is None
    week = open_store("redis://h/0?max_age=604800")
    assert isinstance(week, RedisStore) and week.claim_horizon == 604800


def test_an_unknown_option_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        open_store("redis://:hunter22@h:6379/0?prefx=a")
    message = str(info.value)
    assert "unknown option 'prefx'" in message
    for known in ("prefix", "pool_size", "lease_ttl", "connect_timeout", "max_runs_per_task"):
        assert known in message
    assert "hunter22" not in message


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("redis://h/0?pool_size=0", "pool_size"),
        ("redis://h/0?prefix=a{b}", "prefix"),
        ("redis://h/0?lease_ttl=-1", "lease_ttl"),
        ("redis://h/0?max_runs_per_task=0", "max_runs_per_task"),
        ("redis://h/zero", "store"),
        ("redis:///0", "store"),
        ("redis://h:port/0", "store"),
    ],
)
def test_bad_urls_and_values_are_config_errors(url: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert info.value.field == field


# -- secrets, unreachable servers ---------------------------------------------------------


def _chain(exc: BaseException | None) -> str:
    text = []
    while exc is not None:
        text.append(f"{type(exc).__name__}: {exc} {exc.args!r}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(text)


async def test_a_password_never_shows_and_open_fails_within_the_connect_timeout() -> None:
    secret = "pa55-w0rd-never-shown"
    with socket_nobody_listens_on() as port:
        url = f"redis://:{secret}@127.0.0.1:{port}/0?connect_timeout=1"
        store = open_store(url)
        assert secret not in repr(store)
        with anyio.fail_after(60), pytest.raises(StoreError) as info:  # gives up, never hangs
            await store.open()
    text = _chain(info.value)
    assert secret not in text
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "cannot connect" in str(info.value)
    with pytest.raises(StoreError, match="not open"):
        await store.get_run("x")
    await store.close()


async def test_a_wrong_password_is_a_store_error_without_it(prefix: str) -> None:
    secret = "wrong-pass-" + uuid.uuid4().hex[:6]
    store = RedisStore(f"redis://:{secret}@{redis_url().split('://', 1)[1]}", prefix=prefix)
    try:
        await store.open()
    except StoreError as exc:
        assert secret not in _chain(exc)
    else:  # a server without a password may accept any (Redis < 6 style): still no leak
        await store.get_run("x")
    finally:
        await store.close()


@contextmanager
def socket_nobody_listens_on() -> Iterator[int]:
    """A local port bound but not listening: connections to it are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# -- behaviour only Redis has ---------------------------------------------------------------


async def test_retention_drops_the_first_finished_and_keeps_live_runs(prefix: str) -> None:
    async with opened(prefix, max_runs_per_task=3) as store:
        live = [run(f"live-{i}", status=RunStatus.RUNNING, replica="r") for i in range(2)]
        await store.save_runs(live)
        finals = [run(f"done-{i}", scheduled_at=T0 + timedelta(seconds=i)) for i in range(6)]
        for record in finals:
            await store.save_run(record)
        await store.save_run(run("other", task="u"))
        kept = {record.id for record in await store.list_runs(task="t", limit=100)}
        assert kept == {"live-0", "live-1", "done-3", "done-4", "done-5"}
        assert await store.get_run("done-0") is None
        assert (await store.get_run("other")) is not None  # another task's bound is its own
        # Finishing the live ones counts them: the first to finish go first.
        await store.save_runs([r.evolve(status=RunStatus.CANCELLED) for r in live])
        kept = {record.id for record in await store.list_runs(task="t", limit=100)}
        assert kept == {"done-5", "live-0", "live-1"}
        statuses = [RunStatus.SUCCEEDED]
        assert [r.id for r in await store.list_runs(task="t", statuses=statuses)] == ["done-5"]


async def test_max_age_drops_old_final_runs_and_audit_records(prefix: str) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(hours=2), now - timedelta(minutes=1)
    async with opened(prefix, max_age=3600) as store:
        await store.save_runs(
            [
                run("old-final", scheduled_at=old, finished_at=old),
                run("old-live", status=RunStatus.QUEUED, scheduled_at=old),
                run("recent", scheduled_at=old, finished_at=recent),
            ]
        )
        for at, name in ((old, "old"), (recent, "recent")):
            record = AuditRecord(id=name, at=at, actor="a", action="run", task="t", outcome="ok")
            await store.add_audit(record)
        await store.save_run(run("trigger", scheduled_at=now))  # retention runs at each write
        ids = {record.id for record in await store.list_runs(limit=100)}
        assert ids == {"old-live", "recent", "trigger"}
        assert [r.id for r in await store.list_audit()] == ["recent"]
        assert [r.id for r in await store.list_audit(task="t")] == ["recent"]


async def test_an_expired_claim_still_counts_as_taken_through_the_floor(prefix: str) -> None:
    async with opened(prefix) as store:
        store.claim_horizon = 2  # seconds: claims are summarised after one, expire after two
        assert await store.claim_fire("t", T0, "a") is True
        await anyio.sleep(2.5)
        with _admin() as admin:
            assert admin.exists("{" + prefix + "}:c:t:20260301120000123456") == 0
        earlier, later = T0 - timedelta(seconds=1), T0 + timedelta(seconds=1)
        outcomes = await store.claim_fires([("t", T0), ("t", earlier), ("t", later)], "b")
        assert outcomes == [False, False, True]
        stored = await store.load_task("t")
        assert stored is not None and stored.last_fire == later


async def test_save_task_keeps_the_state_and_changes_are_numbered(prefix: str) -> None:
    async with opened(prefix) as a, opened(prefix) as b:
        top, changed = await a.task_state_changes(0)
        assert (top, changed) == (0, {})
        await a.save_task("t", TaskRecord(state=TaskState.PAUSED, consecutive_failures=1))
        await b.save_task("t", TaskRecord(state=TaskState.ACTIVE, consecutive_failures=2))
        assert await a.load_task("t") == TaskRecord(state=TaskState.PAUSED, consecutive_failures=2)
        first = await b.change_task_state("t", TaskRecord(state=TaskState.ACTIVE))
        second = await a.change_task_state("u", TaskRecord(state=TaskState.CANCELLED))
        assert second > first >= 1
        assert await a.task_state_changes(0) == (
            second,
            {"t": TaskState.ACTIVE, "u": TaskState.CANCELLED},
        )
        assert await b.task_state_changes(first) == (second, {"u": TaskState.CANCELLED})
        assert await b.task_state_changes(second) == (second, {})
        assert await b.task_state_changes(second + 5) == (second + 5, {})


async def test_a_retried_call_answers_as_its_first_attempt_did(prefix: str) -> None:
    """The scripts a connection retry may repeat: a won claim stays won, reaped runs come
    back to the same caller, an audit record is added once."""
    async with opened(prefix, lease_ttl=0.1) as store:
        claim = store._scripts["CLAIM"]
        keys = [store._p + "seq"]
        args = [store._p, "token-1", 3600, "t", "20260301120000000000"]
        assert claim(keys=keys, args=args) == [1]
        assert claim(keys=keys, args=args) == [1]  # the same call again: still won
        assert claim(keys=keys, args=[store._p, "token-2", *args[2:]]) == [0]

        await store.save_run(run("r", status=RunStatus.RUNNING, replica="a"))
        await anyio.sleep(0.3)
        reap = store._scripts["REAP"]
        first = reap(keys=keys, args=[store._p, "reap-1", 1000, 100])
        assert first[0] == "r"
        assert reap(keys=keys, args=[store._p, "reap-1", 1000, 100]) == first
        assert reap(keys=keys, args=[store._p, "reap-2", 1000, 100]) == []

        record = AuditRecord(at=T0, actor="a", action="run", task="t", outcome="ok")
        await store.add_audit(record)
        await store.add_audit(record)
        assert [r.id for r in await store.list_audit()] == [record.id]


# -- faults --------------------------------------------------------------------------------


def _kill_clients_of(prefix: str) -> int:
    """Kill the connections of every store on ``prefix`` (named after it), listener too."""
    killed = 0
    with _admin() as admin:
        for client in admin.client_list():
            if client.get("name") == f"xtasks:{prefix}":
                killed += admin.client_kill_filter(_id=client["id"])
    return killed


async def test_killed_connections_give_store_errors_then_work_again(prefix: str) -> None:
    async with opened(prefix) as store, opened(prefix) as other:
        await store.save_run(run("before"))
        outcomes: list[str] = []
        stop = anyio.Event()

        async def hammer() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    await store.save_run(run(f"during-{i}"))
                    await store.claim_fire("t", T0 + timedelta(seconds=i), "a")
                    await store.list_runs(limit=5)
                    outcomes.append("ok")
                except StoreError:
                    outcomes.append("StoreError")
                except Exception as exc:  # noqa: BLE001 - what the test is about
                    outcomes.append(f"{type(exc).__name__}: {exc}")

        killed = 0
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(hammer)
            for _ in range(5):
                await anyio.sleep(0.05)
                killed += await anyio.to_thread.run_sync(_kill_clients_of, prefix)
            stop.set()
        assert killed > 0
        odd = [outcome for outcome in outcomes if outcome not in ("ok", "StoreError")]
        assert not odd, odd
        assert "ok" in outcomes
        # Afterwards everything works again, without reopening.
        assert (await store.get_run("before")) is not None
        assert await store.claim_fire("t", T0 - timedelta(days=1), "a") is True
        # The listener reconnected: a change through the other store still wakes it.
        top, _ = await store.task_state_changes(0)
        await other.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
        with anyio.fail_after(10):
            await store.wait_for_changes(top, 30)


async def test_an_outage_gives_store_errors_and_the_store_recovers_without_reopening(
    prefix: str,
) -> None:
    parts = urlsplit(redis_url())
    with TcpProxy((parts.hostname or "127.0.0.1", parts.port or 6379)) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}{parts.path}"
        store = RedisStore(url, prefix=prefix, connect_timeout=0.5, socket_timeout=1)
        await store.open()
        try:
            await store.save_run(run("before"))
            proxy.cut()
            for call in (store.list_runs, lambda: store.save_run(run("during"))):
                # bounded (timeouts, few retries): it fails, never hangs
                with (
                    anyio.fail_after(60),
                    pytest.raises(StoreError, match=f"Redis store {url}: .* failed.*reachable"),
                ):
                    await call()
            proxy.restore()  # the server is back
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert (await store.get_run("before")) is not None
                    break
                except StoreError:
                    assert time.monotonic() < deadline, "the store did not recover"
                    await anyio.sleep(0.1)
            assert await store.save_run(run("after")) is True
            # The listener is back too: a change made elsewhere wakes this store.
            async with opened(prefix) as direct:
                top, _ = await store.task_state_changes(0)
                await direct.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
                with anyio.fail_after(15):
                    await store.wait_for_changes(top, 60)
        finally:
            await store.close()


async def test_every_driver_error_is_a_store_error_naming_the_store(prefix: str) -> None:
    async with opened(prefix) as store:
        with _admin() as admin:  # a key of the wrong type: Redis answers WRONGTYPE
            admin.set("{" + prefix + "}:ix", "not a zset")
        with pytest.raises(StoreError) as info:
            await store.list_runs()
        assert "Redis store redis://" in str(info.value)
        assert "list runs failed" in str(info.value)
        assert "a prefix of its own" in str(info.value)  # what to do about it
        assert isinstance(info.value.__cause__, redis.RedisError)


# -- pub/sub ---------------------------------------------------------------------------------


async def test_a_change_wakes_a_waiting_store_long_before_at_most(prefix: str) -> None:
    async with opened(prefix) as a, opened(prefix) as b:
        top, _ = await b.task_state_changes(0)
        woke = anyio.Event()

        async def wait() -> None:
            await b.wait_for_changes(top, 60)
            woke.set()

        with anyio.fail_after(15):
            async with anyio.create_task_group() as group:
                group.start_soon(wait)
                await anyio.sleep(0.2)
                with _admin() as admin:  # a message not ours on the channel: ignored
                    admin.publish("{" + prefix + "}:changes", "not a number")
                await anyio.sleep(0.2)
                assert not woke.is_set()
                number = await a.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
                await woke.wait()
        assert number > top
        with anyio.fail_after(30):  # heard already: at once, not after its 120 s
            await b.wait_for_changes(top, 120)
        started = time.monotonic()
        await b.wait_for_changes(number, 0.2)  # nothing new: waits at_most
        assert time.monotonic() - started >= 0.15  # a lower bound: load only lengthens it


def _listeners(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"xtasks-redis-listener-{prefix}"]


async def test_close_leaves_no_listener_thread_and_reopens_with_the_data(prefix: str) -> None:
    store = RedisStore(redis_url(), prefix=prefix)
    await store.open()
    assert len(_listeners(prefix)) == 1
    await store.save_run(run("kept", result={"n": [1, 2]}))
    await store.change_task_state("t", TaskRecord(state=TaskState.PAUSED))
    with anyio.fail_after(30):  # the listener thread ends: close does not hang
        await store.close()
        await store.close()
    assert _listeners(prefix) == []
    with pytest.raises(StoreError, match="closed"):
        await store.list_runs()
    await store.wait_for_changes(0, 0.01)  # never raises
    await store.open()
    try:
        assert len(_listeners(prefix)) == 1
        kept = await store.get_run("kept")
        assert kept is not None and kept.result == {"n": [1, 2]}
        assert (await store.load_task("t")) == TaskRecord(state=TaskState.PAUSED)
    finally:
        await store.close()
    assert _listeners(prefix) == []


async def test_prefixes_keep_stores_apart(prefix: str) -> None:
    with redis_prefix() as elsewhere:
        async with opened(prefix) as a, opened(elsewhere) as b:
            await a.save_run(run("mine"))
            assert await a.claim_fire("t", T0, "a") is True
            assert await b.get_run("mine") is None
            assert await b.claim_fire("t", T0, "b") is True
            assert await b.list_runs() == []


async def test_scripts_load_again_after_the_server_forgot_them(prefix: str) -> None:
    """``SCRIPT FLUSH`` (or a restart) empties the script cache: EVALSHA answers NOSCRIPT,
    and the script is loaded again, transparently."""
    async with opened(prefix) as store:
        await store.save_run(run("one"))
        with _admin() as admin:
            admin.script_flush()
        assert await store.save_run(run("two")) is True
        assert [r.id for r in await store.list_runs()] == ["two", "one"]


async def test_task_names_with_colons_and_other_characters_stay_apart(prefix: str) -> None:
    """Keys join the task name to other parts with ``:``; names that contain it (or look
    like another key's tail) must not meet."""
    names = ["a", "a:b", "s:queued:a", "ünï ✓", "a:20260301120000123456"]
    async with opened(prefix) as store:
        for i, name in enumerate(names):
            assert await store.claim_fire(name, T0, "r") is True
            await store.save_run(run(f"run-{i}", task=name, status=RunStatus.QUEUED))
            await store.save_task(name, TaskRecord(consecutive_failures=i))
        for i, name in enumerate(names):
            assert [r.id for r in await store.list_runs(task=name)] == [f"run-{i}"]
            queued = await store.list_runs(task=name, statuses=[RunStatus.QUEUED])
            assert [r.id for r in queued] == [f"run-{i}"]
            stored = await store.load_task(name)
            assert stored is not None and stored.consecutive_failures == i
        assert await store.claim_fire("a", T0, "r") is False
        await store.save_runs(
            [r.evolve(status=RunStatus.CANCELLED) for r in await store.list_runs()]
        )


async def test_a_run_written_before_earlier_attempts_reads_back_with_none(prefix: str) -> None:
    """A run's JSON array written by an xtasks before ``earlier_attempts`` existed is one
    column shorter: it reads as no earlier attempts, and takes a write with some."""
    from xtasks import AttemptRecord, ErrorInfo

    old = run("old", status=RunStatus.FAILED, attempts=2, error=ErrorInfo("E", "second"))
    attempt = AttemptRecord(1, T0, T0 + timedelta(seconds=1), ErrorInfo("E", "first"))
    async with opened(prefix) as store:
        await store.save_run(old.evolve(earlier_attempts=(attempt,)))
        with _admin() as admin:
            key = "{" + prefix + "}:r:old"
            row = json.loads(admin.hget(key, "d"))
            attempts = _COLUMNS.index("earlier_attempts")
            assert row[attempts] is not None
            admin.hset(key, "d", json.dumps(row[:attempts]))  # as an older xtasks wrote it
        assert await store.get_run("old") == old
        assert (await store.list_runs())[0].earlier_attempts == ()
        await store.save_run(old.evolve(earlier_attempts=(attempt,)))
        assert await store.get_run("old") == old.evolve(earlier_attempts=(attempt,))


async def test_a_run_written_before_executor_and_worker_reads_back_without_them(
    prefix: str,
) -> None:
    """A run's JSON array written by an xtasks before runs kept where they ran is two
    columns shorter: it reads as executor ``""`` (not ``None``) and no worker, and takes
    a write with both."""
    old = run("old", attempts=1, finished_at=T0 + timedelta(seconds=1), replica="host:1")
    ran = old.evolve(executor="celery", worker="celery@host1")
    async with opened(prefix) as store:
        await store.save_run(ran)
        with _admin() as admin:
            key = "{" + prefix + "}:r:old"
            row = json.loads(admin.hget(key, "d"))
            executor = _COLUMNS.index("executor")
            assert row[executor:] == ["celery", "celery@host1"]  # the last columns
            admin.hset(key, "d", json.dumps(row[:executor]))  # as an older xtasks wrote it
        back = await store.get_run("old")
        assert back == old
        assert back is not None and (back.executor, back.worker) == ("", None)
        assert await store.list_runs() == [old]
        await store.save_run(ran)
        assert await store.get_run("old") == ran
