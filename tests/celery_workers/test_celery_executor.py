"""Tasks on a real Celery worker: periodic runs land in xtasks's history, a worker's error
is a failed run with the worker's traceback and is retried, a timeout and a cancel
revoke, a killed worker fails its run, a task Celery does not know fails, and three
replicas on one SQLite file send each fire once."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from xtasks import ConfigError, Every, RunStatus, Scheduler, Task
from xtasks.events import RunChanged

if TYPE_CHECKING:
    from pathlib import Path

    import redis

    from tests.celery_workers.conftest import Worker

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::xtasks.ShortIntervalWarning"),  # Every(seconds=1)
]

#: Generous for a loaded machine; only reached when something is broken.
WAIT = 30.0


def _executor(**options: Any) -> Any:
    from tests.celery_workers._app import app
    from xtasks_celery import CeleryExecutor

    return CeleryExecutor(app, **options)


def _key(name: str) -> str:
    """A key of its own for one test, under the session's prefix (added by the tasks)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def _until(client: redis.Redis, key: str) -> bytes:
    """The value of ``key`` (prefixed) once a worker wrote it, within :data:`WAIT`."""
    from tests.celery_workers._app import PREFIX

    with anyio.fail_after(WAIT):
        # Written by the worker process: polled, bounded.
        while (value := client.get(f"{PREFIX}{key}")) is None:  # noqa: ASYNC110
            await anyio.sleep(0.02)
    assert isinstance(value, bytes)
    return value


async def test_a_periodic_task_runs_on_the_worker_and_lands_in_history(
    celery_worker: Worker, results_redis: redis.Redis, tmp_path: Path
) -> None:
    scheduler = Scheduler(f"sqlite:///{tmp_path / 'x.db'}", plugins=False, executors=[_executor()])
    scheduler.add(
        Task(
            "sum",
            "tests.celery_workers._app.add",
            args=(2, 3),
            executor="celery",
            trigger=Every(seconds=1),
        )
    )
    finished = anyio.Event()
    statuses: dict[str, list[RunStatus]] = {}

    def seen(event: RunChanged) -> None:
        run = statuses.setdefault(event.record.id, [])
        if not run or run[-1] is not event.record.status:
            run.append(event.record.status)
        if event.record.status is RunStatus.SUCCEEDED:
            finished.set()

    async with scheduler:
        scheduler.subscribe(seen, RunChanged)
        with anyio.fail_after(WAIT):
            await finished.wait()
        (record, *_) = await scheduler.history("sum", statuses=[RunStatus.SUCCEEDED])
    assert record.result == 5 and record.attempts == 1
    assert record.executor == "celery" and record.worker == celery_worker.hostname
    assert record.started_at is not None and record.finished_at is not None
    # Queued until the worker picked it up, then running, then done.
    assert statuses[record.id] == [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED]


async def test_an_error_on_the_worker_fails_the_run_with_its_traceback_and_is_retried(
    celery_worker: Worker, results_redis: redis.Redis
) -> None:
    from tests.celery_workers._app import PREFIX

    key = _key("flaky")
    scheduler = Scheduler("memory://", plugins=False, executors=[_executor()])
    scheduler.add(
        Task(
            "flaky",
            "tests.celery_workers._app.flaky",
            args=(key, 2),
            executor="celery",
            max_retries=2,
        )
    )
    scheduler.add(
        Task(
            "explode", "tests.celery_workers._app.explode", args=("no such row",), executor="celery"
        )
    )
    async with scheduler:
        with anyio.fail_after(WAIT):
            retried = await scheduler.run("flaky")
            failed = await scheduler.run("explode")
    assert retried.status is RunStatus.SUCCEEDED and retried.result == "fine"
    assert retried.attempts == 3
    # Each attempt is its own Celery task: the run id, then <run id>-2, <run id>-3.
    sent = _listed(results_redis, f"{PREFIX}{key}")
    assert sent == [retried.id, f"{retried.id}-2", f"{retried.id}-3"]
    assert failed.status is RunStatus.FAILED and failed.error is not None
    assert failed.error.type == "KeyError" and "no such row" in failed.error.message
    assert "_explode_deeper" in failed.error.traceback  # the worker's own frames
    assert "celery/app/trace.py" not in failed.error.traceback  # not Celery's tracer


async def test_a_timeout_revokes_the_task_on_the_workers(
    celery_worker: Worker, results_redis: redis.Redis
) -> None:
    from tests.celery_workers._app import app

    key = _key("slow")
    scheduler = Scheduler("memory://", plugins=False, executors=[_executor()])
    scheduler.add(
        Task("slow", "tests.celery_workers._app.hold", args=(key, 20), executor="celery", timeout=1)
    )
    async with scheduler:
        with anyio.fail_after(WAIT):
            record = await scheduler.run("slow")
    assert record.status is RunStatus.FAILED and record.error is not None
    assert record.error.type == "RunTimeoutError"
    assert record.id in _revoked_on(app, celery_worker)
    results_redis.set(f"{_prefix()}{key}:release", 1)  # free the worker's thread


