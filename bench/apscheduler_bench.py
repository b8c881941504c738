"""APScheduler 3.x ``AsyncIOScheduler``: run-now jobs and the lateness of an interval job."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    SchedulerEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .jobs import (
    BenchError,
    Lateness,
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

__all__ = ["add_job_async", "add_job_sync", "every_second", "precision", "register_many"]

TIMEOUT = 120.0
#: Run every job however late (the default grace of 1 s would drop jobs under load, and
#: a dropped job would never be counted), and never merge runs.
_JOB_DEFAULTS = {"misfire_grace_time": None, "coalesce": False, "max_instances": 1}


def _add_jobs(n: int, func: Callable[[], Any], what: str) -> float:
    async def main() -> float:
        scheduler = AsyncIOScheduler(job_defaults=_JOB_DEFAULTS)
        finished = asyncio.Event()
        counts = {"executed": 0, "error": 0, "missed": 0}

        def listener(event: JobExecutionEvent) -> None:
            if event.code == EVENT_JOB_EXECUTED:
                counts["executed"] += 1
            elif event.code == EVENT_JOB_ERROR:
                counts["error"] += 1
            else:
                counts["missed"] += 1
            if counts["executed"] + counts["error"] + counts["missed"] == n:
                finished.set()

        scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        scheduler.start()
        try:
            start = time.perf_counter()
            for _ in range(n):
                scheduler.add_job(func)  # no trigger: a DateTrigger for "now"
            await with_timeout(finished.wait(), TIMEOUT, what)
            elapsed = time.perf_counter() - start
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # shutdown is scheduled on the loop
        if counts["executed"] != n:
            raise BenchError(f"{what}: {counts} for {n} jobs")
        return elapsed

    return asyncio.run(main())


def add_job_async(n: int) -> float:
    """``scheduler.add_job(noop_async)`` ``n`` times; seconds until ``n`` jobs executed."""
    return _add_jobs(n, noop_async, "APScheduler add_job (async)")


def add_job_sync(n: int) -> float:
    """``add_job(noop_sync)`` ``n`` times on the default executor (the loop's thread pool)."""
    return _add_jobs(n, noop_sync, "APScheduler add_job (sync)")


def precision(interval: float, duration: float) -> Lateness:
    """An ``IntervalTrigger(seconds=interval)`` job for ``duration`` s; lateness per fire."""
    calls: list[float] = []
    due: list[float] = []

    async def tick() -> None:
        calls.append(time.time())

    def listener(event: JobExecutionEvent) -> None:
        due.append(event.scheduled_run_time.timestamp())

    async def main() -> Lateness:
        scheduler = AsyncIOScheduler(job_defaults=_JOB_DEFAULTS)
        scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        scheduler.start()
        scheduler.add_job(tick, IntervalTrigger(seconds=interval))
        await asyncio.sleep(duration)
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
        # The last call may still lack its event (it is sent once the job returns).
        if not due or len(calls) - len(due) not in (0, 1):
            raise BenchError(f"APScheduler precision: {len(due)} events for {len(calls)} calls")
        return Lateness([c - d for c, d in zip(calls, due, strict=False)], len(due))

    return asyncio.run(main())


def every_second(count: int, duration: float, lead: float = 1.0) -> dict[str, float]:
    """``count`` jobs with ``IntervalTrigger(seconds=1)`` for ``duration`` s.

    Same due times as the other peers (``start_date`` = a common origin plus ``i / count``
    s). The ``k``-th call of job ``i`` is due at its ``start_date + k`` s: no fire is ever
    dropped or merged (``misfire_grace_time=None``, ``coalesce=False``), and one that would
    be (an error, a miss, an instance still running) fails the measurement. Lateness is the
    wall clock at the call minus that due time; CPU is ``time.process_time()`` across the
    window.
    """
    calls: list[list[float]] = [[] for _ in range(count)]
    trouble: list[SchedulerEvent] = []

    async def tick(i: int) -> None:
        calls[i].append(time.time())

    async def main() -> float:
        origin = datetime.now(UTC) + timedelta(seconds=lead)
        end = origin.timestamp() + duration
        scheduler = AsyncIOScheduler(job_defaults=_JOB_DEFAULTS)
        scheduler.add_listener(
            trouble.append, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        for i, offset in enumerate(schedule_offsets(count, 1.0)):
            start = origin + timedelta(seconds=offset)
            scheduler.add_job(tick, IntervalTrigger(seconds=1, start_date=start), args=(i,))
        scheduler.start()
        try:
            settle_garbage()
            await asyncio.sleep(max(0.0, origin.timestamp() - time.time()))
            cpu0 = time.process_time()
            await asyncio.sleep(max(0.0, end - time.time()))
            cpu1 = time.process_time()
            await asyncio.sleep(0.5)  # the fires due at the window's end run
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)
        if trouble:
            raise BenchError(f"APScheduler every_second: {len(trouble)} errors/misses")
        values.extend(
            called - due
            for i, offset in enumerate(schedule_offsets(count, 1.0))
            for k, called in enumerate(calls[i])
            if (due := origin.timestamp() + offset + k) < end
        )
        return cpu1 - cpu0

    values: list[float] = []
    cpu = asyncio.run(main())
    return window_metrics("APScheduler", values, count, duration, cpu)


def register_many(count: int, idle_seconds: float, trace: bool = False) -> dict[str, float]:
    """``add_job(job, IntervalTrigger(hours=1))`` ``count`` times, then ``start()``; idle.

    Same fields as :func:`bench.xtasks_bench.register_many`.
    """

    async def main() -> dict[str, float]:
        base = start_registering(trace)
        t0 = time.perf_counter()
        scheduler = AsyncIOScheduler()
        for i in range(count):
            scheduler.add_job(noop_async, IntervalTrigger(hours=1), id=f"interval_{i}")
        scheduler.start()
        t1 = time.perf_counter()
        try:
            return await registered(count, t1 - t0, idle_seconds, trace=trace, base=base)
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)

    return asyncio.run(main())
