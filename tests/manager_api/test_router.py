"""The manager API over httpx's ASGI transport, against a real running scheduler."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.routing import APIRoute

from xtasks import Attempt, Every, RunCause, RunRecord, RunStatus, Scheduler, StoreError, Task
from xtasks.abc import Executor
from xtasks.stores.memory import MemoryStore
from xtasks.stores.sqlite import SQLiteStore
from xtasks.testing import FaultyStore
from xtasks.testing._delegating import DelegatingStore
from xtasks_fastapi import Principal, _live, bearer_token, manager_router
from xtasks_fastapi._schemas import MAX_RESULT_JSON

from ._runs import wait_final
from .live import live_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, MutableMapping
    from pathlib import Path

    from starlette.types import ASGIApp, Receive, Scope, Send

    from xtasks import AuditRecord

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-manager-token-0123456789"
READ_TOKEN = "r3ad-only-token-9876543210"
WRITE = {"Authorization": f"Bearer {TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


async def ok() -> int:
    return 42


async def boom() -> None:
    raise ValueError("kaput: the disk is full")


def build_scheduler() -> Scheduler:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("ok", ok, trigger=Every(hours=1), priority="high"))
    scheduler.add(Task("boom", boom))
    scheduler.add(Task("child", ok, depends_on="ok"))
    return scheduler


def build_app(scheduler: Scheduler, auth: Any = "bearer", *, lifespan: Any = None) -> FastAPI:
    if auth == "bearer":
        auth = bearer_token(TOKEN, read_tokens=[READ_TOKEN])
    app = FastAPI(lifespan=lifespan)
    router = manager_router(scheduler, auth=auth)
    app.include_router(router)
    app.state.manager_router = router
    return app


@asynccontextmanager
async def serving(
    auth: Any = "bearer", *, live: bool = False
) -> AsyncIterator[tuple[httpx.AsyncClient, Scheduler, FastAPI]]:
    """A client on the manager: in process (ASGI), or ``live`` over a real socket to
    uvicorn on 127.0.0.1 -- real headers, real status lines -- with the scheduler then
    running in the server's own loop (drive it through the client only)."""
    scheduler = build_scheduler()
    if live:
        app = build_app(scheduler, auth, lifespan=scheduler.lifespan)
        with live_server(app) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as c:
                yield c, scheduler, app
        return
    app = build_app(scheduler, auth)
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c, scheduler, app


#: Auth is checked over a real socket to uvicorn too, not only in process.
LIVE_OR_NOT = pytest.mark.parametrize("live", [False, True], ids=["asgi", "uvicorn"])


async def run_and_wait(
    client: httpx.AsyncClient, scheduler: Scheduler, name: str
) -> dict[str, Any]:
    """POST a run, wait for its final record, and return ``GET /runs/{id}``."""
    response = await client.post(f"/manager/tasks/{name}/run", headers=WRITE)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert response.json()["task"] == name
    await wait_final(scheduler, run_id)
    got = await client.get(f"/manager/runs/{run_id}", headers=READ)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


async def test_list_tasks_describes_each_task() -> None:
    async with serving() as (client, _, _):
        response = await client.get("/manager/tasks", headers=READ)
        assert response.status_code == 200
        tasks = {t["name"]: t for t in response.json()}
        assert sorted(tasks) == ["boom", "child", "ok"]
        assert tasks["ok"]["trigger"] == Every(hours=1).describe()
        assert tasks["ok"]["priority"] == "high"
        assert tasks["ok"]["state"] == "active"
        assert tasks["ok"]["next_fire"] is not None
        assert tasks["ok"]["plugin"] is None
        assert tasks["boom"]["trigger"] == "on demand"
        assert tasks["boom"]["last_run_id"] is None
        assert tasks["child"]["depends_on"] == ["ok"]
        assert tasks["child"]["consecutive_failures"] == 0


async def test_run_then_detail_shows_history_and_failures() -> None:
    async with serving() as (client, _scheduler, _):
        run = await run_and_wait(client, _scheduler, "ok")
        assert run["status"] == "succeeded"
        assert run["result"] == 42  # the JSON value, not its repr()
        assert run["result_kind"] == "json"
        assert run["cause"] == "manual"

        failed = await run_and_wait(client, _scheduler, "boom")
        assert failed["status"] == "failed"
        assert failed["error"]["type"] == "ValueError"
        assert "disk is full" in failed["error"]["message"]

        detail = (await client.get("/manager/tasks/boom", headers=READ)).json()
        assert detail["last_run_id"] == failed["id"]
        assert detail["last_run_status"] == "failed"
        assert detail["consecutive_failures"] == 1
        assert [r["id"] for r in detail["history"]] == [failed["id"]]

        await run_and_wait(client, _scheduler, "boom")
        page = await client.get("/manager/tasks/boom?limit=1&offset=1", headers=READ)
        assert page.status_code == 200
        body = page.json()
        assert (body["limit"], body["offset"]) == (1, 1)
        assert [r["id"] for r in body["history"]] == [failed["id"]]


