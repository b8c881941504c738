"""Waiting for a run that an HTTP request started, by its id."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from xtasks.events import RunChanged

if TYPE_CHECKING:
    from xtasks import RunRecord, Scheduler

__all__ = ["wait_final"]


async def wait_final(scheduler: Scheduler, run_id: str) -> RunRecord:
    """The run's final record: from the store if it is already there, else its event."""
    async with scheduler.events() as events:
        record = await scheduler.get_run(run_id)
        if record is not None and record.status.is_final:
            return record
        with anyio.fail_after(10):
            async for event in events:
                if (
                    isinstance(event, RunChanged)
                    and event.record.id == run_id
                    and event.record.status.is_final
                ):
                    return event.record
    raise AssertionError(f"the event stream ended before run {run_id} finished")
