"""xtasks: ``submit`` and ``trigger`` throughput, and the lateness of a periodic task."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import anyio

from xtasks import Every, RunStatus, Scheduler, ShortIntervalWarning, Task
from xtasks.events import RunChanged

from .jobs import BenchError, Lateness, noop_async, noop_sync

if TYPE_CHECKING:
    from collections.abc import Callable

    from xtasks import RunHandle, RunRecord
    from xtasks.events import Event

__all__ = ["precision", "submit_async", "submit_sync", "trigger_async"]

#: Seconds a measurement may take before it is reported as a hang.
TIMEOUT = 120.0
_TRIGGERED = "bench_noop"


async def _wait_all(handles: list[RunHandle], what: str) -> None:
    """Wait for every handle; any run that did not succeed is a :class:`BenchError`."""
    with anyio.move_on_after(TIMEOUT) as scope:
        for handle in handles:
            record = await handle.wait()
            if record.status is not RunStatus.SUCCEEDED:
                raise BenchError(
                    f"{what}: run {record.id} ended {record.status.value}: "
                    f"{record.reason or record.error}"
                )
    if scope.cancelled_caught:
        pending = sum(handle.record is None for handle in handles)
        raise BenchError(
            f"{what}: {pending}/{len(handles)} runs not final after {TIMEOUT:g} s (deadlock?)"
        )


def _submit(n: int, func: Callable[[], Any], what: str, *, thread_slots: int = 40) -> float:
    async def main() -> float:
        async with Scheduler(
            max_concurrency=100, thread_slots=thread_slots, shutdown_grace=5.0
        ) as scheduler:
            start = time.perf_counter()
            handles = [await scheduler.submit(func) for _ in range(n)]
            await _wait_all(handles, what)
            return time.perf_counter() - start

    return anyio.run(main, backend="asyncio")


def submit_async(n: int) -> float:
    """``await scheduler.submit(noop_async)`` ``n`` times, then wait for every handle."""
    return _submit(n, noop_async, "xtasks submit (async)")


def submit_sync(n: int, threads: int = 40) -> float:
    """``await scheduler.submit(noop_sync)`` ``n`` times with ``thread_slots=threads``."""
    return _submit(n, noop_sync, "xtasks submit (sync)", thread_slots=threads)


def trigger_async(n: int) -> float:
    """``await scheduler.trigger(name)`` ``n`` times for a task with ``overlap="allow"``."""

    async def main() -> float:
        scheduler = Scheduler(max_concurrency=100, shutdown_grace=5.0)
        scheduler.add(Task(_TRIGGERED, noop_async, overlap="allow"))
        async with scheduler:
            start = time.perf_counter()
            handles = [await scheduler.trigger(_TRIGGERED) for _ in range(n)]
            await _wait_all(handles, "xtasks trigger")
            return time.perf_counter() - start

    return anyio.run(main, backend="asyncio")


def precision(interval: float, duration: float) -> Lateness:
    """Run ``Every(seconds=interval)`` for ``duration`` s; lateness = job call - due time.

    The job stamps the wall clock when it is called; the due time is the run record's
    ``scheduled_at``. Records are matched to calls by their order.
    """
    calls: list[float] = []

    async def tick() -> None:
        calls.append(time.time())

    async def main() -> Lateness:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortIntervalWarning)
            trigger = Every(seconds=interval)
        scheduler = Scheduler(shutdown_grace=5.0)
        scheduler.add(Task("bench_tick", tick, trigger=trigger))
        done: list[RunRecord] = []

        def collect(event: Event) -> None:
            if isinstance(event, RunChanged) and event.record.status.is_final:
                done.append(event.record)

        scheduler.subscribe(collect)
        async with scheduler:
            await anyio.sleep(duration)
        # Leaving waits for the run in flight, if any: every call has its final record now.
        if len(done) != len(calls) or not done:
            raise BenchError(f"xtasks precision: {len(done)} final records for {len(calls)} calls")
        due: list[float] = []
        for record in done:
            if record.status is not RunStatus.SUCCEEDED or record.scheduled_at is None:
                raise BenchError(f"xtasks precision: unexpected record {record!r}")
            due.append(record.scheduled_at.timestamp())
        due.sort()
        values = [called - at for called, at in zip(calls, due, strict=True)]
        return Lateness(values, len(done))

    return anyio.run(main, backend="asyncio")
