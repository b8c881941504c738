"""Every store backend passes the same contract: ``xtasks.testing.STORE_CHECKS``.

Each check is its own test, per backend and per event loop, so a failure names both. The
second half checks the checks: stores broken on purpose must each fail the check that
covers what they break.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from xtasks import RunStatus, StoreError
from xtasks.abc import RunChanges
from xtasks.stores.memory import MemoryStore
from xtasks.testing import (
    STORE_CHECKS,
    check_audit_trail,
    check_claim_exclusivity,
    check_claim_fires,
    check_close_idempotent,
    check_earlier_attempts,
    check_errors_are_store_errors,
    check_fencing,
    check_last_fire_monotonic,
    check_lease_expiry_and_reaping,
    check_lease_renewal,
    check_list_runs_order_and_paging,
    check_reap_live_runs,
    check_round_trip,
    check_run_changes,
    check_run_executor_and_worker,
    check_run_totals,
    check_store,
    check_task_state_changes,
)
from xtasks.testing._delegating import DelegatingStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
    from pathlib import Path

    from xtasks import AuditRecord, RunRecord
    from xtasks.abc import Store, TaskRecord
    from xtasks.testing import StoreFactory

    Check = Callable[[StoreFactory], Awaitable[None]]

pytestmark = pytest.mark.anyio


def _memory_factory() -> StoreFactory:
    """Replicas of an in-process backend share one object: one MemoryStore per lease TTL.

    Within a check every object is made with the same TTL, so the check's replicas are one
    MemoryStore, which is then opened and closed more than once (MemoryStore allows it).
    """
    stores: dict[float, MemoryStore] = {}

    async def make_store(*, lease_ttl: float) -> Store:
        store = stores.get(lease_ttl)
        if store is None:
            store = stores[lease_ttl] = MemoryStore(lease_ttl=lease_ttl)
        return store

    return make_store


def _sqlite_factory(path: Path) -> StoreFactory:
    """Replicas on one SQLite file: a new SQLiteStore object at each call."""
    from xtasks.stores.sqlite import SQLiteStore

    async def make_store(*, lease_ttl: float) -> Store:
        return SQLiteStore(path, lease_ttl=lease_ttl)

    return make_store


def _postgres_factory(url: str, schema: str) -> StoreFactory:
    """Replicas on one PostgreSQL schema: a new PostgresStore object at each call."""
    from xtasks.stores.postgres import PostgresStore

    async def make_store(*, lease_ttl: float) -> Store:
        return PostgresStore(url, schema=schema, lease_ttl=lease_ttl)

    return make_store


def _redis_factory(prefix: str) -> StoreFactory:
    """Replicas on one Redis key prefix: a new RedisStore object at each call."""
    from tests._services import redis_url
    from xtasks.stores.redis import RedisStore

    url = redis_url()

    async def make_store(*, lease_ttl: float) -> Store:
        return RedisStore(url, prefix=prefix, lease_ttl=lease_ttl)

    return make_store


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.external_service),
        pytest.param("redis", marks=pytest.mark.external_service),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test. Service-backed ones carry ``external_service``."""
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    if backend == "memory":
        yield _memory_factory()
    elif backend == "postgres":
        from tests.stores._postgres import isolated_schema

        with isolated_schema() as (url, schema):  # a schema of its own, dropped after
            yield _postgres_factory(url, schema)
    elif backend == "redis":
        from tests.stores._redis import redis_prefix

        with redis_prefix() as prefix:
            yield _redis_factory(prefix)
    else:
        yield _sqlite_factory(tmp_path / "xtasks.db")


@pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda check: check.__name__)
async def test_store_contract(check: Check, make_store: StoreFactory) -> None:
    await check(make_store)