async def test_run_with_dependency_runs_it_first() -> None:
    async with serving() as (client, scheduler, _):
        run = await run_and_wait(client, scheduler, "child")
        assert run["status"] == "succeeded"
        ok_history = (await client.get("/manager/tasks/ok", headers=READ)).json()["history"]
        assert [r["cause"] for r in ok_history] == ["dependency"]


async def test_history_limit_is_validated() -> None:
    async with serving() as (client, _, _):
        for query in ("limit=0", "limit=501", "offset=-1", "limit=abc"):
            response = await client.get(f"/manager/tasks/ok?{query}", headers=READ)
            assert response.status_code == 422, query


@pytest.mark.parametrize("path", ["/manager/tasks/ok", "/manager/runs", "/manager/audit"])
async def test_out_of_range_paging_is_422_naming_the_parameter(path: str) -> None:
    async with serving() as (client, _, _):
        for query, name in (
            (f"offset={2**63}", "offset"),
            (f"offset={10**30}", "offset"),
            ("offset=-1", "offset"),
            ("limit=0", "limit"),
            (f"limit={2**64}", "limit"),
        ):
            response = await client.get(f"{path}?{query}", headers=READ)
            assert response.status_code == 422, (path, query, response.text)
            assert name in response.text, (path, query)
        # The bounds themselves are accepted.
        response = await client.get(f"{path}?limit=500&offset=1000000000", headers=READ)
        assert response.status_code == 200, response.text


async def test_unknown_task_and_run_are_404_naming_them() -> None:
    async with serving() as (client, _, _):
        for method, path in [
            ("GET", "/manager/tasks/nope"),
            ("POST", "/manager/tasks/nope/run"),
            ("POST", "/manager/tasks/nope/pause"),
            ("POST", "/manager/tasks/nope/resume"),
            ("DELETE", "/manager/tasks/nope"),
        ]:
            response = await client.request(method, path, headers=WRITE)
            assert response.status_code == 404, (method, path, response.text)
            assert "nope" in response.json()["detail"]
        response = await client.get("/manager/runs/no-such-run", headers=READ)
        assert response.status_code == 404
        assert "no-such-run" in response.json()["detail"]


async def test_pause_resume_cancel_flow_and_409() -> None:
    async with serving() as (client, _scheduler, _):
        paused = await client.post("/manager/tasks/ok/pause", headers=WRITE)
        assert paused.status_code == 200
        assert paused.json() == {"name": "ok", "state": "paused"}

        refused = await client.post("/manager/tasks/ok/run", headers=WRITE)
        assert refused.status_code == 409
        assert "paused" in refused.json()["detail"]
        assert "resume" in refused.json()["detail"]

        resumed = await client.post("/manager/tasks/ok/resume", headers=WRITE)
        assert resumed.json() == {"name": "ok", "state": "active"}
        assert (await run_and_wait(client, _scheduler, "ok"))["status"] == "succeeded"

        cancelled = await client.delete("/manager/tasks/ok", headers=WRITE)
        assert cancelled.status_code == 200
        assert cancelled.json() == {"name": "ok", "state": "cancelled"}
        listed = {t["name"]: t for t in (await client.get("/manager/tasks", headers=READ)).json()}
        assert listed["ok"]["state"] == "cancelled"  # still visible, history kept
        assert listed["ok"]["last_run_status"] == "succeeded"

        refused = await client.post("/manager/tasks/ok/run", headers=WRITE)
        assert refused.status_code == 409
        assert "cancelled" in refused.json()["detail"]

        again = await client.post("/manager/tasks/ok/resume", headers=WRITE)
        assert again.json()["state"] == "active"


async def test_runs_filter_by_status_and_task() -> None:
    async with serving() as (client, scheduler, _):
        good = await run_and_wait(client, scheduler, "ok")
        bad = await run_and_wait(client, scheduler, "boom")

        failed = await client.get("/manager/runs?status=failed", headers=READ)
        assert failed.status_code == 200
        assert [r["id"] for r in failed.json()["runs"]] == [bad["id"]]

        both = await client.get("/manager/runs?status=failed&status=succeeded", headers=READ)
        assert {r["id"] for r in both.json()["runs"]} == {good["id"], bad["id"]}

        by_task = await client.get("/manager/runs?task=ok", headers=READ)
        assert [r["id"] for r in by_task.json()["runs"]] == [good["id"]]

        paged = await client.get("/manager/runs?limit=1&offset=0", headers=READ)
        assert len(paged.json()["runs"]) == 1

        wrong = await client.get("/manager/runs?status=exploded", headers=READ)
        assert wrong.status_code == 422


async def test_health_reports_store_and_running() -> None:
    async with serving() as (client, _, _):
        response = await client.get("/manager/health", headers=READ)
        assert response.status_code == 200
        body = response.json()
        lag = body.pop("loop_lag_seconds")
        lag_max = body.pop("loop_lag_max_seconds")
        assert body == {
            "ok": True,
            "running": True,
            "store_reachable": True,
            "store_error": None,
            "degraded_plugins": [],
            "timer_lag_seconds": 0.0,
            "queued": 0,
            "running_runs": 0,
            "store_writable": True,
            "store_backlog": 0,
            "store_write_failures": 0,
            "fires_unclaimed": 0,
            "mismatched_tasks": [],
        }
        assert 0.0 <= lag <= lag_max < 1.0


