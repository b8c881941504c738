"""Whatever a task raises is its own failure: SystemExit, KeyboardInterrupt, any
BaseException subclass, even a CancelledError it raises itself. The run is recorded failed
with the type, and the scheduler goes on. Cancellation by xtasks stays a cancellation."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from xtasks import RunStatus, Scheduler, Task

pytestmark = pytest.mark.anyio

PATIENCE = 10


class Custom(BaseException):
    """Not an Exception: what a careless library might raise."""


async def raises_system_exit() -> None:
    raise SystemExit(3)


async def raises_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


async def raises_custom() -> None:
    await anyio.lowlevel.checkpoint()
    raise Custom("not an Exception")


def sync_raises_system_exit() -> None:
    raise SystemExit("from a thread")


async def fine() -> str:
    return "still here"


@pytest.mark.parametrize(
    ("func", "type_name"),
    [
        (raises_system_exit, "SystemExit"),
        (raises_keyboard_interrupt, "KeyboardInterrupt"),
        (raises_custom, "Custom"),
        (sync_raises_system_exit, "SystemExit"),
    ],
)
async def test_a_base_exception_from_a_task_is_its_failure(func: object, type_name: str) -> None:
    assert callable(func)
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("bad", func))
    scheduler.add(Task("fine", fine))
    async with scheduler:
        with anyio.fail_after(PATIENCE):
            bad = await scheduler.run("bad")
            after = await scheduler.run("fine")
        stored = await scheduler.get_run(bad.id)
    assert bad.status is RunStatus.FAILED
    assert bad.error is not None and bad.error.type == type_name
    assert stored == bad
    assert after.status is RunStatus.SUCCEEDED and after.result == "still here"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # asyncio's own exception class
async def test_a_cancelled_error_the_task_raises_itself_is_its_failure() -> None:
    async def raises_cancelled() -> None:
        raise asyncio.CancelledError("the task's own")

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("bad", raises_cancelled))
    scheduler.add(Task("fine", fine))
    async with scheduler:
        with anyio.fail_after(PATIENCE):
            bad = await scheduler.run("bad")
            after = await scheduler.run("fine")
    assert bad.status is RunStatus.FAILED
    assert bad.error is not None and bad.error.type == "CancelledError"
    assert after.status is RunStatus.SUCCEEDED


async def test_cancelling_a_run_is_still_a_cancellation() -> None:
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("long", forever))
    async with scheduler:
        handle = await scheduler.trigger("long")
        with anyio.fail_after(PATIENCE):
            await started.wait()
            assert handle.cancel()
            record = await handle.wait()
    assert record.status is RunStatus.CANCELLED
    assert record.reason == "cancelled by its handle"


async def test_a_process_task_that_exits_fails_and_the_worker_pool_goes_on() -> None:
    scheduler = Scheduler(plugins=False, process_slots=1)
    scheduler.add(Task("exits", "tests._sample_funcs:exits", mode="process"))
    scheduler.add(Task("cpu", "tests._sample_funcs:cpu_job", args=(10,), mode="process"))
    async with scheduler:
        with anyio.fail_after(60):
            bad = await scheduler.run("exits")
            after = await scheduler.run("cpu")  # the same (only) worker process
    assert bad.status is RunStatus.FAILED
    assert bad.error is not None and bad.error.type == "SystemExit"
    assert "Traceback in the worker process" in bad.error.traceback
    assert after.status is RunStatus.SUCCEEDED and after.result == 45