async def test_check_store_runs_every_check_in_order_and_stops_at_the_first_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import xtasks.testing._contract as contract

    calls: list[tuple[str, object]] = []

    def fake(name: str, *, fails: bool = False) -> Check:
        async def check(make_store: StoreFactory) -> None:
            calls.append((name, make_store))
            if fails:
                raise AssertionError(f"{name}: broken")

        return check

    factory = _memory_factory()
    monkeypatch.setattr(contract, "STORE_CHECKS", (fake("one"), fake("two")))
    await check_store(factory)
    assert calls == [("one", factory), ("two", factory)]

    calls.clear()
    checks = (fake("one"), fake("two", fails=True), fake("three"))
    monkeypatch.setattr(contract, "STORE_CHECKS", checks)
    with pytest.raises(AssertionError, match="^two: broken$"):
        await check_store(factory)
    assert [name for name, _ in calls] == ["one", "two"]


def test_every_public_check_is_in_store_checks() -> None:
    import xtasks.testing

    public = {
        getattr(xtasks.testing, name)
        for name in xtasks.testing.__all__
        if name.startswith("check_")
        and name != "check_store"
        and not name.startswith("check_executor")  # the executor contract: EXECUTOR_CHECKS
    }
    assert public == set(STORE_CHECKS)
    assert len(STORE_CHECKS) == len(set(STORE_CHECKS))
    assert all(check.__doc__ for check in STORE_CHECKS)


# --- The checks catch broken stores -----------------------------------------------------


_Delegate = DelegatingStore[MemoryStore]  # the broken stores below spoil it one way each


class _EveryClaimWins(_Delegate):
    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        await self.inner.claim_fire(task, fire_time, replica)
        return True


class _LastFireGoesBack(_Delegate):
    async def save_task(self, task: str, record: TaskRecord) -> None:
        await self.inner.save_task(task, record)
        stored = self.inner._tasks[task]
        self.inner._tasks[task] = replace(stored, last_fire=record.last_fire)  # stale wins


class _SaveTaskOverwritesState(_Delegate):
    """As stores did before state changes were numbered: a replica's progress unpauses."""

    async def save_task(self, task: str, record: TaskRecord) -> None:
        await self.inner.save_task(task, record)
        self.inner._tasks[task] = replace(self.inner._tasks[task], state=record.state)


class _NaiveDatetimes(_Delegate):
    async def get_run(self, run_id: str) -> RunRecord | None:
        record = await self.inner.get_run(run_id)
        if record is None:
            return None
        return record.evolve(scheduled_at=record.scheduled_at.replace(tzinfo=None))


class _ReapsTwice(_Delegate):
    """Returns the lost runs again to the next caller, as a reaper without a claim would."""

    async def reap_lost(self) -> list[RunRecord]:
        reaped = await self.inner.reap_lost()
        shared: list[RunRecord] = getattr(self.inner, "reaped_before", [])
        self.inner.reaped_before = reaped  # type: ignore[attr-defined]
        return reaped or shared


class _NoFencing(_Delegate):
    async def save_run(self, record: RunRecord) -> bool:
        self.inner._runs.pop(record.id, None)
        return await self.inner.save_run(record)

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        return [record.id for record in records if not await self.save_run(record)]


class _RenewalIgnored(_Delegate):
    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        held = {i for i in run_ids if self.inner._leases.get(i, ("",))[0] == replica}
        return set(run_ids) - held


class _ReapsRunningOnly(_Delegate):
    """Reaps only ``running`` runs: the queued orphans of a dead replica stay queued forever."""

    async def reap_lost(self) -> list[RunRecord]:
        inner = self.inner
        hidden = {
            run_id: lease
            for run_id, lease in inner._leases.items()
            if (record := inner._runs.get(run_id)) is not None
            and record.status is not RunStatus.RUNNING
        }
        for run_id in hidden:
            del inner._leases[run_id]
        try:
            return await inner.reap_lost()
        finally:
            inner._leases.update(hidden)


class _FinalKeepsItsLease(_Delegate):
    """A final write leaves the lease in place, so a finished run is reaped later."""

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        refused = await self.inner.save_runs(records)
        for record in records:
            if record.status.is_final and record.id not in refused:
                expires = self.inner._clock() + self.inner.lease_ttl
                self.inner._leases[record.id] = (record.replica, expires)
        return refused


