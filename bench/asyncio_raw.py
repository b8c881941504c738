"""The floor: what the event loop itself costs, with no scheduler in between."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import anyio.to_thread

from .jobs import BenchError, noop_async, noop_sync

__all__ = ["async_gather", "async_taskgroup", "sync_anyio_to_thread", "sync_run_in_executor"]


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
