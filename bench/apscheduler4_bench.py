"""APScheduler 4 (``AsyncScheduler``, ``MemoryDataStore``): one-shots, and interval schedules.

Its import name clashes with APScheduler 3's, so this module runs only in the bench's own
APScheduler 4 venv (see :func:`bench.__main__._apscheduler4_python`): it imports APScheduler
4 and :mod:`bench.jobs` (standard library only), nothing from xtasks, taskiq or APScheduler 3.

A task's jobs run one at a time by default (``max_running_jobs=1``): here any number may
(``TaskDefaults(max_running_jobs=None)``, as for the other peers), up to the scheduler's
limit of 100 concurrent jobs (the other peers' ``max_concurrency``). With the default, each
acquisition of jobs scans the whole queue past the busy task's jobs: ``O(n²)`` for ``n``
queued one-shots. (A default must be used: in 4.0.0a6, ``add_job(func)`` reconfigures the
task with the defaults, undoing a ``configure_task(func, max_running_jobs=None)``.)
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler import (
    AsyncScheduler,
    CoalescePolicy,
    JobOutcome,
    JobReleased,
    TaskDefaults,
    current_job,
)
from apscheduler.executors.async_ import AsyncJobExecutor
from apscheduler.executors.thread import ThreadPoolJobExecutor
from apscheduler.triggers.interval import IntervalTrigger

from .jobs import (
    BenchError,
    noop_async,
    noop_sync,
    registered,
    schedule_offsets,
    settle_garbage,
    start_registering,
    window_metrics,
    with_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["add_job_async", "add_job_sync", "every_second", "register_many"]

TIMEOUT = 120.0
#: The task of :func:`every_second`'s schedules (its job is a closure: no reference by name).
_TICK = "bench_tick"


def _scheduler(executor: str = "async", threads: int = 40) -> AsyncScheduler:
    """A memory-store scheduler running tasks on ``executor``: ``async`` (on the loop) or
    ``threadpool`` (``threads`` threads), any number of one task's jobs at once."""
    executors = {
        "async": AsyncJobExecutor(),
        "threadpool": ThreadPoolJobExecutor(max_workers=threads),
    }
    defaults = TaskDefaults(job_executor=executor, max_running_jobs=None)
    return AsyncScheduler(max_concurrent_jobs=100, job_executors=executors, task_defaults=defaults)


class _Outcomes:
    """Counts the ``JobReleased`` events; ``done`` is set once ``expected`` arrived."""

    def __init__(self, expected: int | None = None) -> None:
        self.expected = expected
        self.released = 0
        self.failed: list[JobOutcome] = []
        self.done = asyncio.Event()

    def __call__(self, event: JobReleased) -> None:
        self.released += 1
        if event.outcome is not JobOutcome.success:
            self.failed.append(event.outcome)
        if self.released == self.expected:
            self.done.set()


def _add_jobs(n: int, func: Callable[[], Any], executor: str, threads: int, what: str) -> float:
    async def main() -> float:
        outcomes = _Outcomes(n)
        async with _scheduler(executor, threads) as scheduler:
            scheduler.subscribe(outcomes, JobReleased)
            await scheduler.start_in_background()
            start = time.perf_counter()
            for _ in range(n):
                await scheduler.add_job(func)
            await with_timeout(outcomes.done.wait(), TIMEOUT, what)
            elapsed = time.perf_counter() - start
        if outcomes.failed:
            raise BenchError(f"{what}: {len(outcomes.failed)} of {n} jobs failed")
        return elapsed

    return asyncio.run(main())


def add_job_async(n: int) -> float:
    """``await scheduler.add_job(noop_async)`` ``n`` times; seconds until ``n`` released."""
    return _add_jobs(n, noop_async, "async", 40, "APScheduler 4 add_job (async)")


def add_job_sync(n: int, threads: int = 40) -> float:
    """``add_job(noop_sync)`` ``n`` times on its ``ThreadPoolJobExecutor(threads)``."""
    return _add_jobs(n, noop_sync, "threadpool", threads, "APScheduler 4 add_job (sync)")


def every_second(count: int, duration: float, lead: float = 1.0) -> dict[str, float]:
    """``count`` schedules with ``IntervalTrigger(seconds=1)`` for ``duration`` s.

    Same due times as the other peers (``start_time`` = a common origin plus ``i / count``
    s). No fire is dropped or merged (``coalesce=all``, no misfire grace time), and a job
    that does not succeed fails the measurement. Lateness is the wall clock at the call
    minus the job's ``scheduled_fire_time``; CPU is ``time.process_time()`` across the
    window.
    """
    calls: list[tuple[float, float]] = []

    async def tick() -> None:
        due = current_job.get().scheduled_fire_time
        assert due is not None  # a scheduled job's
        calls.append((time.time(), due.timestamp()))

    async def main() -> float:
        origin = datetime.now(UTC) + timedelta(seconds=lead)
        end = origin.timestamp() + duration
        outcomes = _Outcomes()
        async with _scheduler() as scheduler:
            await scheduler.configure_task(_TICK, func=tick)
            scheduler.subscribe(outcomes, JobReleased)
            for i, offset in enumerate(schedule_offsets(count, 1.0)):
                trigger = IntervalTrigger(seconds=1, start_time=origin + timedelta(seconds=offset))
                await scheduler.add_schedule(
                    _TICK, trigger, id=f"every_{i}", coalesce=CoalescePolicy.all
                )
            await scheduler.start_in_background()
            settle_garbage()
            await asyncio.sleep(max(0.0, origin.timestamp() - time.time()))
            cpu0 = time.process_time()
            await asyncio.sleep(max(0.0, end - time.time()))
            cpu1 = time.process_time()
            await asyncio.sleep(0.5)  # the fires due at the window's end run
        if outcomes.failed:
            raise BenchError(f"APScheduler 4 every_second: {len(outcomes.failed)} jobs failed")
        values.extend(called - due for called, due in calls if due < end)
        return cpu1 - cpu0

    values: list[float] = []
    cpu = asyncio.run(main())
    return window_metrics("APScheduler 4", values, count, duration, cpu)


def register_many(count: int, idle_seconds: float, trace: bool = False) -> dict[str, float]:
    """``add_schedule(job, IntervalTrigger(hours=1))`` ``count`` times, then start; idle.

    The first fire is an hour away, as for the other peers (APScheduler 4's first fire is
    the trigger's ``start_time``, by default now). Same fields as
    :func:`bench.xtasks_bench.register_many`.
    """

    async def main() -> dict[str, float]:
        base = start_registering(trace)
        t0 = time.perf_counter()
        async with _scheduler() as scheduler:
            first = datetime.now(UTC) + timedelta(hours=1)
            for i in range(count):
                trigger = IntervalTrigger(hours=1, start_time=first)
                await scheduler.add_schedule(noop_async, trigger, id=f"interval_{i}")
            await scheduler.start_in_background()
            t1 = time.perf_counter()
            return await registered(count, t1 - t0, idle_seconds, trace=trace, base=base)

    return asyncio.run(main())
