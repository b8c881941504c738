"""``GET /manager/overview``: what the page's charts draw, from a known history on a
fake clock (runs per hour over 24 hours, failures, the coming fires)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from xtasks import ErrorInfo, Every, RunCause, RunRecord, RunStatus, Scheduler, Task
from xtasks.testing import FakeClock
from xtasks_fastapi import _overview

from .test_router import READ, build_app, ok

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 40, tzinfo=UTC)


def record(n: int, task: str, scheduled: datetime, status: RunStatus) -> RunRecord:
    return RunRecord(
        id=f"run-{task}-{n:03d}",
        task=task,
        status=status,
        cause=RunCause.SCHEDULE,
        scheduled_at=scheduled,
        started_at=scheduled,
        finished_at=scheduled + timedelta(seconds=1),
        attempts=1,
        error=ErrorInfo("ValueError", "no") if status is RunStatus.FAILED else None,
    )


@asynccontextmanager
async def serving(runs: list[RunRecord]) -> AsyncIterator[tuple[httpx.AsyncClient, Scheduler]]:
    scheduler = Scheduler(plugins=False, clock=FakeClock(NOW))
    scheduler.add(Task("hourly", ok, trigger=Every(hours=1)))
    scheduler.add(Task("half-hourly", ok, trigger=Every(minutes=30)))
    scheduler.add(Task("on-demand", ok))
    scheduler.add(Task("paused", ok, trigger=Every(minutes=10)))
    app = build_app(scheduler)
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await scheduler.store.save_runs(runs)
        await scheduler.pause("paused")
        yield client, scheduler


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {task["name"]: task for task in body["tasks"]}


async def test_overview_counts_the_last_24_hours_hour_by_hour() -> None:
    runs = [
        record(1, "hourly", NOW - timedelta(minutes=30), RunStatus.FAILED),  # 12:10, last hour
        record(2, "hourly", NOW - timedelta(minutes=35), RunStatus.LOST),  # 12:05
        record(3, "hourly", NOW - timedelta(minutes=90), RunStatus.SUCCEEDED),  # 11:10
        record(4, "hourly", NOW - timedelta(hours=23, minutes=30), RunStatus.SUCCEEDED),  # 13:10
        record(5, "hourly", NOW - timedelta(hours=25), RunStatus.FAILED),  # too old
        record(6, "on-demand", NOW - timedelta(hours=3), RunStatus.SKIPPED),
    ]
    async with serving(runs) as (client, _):
        response = await client.get("/manager/overview", headers=READ)
        assert response.status_code == 200, response.text
        body = response.json()
        assert datetime.fromisoformat(body["now"]) == NOW
        assert body["horizon_hours"] == 6
        tasks = by_name(body)
        assert sorted(tasks) == ["half-hourly", "hourly", "on-demand", "paused"]
        hourly = tasks["hourly"]
        assert (hourly["runs_24h"], hourly["failed_24h"], hourly["complete"]) == (4, 2, True)
        hours = hourly["hours"]
        assert len(hours) == 24
        assert datetime.fromisoformat(hours[0]["start"]) == datetime(2026, 2, 28, 13, tzinfo=UTC)
        assert datetime.fromisoformat(hours[-1]["start"]) == datetime(2026, 3, 1, 12, tzinfo=UTC)
        counts = {i: (h["runs"], h["failed"]) for i, h in enumerate(hours) if h["runs"]}
        assert counts == {0: (1, 0), 22: (1, 0), 23: (2, 2)}
        on_demand = tasks["on-demand"]
        assert (on_demand["runs_24h"], on_demand["failed_24h"]) == (1, 0)
        assert tasks["paused"]["runs_24h"] == 0


async def test_overview_lists_the_coming_fires_within_the_horizon() -> None:
    async with serving([]) as (client, _):
        tasks = by_name((await client.get("/manager/overview", headers=READ)).json())
        hourly = [datetime.fromisoformat(f) for f in tasks["hourly"]["next_fires"]]
        assert hourly == [NOW + timedelta(hours=h) for h in range(1, 7)]
        assert len(tasks["half-hourly"]["next_fires"]) == 12
        assert tasks["on-demand"]["next_fires"] == []
        assert tasks["paused"]["next_fires"] == []  # a paused task does not fire

        two = by_name((await client.get("/manager/overview?hours=2", headers=READ)).json())
        assert len(two["hourly"]["next_fires"]) == 2
        many = by_name((await client.get("/manager/overview?hours=48", headers=READ)).json())
        assert len(many["hourly"]["next_fires"]) == 48


async def test_overview_says_when_it_counted_only_the_newest_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_overview, "MAX_RUNS_READ", 3)
    monkeypatch.setattr(_overview, "_PAGE", 2)
    runs = [
        record(i, "hourly", NOW - timedelta(minutes=10 * i + 1), RunStatus.SUCCEEDED)
        for i in range(5)
    ]
    async with serving(runs) as (client, _):
        tasks = by_name((await client.get("/manager/overview", headers=READ)).json())
        assert (tasks["hourly"]["runs_24h"], tasks["hourly"]["complete"]) == (4, False)
        assert tasks["half-hourly"]["complete"] is True


async def test_overview_checks_its_horizon_and_credentials() -> None:
    async with serving([]) as (client, _):
        for bad in ("0", "-1", "49", "nan", "soon"):
            response = await client.get(f"/manager/overview?hours={bad}", headers=READ)
            assert response.status_code == 422, bad
        assert (await client.get("/manager/overview")).status_code == 401
