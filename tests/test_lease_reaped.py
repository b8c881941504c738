"""A replica that stalls past its lease loses its runs to another replica, and stops them.

Two schedulers, each on its own thread and event loop, share one SQLite file, as two
processes would. Replica ``a`` stalls: a task body blocks its event loop, so ``a`` cannot
renew its leases. Replica ``b`` sees them expire and marks ``a``'s runs ``lost``. When ``a``
wakes, the store refuses the result of the run that stalled it (the run is fenced), and
``a`` cancels its other run, whose lease is gone: it would be refused as well.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import anyio
import pytest

from xtasks import RunStatus, Scheduler, Task
from xtasks.events import Event, RunChanged

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

PATIENCE = 30


async def test_runs_of_a_replica_stalled_past_its_lease_are_lost_and_stopped_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}?lease_ttl=0.5"
    lost: dict[str, str] = {}  # run id -> reason, as replica b marked them
    both_lost = threading.Event()
    stop_b = threading.Event()
    b_ready = threading.Event()
    watched: set[str] = set()
    y_started = anyio.Event()
    y_stopped = anyio.Event()
    stall_stored = anyio.Event()

    def on_a_event(event: Event) -> None:
        record = event.record if isinstance(event, RunChanged) else None
        if record is not None and record.task == "stall" and record.status is RunStatus.RUNNING:
            stall_stored.set()

    async def stall() -> None:
        await stall_stored.wait()  # stored running, and so leased
        # a blocking call on a's event loop: a's lease loop cannot run meanwhile
        assert both_lost.wait(PATIENCE), "replica b did not mark a's runs lost"

    async def wait_long() -> None:
        y_started.set()
        try:
            await anyio.sleep_forever()
        finally:
            y_stopped.set()

    def tasks(scheduler: Scheduler) -> None:
        scheduler.add(Task("stall", stall))
        scheduler.add(Task("wait_long", wait_long))

    def on_b_event(event: Event) -> None:
        if isinstance(event, RunChanged) and event.record.status is RunStatus.LOST:
            lost[event.record.id] = event.record.reason or ""
            if watched and watched <= lost.keys():
                both_lost.set()

    def replica_b() -> None:
        async def main() -> None:
            b = Scheduler(url, plugins=False, replica_id="b")
            tasks(b)
            b.subscribe(on_b_event)
            async with b:
                b_ready.set()
                await anyio.to_thread.run_sync(stop_b.wait)

        anyio.run(main)

    thread = threading.Thread(target=replica_b, name="replica b")
    a = Scheduler(url, plugins=False, replica_id="a")
    tasks(a)
    a.subscribe(on_a_event)
    caplog.set_level(logging.WARNING, logger="xtasks")
    try:
        async with a:
            thread.start()
            with anyio.fail_after(PATIENCE):
                await anyio.to_thread.run_sync(b_ready.wait)
                waiting = await a.trigger("wait_long")
                await y_started.wait()
            stalling = await a.trigger("stall")
            watched.update({waiting.id, stalling.id})
            with anyio.fail_after(PATIENCE):
                await y_stopped.wait()  # a cancelled the run whose lease was reaped
                await stalling.wait()
    finally:
        stop_b.set()
        thread.join(PATIENCE)
    assert set(lost) == {waiting.id, stalling.id}
    assert all("replica a" in reason for reason in lost.values()), lost
    async with Scheduler(url, plugins=False, replica_id="reader") as reader:
        for run_id in (waiting.id, stalling.id):
            record = await reader.get_run(run_id)
            assert record is not None
            assert record.status is RunStatus.LOST  # a's late results were refused
    assert f"run {stalling.id} was marked lost by another replica while it ran here" in (
        caplog.text
    )