async def test_a_task_celery_does_not_know_fails_naming_it(
    celery_worker: Worker, results_redis: redis.Redis
) -> None:
    scheduler = Scheduler("memory://", plugins=False, executors=[_executor()])
    scheduler.add(Task("typo", "tests.celery_workers._app.ad", args=(1, 2), executor="celery"))
    async with scheduler:
        with anyio.fail_after(WAIT):
            record = await scheduler.run("typo")
    assert record.status is RunStatus.FAILED and record.error is not None
    assert "tests.celery_workers._app.ad" in record.error.message


def test_a_cancel_from_the_manager_revokes_the_task(
    celery_worker: Worker, results_redis: redis.Redis
) -> None:
    from tests.celery_workers._app import app
    from tests.manager_api.live import live_server
    from xtasks_fastapi import bearer_token, manager_router

    key = _key("held")
    scheduler = Scheduler("memory://", plugins=False, executors=[_executor()])
    scheduler.add(Task("held", "tests.celery_workers._app.hold", args=(key, 20), executor="celery"))
    api = FastAPI(lifespan=scheduler.lifespan)
    api.include_router(manager_router(scheduler, auth=bearer_token("s3cret-token-for-tests")))
    headers = {"Authorization": "Bearer s3cret-token-for-tests"}
    with live_server(api) as base, httpx.Client(base_url=base, timeout=WAIT) as http:
        run_id = http.post("/manager/tasks/held/run", headers=headers).json()["run_id"]
        anyio.run(_until, results_redis, f"{key}:running")
        deadline = time.monotonic() + WAIT
        while (running := http.get(f"/manager/runs/{run_id}", headers=headers).json())[
            "status"
        ] == "queued" and time.monotonic() < deadline:
            time.sleep(0.02)  # STARTED reaches xtasks through Redis: polled over HTTP
        assert running["status"] == "running"
        assert running["executor"] == "celery"
        assert running["worker"] == celery_worker.hostname  # shown by the manager
        assert http.delete("/manager/tasks/held", headers=headers).status_code == 200
        deadline = time.monotonic() + WAIT
        while (run := http.get(f"/manager/runs/{run_id}", headers=headers).json())[
            "status"
        ] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)  # polled over HTTP, as an operator's script would
    assert run["status"] == "cancelled"
    assert run_id in _revoked_on(app, celery_worker)
    results_redis.set(f"{_prefix()}{key}:release", 1)


async def test_a_worker_killed_mid_run_fails_the_run(
    celery_env: dict[str, str], results_redis: redis.Redis, tmp_path: Path
) -> None:
    """SIGKILL of the whole worker leaves Celery's state ``STARTED`` for ever; xtasks
    notices the worker no longer answers and fails the run, naming the worker."""
    from tests.celery_workers._app import PREFIX
    from tests.celery_workers.conftest import start_worker

    queue = f"{PREFIX}doomed"
    doomed = start_worker(celery_env, tmp_path, name="doomed", queues=queue, concurrency=2)
    key = _key("doomed")
    executor = _executor(routes={"doomed": {"queue": queue}}, lost_after=2)
    scheduler = Scheduler("memory://", plugins=False, executors=[executor])
    scheduler.add(
        Task("doomed", "tests.celery_workers._app.hold", args=(key, 60), executor="celery")
    )
    try:
        async with scheduler:
            handle = await scheduler.trigger("doomed")
            await _until(results_redis, f"{key}:running")
            doomed.kill()
            with anyio.fail_after(WAIT):
                record = await handle.wait()
    finally:
        doomed.stop()
    assert record.status is RunStatus.FAILED and record.error is not None
    assert record.error.type == "CeleryWorkerLost"
    assert doomed.hostname in record.error.message


async def test_a_long_run_on_a_worker_that_answers_is_not_counted_lost(
    celery_worker: Worker, results_redis: redis.Redis
) -> None:
    key = _key("long")
    scheduler = Scheduler("memory://", plugins=False, executors=[_executor(lost_after=1)])
    scheduler.add(Task("long", "tests.celery_workers._app.hold", args=(key, 20), executor="celery"))
    async with scheduler:
        handle = await scheduler.trigger("long")
        await _until(results_redis, f"{key}:running")
        await anyio.sleep(3)  # three times lost_after, the worker answering its pings
        assert handle.record is None  # not finished: not failed as lost
        results_redis.set(f"{_prefix()}{key}:release", 1)
        with anyio.fail_after(WAIT):
            record = await handle.wait()
    assert record.status is RunStatus.SUCCEEDED


