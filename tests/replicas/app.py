"""A replica process for the multi-process tests: configured from the environment.

Prints one line per event the tests wait for (``FINAL <task> <id> <status> <fire time>
<cause>`` once a run's final record is stored, ``STATE <task> <state>`` when a task's
state changes here (by a command on stdin, or another replica's), ``STARTED <task>``
when a long run begins, ``QUEUED <n>`` once the ``n`` runs it was asked to leave queued
are stored so), so the tests synchronise on output, never on sleeps.
"""

from __future__ import annotations

import os
import sys
import warnings

import anyio

from xtasks import RunStatus, Scheduler, ShortIntervalWarning, Task
from xtasks.events import RunChanged, TaskStateChanged
from xtasks.stores import open_store

warnings.simplefilter("ignore", ShortIntervalWarning)


def say(*words: object) -> None:
    print(*words, flush=True)


#: This replica's own record of what it executed (``XTASKS_TEST_LOG``), read by the tests
#: offline, apart from the store: a line ``EXEC <task>`` per body that ran, and ``RUN <task>
#: <fire time> <run id>`` per run stored running here.
_exec_log = (
    open(os.environ["XTASKS_TEST_LOG"], "a", buffering=1)  # noqa: SIM115 - the process's life
    if "XTASKS_TEST_LOG" in os.environ
    else None
)


def _executed(task: str) -> None:
    if _exec_log is not None:
        _exec_log.write(f"EXEC {task}\n")


async def tick() -> None:
    _executed("tick")


async def tock() -> None:
    _executed("tock")


def chore() -> None:
    """A sync task: runs in a worker thread."""
    _executed("chore")


async def hang() -> None:
    say("STARTED hang")
    await anyio.sleep_forever()


async def burst_job(n: int) -> int:
    return n


async def again() -> None:
    pass


_blocked = anyio.Event()  # no loop is running yet: anyio makes the real event on first use
#: Runs of these tasks whose queued record was stored, and how many are expected.
_queued: set[str] = set()
_QUEUED_TASKS = ("again", f"{__name__}:burst_job")
_expect_queued = 0


async def block() -> None:
    """Holds the only slot (``max_concurrency=1``) so everything after it stays queued."""
    say("STARTED block")
    _blocked.set()
    await anyio.sleep_forever()


def build() -> Scheduler:
    from xtasks import Every

    store = open_store(os.environ["XTASKS_TEST_STORE"])
    store.lease_ttl = float(os.environ.get("XTASKS_TEST_LEASE", "10"))
    scheduler = Scheduler(
        store,
        plugins=False,
        replica_id=os.environ["XTASKS_TEST_REPLICA"],
        shutdown_grace=1,
        max_concurrency=int(os.environ.get("XTASKS_TEST_CONCURRENCY", "100")),
    )
    tasks = os.environ.get("XTASKS_TEST_TASKS", "tick").split(",")
    grace = float(os.environ.get("XTASKS_TEST_GRACE", "60"))
    if "tick" in tasks:
        scheduler.add(Task("tick", tick, trigger=Every(seconds=0.2), misfire_grace=grace))
    if "fleet" in tasks:  # several tasks at once, async and sync, on their own grids
        tick_every = float(os.environ.get("XTASKS_TEST_TICK", "0.25"))
        scheduler.add(Task("tick", tick, trigger=Every(seconds=tick_every), misfire_grace=grace))
        scheduler.add(Task("tock", tock, trigger=Every(seconds=0.4), misfire_grace=grace))
        scheduler.add(Task("chore", chore, trigger=Every(seconds=0.3), misfire_grace=grace))
    if "hang" in tasks:
        scheduler.add(Task("hang", hang, trigger=Every(seconds=0.5)))
    if "again" in tasks:  # on demand; a run lost with its replica is run again
        scheduler.add(Task("again", again, recover=True, overlap="allow"))
    scheduler.subscribe(_report)
    return scheduler


def _report(event: object) -> None:
    if isinstance(event, TaskStateChanged):
        say("STATE", event.task, event.state.value)
        return
    if not isinstance(event, RunChanged):
        return
    r = event.record
    if _exec_log is not None and r.status is RunStatus.RUNNING:
        _exec_log.write(f"RUN {r.task} {r.scheduled_at.isoformat()} {r.id}\n")
    if r.status.is_final:
        say("FINAL", r.task, r.id, r.status.value, r.scheduled_at.isoformat(), r.cause.value)
    elif r.status is RunStatus.QUEUED and r.task in _QUEUED_TASKS and _expect_queued:
        _queued.add(r.id)
        if len(_queued) == _expect_queued:
            say("QUEUED", len(_queued))


async def main() -> None:
    scheduler = build()
    burst = int(os.environ.get("XTASKS_TEST_BURST", "0"))
    async with scheduler:
        say("READY", scheduler.replica_id)
        for n in range(burst):
            await scheduler.submit(burst_job, n)
        orphans = os.environ.get("XTASKS_TEST_ORPHANS")
        if orphans:  # "<submissions>,<triggers>": left queued behind a blocking run
            await _leave_queued(scheduler, *map(int, orphans.split(",")))
        # Obey the test's commands (``pause <task>``, ``resume <task>``, ``cancel <task>``,
        # ``health -``)
        # until it closes our stdin (or kills us); read it off the loop.
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            action, task = line.split()
            if action == "health":  # ``health -``: can the store write, as stats() sees it
                say("HEALTH", "writable" if scheduler.stats().store_writable else "failing")
            else:
                await getattr(scheduler, action)(task)
            say("DONE", action, task)


async def _leave_queued(scheduler: Scheduler, submissions: int, triggers: int) -> None:
    global _expect_queued
    _expect_queued = submissions + triggers
    await scheduler.submit(block)
    await _blocked.wait()
    for n in range(submissions):
        await scheduler.submit(burst_job, n)
    for _ in range(triggers):
        await scheduler.trigger("again")


if __name__ == "__main__":
    anyio.run(main)
