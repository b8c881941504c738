"""The event stream over a real uvicorn server (``live_server``), with a running scheduler.

uvicorn orders its shutdown so: stop accepting, wait for open responses (up to
``timeout_graceful_shutdown``), then the lifespan shutdown that stops the scheduler. An
endless ``/events`` response would hold the first wait, so the scheduler's own end could
never end it: :func:`xtasks_fastapi.end_event_streams` does, and ``xtasks serve`` calls it
when told to stop (tests/test_cli_serve.py checks that over SIGTERM).
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from fastapi import FastAPI

from xtasks import Scheduler, Task
from xtasks_fastapi import bearer_token, end_event_streams, manager_router

from .live import live_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    import pytest

TOKEN = "live-http-token-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT = httpx.Timeout(10.0)
#: uvicorn's graceful timeout in the shutdown tests: long, so that a stream holding the
#: shutdown shows however loaded the machine is.
GRACEFUL = 60
FINAL = {"succeeded", "failed", "cancelled", "skipped", "missed", "lost"}


async def ok() -> int:
    return 1


async def boom() -> None:
    raise RuntimeError("boom")


def build() -> tuple[FastAPI, Scheduler]:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("ok", ok))
    scheduler.add(Task("boom", boom, max_retries=1, retry_delay=0))
    app = FastAPI(lifespan=scheduler.lifespan)
    app.include_router(manager_router(scheduler, auth=bearer_token(TOKEN)))

    async def end_streams() -> dict[str, int]:  # what a server does when it starts stopping
        return {"ended": end_event_streams(scheduler)}

    app.add_api_route("/test/end-streams", end_streams, methods=["POST"])
    return app, scheduler


def frames(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs from server-sent-event lines; comments are skipped."""
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


def test_events_stream_a_runs_transitions_up_to_its_final_status() -> None:
    app, _ = build()
    with (
        live_server(app) as base,
        httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT) as client,
        client.stream("GET", "/manager/events") as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == ": connected"  # subscribed: nothing from now on is missed
        with httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT) as other:
            run_id = other.post("/manager/tasks/boom/run").json()["run_id"]
        statuses = []
        for name, data in frames(lines):
            if name == "run" and data["id"] == run_id:
                statuses.append(data["status"])
                if data["status"] in FINAL:
                    break
        assert statuses[0] in ("queued", "running") and statuses[-1] == "failed"
        assert data["attempts"] == 2 and data["error"]["type"] == "RuntimeError"
        assert data["cause"] == "manual"


def test_a_client_that_disconnects_does_not_hold_the_server() -> None:
    app, scheduler = build()
    with live_server(app, graceful=GRACEFUL) as base:
        with (
            httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT) as client,
            client.stream("GET", "/manager/events") as stream,
        ):
            assert next(stream.iter_lines()) == ": connected"
        # The server sees the disconnect and closes the generator: no stream is left open
        # for a shutdown to wait on (the ASGI tests check that the generator ends too).
        with httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT) as client:
            deadline = time.monotonic() + 10
            ended = -1
            while ended != 0 and time.monotonic() < deadline:
                ended = client.post("/test/end-streams").json()["ended"]
            assert ended == 0
        started = time.monotonic()
    assert time.monotonic() - started < GRACEFUL / 2  # no stream held the shutdown
    assert not scheduler.running


def test_ending_the_streams_at_shutdown_lets_the_server_stop_promptly() -> None:
    app, scheduler = build()
    with live_server(app, graceful=GRACEFUL) as base:
        with (
            httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT) as client,
            client.stream("GET", "/manager/events") as stream,
        ):
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            with httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT) as other:
                assert other.post("/test/end-streams").json() == {"ended": 1}
            assert [line for line in lines if line] == []  # the response ends cleanly
        started = time.monotonic()
    assert time.monotonic() - started < GRACEFUL / 2  # not uvicorn's graceful timeout
    assert not scheduler.running


def test_the_scheduler_runs_inside_the_applications_own_lifespan(tmp_path: Path) -> None:
    """``async with scheduler`` inside an app's lifespan that does more than start it."""
    scheduler = Scheduler(f"sqlite:///{tmp_path / 'app.db'}", plugins=False)
    scheduler.add(Task("ok", ok))
    seen: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        seen.append("app starting")  # the application's own set-up
        async with scheduler:
            yield
        seen.append(f"app stopped; scheduler running: {scheduler.running}")

    app = FastAPI(lifespan=lifespan)
    app.include_router(manager_router(scheduler, auth=bearer_token(TOKEN)))
    with live_server(app) as base, httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        assert client.get("/manager/health", headers=HEADERS).json()["running"] is True
        run_id = client.post("/manager/tasks/ok/run", headers=HEADERS).json()["run_id"]
    assert seen == ["app starting", "app stopped; scheduler running: False"]
    stored = Scheduler(f"sqlite:///{tmp_path / 'app.db'}", plugins=False)

    async def stored_run() -> str | None:
        async with stored:
            record = await stored.get_run(run_id)
        return None if record is None else record.status.value

    # Accepted before the server stopped, so the graceful stop let it finish and store it.
    assert anyio.run(stored_run) == "succeeded"


async def hog() -> None:
    time.sleep(1.5)  # noqa: ASYNC251 - blocks the server's loop on purpose


def test_a_task_blocking_the_loop_shows_in_health_and_metrics_and_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="xtasks.loop")
    app, scheduler = build()
    scheduler.add(Task("hog", hog))
    with (
        live_server(app) as base,
        httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT) as client,
    ):
        before = client.get("/manager/health").json()
        assert before["loop_lag_max_seconds"] < 1.0
        with client.stream("GET", "/manager/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            with httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT) as other:
                run_id = other.post("/manager/tasks/hog/run").json()["run_id"]
            for name, data in frames(lines):
                if name == "run" and data["id"] == run_id and data["status"] in FINAL:
                    break
        assert data["status"] == "succeeded"
        health = client.get("/manager/health")
        assert health.status_code == 200
        assert health.json()["loop_lag_max_seconds"] >= 1.0
        metrics = client.get("/manager/metrics").text
        found = re.search(r"^xtasks_loop_lag_max_seconds (\S+)$", metrics, re.MULTILINE)
        assert found is not None and float(found[1]) >= 1.0
        assert re.search(r"^xtasks_loop_lag_seconds \S+$", metrics, re.MULTILINE)
    warnings = [r.getMessage() for r in caplog.records if r.name == "xtasks.loop"]
    assert len(warnings) == 1, warnings
    assert f"by: hog ({__file__}:" in warnings[0]