async def test_three_replicas_on_one_sqlite_file_send_each_fire_once(
    celery_worker: Worker, results_redis: redis.Redis, tmp_path: Path
) -> None:
    """The worker counts what it received: one Celery task per fire, whichever replica
    claimed it."""
    from tests.celery_workers._app import PREFIX

    key = _key("fires")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    replicas = [
        Scheduler(url, plugins=False, executors=[_executor()], replica_id=f"r{i}") for i in range(3)
    ]
    for replica in replicas:
        replica.add(
            Task(
                "tick",
                "tests.celery_workers._app.record",
                args=(key,),
                executor="celery",
                trigger=Every(seconds=1),
            )
        )
    succeeded: list[str] = []
    enough = anyio.Event()

    def seen(event: RunChanged) -> None:
        if event.record.status is RunStatus.SUCCEEDED:
            succeeded.append(event.record.id)
            if len(succeeded) >= 4:
                enough.set()

    async with anyio.create_task_group() as tg:
        for replica in replicas:
            await tg.start(_serve_replica, replica)
            replica.subscribe(seen, RunChanged)
        with anyio.fail_after(WAIT):
            await enough.wait()
        tg.cancel_scope.cancel()
    received = _listed(results_redis, f"{PREFIX}{key}")
    assert len(received) == len(set(received))
    async with Scheduler(url, plugins=False, executors=[_executor()]) as reader:
        runs = [r for r in await reader.history("tick", limit=100) if r.attempts]
    fires = [r.scheduled_at for r in runs]
    assert len(fires) == len(set(fires)), "a fire ran twice"
    assert set(received) <= {r.id for r in runs}
    assert len({r.replica for r in runs}) >= 1


async def _serve_replica(replica: Scheduler, *, task_status: Any) -> None:
    async with replica:
        task_status.started()
        await anyio.sleep_forever()


async def test_an_outcome_published_while_the_connection_is_cut_is_not_lost(
    celery_worker: Worker, results_redis: redis.Redis
) -> None:
    """The watcher's connection killed mid-run (as a Redis restart or a network cut
    would): it reconnects and reads the outcome back from its key. No sweep here: the
    reconnection alone must find it."""
    from xtasks_celery._executor import WATCHER_NAME

    key = _key("cut")
    executor = _executor(sweep_interval=float("inf"))
    scheduler = Scheduler("memory://", plugins=False, executors=[executor])
    scheduler.add(Task("cut", "tests.celery_workers._app.hold", args=(key, 20), executor="celery"))
    async with scheduler:
        handle = await scheduler.trigger("cut")
        await _until(results_redis, f"{key}:running")
        named = [c for c in results_redis.client_list() if c.get("name") == WATCHER_NAME]
        assert any(int(c.get("sub", 0)) for c in named), "no subscribed watcher connection"
        for client in named:
            results_redis.client_kill_filter(_id=client["id"])
        results_redis.set(f"{_prefix()}{key}:release", 1)  # it finishes while we are away
        with anyio.fail_after(WAIT):
            record = await handle.wait()
    assert record.status is RunStatus.SUCCEEDED and isinstance(record.result, int)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_the_executor_says_it_needs_asyncio() -> None:
    scheduler = Scheduler("memory://", plugins=False, executors=[_executor()])
    with pytest.raises(ConfigError, match=r"needs the asyncio event loop"):
        async with scheduler:
            pass


def test_arguments_celery_cannot_send_are_refused_as_the_task_is_added() -> None:
    scheduler = Scheduler("memory://", plugins=False, executors=[_executor()])
    with pytest.raises(ConfigError, match=r"task 'odd': its args/kwargs cannot be sent"):
        scheduler.add(
            Task("odd", "tests.celery_workers._app.add", args=(object(), 1), executor="celery")
        )


async def test_an_app_without_a_redis_result_backend_is_refused_at_start() -> None:
    from celery import Celery

    from xtasks_celery import CeleryExecutor

    app = Celery("rpc", broker="redis://127.0.0.1:6379/13", backend="rpc://", set_as_current=False)
    scheduler = Scheduler("memory://", plugins=False, executors=[CeleryExecutor(app)])
    with pytest.raises(ConfigError, match=r"result backend must be Redis.*it is rpc://"):
        async with scheduler:
            pass


def _prefix() -> str:
    from tests.celery_workers._app import PREFIX

    return PREFIX


def _revoked_on(app: Any, worker: Worker) -> set[str]:
    """The task ids ``worker`` holds as revoked (asked over the broker)."""
    replies = app.control.inspect(destination=[worker.hostname], timeout=5).revoked() or {}
    return set(replies.get(worker.hostname, []))


def _listed(client: redis.Redis, key: str) -> list[str]:
    """The Redis list ``key``, as text."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in client.lrange(key, 0, -1)]
