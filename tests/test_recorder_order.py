"""What the recorder tells at shutdown when the store still fails: how many runs and task
states were not stored, each counted once, so an operator knows what to re-check."""

from __future__ import annotations

import logging

import anyio
import pytest

from xtasks import Scheduler, StoreError, Task, TaskState
from xtasks.stores.memory import MemoryStore
from xtasks.testing import FaultyStore

pytestmark = pytest.mark.anyio

PATIENCE = 10


async def noop() -> None:
    pass


async def test_stopping_while_the_store_fails_counts_runs_and_task_states_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run's several snapshots count as one run; a pause counts as one task state."""
    store = FaultyStore(MemoryStore())
    scheduler = Scheduler(store, plugins=False, shutdown_grace=0.2)
    scheduler.add(Task("job", noop))
    scheduler.add(Task("other", noop))
    caplog.set_level(logging.ERROR, logger="xtasks")
    paused: list[BaseException | None] = []

    async def pause() -> None:
        try:
            await scheduler.pause("other")  # returns once the recorder gives up
        except StoreError as exc:
            paused.append(exc)
        else:
            paused.append(None)

    async with anyio.create_task_group() as tg, scheduler:
        store.fail_writes()
        handle = await scheduler.trigger("job")
        tg.start_soon(pause)
        with anyio.fail_after(PATIENCE):
            while not (  # noqa: ASYNC110 - stats() has no event to wait on
                scheduler.states()["other"] is TaskState.PAUSED
                and scheduler.stats().store_write_failures >= 1
            ):
                await anyio.sleep(0.01)
    assert len(paused) == 1
    with pytest.raises(StoreError):
        await handle.wait()
    lost = [r.getMessage() for r in caplog.records if "could not be stored" in r.getMessage()]
    assert len(lost) == 1
    assert "the last changes of 1 run(s) and 1 task state(s)" in lost[0]
