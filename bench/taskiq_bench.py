"""taskiq with its ``InMemoryBroker``: ``kiq`` then wait for every result."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from taskiq import InMemoryBroker

from .jobs import BenchError, noop_async, noop_sync, with_timeout

if TYPE_CHECKING:
    from collections.abc import Callable

    from taskiq import AsyncTaskiqTask

__all__ = ["kiq_async", "kiq_sync"]

TIMEOUT = 120.0
#: How often ``wait_result`` polls the result backend (its default, 0.2 s, would add up to
#: 0.2 s of pure waiting to each measurement).
CHECK_INTERVAL = 0.001


def _kiq(n: int, func: Callable[[], Any], what: str, *, threads: int = 4) -> float:
    async def main() -> float:
        # Keep every result (the default keeps the last 100: older waits would never end).
        broker = InMemoryBroker(
            max_stored_results=-1, max_async_tasks=100, sync_tasks_pool_size=threads
        )
        task = broker.task(func)
        await broker.startup()
        try:
            start = time.perf_counter()
            sent: list[AsyncTaskiqTask[Any]] = [await task.kiq() for _ in range(n)]

            async def collect() -> int:
                failed = 0
                for item in sent:
                    result = await item.wait_result(check_interval=CHECK_INTERVAL)
                    failed += result.is_err
                return failed

            failed = await with_timeout(collect(), TIMEOUT, what)
            elapsed = time.perf_counter() - start
        finally:
            await broker.shutdown()
        if failed:
            raise BenchError(f"{what}: {failed}/{n} tasks failed")
        return elapsed

    return asyncio.run(main())


def kiq_async(n: int) -> float:
    """``await task.kiq()`` ``n`` times for an async task, then ``wait_result`` for each."""
    return _kiq(n, noop_async, "taskiq kiq (async)")


def kiq_sync(n: int, threads: int = 40) -> float:
    """The same for a sync task, on the broker's thread pool of ``threads``."""
    return _kiq(n, noop_sync, "taskiq kiq (sync)", threads=threads)
