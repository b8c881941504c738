"""Retention and the change feed: a reader whose number is older than what retention kept
is told so (``RunChanges.complete_after``), on every backend; the run totals stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from xtasks import RunCause, RunRecord, RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from xtasks.abc import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.external_service),
        pytest.param("redis", marks=pytest.mark.external_service),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store keeping one finished run per task."""
    if request.param == "memory":
        from xtasks.stores.memory import MemoryStore

        yield MemoryStore(max_runs_per_task=1)
    elif request.param == "sqlite":
        from xtasks.stores.sqlite import SQLiteStore

        yield SQLiteStore(tmp_path / "x.db", max_runs_per_task=1)
    elif request.param == "postgres":
        from tests.stores._postgres import isolated_schema
        from xtasks.stores.postgres import PostgresStore

        with isolated_schema() as (url, schema):
            yield PostgresStore(url, schema=schema, max_runs_per_task=1)
    else:
        from tests._services import redis_url
        from tests.stores._redis import redis_prefix
        from xtasks.stores.redis import RedisStore

        with redis_prefix() as prefix:
            yield RedisStore(redis_url(), prefix=prefix, max_runs_per_task=1)


def _done(i: int) -> RunRecord:
    start = T0 + timedelta(minutes=i)
    return RunRecord(
        id=f"run-{i}",
        task="report",
        status=RunStatus.SUCCEEDED,
        cause=RunCause.SCHEDULE,
        scheduled_at=start,
        started_at=start,
        finished_at=start + timedelta(seconds=2),
    )


async def test_a_number_older_than_retention_kept_is_not_complete(store: Store) -> None:
    await store.open()
    try:
        start = (await store.run_changes(0, 0)).latest
        assert (await store.run_changes(start)).complete_after(start)
        await store.save_run(_done(0))
        seen = (await store.run_changes(start)).changes
        assert [record.id for _, record in seen] == ["run-0"]
        reader = seen[-1][0]  # a page that saw run-0, then went away
        for i in (1, 2):
            await store.save_run(_done(i))
        prune = getattr(store, "prune", None)
        if prune is not None:
            await prune()  # SQLite, PostgreSQL: after writes, or now; the others at once
        answer = await store.run_changes(reader)
        # run-1 changed after the reader's number and is gone: the reader must reload.
        assert [record.id for _, record in answer.changes] == ["run-2"]
        assert answer.pruned > reader
        assert not answer.complete_after(reader)
        assert answer.complete_after(answer.latest)
        assert not answer.complete_after(answer.latest + 1)  # a number from elsewhere
        totals = [t for t in await store.run_totals() if t.task == "report"]
        assert [(t.status, t.runs, t.timed) for t in totals] == [(RunStatus.SUCCEEDED, 3, 3)]
        assert totals[0].seconds == pytest.approx(6.0)
    finally:
        await store.close()
