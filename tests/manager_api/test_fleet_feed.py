"""The fleet's live view over real HTTP: two replicas on one store, each behind its own
uvicorn server, as ``uvicorn --workers 2`` on one SQLite file (or two hosts on PostgreSQL
or Redis) would run them.

``/events`` on either replica streams the runs of both, numbered by the store (``id:``),
and resumes after ``Last-Event-ID`` on any replica; ``/metrics`` on either answers with
the fleet's totals, the same whichever answers; a run triggered on one replica runs
there, once.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from xtasks import Scheduler, Task
from xtasks.stores.sqlite import SQLiteStore
from xtasks_fastapi import bearer_token, manager_router

from .live import live_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from xtasks.abc import Store

TOKEN = "fleet-feed-token-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT = httpx.Timeout(15.0)
FINAL = {"succeeded", "failed", "cancelled", "skipped", "missed", "lost"}


async def ok() -> str:
    return "done"


async def slowish() -> None:
    await anyio.sleep(0.02)


def _replica(store: Store, name: str) -> FastAPI:
    scheduler = Scheduler(store, plugins=False, replica_id=name)
    scheduler.add(Task("ok", ok))
    scheduler.add(Task("slowish", slowish))
    app = FastAPI(lifespan=scheduler.lifespan)
    app.include_router(manager_router(scheduler, auth=bearer_token(TOKEN)))
    return app


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.external_service),
        pytest.param("redis", marks=pytest.mark.external_service),
    ]
)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A new store object on one shared backend at each call: one per replica."""
    if request.param == "postgres":
        from tests.stores._postgres import isolated_schema
        from xtasks.stores.postgres import PostgresStore

        with isolated_schema() as (url, schema):
            yield lambda: PostgresStore(url, schema=schema)
    elif request.param == "redis":
        from tests._services import redis_url
        from tests.stores._redis import redis_prefix
        from xtasks.stores.redis import RedisStore

        with redis_prefix() as prefix:
            yield lambda: RedisStore(redis_url(), prefix=prefix)
    else:
        path = tmp_path / "fleet.db"
        yield lambda: SQLiteStore(path)


