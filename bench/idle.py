"""Idle cost: many ``Every(hours=1)`` tasks registered, nothing due, inside ``async with``.

Registration is timed in chunks under a budget: if adding every task would take longer
than ``add_budget`` seconds, the measurement goes on with the tasks added so far and says
so (and how long all of them would take, extrapolated), instead of running for an hour.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass

import anyio

from xtasks import Every, Scheduler, Task

from .jobs import BenchError

__all__ = ["IdleCost", "IdleMemory", "idle_cost", "idle_memory"]

CHUNK = 1000
TIMEOUT = 120.0


async def idle_job() -> None:
    """Never called: the tasks are due in an hour."""


def _tasks(first: int, count: int) -> list[Task]:
    trigger = Every(hours=1)
    return [Task(f"idle_{i}", idle_job, trigger=trigger) for i in range(first, first + count)]


@dataclass(frozen=True, slots=True)
class IdleCost:
    """Seconds (wall, or CPU where named) for each phase, for ``added`` idle tasks."""

    requested: int
    added: int
    """Tasks registered: ``requested``, unless registration ran out of budget."""
    build: float
    """Constructing the ``Task`` objects (validation included)."""
    add: float
    """``scheduler.add(task)`` for each, before start."""
    last_chunk_add: float
    """Seconds the last chunk of :data:`CHUNK` adds took (per-add cost at that size)."""
    enter: float
    """``async with scheduler`` entry: validation, loading task state, arming timers."""
    idle_seconds: float
    idle_cpu: float
    """``time.process_time()`` consumed by the whole process over ``idle_seconds``."""
    exit: float
    events: int
    """Events published while idling (0 expected: nothing is due)."""

    @property
    def truncated(self) -> bool:
        return self.added < self.requested

    @property
    def add_extrapolated(self) -> float:
        """Seconds to add ``requested`` tasks, if adding one costs in proportion to the
        number already registered (what the chunk timings show when truncated)."""
        if not self.truncated or self.added == 0:
            return self.add
        return self.add * (self.requested / self.added) ** 2


@dataclass(frozen=True, slots=True)
class IdleMemory:
    requested: int
    added: int
    """Tasks registered under tracemalloc (fewer than requested if out of budget)."""
    current: int
    """Bytes traced (tracemalloc) after start, relative to before building the tasks."""
    peak: int
    """Peak bytes traced while building, adding and starting, relative to the same."""

    @property
    def per_task(self) -> float:
        return self.current / self.added if self.added else 0.0


def idle_cost(count: int, idle_seconds: float, add_budget: float) -> IdleCost:
    """Register up to ``count`` hourly tasks, start, idle ``idle_seconds``, stop."""

    async def main() -> IdleCost:
        gc.collect()
        scheduler = Scheduler(shutdown_grace=5.0)
        build = add = last_chunk = 0.0
        added = 0
        # Stop before a chunk that would overrun: the next costs at least the last.
        while added < count and add + last_chunk <= add_budget:
            size = min(CHUNK, count - added)
            t0 = time.perf_counter()
            tasks = _tasks(added, size)
            t1 = time.perf_counter()
            for task in tasks:
                scheduler.add(task)
            t2 = time.perf_counter()
            build += t1 - t0
            last_chunk = t2 - t1
            add += last_chunk
            added += size
        events = 0

        def count_events(event: object) -> None:
            nonlocal events
            events += 1

        scheduler.subscribe(count_events)
        t3 = time.perf_counter()
        with anyio.fail_after(TIMEOUT):
            async with scheduler:
                t4 = time.perf_counter()
                await anyio.sleep(0.05)  # let the loops settle before measuring
                events = 0
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await anyio.sleep(idle_seconds)
                cpu1, wall1 = time.process_time(), time.perf_counter()
                idle_events = events
                t5 = time.perf_counter()
            t6 = time.perf_counter()
        if len(scheduler.tasks) != added:
            raise BenchError(f"idle: {len(scheduler.tasks)} tasks registered, expected {added}")
        return IdleCost(
            requested=count,
            added=added,
            build=build,
            add=add,
            last_chunk_add=last_chunk,
            enter=t4 - t3,
            idle_seconds=wall1 - wall0,
            idle_cpu=cpu1 - cpu0,
            exit=t6 - t5,
            events=idle_events,
        )

    return anyio.run(main, backend="asyncio")


def idle_memory(count: int, add_budget: float) -> IdleMemory:
    """tracemalloc while building, adding and starting up to ``count`` hourly tasks.

    tracemalloc slows allocation-heavy code a lot, so this pass has its own budget.
    """

    async def main() -> IdleMemory:
        gc.collect()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            scheduler = Scheduler(shutdown_grace=5.0)
            added = 0
            deadline = time.perf_counter() + add_budget
            while added < count and time.perf_counter() < deadline:
                size = min(CHUNK, count - added)
                for task in _tasks(added, size):
                    scheduler.add(task)
                added += size
            with anyio.fail_after(TIMEOUT):
                async with scheduler:
                    await anyio.sleep(0.05)
                    current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return IdleMemory(requested=count, added=added, current=current - base, peak=peak - base)

    return anyio.run(main, backend="asyncio")
