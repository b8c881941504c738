"""Nothing is published before it is stored: a subscriber that reads the store through a
connection of its own -- as another process, a dashboard or a replica would -- finds,
for every event, the run stored at that status or a later one, and the task in the state
the event announces.

Read back through the scheduler's own store object, the promise could not fail: a read
on the same SQLite connection queues behind the write, and the memory store's write
never pauses. These read the SQLite file and the PostgreSQL schema on their own
connections, inside the event callback, where an event published early would show."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from xtasks import RunStatus, Scheduler, Task
from xtasks.events import RunChanged, TaskStateChanged

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

#: How far along a status is: a read may find a later one, never an earlier one.
_STAGE = {RunStatus.QUEUED: 0, RunStatus.RUNNING: 1}
_FINAL = 2


def _stage(status: str | RunStatus) -> int:
    return _STAGE.get(RunStatus(status), _FINAL)


_FAILS_LEFT: list[int] = []


async def ok() -> str:
    return "ok"


async def flaky() -> str:
    if _FAILS_LEFT:
        _FAILS_LEFT.pop()
        raise RuntimeError("first attempt fails")
    return "ok"


def in_a_thread() -> int:
    return 7


#: Reads one run's (status, attempts) and one task's state, on a connection of its own.
Reader = tuple["Callable[[str], tuple[str, int] | None]", "Callable[[str], str | None]"]


async def _exercise(url: str, reader: Reader) -> tuple[int, int]:
    """Run a mix of runs (success, a retry, a thread, a skip by overlap) and a pause and
    resume; check each event against the store as read by ``reader``. Returns how many
    run and task-state events were checked."""
    read_run, read_task = reader
    problems: list[str] = []
    checked = [0, 0]

    def on_run(event: RunChanged) -> None:
        record = event.record
        stored = read_run(record.id)
        checked[0] += 1
        if stored is None:
            problems.append(f"{record.id} published {record.status} before it was stored")
            return
        status, attempts = stored
        if _stage(status) < _stage(record.status) or (
            _stage(status) == _stage(record.status) and attempts < record.attempts
        ):
            problems.append(
                f"{record.id}: event {record.status}/{record.attempts}, stored {status}/{attempts}"
            )

    def on_state(event: TaskStateChanged) -> None:
        checked[1] += 1
        stored = read_task(event.task)
        if stored != event.state.value:
            problems.append(f"{event.task}: event {event.state}, stored {stored}")

    _FAILS_LEFT[:] = [1]
    scheduler = Scheduler(url, plugins=False, shutdown_grace=5)
    scheduler.add(Task("ok", ok, overlap="allow"))
    scheduler.add(Task("flaky", flaky, max_retries=1))
    scheduler.add(Task("thread", in_a_thread))
    gate = anyio.Event()

    async def held() -> None:
        await gate.wait()

    scheduler.add(Task("held", held))  # overlap skip: a second trigger is skipped
    async with scheduler:
        scheduler.subscribe(on_run, RunChanged)
        scheduler.subscribe(on_state, TaskStateChanged)
        with anyio.fail_after(30):
            handles = [await scheduler.trigger("ok") for _ in range(20)]
            handles.append(await scheduler.trigger("flaky"))
            handles.append(await scheduler.trigger("thread"))
            first = await scheduler.trigger("held")
            skipped = await (await scheduler.trigger("held")).wait()
            gate.set()
            handles.append(first)
            records = [await handle.wait() for handle in handles]
            await scheduler.pause("ok")
            await scheduler.resume("ok")
    assert skipped.status is RunStatus.SKIPPED
    assert [r.status for r in records].count(RunStatus.SUCCEEDED) == len(records)
    assert problems == []
    return checked[0], checked[1]


@pytest.fixture
def sqlite_reader(tmp_path: Path) -> Iterator[tuple[str, Reader]]:
    path = tmp_path / "xtasks.db"
    connection: list[sqlite3.Connection] = []

    def conn() -> sqlite3.Connection:
        if not connection:  # the file exists once the scheduler opened it
            connection.append(sqlite3.connect(path, timeout=30))
        return connection[0]

    def read_run(run_id: str) -> tuple[str, int] | None:
        row = conn().execute("SELECT status, attempts FROM runs WHERE id = ?", (run_id,))
        found: Any = row.fetchone()
        return None if found is None else (str(found[0]), int(found[1]))

    def read_task(name: str) -> str | None:
        found: Any = conn().execute("SELECT state FROM tasks WHERE name = ?", (name,)).fetchone()
        return None if found is None else str(found[0])

    yield f"sqlite:///{path}", (read_run, read_task)
    for c in connection:
        c.close()


async def test_sqlite_every_event_is_readable_from_another_connection(
    sqlite_reader: tuple[str, Reader],
) -> None:
    url, reader = sqlite_reader
    runs, states = await _exercise(url, reader)
    assert runs >= 3 * 22 and states == 2  # every run's queued, running and final


@pytest.fixture
def postgres_reader() -> Iterator[tuple[str, Reader]]:
    import psycopg
    from psycopg import sql

    from tests.stores._postgres import isolated_schema

    with isolated_schema() as (url, schema), psycopg.connect(url, autocommit=True) as conn:
        runs = sql.SQL("SELECT status, attempts FROM {}.runs WHERE id = %s").format(
            sql.Identifier(schema)
        )
        tasks = sql.SQL("SELECT state FROM {}.tasks WHERE name = %s").format(sql.Identifier(schema))

        def read_run(run_id: str) -> tuple[str, int] | None:
            found = conn.execute(runs, (run_id,)).fetchone()
            return None if found is None else (str(found[0]), int(found[1]))

        def read_task(name: str) -> str | None:
            found = conn.execute(tasks, (name,)).fetchone()
            return None if found is None else str(found[0])

        yield f"{url}?schema={schema}", (read_run, read_task)


@pytest.mark.external_service
async def test_postgres_every_event_is_readable_from_another_connection(
    postgres_reader: tuple[str, Reader],
) -> None:
    url, reader = postgres_reader
    runs, states = await _exercise(url, reader)
    assert runs >= 3 * 22 and states == 2
