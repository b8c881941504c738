"""A replica process for the multi-process tests: configured from the environment.

Prints one line per event the tests wait for (``FINAL <task> <id> <status>`` once a
run's final record is stored, ``STARTED <task> <id>`` when a long run begins), so the
tests synchronise on output, never on sleeps.
"""

from __future__ import annotations

import os
import sys
import warnings

import anyio

from xtasks import Scheduler, ShortIntervalWarning, Task
from xtasks.events import RunChanged
from xtasks.stores import open_store

warnings.simplefilter("ignore", ShortIntervalWarning)


def say(*words: object) -> None:
    print(*words, flush=True)


async def tick() -> None:
    pass


async def hang() -> None:
    say("STARTED hang")
    await anyio.sleep_forever()


async def burst_job(n: int) -> int:
    return n


def build() -> Scheduler:
    from xtasks import Every

    store = open_store(os.environ["XTASKS_TEST_STORE"])
    store.lease_ttl = float(os.environ.get("XTASKS_TEST_LEASE", "10"))
    scheduler = Scheduler(
        store, plugins=False, replica_id=os.environ["XTASKS_TEST_REPLICA"], shutdown_grace=1
    )
    tasks = os.environ.get("XTASKS_TEST_TASKS", "tick").split(",")
    grace = float(os.environ.get("XTASKS_TEST_GRACE", "60"))
    if "tick" in tasks:
        scheduler.add(Task("tick", tick, trigger=Every(seconds=0.2), misfire_grace=grace))
    if "hang" in tasks:
        scheduler.add(Task("hang", hang, trigger=Every(seconds=0.5)))
    scheduler.subscribe(_report)
    return scheduler


def _report(event: object) -> None:
    if isinstance(event, RunChanged) and event.record.status.is_final:
        r = event.record
        say("FINAL", r.task, r.id, r.status.value, r.scheduled_at.isoformat(), r.cause.value)


async def main() -> None:
    scheduler = build()
    burst = int(os.environ.get("XTASKS_TEST_BURST", "0"))
    async with scheduler:
        say("READY", scheduler.replica_id)
        for n in range(burst):
            await scheduler.submit(burst_job, n)
        # Run until the test closes our stdin (or kills us); read it off the loop.
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    anyio.run(main)