async def test_health_is_503_while_the_store_cannot_write_and_metrics_say_so() -> None:
    store = FaultyStore(MemoryStore())
    scheduler = Scheduler(store, plugins=False)
    scheduler.add(Task("ok", ok))
    app = build_app(scheduler)
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        store.fail_writes(message="disk I/O error")
        handle = await scheduler.trigger("ok")
        with anyio.fail_after(10):
            while scheduler.stats().store_writable:  # noqa: ASYNC110 - no event for it
                await anyio.sleep(0.01)
        response = await client.get("/manager/health", headers=READ)
        assert response.status_code == 503
        body = response.json()
        assert body["ok"] is False and body["store_reachable"] is True  # reads still work
        assert body["store_writable"] is False and body["store_backlog"] >= 1
        assert "disk I/O error" in body["store_error"]
        metrics = (await client.get("/manager/metrics", headers=READ)).text
        assert "xtasks_store_writable 0" in metrics
        store.heal()
        with anyio.fail_after(10):
            assert (await handle.wait()).status is RunStatus.SUCCEEDED
        healed = await client.get("/manager/health", headers=READ)
        assert healed.status_code == 200 and healed.json()["store_writable"] is True
        assert (
            "xtasks_store_writable 1" in (await client.get("/manager/metrics", headers=READ)).text
        )


async def test_manual_actions_are_audited_with_who_and_outcome() -> None:
    async with serving() as (client, scheduler, _):
        accepted = await client.post("/manager/tasks/ok/run", headers=WRITE)
        assert accepted.status_code == 202
        assert (await client.post("/manager/tasks/boom/pause", headers=WRITE)).status_code == 200
        refused = await client.post("/manager/tasks/boom/run", headers=WRITE)
        assert refused.status_code == 409
        assert (await client.post("/manager/tasks/ok/run", headers=READ)).status_code == 403
        assert (await client.delete("/manager/tasks/nope", headers=WRITE)).status_code == 404

        page = (await client.get("/manager/audit", headers=READ)).json()
        rows = [(r["action"], r["task"], r["outcome"]) for r in page["records"]]
        assert rows == [
            ("cancel", "nope", "refused"),
            ("run", "boom", "refused"),
            ("pause", "boom", "ok"),
            ("run", "ok", "ok"),
        ]  # the read token's 403 did nothing, so nothing is recorded
        newest_first = page["records"]
        assert newest_first[-1]["detail"] == accepted.json()["run_id"]
        assert "paused" in newest_first[1]["detail"]
        assert {r["actor"] for r in newest_first} == {"manager-token@127.0.0.1"}

        only_boom = await client.get("/manager/audit?task=boom&limit=1&offset=1", headers=READ)
        assert [r["action"] for r in only_boom.json()["records"]] == ["pause"]
        assert [a.action for a in await scheduler.audit(task="ok")] == ["run"]


class _AuditFails(DelegatingStore[MemoryStore]):
    """Everything works but the audit trail: its disk is full."""

    async def add_audit(self, record: AuditRecord) -> None:
        raise StoreError("disk full")


