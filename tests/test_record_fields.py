"""Every consumer of a run record carries every field of ``RunRecord``.

``FULL`` sets each field to a value other than its default, so a field added to
``RunRecord`` and forgotten by a consumer (the SQLite store, the API model, the event
stream) fails here, naming the field.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import MISSING, asdict, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI

from xtasks import AttemptRecord, ErrorInfo, RunCause, RunRecord, RunStatus, Scheduler
from xtasks.events import RunChanged
from xtasks.stores import _sql
from xtasks.stores.sqlite import SQLiteStore
from xtasks_fastapi import _live, bearer_token, manager_router
from xtasks_fastapi._schemas import RunOut

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "record-fields-token-0123456789"
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

FULL = RunRecord(
    id="6f1c2a9e0b7d4e3f",
    task="export_rapport",
    status=RunStatus.FAILED,
    cause=RunCause.DEPENDENCY,
    scheduled_at=T0,
    # Another offset than UTC: the store gives back the same instant, in UTC.
    started_at=(T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2))),
    finished_at=T0 + timedelta(seconds=2, microseconds=500),
    attempts=3,
    error=ErrorInfo(
        "ValueError",
        "the disk is full",
        "Traceback (most recent call last):\n  ...\nValueError: the disk is full\n",
    ),
    reason="attempt 3 of 3 failed",
    result=["rows", 3, False, "é", {"n": 1.5}],  # JSON: comes back equal
    replica="host-a:4242",
    earlier_attempts=(
        AttemptRecord(
            1,
            T0 + timedelta(seconds=1),
            (T0 + timedelta(seconds=1.5)).astimezone(timezone(timedelta(hours=-5))),
            ErrorInfo("OSError", "no route to host", "Traceback ...\nOSError: no route\n"),
        ),
        AttemptRecord(
            2, T0 + timedelta(seconds=1.75), T0 + timedelta(seconds=1.8), ErrorInfo("E", "")
        ),
    ),
    executor="celery",
    worker="celery@hôte-1",
)

FIELDS = {field.name for field in fields(RunRecord)}


def same_fields(got: RunRecord, want: RunRecord) -> None:
    """Field by field, so a failure names the field."""
    for name in sorted(FIELDS):
        assert getattr(got, name) == getattr(want, name), name


def test_the_record_sets_every_field_away_from_its_default() -> None:
    for field in fields(RunRecord):
        if field.default is not MISSING:
            default = field.default
        elif field.default_factory is not MISSING:
            default = field.default_factory()
        else:
            continue  # required: set by construction
        assert getattr(FULL, field.name) != default, f"set {field.name} in FULL"


# -- the SQLite store --------------------------------------------------------------------


def test_the_sqlite_schema_has_a_column_for_every_record_column(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    for statements in _sql.MIGRATIONS:
        for statement in statements:
            conn.execute(statement)
    table = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    conn.close()
    missing = sorted(set(_sql.RUN_COLUMNS.split(", ")) - table)
    assert not missing, f"add a migration to _sql.MIGRATIONS creating the columns {missing}"


@pytest.mark.anyio
async def test_sqlite_keeps_every_field_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "xtasks.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.save_runs([FULL]) == []
    finally:
        await store.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        back = await store.get_run(FULL.id)
        listed = await store.list_runs(task=FULL.task)
    finally:
        await store.close()
    assert back is not None
    same_fields(back, FULL)
    assert back == FULL
    assert listed == [FULL]


# -- the manager API ---------------------------------------------------------------------


def test_run_out_has_exactly_the_fields_of_run_record() -> None:
    assert set(RunOut.model_fields) == FIELDS | {"result_kind"}  # and how result was shown


def test_run_out_carries_every_field() -> None:
    assert FULL.error is not None
    expected: dict[str, Any] = {name: getattr(FULL, name) for name in FIELDS}
    expected["error"] = asdict(FULL.error)  # traceback included
    expected["earlier_attempts"] = [asdict(attempt) for attempt in FULL.earlier_attempts]
    expected["result"] = FULL.result  # JSON can carry it: the value itself
    expected["result_kind"] = "json"
    assert RunOut.from_core(FULL).model_dump() == expected


@pytest.mark.anyio
async def test_get_run_serves_every_field_of_a_stored_record(tmp_path: Path) -> None:
    path = tmp_path / "xtasks.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.save_run(FULL)
    finally:
        await store.close()
    scheduler = Scheduler(f"sqlite:///{path}", plugins=False)
    app = FastAPI()
    app.include_router(manager_router(scheduler, auth=bearer_token(TOKEN)))
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(
            f"/manager/runs/{FULL.id}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == FIELDS | {"result_kind"}
    assert RunOut.model_validate(body) == RunOut.from_core(FULL)  # times: the same instants


# -- the event stream --------------------------------------------------------------------


def test_run_events_leave_out_only_the_result_and_the_traceback() -> None:
    assert _live.RUN_EVENT_LEFT_OUT == {"result"}
    assert _live.ERROR_EVENT_LEFT_OUT == {"traceback"}


def test_a_run_event_carries_every_other_field() -> None:
    text = _live.format_event(RunChanged(FULL))
    assert text is not None and text.startswith("event: run\ndata: ")
    data = json.loads(text.removeprefix("event: run\ndata: "))
    assert set(data) == FIELDS - _live.RUN_EVENT_LEFT_OUT
    for name, value in data.items():
        original = getattr(FULL, name)
        if isinstance(original, datetime):
            assert datetime.fromisoformat(value) == original, name
        elif isinstance(original, ErrorInfo):
            assert value == {"type": original.type, "message": original.message}, name
        elif name == "earlier_attempts":
            assert value == [
                {
                    "number": attempt.number,
                    "started_at": attempt.started_at.isoformat(),
                    "finished_at": attempt.finished_at.isoformat(),
                    "error": {"type": attempt.error.type, "message": attempt.error.message},
                }
                for attempt in original
            ], name
        else:
            assert value == original, name
