"""What comes out of ``async with scheduler:``: the block's own exception as itself (so
``except ValueError`` works), a cancellation as a cancellation, and a failure of the
scheduler's own machinery as one ``XtasksError``."""

from __future__ import annotations

import anyio
import pytest

from xtasks import RunRecord, Scheduler, Task, XtasksError
from xtasks.stores.memory import MemoryStore
from xtasks.testing._delegating import DelegatingStore

pytestmark = pytest.mark.anyio


async def noop() -> None:
    pass


async def test_the_block_s_own_exception_comes_out_as_itself() -> None:
    scheduler = Scheduler(plugins=False)
    scheduler.add(Task("job", noop))
    with pytest.raises(ValueError, match="the application's own") as caught:
        async with scheduler:
            await scheduler.run("job")
            raise ValueError("the application's own")
    assert type(caught.value) is ValueError
    assert not scheduler.running


async def test_a_cancelled_block_leaves_quietly() -> None:
    scheduler = Scheduler(plugins=False)
    with anyio.move_on_after(0.1) as scope:
        async with scheduler:
            await anyio.sleep_forever()
    assert scope.cancelled_caught and not scheduler.running


class _BrokenReaper(DelegatingStore[MemoryStore]):
    """A store with a bug (not a StoreError): the scheduler's lease loop dies of it."""

    async def reap_lost(self) -> list[RunRecord]:
        raise RuntimeError("a bug in the store")


async def test_a_failure_of_the_scheduler_comes_out_as_one_xtasks_error() -> None:
    scheduler = Scheduler(_BrokenReaper(MemoryStore()), plugins=False)
    with pytest.raises(XtasksError, match="the scheduler failed: RuntimeError: a bug") as caught:
        async with scheduler:
            await anyio.sleep_forever()  # cancelled when the scheduler's task group fails
    assert isinstance(caught.value.__cause__, BaseExceptionGroup)


async def test_a_cancelled_block_still_stops_gracefully_runs_finish_and_are_stored() -> None:
    """Cancelling the code around the scheduler (a timeout, Ctrl-C, ``serve()`` cancelled)
    is a request to stop: running runs get the grace and their records are written."""
    started = anyio.Event()

    async def short_job() -> str:
        started.set()
        await anyio.sleep(0.3)
        return "finished in the grace"

    store = MemoryStore()
    scheduler = Scheduler(store, plugins=False, shutdown_grace=5)
    scheduler.add(Task("job", short_job))
    with anyio.CancelScope() as scope:
        async with scheduler:
            handle = await scheduler.trigger("job")
            await started.wait()
            scope.cancel()
            await anyio.sleep_forever()
    record = await handle.wait()
    assert record.status.value == "succeeded" and record.result == "finished in the grace"
    await store.open()
    stored = await store.get_run(handle.id)
    assert stored is not None and stored.status.value == "succeeded"