class _ForgetsEarlierAttempts(_Delegate):
    """Keeps only the record's own fields, as a store without the column would."""

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        return await self.inner.save_runs([r.evolve(earlier_attempts=()) for r in records])


class _AttemptsAsAList(_Delegate):
    """Reads the attempts back as a list (a JSON decoder's, kept as it came)."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        record = await self.inner.get_run(run_id)
        if record is None:
            return None
        return record.evolve(earlier_attempts=list(record.earlier_attempts))


class _ForgetsTheWorker(_Delegate):
    """Keeps every field but the worker, as a store without its column would."""

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        return await self.inner.save_runs([r.evolve(worker=None) for r in records])


class _NoExecutorReadsAsNull(_Delegate):
    """Reads an empty executor back as NULL, as a nullable column without a default would."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        record = await self.inner.get_run(run_id)
        if record is None or record.executor:
            return record
        return record.evolve(executor=None)


class _OldestFirst(_Delegate):
    async def list_runs(
        self,
        *,
        task: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        every = await self.inner.list_runs(task=task, statuses=statuses, limit=10**9)
        return every[::-1][offset : offset + limit]


class _AuditTiesOldestFirst(_Delegate):
    """Orders the audit trail by time only, ties in insertion order (earlier first)."""

    async def list_audit(
        self, *, task: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AuditRecord]:
        every = await self.inner.list_audit(task=task, limit=10**9)
        every.sort(key=lambda r: r.at)  # stable: ties now oldest first...
        every.reverse()  # ...then newest first, ties still reversed
        return every[offset : offset + limit]


class _AuditDropsNoneDetail(_Delegate):
    async def add_audit(self, record: AuditRecord) -> None:
        from dataclasses import replace

        await self.inner.add_audit(replace(record, detail=record.detail or ""))


class _BatchWinsAll(_Delegate):
    """Claims the batch, then reports every fire won, taken already or not."""

    async def claim_fires(
        self, fires: Sequence[tuple[str, datetime]], replica: str
    ) -> list[bool | StoreError]:
        await self.inner.claim_fires(fires, replica)
        return [True] * len(fires)


class _FeedCoalescesNothing(_Delegate):
    """Reads the feed newest first, as a store ordering by the wrong end would."""

    async def run_changes(self, after: int, limit: int = 1000) -> RunChanges:
        answer = await self.inner.run_changes(after, 10**9)
        newest = answer.changes[::-1][: max(limit, 0)]
        return RunChanges(answer.latest, answer.pruned, tuple(sorted(newest)))


class _FeedMissesBatches(_Delegate):
    """Numbers only the first record of each batch, as a store numbering per statement."""

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        records = list(records)
        refused = await self.inner.save_runs(records[:1])
        for record in records[1:]:
            self.inner._runs[record.id] = record
        return refused


class _CountsEveryFinalWrite(_Delegate):
    """Counts a run again each time its final record is written (a retry counts twice)."""

    async def save_run(self, record: RunRecord) -> bool:
        saved = await self.inner.save_run(record)
        if saved and record.status.is_final:
            self.inner._runs.pop(record.id, None)  # forgets it was final already
        return saved


class _CloseTwiceFails(_Delegate):
    async def close(self) -> None:
        if getattr(self.inner, "closed", False):
            raise RuntimeError("already closed")
        self.inner.closed = True  # type: ignore[attr-defined]

    async def open(self) -> None:
        self.inner.closed = False  # type: ignore[attr-defined]


class _DriverErrorAfterClose(_Delegate):
    """After close, get_run leaks a driver's error (and the rest silently work)."""

    async def close(self) -> None:
        self.inner.closed = True  # type: ignore[attr-defined]

    async def get_run(self, run_id: str) -> RunRecord | None:
        if getattr(self.inner, "closed", False):
            raise ValueError("Cannot operate on a closed database.")
        return await self.inner.get_run(run_id)


@pytest.mark.parametrize(
    ("broken", "check", "message"),
    [
        pytest.param(broken, check, message, id=broken.__name__.lstrip("_"))
        for broken, check, message in [
            (_EveryClaimWins, check_claim_exclusivity, "exactly one must"),
            (_BatchWinsAll, check_claim_fires, "a batch over claimed fires"),
            (_LastFireGoesBack, check_last_fire_monotonic, "save_task with an earlier last_fire"),
            (_SaveTaskOverwritesState, check_task_state_changes, "save_task undid a pause"),
            (_NaiveDatetimes, check_round_trip, "is not an aware UTC datetime"),
            (_ReapsTwice, check_lease_expiry_and_reaping, "more than one reap_lost call"),
            (_NoFencing, check_fencing, "late write to a lost run returned True"),
            (_RenewalIgnored, check_lease_renewal, "after its lease was renewed"),
            (_ReapsRunningOnly, check_reap_live_runs, "not only running ones"),
            (_ReapsRunningOnly, check_lease_expiry_and_reaping, "were never reaped"),
            (_FinalKeepsItsLease, check_reap_live_runs, "reaped though already final"),
            (_ForgetsEarlierAttempts, check_earlier_attempts, "earlier_attempts: expected ("),
            (_AttemptsAsAList, check_earlier_attempts, "is not a tuple of AttemptRecord"),
            (_ForgetsTheWorker, check_run_executor_and_worker, "worker: expected 'celery@"),
            (
                _NoExecutorReadsAsNull,
                check_run_executor_and_worker,
                "executor: expected '', got None",
            ),
            (_OldestFirst, check_list_runs_order_and_paging, "list_runs(task="),
            (_AuditTiesOldestFirst, check_audit_trail, "list_audit(task="),
            (_AuditDropsNoneDetail, check_audit_trail, "detail: expected None, got ''"),
            (_FeedCoalescesNothing, check_run_changes, "expected the oldest"),
            (_FeedMissesBatches, check_run_changes, "expected ["),
            (_CountsEveryFinalWrite, check_run_totals, "expected runs=2"),
            (_CloseTwiceFails, check_close_idempotent, "close() must be idempotent"),
            (_DriverErrorAfterClose, check_errors_are_store_errors, "get_run() raised builtins."),
        ]
    ],
)
async def test_checks_catch_broken_stores(
    broken: type[_Delegate], check: Check, message: str
) -> None:
    stores: dict[float, MemoryStore] = {}

    async def make_store(*, lease_ttl: float) -> Store:
        inner = stores.setdefault(lease_ttl, MemoryStore(lease_ttl=lease_ttl))
        return broken(inner)

    with pytest.raises(AssertionError, match=rf"^{check.__name__}: .*{re.escape(message)}"):
        await check(make_store)


async def test_the_default_claim_fires_goes_in_order_and_stops_at_the_first_failure() -> None:
    """A backend that does not override ``claim_fires`` claims one fire at a time; after a
    failure it tries no more, so the fires after it are not claimed either."""
    fires = [("t", datetime(2026, 3, 1, 12, second, tzinfo=UTC)) for second in range(3)]

    class _FailsOnTheSecond(_Delegate):
        async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
            if fire_time == fires[1][1]:
                raise StoreError("the store went away")
            return await self.inner.claim_fire(task, fire_time, replica)

    inner = MemoryStore()
    store = _FailsOnTheSecond(inner)
    await store.open()
    outcomes = await store.claim_fires(fires, "replica-a")
    assert outcomes[0] is True
    assert isinstance(outcomes[1], StoreError) and outcomes[2] is outcomes[1]
    assert len(outcomes) == 3
    # Neither the failed fire nor the one after it was claimed: both can be, now.
    assert await inner.claim_fires(fires, "replica-b") == [False, True, True]
    await store.close()