@contextmanager
def two_replicas(make_store: Callable[[], Store]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Replicas ``a`` and ``b``, each a scheduler with its own store object and server."""
    with ExitStack() as stack:
        clients = []
        for name in ("a", "b"):
            base = stack.enter_context(live_server(_replica(make_store(), name)))
            client = httpx.Client(base_url=base, headers=HEADERS, timeout=TIMEOUT)
            clients.append(stack.enter_context(client))
        yield clients[0], clients[1]


def messages(lines: Iterator[str]) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
    """``(id, event, data)`` of each server-sent event; comments are skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields:
                yield fields.get("id"), fields["event"], json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


def run(client: httpx.Client, task: str = "ok") -> str:
    response = client.post(f"/manager/tasks/{task}/run")
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def until_final(
    stream: Iterator[tuple[str | None, str, dict[str, Any]]], run_ids: set[str]
) -> list[tuple[int, dict[str, Any]]]:
    """Read run events until each of ``run_ids`` was seen final; return them all."""
    seen: list[tuple[int, dict[str, Any]]] = []
    waiting = set(run_ids)
    for number, event, data in stream:
        assert event == "run", (event, data)
        assert number is not None
        seen.append((int(number), data))
        if data["status"] in FINAL:
            waiting.discard(data["id"])
        if not waiting:
            return seen
    raise AssertionError(f"the stream ended before {waiting} were final")


def test_events_on_one_replica_stream_the_runs_of_both(
    make_store: Callable[[], Store],
) -> None:
    with two_replicas(make_store) as (a, b), a.stream("GET", "/manager/events") as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        ids = {"a": run(a), "b": run(b, "slowish")}
        seen = until_final(messages(lines), set(ids.values()))
    numbers = [number for number, _ in seen]
    assert numbers == sorted(set(numbers))  # each change once, in the store's order
    finals = {data["id"]: data for _, data in seen if data["status"] in FINAL}
    # Each run ran once, where it was triggered; A's stream shows B's run too.
    assert finals[ids["a"]]["replica"] == "a" and finals[ids["a"]]["status"] == "succeeded"
    assert finals[ids["b"]]["replica"] == "b" and finals[ids["b"]]["status"] == "succeeded"
    assert finals[ids["b"]]["task"] == "slowish"


def test_a_stream_resumes_after_its_last_event_id_on_any_replica(
    make_store: Callable[[], Store],
) -> None:
    with two_replicas(make_store) as (a, b):
        with a.stream("GET", "/manager/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            first = run(a)
            seen = until_final(messages(lines), {first})
        last_id = seen[-1][0]
        # While no page listens, both replicas run more.
        missed = {run(b), run(a), run(b, "slowish")}
        for run_id in missed:
            assert _wait_final(a, run_id)
        # The page reconnects through the other replica, sending the id it saw last.
        headers = {"Last-Event-ID": str(last_id)}
        with b.stream("GET", "/manager/events", headers=headers) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            resumed = until_final(messages(lines), missed)
    assert all(number > last_id for number, _ in resumed)
    assert first not in {data["id"] for _, data in resumed}  # nothing seen before again
    assert {data["id"] for _, data in resumed} == missed


def _wait_final(client: httpx.Client, run_id: str) -> bool:
    """Whether ``run_id`` ends, read from the stream of every change since the first."""
    with client.stream("GET", "/manager/events", params={"after": 0}) as stream:
        for _, event, data in messages(stream.iter_lines()):
            if event == "run" and data["id"] == run_id and data["status"] in FINAL:
                return True
    return False


def test_a_resume_point_older_than_the_store_keeps_gets_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    stores = [SQLiteStore(path, max_runs_per_task=1) for _ in range(2)]
    with two_replicas(iter(stores).__next__) as (a, b):
        with a.stream("GET", "/manager/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            seen = until_final(messages(lines), {run(a)})
        last_id = seen[-1][0]
        later = [run(b), run(b)]
        for run_id in later:
            assert _wait_final(b, run_id)
        assert anyio.run(stores[1].prune) >= 1  # the runs after last_id but the newest go
        with a.stream("GET", "/manager/events", headers={"Last-Event-ID": str(last_id)}) as s:
            lines = s.iter_lines()
            assert next(lines) == ": connected"
            number, event, data = next(messages(lines))
    assert event == "reload"
    assert number is not None and int(number) > last_id and data == {"after": int(number)}


def test_a_last_event_id_that_is_no_number_is_refused(tmp_path: Path) -> None:
    with two_replicas(lambda: SQLiteStore(tmp_path / "x.db")) as (a, _):
        response = a.get("/manager/events", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 400
    assert "Last-Event-ID 'abc' is not a change number" in response.json()["detail"]


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric ``name``: labels -> value."""
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = tuple(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            found[labels] = float(match.group(3))
    return found


def test_metrics_on_either_replica_count_the_whole_fleet_as_a_histogram(
    make_store: Callable[[], Store],
) -> None:
    with two_replicas(make_store) as (a, b):
        ids = [run(a), run(b), run(b), run(a, "slowish")]
        for run_id in ids:
            assert _wait_final(a, run_id)
        texts = [client.get("/manager/metrics").text for client in (a, b)]
    for text in texts:
        runs = samples(text, "xtasks_runs_total")
        assert runs[(("task", "ok"), ("status", "succeeded"))] == 3
        assert runs[(("task", "slowish"), ("status", "succeeded"))] == 1
        assert "# TYPE xtasks_run_duration_seconds histogram" in text
        buckets = samples(text, "xtasks_run_duration_seconds_bucket")
        for task, count in (("ok", 3), ("slowish", 1)):
            series = [(labels[1][1], n) for labels, n in buckets.items() if labels[0][1] == task]
            bounds = [float(le) for le, _ in series]
            counts = [n for _, n in series]
            assert bounds == sorted(bounds) and bounds[-1] == float("inf")
            assert counts == sorted(counts)  # cumulative
            assert counts[-1] == count
            assert samples(text, "xtasks_run_duration_seconds_count")[(("task", task),)] == count
            assert samples(text, "xtasks_run_duration_seconds_sum")[(("task", task),)] >= 0
        slowish = {le: n for (t, (_, le)), n in buckets.items() if t[1] == "slowish"}
        assert slowish["0.01"] == 0 and slowish["+Inf"] == 1  # it slept 0.02 s
    # Fleet-wide totals: the same whichever replica answered.
    assert samples(texts[0], "xtasks_runs_total") == samples(texts[1], "xtasks_runs_total")
    assert 'xtasks_replica_info{replica="a"} 1' in texts[0]
    assert 'xtasks_replica_info{replica="b"} 1' in texts[1]


# --- two processes -----------------------------------------------------------------------


@contextmanager
def _uvicorn(store: str, name: str) -> Iterator[httpx.Client]:
    """``python -m uvicorn`` serving a replica on a free port: a client to it."""
    from tests.replicas.harness import ROOT

    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.manager_api.fleet_app:app"]
        + ["--host", "127.0.0.1", "--port", "0", "--timeout-graceful-shutdown", "5"]
        + ["--no-access-log"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "XTASKS_TEST_STORE": store,
            "XTASKS_TEST_REPLICA": name,
            "XTASKS_TEST_TOKEN": TOKEN,
        },
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stderr or ():
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            line = lines.get(timeout=30)  # uvicorn says where it listens, or why it failed
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        with httpx.Client(base_url=found.group(1), headers=HEADERS, timeout=TIMEOUT) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_two_worker_processes_on_one_sqlite_file_share_events_and_metrics(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'fleet.db'}"
    with _uvicorn(store, "p1") as one, _uvicorn(store, "p2") as two:
        with one.stream("GET", "/manager/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            ids = {run(one): "p1", run(two): "p2", run(two): "p2"}
            seen = until_final(messages(lines), set(ids))
        finals = {data["id"]: data for _, data in seen if data["status"] in FINAL}
        assert {run_id: data["replica"] for run_id, data in finals.items()} == ids
        texts = [client.get("/manager/metrics").text for client in (one, two)]
    for text in texts:
        assert samples(text, "xtasks_runs_total") == {(("task", "ok"), ("status", "succeeded")): 3}
        assert (
            samples(text, "xtasks_run_duration_seconds_bucket")[(("task", "ok"), ("le", "+Inf"))]
            == 3
        )
