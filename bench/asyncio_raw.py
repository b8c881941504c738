"""The floor: what the event loop itself costs, with no scheduler in between."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import anyio.to_thread

from .jobs import (
    BenchError,
    noop_async,
    noop_sync,
    registered,
    schedule_offsets,
    settle_garbage,
    start_registering,
    window_metrics,
)

__all__ = [
    "async_gather",
    "async_taskgroup",
    "call_at_every_second",
    "call_at_register_many",
    "sync_anyio_to_thread",
    "sync_run_in_executor",
]


def async_gather(n: int) -> float:
    """``asyncio.gather`` of ``n`` coroutines; seconds from first creation to last result."""

    async def main() -> float:
        start = time.perf_counter()
        results = await asyncio.gather(*(noop_async() for _ in range(n)))
        elapsed = time.perf_counter() - start
        if len(results) != n:
            raise BenchError(f"gather returned {len(results)} results, expected {n}")
        return elapsed

    return asyncio.run(main())


def async_taskgroup(n: int) -> float:
    """An ``asyncio.TaskGroup`` creating ``n`` tasks; seconds until the group exits."""

    async def main() -> float:
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(noop_async())
        return time.perf_counter() - start

    return asyncio.run(main())


def sync_run_in_executor(n: int, threads: int = 40) -> float:
    """``loop.run_in_executor`` on a ``ThreadPoolExecutor(threads)``, ``n`` calls gathered."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            results = await asyncio.gather(
                *(loop.run_in_executor(pool, noop_sync) for _ in range(n))
            )
            elapsed = time.perf_counter() - start
        if len(results) != n:
            raise BenchError(f"run_in_executor returned {len(results)} results, expected {n}")
        return elapsed

    return asyncio.run(main())


def sync_anyio_to_thread(n: int, threads: int = 40) -> float:
    """``anyio.to_thread.run_sync`` with a ``CapacityLimiter(threads)``, ``n`` calls."""

    async def main() -> float:
        limiter = anyio.CapacityLimiter(threads)
        done = 0

        async def one() -> None:
            nonlocal done
            await anyio.to_thread.run_sync(noop_sync, limiter=limiter)
            done += 1

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        elapsed = time.perf_counter() - start
        if done != n:
            raise BenchError(f"anyio.to_thread ran {done} calls, expected {n}")
        return elapsed

    return anyio.run(main, backend="asyncio")


def call_at_every_second(count: int, duration: float, lead: float = 1.0) -> dict[str, float]:
    """The limit for ``count`` schedules every 1 s: callbacks re-armed with ``loop.call_at``.

    Same due times as the schedulers' (a common origin ``lead`` s ahead plus ``i / count``
    s); lateness is ``loop.time()`` in the callback minus its due time, over the fires due
    within ``duration`` s; CPU is ``time.process_time()`` across that window.
    """
    values: list[float] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        origin = loop.time() + lead
        end = origin + duration

        def fire(due: float) -> None:
            now = loop.time()
            if due < end:
                values.append(now - due)
            loop.call_at(due + 1.0, fire, due + 1.0)

        for offset in schedule_offsets(count, 1.0):
            loop.call_at(origin + offset, fire, origin + offset)
        settle_garbage()
        await asyncio.sleep(origin - loop.time())
        cpu0 = time.process_time()
        await asyncio.sleep(end - loop.time())
        cpu1 = time.process_time()
        await asyncio.sleep(0.5)  # the fires due at the window's end run
        return cpu1 - cpu0

    cpu = asyncio.run(main())
    return window_metrics("call_at", values, count, duration, cpu)


def call_at_register_many(count: int, idle_seconds: float, trace: bool = False) -> dict[str, float]:
    """The limit for ``count`` hourly schedules: one self-re-arming ``loop.call_at`` each.

    Same fields as :func:`bench.xtasks_bench.register_many`.
    """

    async def main() -> dict[str, float]:
        base = start_registering(trace)
        loop = asyncio.get_running_loop()

        def fire(due: float) -> None:
            loop.call_at(due + 3600.0, fire, due + 3600.0)

        t0 = time.perf_counter()
        now = loop.time()
        for _ in range(count):
            loop.call_at(now + 3600.0, fire, now + 3600.0)
        t1 = time.perf_counter()
        return await registered(count, t1 - t0, idle_seconds, trace=trace, base=base)

    return asyncio.run(main())
