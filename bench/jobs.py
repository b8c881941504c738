"""The tiny jobs every peer runs: the same functions everywhere, so only the machinery differs."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = [
    "BenchError",
    "Lateness",
    "noop_async",
    "noop_sync",
    "percentile",
    "registered",
    "schedule_offsets",
    "settle_garbage",
    "start_registering",
    "window_metrics",
    "with_timeout",
]

T = TypeVar("T")


class BenchError(RuntimeError):
    """A peer did not do what it was asked (lost jobs, failures, a timeout)."""


def settle_garbage() -> None:
    """Collect what registration and start-up left behind, before a measured window:
    otherwise a full collection of it (20 ms with 1,000 schedules) lands in the window
    or not depending on how much each peer allocated, and the worst lateness measures
    that luck. Every peer calls it at the same point."""
    gc.collect()


async def noop_async() -> None:
    """An async job that does nothing meaningful (it never yields)."""


def noop_sync() -> None:
    """A sync job that does nothing meaningful."""


async def with_timeout(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    """Await under an asyncio timeout; a hang becomes a :class:`BenchError`."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise BenchError(f"{what}: no completion within {seconds:g} s (deadlock?)") from None


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def schedule_offsets(count: int, period: float) -> list[float]:
    """Offsets spreading ``count`` schedules evenly over one ``period``, in seconds.

    Every peer uses the same due times (a fixed origin plus these offsets), so the load is
    one fire every ``period / count`` s whatever each peer's registration speed.
    """
    return [i * period / count for i in range(count)]


def window_metrics(
    what: str, values: list[float], count: int, duration: float, cpu: float
) -> dict[str, float]:
    """Lateness quantiles of the fires due in a window, and the CPU spent across it.

    Fewer fires than ``count`` schedules times ``duration`` seconds means fires were lost:
    a :class:`BenchError`, not a figure.
    """
    expected = count * round(duration)
    if len(values) < expected:
        raise BenchError(f"{what}: {len(values)} fires in the window, expected {expected}")
    return {
        "fires": len(values),
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "worst": max(values),
        "cpu": cpu,
    }


def start_registering(trace: bool) -> int:
    """Before registering schedules: collect, start tracemalloc when ``trace``; return the
    live bytes to count from (0 without ``trace``)."""
    gc.collect()
    if not trace:
        return 0
    tracemalloc.start()
    return tracemalloc.get_traced_memory()[0]


async def registered(
    count: int, seconds: float, idle_seconds: float, *, trace: bool, base: int
) -> dict[str, float]:
    """After ``count`` schedules were registered in ``seconds``: with ``trace``, the live
    bytes per schedule; else the time and the CPU spent per idle second (the same fields
    for every peer's ``register_many``)."""
    if trace:
        traced = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        return {"bytes": traced / count}
    await asyncio.sleep(0.05)  # let the loops settle before measuring
    cpu0 = time.process_time()
    await asyncio.sleep(idle_seconds)
    cpu1 = time.process_time()
    return {"seconds": seconds, "idle_cpu": (cpu1 - cpu0) / idle_seconds}


class Lateness:
    """Start lateness of a periodic task's fires, in seconds (start minus due time)."""

    __slots__ = ("fires", "values")

    def __init__(self, values: list[float], fires: int) -> None:
        self.values = values
        self.fires = fires

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def worst(self) -> float:
        return max(self.values)

    @property
    def p90(self) -> float:
        return percentile(self.values, 0.9)

    def metrics(self) -> dict[str, float]:
        """Seconds: median, p90, p99, worst; and the number of fires."""
        return {
            "fires": self.fires,
            "median": self.median,
            "p90": self.p90,
            "p99": percentile(self.values, 0.99),
            "worst": self.worst,
        }
