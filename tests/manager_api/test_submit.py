"""``tracked_submit``: request handlers hand work to the scheduler instead of BackgroundTasks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI

from xtasks import Scheduler, Task
from xtasks_fastapi import Submit, tracked_submit

from ._runs import wait_final

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

gate = anyio.Event()
attempts: list[str] = []


async def slow_mail(address: str) -> str:
    await gate.wait()
    return f"sent to {address}"


async def flaky(key: str) -> str:
    attempts.append(key)
    if attempts.count(key) == 1:
        raise ConnectionError("smtp hiccup")
    return "ok"


FLAKY = Task("flaky_mail", flaky, args=("x",), max_retries=2, retry_delay=0)


def build_app(scheduler: Scheduler) -> FastAPI:
    app = FastAPI()
    # Handlers here are local functions, so their string annotations cannot name a local
    # alias; at module level, `Background = Annotated[Submit, Depends(...)]` reads better.
    background = Depends(tracked_submit(scheduler))

    @app.post("/signup", status_code=202)
    async def signup(email: str, submit: Submit = background) -> dict[str, str]:
        run = await submit(slow_mail, email)
        return {"run_id": run.id}

    @app.post("/flaky", status_code=202)
    async def flaky_route(key: str, submit: Submit = background) -> dict[str, str]:
        run = await submit(FLAKY, key)
        return {"run_id": run.id}

    return app


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


async def test_the_response_returns_before_the_work_and_the_run_is_in_history() -> None:
    global gate
    gate = anyio.Event()
    scheduler = Scheduler(plugins=False)
    app = build_app(scheduler)
    async with scheduler:
        async for client in client_for(app):
            response = await client.post("/signup", params={"email": "a@b.c"})
            assert response.status_code == 202, response.text
            run_id = response.json()["run_id"]
            live = await scheduler.get_run(run_id)
            assert live is not None and not live.status.is_final  # the work waits on `gate`
            gate.set()
            record = await wait_final(scheduler, run_id)
    assert str(record.status) == "succeeded" and str(record.cause) == "submit"
    assert record.result == repr("sent to a@b.c") or "a@b.c" in str(record.result)
    async with scheduler:
        [stored] = await scheduler.history(record.task)
    assert stored.id == run_id


async def test_a_task_given_to_submit_is_retried_per_its_policy() -> None:
    attempts.clear()
    scheduler = Scheduler(plugins=False)
    app = build_app(scheduler)
    async with scheduler:
        async for client in client_for(app):
            response = await client.post("/flaky", params={"key": "k1"})
            assert response.status_code == 202, response.text
            record = await wait_final(scheduler, response.json()["run_id"])
    assert str(record.status) == "succeeded"
    assert record.attempts == 2 and attempts == ["k1", "k1"]
    assert record.task == "flaky_mail" and str(record.cause) == "submit"


async def test_a_stopped_scheduler_is_a_503_with_a_message_not_a_500() -> None:
    scheduler = Scheduler(plugins=False)
    app = build_app(scheduler)
    calls: list[Any] = []
    async for client in client_for(app):
        calls.append(await client.post("/signup", params={"email": "a@b.c"}))
        async with scheduler:
            pass
        calls.append(await client.post("/flaky", params={"key": "k2"}))
    for response in calls:
        assert response.status_code == 503
        assert "task scheduler is not running" in response.json()["detail"]
        assert response.headers["retry-after"] == "5"
