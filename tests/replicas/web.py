"""The README's deployment for the fleet-state tests: ``uvicorn tests.replicas.web:app
--workers 3``, every worker building the same scheduler on one store, with the manager.

Configured from the environment: ``XTASKS_TEST_STORE`` (a store URL),
``XTASKS_TEST_TOKEN`` (the manager's bearer token) and ``XTASKS_TEST_TICK`` (seconds
between two fires of ``tick``). Each worker prints one line per
event the tests wait for, on the stdout it shares with the other workers (each line in
one write, never mixed with another worker's):

- ``READY <pid>`` once its scheduler runs;
- ``FIRE tick <fire time> <cause> <pid> <start time>`` when a run of ``tick`` is stored running
  (times as ISO 8601 and as seconds since the epoch);
- ``STATE <task> <state> <pid> <wall time>`` when a task's state changes there (by an
  action it received, or another worker's);
- ``STARTED hang <run id> <pid>`` and ``ENDED hang <run id> <status> <pid> <wall time>``.

Every answer carries ``X-Worker: <pid>``, so a test knows which worker answered;
``POST /signup?email=...`` submits a run and answers once it ended, with its record.
"""

from __future__ import annotations

import os
import time
import warnings
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import Depends, FastAPI, Request

from xtasks import Every, RunStatus, Scheduler, ShortIntervalWarning, Task
from xtasks.events import RunChanged, TaskStateChanged
from xtasks_fastapi import Submit, bearer_token, manager_router, tracked_submit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from starlette.responses import Response

warnings.simplefilter("ignore", ShortIntervalWarning)

#: Seconds between two fires of ``tick`` (the issue's own schedule is 0.5 s).
TICK = float(os.environ.get("XTASKS_TEST_TICK", "0.5"))
PID = os.getpid()


def say(*words: object) -> None:
    """One line in one ``write``: the workers share the pipe, and a write of under 4 KiB
    to a pipe is never interleaved with another's (``print`` may write in pieces)."""
    os.write(1, (" ".join(map(str, words)) + "\n").encode())


async def tick() -> None:
    pass


async def welcome(email: str) -> str:
    """What a request hands the scheduler (``POST /signup``): runs on that worker."""
    return email


async def hang() -> None:
    """Runs until cancelled: the run a cancel on another worker must stop."""
    await anyio.sleep_forever()


def _report(event: object) -> None:
    if isinstance(event, TaskStateChanged):
        say("STATE", event.task, event.state.value, PID, time.time())
    elif isinstance(event, RunChanged):
        record = event.record
        if record.task == "tick" and record.status is RunStatus.RUNNING:
            assert record.started_at is not None
            fire, cause = record.scheduled_at.isoformat(), record.cause.value
            say("FIRE", "tick", fire, cause, PID, record.started_at.timestamp())
        elif record.task == "hang" and record.status is RunStatus.RUNNING:
            say("STARTED", "hang", record.id, PID)
        elif record.task == "hang" and record.status.is_final:
            say("ENDED", "hang", record.id, record.status.value, PID, time.time())


def build() -> Scheduler:
    scheduler = Scheduler(os.environ["XTASKS_TEST_STORE"], plugins=False, shutdown_grace=1)
    scheduler.add(Task("tick", tick, trigger=Every(seconds=TICK)))
    scheduler.add(Task("hang", hang))
    scheduler.subscribe(_report)
    return scheduler


@asynccontextmanager
async def lifespan(app: object) -> AsyncIterator[None]:
    async with scheduler.lifespan(app):
        say("READY", PID)
        yield


scheduler = build()
app = FastAPI(lifespan=lifespan)
app.include_router(manager_router(scheduler, auth=bearer_token(os.environ["XTASKS_TEST_TOKEN"])))


@app.middleware("http")
async def worker_header(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["X-Worker"] = str(PID)
    return response


Background = Annotated[Submit, Depends(tracked_submit(scheduler))]


@app.post("/signup", status_code=202)
async def signup(email: str, submit: Background) -> dict[str, str | None]:
    record = await (await submit(welcome, email)).wait()
    return {"run_id": record.id, "status": record.status.value, "replica": record.replica}


@app.get("/ready")
async def ready() -> dict[str, int]:
    return {"pid": PID}