async def test_an_action_whose_audit_write_fails_is_answered_as_done_with_a_note(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = Scheduler(_AuditFails(MemoryStore()), plugins=False)
    scheduler.add(Task("ok", ok))
    transport = httpx.ASGITransport(app=build_app(scheduler))
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        accepted = await c.post("/manager/tasks/ok/run", headers=WRITE)
        assert accepted.status_code == 202, accepted.text  # not 503: a retry would run twice
        body = accepted.json()
        assert body == {"run_id": body["run_id"], "task": "ok", "audit": "not recorded: disk full"}
        assert (await wait_final(scheduler, body["run_id"])).status is RunStatus.SUCCEEDED
        assert [r.id for r in await scheduler.history("ok")] == [body["run_id"]]  # ran once

        for method, path, state in [
            ("POST", "/manager/tasks/ok/pause", "paused"),
            ("POST", "/manager/tasks/ok/resume", "active"),
            ("DELETE", "/manager/tasks/ok", "cancelled"),
        ]:
            done = await c.request(method, path, headers=WRITE)
            assert done.status_code == 200, (path, done.text)
            assert done.json() == {"name": "ok", "state": state, "audit": "not recorded: disk full"}
            assert (await scheduler.describe("ok")).state == state

        # A refusal is still a refusal: its reason wins over the audit failure.
        refused = await c.post("/manager/tasks/ok/run", headers=WRITE)
        assert refused.status_code == 409
        assert await scheduler.audit() == []
    assert f"run {body['run_id']} of task 'ok' was done, but its audit record" in caplog.text


async def test_metrics_show_queue_depth_and_lag() -> None:
    async with serving() as (client, _, _):
        text = (await client.get("/manager/metrics", headers=READ)).text
        for gauge in (
            "xtasks_queued_runs 0",
            "xtasks_running_runs 0",
            "xtasks_timer_lag_seconds 0.0",
            "xtasks_loop_lag_seconds ",
            "xtasks_loop_lag_max_seconds ",
            "xtasks_alerts_failed_total 0",
            "xtasks_alerts_dropped_total 0",
        ):
            assert f"\n{gauge}" in text, gauge


async def test_health_is_503_and_routes_explain_when_scheduler_is_stopped() -> None:
    scheduler = build_scheduler()
    transport = httpx.ASGITransport(app=build_app(scheduler))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/manager/health", headers=READ)
        assert response.status_code == 503
        assert response.json()["running"] is False
        # Reads need only the store, so they answer before start; a run needs the scheduler.
        response = await client.get("/manager/tasks", headers=READ)
        assert response.status_code == 200
        assert {t["name"] for t in response.json()} == {"ok", "boom", "child"}
        response = await client.post("/manager/tasks/ok/run", headers=WRITE)
        assert response.status_code == 503
        assert "not running" in response.json()["detail"]
    await scheduler.aclose()


# --- authentication ---------------------------------------------------------------------


#: Routes whose response never ends while the scheduler runs; httpx's ASGI transport
#: returns a response only once the app finishes, so authenticated requests to these are
#: made by the tests that stream them (``test_events_stream_run_transitions``).
STREAMING = {("GET", "/manager/events")}


def concrete(route: APIRoute) -> list[tuple[str, str]]:
    path = route.path.replace("{name}", "ok").replace("{run_id}", "some-run")
    return [(method, path) for method in sorted(route.methods or ())]


def manager_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the manager serves, so a new route cannot forget auth.

    Recent FastAPI no longer copies included routes into ``app.routes`` (it keeps one
    lazy entry per included router), so the router's own routes are enumerated, and
    cross-checked against the app's OpenAPI paths so none is missed either way.
    """
    router = app.state.manager_router
    flat = [route for route in app.routes if isinstance(route, APIRoute)]
    routes = [route for route in [*router.routes, *flat] if isinstance(route, APIRoute)]
    requests = sorted(
        {r for route in routes if route.path.startswith("/manager") for r in concrete(route)}
    )
    documented = {
        (method.upper(), path.replace("{name}", "ok").replace("{run_id}", "some-run"))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/manager")
        for method in operations
    }
    assert documented <= set(requests)
    assert len(requests) >= 8  # guards the enumeration itself
    return requests


@LIVE_OR_NOT
async def test_every_route_requires_credentials(live: bool) -> None:
    async with serving(live=live) as (client, _, app):
        for method, path in manager_routes(app):
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": f"Bearer {TOKEN}x"},
            ):
                response = await client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["detail"]


@LIVE_OR_NOT
async def test_read_token_reads_but_cannot_act(live: bool) -> None:
    async with serving(live=live) as (client, _, app):
        for method, path in manager_routes(app):
            if (method, path) in STREAMING:
                continue
            response = await client.request(method, path, headers=READ)
            if method in ("GET", "HEAD"):
                assert response.status_code not in (401, 403), (method, path)
            else:
                assert response.status_code == 403, (method, path)
                assert "read" in response.json()["detail"]
        assert (await client.get("/manager/tasks/ok", headers=READ)).json()["state"] == "active"


@LIVE_OR_NOT
async def test_custom_auth_dependency_returning_a_principal(live: bool) -> None:
    async def who(x_user: str | None = Header(None)) -> Principal:
        if x_user is None:
            raise HTTPException(401, "who are you?", headers={"WWW-Authenticate": "Bearer"})
        return Principal(x_user, can_write=x_user == "admin")

    async with serving(auth=Depends(who).dependency, live=live) as (client, _, _):
        assert (await client.get("/manager/tasks")).status_code == 401
        viewer = {"X-User": "viewer"}
        assert (await client.get("/manager/tasks", headers=viewer)).status_code == 200
        assert (await client.post("/manager/tasks/ok/pause", headers=viewer)).status_code == 403
        admin = {"X-User": "admin"}
        assert (await client.post("/manager/tasks/ok/pause", headers=admin)).status_code == 200


@LIVE_OR_NOT
async def test_auth_none_warns_and_then_needs_no_credentials(
    caplog: pytest.LogCaptureFixture, live: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="xtasks"):
        async with serving(auth=None, live=live) as (client, _scheduler, _):
            assert "manager API has no authentication" in caplog.text
            assert (await client.get("/manager/tasks")).status_code == 200
            response = await client.post("/manager/tasks/boom/run")
            assert response.status_code == 202


def test_auth_is_a_required_keyword() -> None:
    scheduler = Scheduler(plugins=False)
    with pytest.raises(TypeError):
        manager_router(scheduler)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="auth must be"):
        manager_router(scheduler, auth="s3cret")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        bearer_token("")
    with pytest.raises(ValueError, match="non-empty"):
        bearer_token("x", read_tokens=[""])


async def test_tokens_never_appear_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        async with serving() as (client, scheduler, app):
            for method, path in manager_routes(app):
                for headers in ({}, WRITE, READ, {"Authorization": "Bearer wrong"}):
                    if (method, path) in STREAMING and headers in (WRITE, READ):
                        continue
                    response = await client.request(method, path, headers=headers)
                    assert TOKEN not in response.text
                    assert READ_TOKEN not in response.text
            await run_and_wait(client, scheduler, "boom")
    assert caplog.records  # something was logged (the failing run at least)
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.__dict__)
        assert TOKEN not in text
        assert READ_TOKEN not in text


# --- results: JSON values when JSON can carry them ------------------------------------------


def returning(value: object) -> Any:
    async def give() -> object:
        return value

    return give


JSON_RESULTS: dict[str, object] = {
    "file": "rapport.csv",
    "counts": {"orders": 42, "ratio": 0.5, "ok": True, "none": None, "tags": ["a", "é"]},
    "rows": [[1, "x"], [2, "y"]],
    "number": 7,
}


async def test_results_are_json_values_and_stay_so_in_sqlite_history(tmp_path: Path) -> None:
    scheduler = Scheduler(f"sqlite:///{tmp_path / 'x.db'}", plugins=False)
    for name, value in JSON_RESULTS.items():
        scheduler.add(Task(name, returning(value)))
    scheduler.add(Task("pair", returning((1, "two"))))  # a tuple is a JSON array
    app = build_app(scheduler)
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        for name, value in JSON_RESULTS.items():
            run = await run_and_wait(c, scheduler, name)
            assert (run["result"], run["result_kind"]) == (value, "json"), name
        pair = await run_and_wait(c, scheduler, "pair")
        assert (pair["result"], pair["result_kind"]) == ([1, "two"], "json")
        listed = (await c.get("/manager/runs?task=counts", headers=READ)).json()["runs"]
        assert [r["result"] for r in listed] == [JSON_RESULTS["counts"]]
        history = (await c.get("/manager/tasks/file", headers=READ)).json()["history"]
        assert [(r["result"], r["result_kind"]) for r in history] == [("rapport.csv", "json")]


async def test_a_run_shows_the_attempts_that_failed_before_its_last(tmp_path: Path) -> None:
    """A run that failed once, then succeeded, shows that first error and its times, as
    stored (SQLite) and in the task's history; a run never retried shows none."""
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("first try: connection refused")
        return "done"

    scheduler = Scheduler(f"sqlite:///{tmp_path / 'x.db'}", plugins=False)
    scheduler.add(Task("flaky", flaky, max_retries=2, retry_delay=0))
    app = build_app(scheduler)
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        run = await run_and_wait(c, scheduler, "flaky")
        again = await run_and_wait(c, scheduler, "flaky")
        history = (await c.get("/manager/tasks/flaky", headers=READ)).json()["history"]
    assert (run["status"], run["attempts"], run["error"]) == ("succeeded", 2, None)
    [first] = run["earlier_attempts"]
    assert set(first) == {"number", "started_at", "finished_at", "error"}
    assert first["number"] == 1
    assert first["error"]["type"] == "ConnectionError"
    assert first["error"]["message"] == "first try: connection refused"
    assert "raise ConnectionError" in first["error"]["traceback"]
    started, finished = (datetime.fromisoformat(first[k]) for k in ("started_at", "finished_at"))
    assert datetime.fromisoformat(run["started_at"]) == started <= finished
    assert finished <= datetime.fromisoformat(run["finished_at"])
    assert again["earlier_attempts"] == []
    assert [r["earlier_attempts"] for r in history] == [[], run["earlier_attempts"]]


class _Farm(Executor):
    """Runs on the loop; each attempt reports its start on worker ``farm@host-<number>``."""

    name = "farm"
    reports_start = True

    async def run(self, attempt: Attempt) -> Any:
        attempt.started(f"farm@host-{attempt.number}")
        return await attempt.task.func(*attempt.args, **attempt.kwargs)


async def test_a_run_names_its_executor_and_the_worker_of_its_latest_attempt(
    tmp_path: Path,
) -> None:
    """A run on an executor that reports where it runs shows that executor and worker, as
    stored (SQLite), in the task's history and on the event stream: the worker of its
    latest attempt, none while a retry waits. A built-in run shows its executor alone."""
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("first try: connection refused")
        return "done"

    scheduler = Scheduler(f"sqlite:///{tmp_path / 'x.db'}", plugins=False, executors=[_Farm()])
    scheduler.add(Task("far", flaky, executor="farm", max_retries=1, retry_delay=0))
    scheduler.add(Task("near", ok))
    ids: dict[str, str] = {}
    got: dict[str, Any] = {}

    async def during(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
        for name in ("far", "near"):
            got[name] = await run_and_wait(client, scheduler, name)  # GET /runs/{id}
            ids[name] = got[name]["id"]
        got["history"] = (await client.get("/manager/tasks/far", headers=READ)).json()["history"]

    response, text = await stream_events(during, scheduler=scheduler)
    assert response.status_code == 200
    events = [data for name, data in parse_sse(text) if name == "run"]
    far = [(e["status"], e["executor"], e["worker"]) for e in events if e["id"] == ids["far"]]
    # The stream shows each change it reads from the store: a quick run's steps may be
    # seen together, as its latest state; in order, ending with the final one.
    assert_steps_of(
        far,
        [
            ("queued", "farm", None),  # requested
            ("queued", "farm", None),  # sent to the executor, not begun yet
            ("running", "farm", "farm@host-1"),
            ("queued", "farm", None),  # the retry waits: no worker yet
            ("queued", "farm", None),
            ("running", "farm", "farm@host-2"),
            ("succeeded", "farm", "farm@host-2"),
        ],
    )
    near = [(e["status"], e["executor"], e["worker"]) for e in events if e["id"] == ids["near"]]
    assert_steps_of(
        near, [("queued", "async", None), ("running", "async", None), ("succeeded", "async", None)]
    )
    for run in (got["far"], *got["history"]):
        assert (run["executor"], run["worker"], run["attempts"]) == ("farm", "farm@host-2", 2)
    assert (got["near"]["executor"], got["near"]["worker"]) == ("async", None)
    store = SQLiteStore(tmp_path / "x.db")  # the file, read again after the stop
    await store.open()
    try:
        stored = await store.get_run(ids["far"])
    finally:
        await store.close()
    assert stored is not None and (stored.executor, stored.worker) == ("farm", "farm@host-2")


async def test_a_result_json_cannot_carry_is_its_repr_and_says_so() -> None:
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    scheduler = Scheduler(plugins=False)  # the memory store keeps the object itself
    scheduler.add(Task("when", returning(when)))
    scheduler.add(Task("ids", returning({3, 1})))
    scheduler.add(Task("nan", returning(float("nan"))))
    scheduler.add(Task("nothing", returning(None)))
    scheduler.add(Task("boom", boom))
    app = build_app(scheduler)
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        run = await run_and_wait(c, scheduler, "when")
        assert (run["result"], run["result_kind"]) == (repr(when), "repr")
        run = await run_and_wait(c, scheduler, "ids")
        assert (run["result"], run["result_kind"]) == ("{1, 3}", "repr")
        run = await run_and_wait(c, scheduler, "nan")  # Python's json writes NaN; JSON has none
        assert (run["result"], run["result_kind"]) == ("nan", "repr")
        for name in ("nothing", "boom"):
            run = await run_and_wait(c, scheduler, name)
            assert (run["result"], run["result_kind"]) == (None, None), name


async def test_a_long_result_is_cut_and_says_so() -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("big", returning({"rows": list(range(100_000))})))
    scheduler.add(Task("text", returning("z" * 1_000_000)))
    scheduler.add(Task("odd", returning("bad \ud800 surrogate")))
    app = build_app(scheduler)
    transport = httpx.ASGITransport(app=app)
    async with scheduler, httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        big = await run_and_wait(c, scheduler, "big")
        assert big["result_kind"] == "cut"
        assert big["result"].startswith('{"rows": [0, 1, 2, ')
        assert big["result"].endswith("characters of JSON, cut]")
        assert len(big["result"]) <= MAX_RESULT_JSON
        text = await run_and_wait(c, scheduler, "text")
        assert text["result_kind"] == "cut" and text["result"].startswith('"zzz')
        assert "1,000,002 characters of JSON, cut" in text["result"]
        odd = await run_and_wait(c, scheduler, "odd")  # a lone surrogate: escaped, not a 500
        assert (odd["result"], odd["result_kind"]) == ("bad \\ud800 surrogate", "json")


def test_openapi_says_a_result_is_any_json_with_its_kind() -> None:
    schema = build_app(build_scheduler()).openapi()
    run_out = schema["components"]["schemas"]["RunOut"]["properties"]
    result = run_out["result"]
    assert "type" not in result and "anyOf" not in result  # any JSON value
    assert "result_kind" in result["description"]
    [strings] = [i for i in run_out["result_kind"]["anyOf"] if i.get("type") == "string"]
    assert set(strings["enum"]) == {"json", "repr", "cut"}


def test_openapi_schema_has_models_and_bearer_scheme() -> None:
    schema = build_app(build_scheduler()).openapi()
    components = schema["components"]
    assert "HTTPBearer" in components["securitySchemes"]
    assert {"TaskSummary", "TaskDetail", "RunOut", "RunPage", "HealthOut"} <= set(
        components["schemas"]
    )
    assert set(components["schemas"]["RunStatus"]["enum"]) == {s.value for s in RunStatus}
    run = schema["paths"]["/manager/tasks/{name}/run"]["post"]
    assert {"202", "401", "403", "404", "409"} <= set(run["responses"])


# --- server-sent events -----------------------------------------------------------------


class BodyStarted:
    """ASGI wrapper: ``started`` is set once ``/manager/events`` sends its first chunk.

    The stream sends a comment as soon as it is subscribed, so after ``started`` every
    event the scheduler publishes reaches it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.started = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watch(message: MutableMapping[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and scope["path"].endswith("/events"):
                self.started.set()

        await self.app(scope, receive, watch)


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
        data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
        if names:
            assert len(names) == 1 and len(data) == 1, block
            events.append((names[0], json.loads(data[0])))
    return events


def assert_steps_of(seen: list[Any], steps: list[Any]) -> None:
    """``seen`` are some of ``steps``, in order, ending with the last: the stream reads
    runs from the store's change feed, where steps taken between two reads show as the
    latest of them."""
    assert seen and seen[-1] == steps[-1], (seen, steps)
    rest = iter(steps)
    assert all(any(step == wanted for wanted in rest) for step in seen), (seen, steps)


async def stream_events(
    during: Any, *, headers: dict[str, str] = READ, scheduler: Scheduler | None = None
) -> tuple[httpx.Response, str]:
    """Stream ``/manager/events`` while ``await during(client, scheduler)`` runs, then
    stop the scheduler (:func:`build_scheduler`'s by default; stopping it ends the stream)
    and return the response and its text.

    httpx's ASGI transport hands the response over only when the app has finished, so
    the body is read after the scheduler stopped; the events were sent while it ran.
    """
    scheduler = scheduler or build_scheduler()
    app = BodyStarted(build_app(scheduler))
    got: dict[str, Any] = {}

    async def stream(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/manager/events", headers=headers) as response:
            got["response"] = response
            got["text"] = "".join([chunk async for chunk in response.aiter_text()])

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg, scheduler:
                tg.start_soon(stream, client)
                await app.started.wait()
                await during(client, scheduler)
    return got["response"], got["text"]


async def test_events_stream_run_transitions_and_task_states() -> None:
    run_ids: list[str] = []

    async def during(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
        run_ids.append((await run_and_wait(client, scheduler, "boom"))["id"])
        paused = await client.post("/manager/tasks/ok/pause", headers=WRITE)
        assert paused.status_code == 200

    response, text = await stream_events(during)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert text.startswith(": connected\n\n")
    events = parse_sse(text)
    runs = [data for name, data in events if name == "run" and data["id"] == run_ids[0]]
    assert_steps_of([r["status"] for r in runs], ["queued", "running", "failed"])
    final = runs[-1]
    assert final["task"] == "boom"
    assert final["cause"] == "manual"
    assert final["attempts"] == 1
    assert final["error"] == {"type": "ValueError", "message": "kaput: the disk is full"}
    assert final["started_at"] is not None and final["finished_at"] is not None
    assert set(final) == {
        "id", "task", "status", "cause", "scheduled_at", "started_at", "finished_at",
        "attempts", "error", "reason", "replica", "earlier_attempts", "executor", "worker",
    }  # fmt: skip
    assert final["earlier_attempts"] == []
    assert {(r["executor"], r["worker"]) for r in runs} == {("async", None)}
    assert ("task", {"name": "ok", "state": "paused"}) in events


async def test_events_stream_a_succeeded_run_in_order() -> None:
    run_ids: list[str] = []

    async def during(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
        run_ids.append((await run_and_wait(client, scheduler, "ok"))["id"])

    _, text = await stream_events(during, headers=WRITE)
    statuses = [d["status"] for n, d in parse_sse(text) if n == "run" and d["id"] == run_ids[0]]
    assert_steps_of(statuses, ["queued", "running", "succeeded"])


async def test_events_send_keepalive_comments_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_live, "KEEPALIVE_SECONDS", 0.02)

    async def during(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
        await anyio.sleep(0.2)

    _, text = await stream_events(during)
    assert text.count(": keepalive\n\n") >= 2
    assert parse_sse(text) == []


async def test_events_stream_ends_when_the_client_disconnects() -> None:
    scheduler = build_scheduler()
    app = build_app(scheduler)
    sent: list[MutableMapping[str, Any]] = []
    first_chunk = anyio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            first_chunk.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/manager/events",
        "raw_path": b"/manager/events",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {READ_TOKEN}".encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }
    async with scheduler:
        with anyio.fail_after(5):  # the app returns although the scheduler keeps running
            await app(scope, receive, send)
        assert scheduler.running
    assert sent[0]["status"] == 200
    assert first_chunk.is_set()


# --- metrics ----------------------------------------------------------------------------


async def test_metrics_count_runs_durations_and_task_states() -> None:
    async with serving() as (client, scheduler, _):
        await run_and_wait(client, scheduler, "ok")
        await run_and_wait(client, scheduler, "boom")
        await run_and_wait(client, scheduler, "boom")
        assert (await client.post("/manager/tasks/child/pause", headers=WRITE)).is_success
        response = await client.get("/manager/metrics", headers=READ)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    assert response.text.endswith("\n")
    assert "xtasks_up 1" in lines
    assert 'xtasks_runs_total{task="ok",status="succeeded"} 1' in lines
    assert 'xtasks_runs_total{task="boom",status="failed"} 2' in lines
    assert 'xtasks_run_duration_seconds_count{task="ok"} 1' in lines
    assert 'xtasks_run_duration_seconds_count{task="boom"} 2' in lines
    sums = [line for line in lines if line.startswith("xtasks_run_duration_seconds_sum")]
    assert len(sums) == 2 and all(float(line.rsplit(" ", 1)[1]) >= 0 for line in sums)
    assert 'xtasks_tasks{state="active"} 2' in lines
    assert 'xtasks_tasks{state="paused"} 1' in lines
    assert 'xtasks_tasks{state="cancelled"} 0' in lines
    assert "# TYPE xtasks_runs_total counter" in lines
    for line in lines:  # every sample is `name{labels} value` with a number
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


async def test_metrics_task_states_follow_pause_and_cancel_without_reading_the_store() -> None:
    async with serving() as (client, scheduler, _):
        reads = 0
        list_runs = scheduler.store.list_runs

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return await list_runs(*args, **kwargs)

        scheduler.store.list_runs = counted  # type: ignore[method-assign]

        async def gauges() -> list[str]:
            nonlocal reads
            reads = 0
            text = (await client.get("/manager/metrics", headers=READ)).text
            assert reads == 0  # a scrape reads no run history from the store
            return [line for line in text.splitlines() if line.startswith("xtasks_tasks{")]

        assert await gauges() == [
            'xtasks_tasks{state="active"} 3',
            'xtasks_tasks{state="cancelled"} 0',
            'xtasks_tasks{state="paused"} 0',
        ]
        assert (await client.post("/manager/tasks/boom/pause", headers=WRITE)).is_success
        assert await gauges() == [
            'xtasks_tasks{state="active"} 2',
            'xtasks_tasks{state="cancelled"} 0',
            'xtasks_tasks{state="paused"} 1',
        ]
        assert (await client.delete("/manager/tasks/child", headers=WRITE)).is_success
        assert (await client.post("/manager/tasks/boom/resume", headers=WRITE)).is_success
        assert await gauges() == [
            'xtasks_tasks{state="active"} 2',
            'xtasks_tasks{state="cancelled"} 1',
            'xtasks_tasks{state="paused"} 0',
        ]


async def test_metrics_escape_labels_and_report_a_stopped_scheduler() -> None:
    metrics = _live.RunMetrics()
    scheduler = build_scheduler()
    at = datetime(2026, 3, 1, tzinfo=UTC)
    await scheduler.store.open()
    await scheduler.store.save_runs(
        [
            RunRecord(
                id=f"r{i}",
                task='we"ird\\name\n',
                status=RunStatus.FAILED,
                cause=RunCause.MANUAL,
                scheduled_at=at,
            )
            for i in range(3)
        ]
    )
    text = await metrics.render(scheduler)
    assert 'xtasks_runs_total{task="we\\"ird\\\\name\\n",status="failed"} 3' in text
    assert "xtasks_up 0" in text.splitlines()


# --- request body limit -----------------------------------------------------------------


async def test_write_routes_refuse_bodies_over_one_mib() -> None:
    big = b"x" * (2 * 1024 * 1024)
    async with serving() as (client, _, _):
        response = await client.post("/manager/tasks/ok/run", headers=WRITE, content=big)
        assert response.status_code == 413
        assert "too large" in response.json()["detail"]
        response = await client.request("DELETE", "/manager/tasks/ok", headers=WRITE, content=big)
        assert response.status_code == 413
        runs = await client.get("/manager/runs?task=ok", headers=READ)
        assert runs.json()["runs"] == []  # nothing was run
        assert (await client.get("/manager/tasks/ok", headers=READ)).json()["state"] == "active"
        # credentials are checked before the body is read
        assert (await client.post("/manager/tasks/ok/run", content=big)).status_code == 401
        small = await client.post("/manager/tasks/ok/run", headers=WRITE, content=b"{}")
        assert small.status_code == 202


async def test_chunked_bodies_are_counted_as_they_stream() -> None:
    """No Content-Length: the body is counted chunk by chunk and refused past 1 MiB.

    Driven through raw ASGI messages (httpx never closes a request body iterator that
    the server stops reading, which the test run reports as a ResourceWarning).
    """

    async def post(chunks: list[bytes]) -> tuple[int, bytes]:
        pending = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop(0)
            await anyio.sleep_forever()
            raise AssertionError  # pragma: no cover

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/manager/tasks/ok/run",
            "raw_path": b"/manager/tasks/ok/run",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"test"),
                (b"transfer-encoding", b"chunked"),
                (b"authorization", f"Bearer {TOKEN}".encode()),
            ],
            "client": ("127.0.0.1", 1234),
            "server": ("test", 80),
        }
        with anyio.fail_after(5):
            await app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], body

    scheduler = build_scheduler()
    app = build_app(scheduler)
    async with scheduler:
        status, body = await post([b"x" * 65536] * 32)
        assert status == 413
        assert "too large" in json.loads(body)["detail"]
        assert await scheduler.history("ok") == []
        status, _ = await post([b"x" * 65536] * 16)  # exactly 1 MiB is fine
        assert status == 202
