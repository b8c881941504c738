"""xtasks: ``submit``/``trigger`` throughput, lateness of periodic tasks, many schedules."""

from __future__ import annotations

import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from xtasks import Every, RunStatus, Scheduler, ShortIntervalWarning, Task
from xtasks.events import RunChanged

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
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from xtasks import RunHandle, RunRecord
    from xtasks.events import Event

__all__ = [
    "every_second",
    "precision",
    "register_many",
    "submit_async",
    "submit_sqlite",
    "submit_sync",
    "trigger_async",
]

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


def _submit(
    n: int,
    func: Callable[[], Any],
    what: str,
    *,
    thread_slots: int = 40,
    store: str = "memory://",
) -> float:
    async def main() -> float:
        async with Scheduler(
            store, max_concurrency=100, thread_slots=thread_slots, shutdown_grace=5.0
        ) as scheduler:
            start = time.perf_counter()
            handles = [await scheduler.submit(func) for _ in range(n)]
            await _wait_all(handles, what)
            return time.perf_counter() - start

    return anyio.run(main, backend="asyncio")


def submit_async(n: int) -> float:
    """``await scheduler.submit(noop_async)`` ``n`` times, then wait for every handle."""
    return _submit(n, noop_async, "xtasks submit (async)")


def submit_sqlite(n: int) -> float:
    """``submit_async`` on a fresh ``sqlite:///`` file in a temporary directory, history kept."""
    with tempfile.TemporaryDirectory(prefix="xtasks-bench-") as tmp:
        return _submit(n, noop_async, "xtasks submit (SQLite)", store=f"sqlite:///{tmp}/bench.db")


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


def every_second(count: int, duration: float, lead: float = 1.0) -> dict[str, float]:
    """``count`` tasks ``Every(seconds=1)`` for ``duration`` s: lateness and process CPU.

    Task ``i`` starts at a common origin (``lead`` s after registration begins) plus
    ``i / count`` s, so one fire is due every ``1 / count`` s. Lateness is the wall clock
    when the job is called minus its run's ``scheduled_at``, over the fires due within the
    window; CPU is ``time.process_time()`` across that window.
    """
    calls: list[list[float]] = [[] for _ in range(count)]

    async def tick(i: int) -> None:
        calls[i].append(time.time())

    async def main() -> dict[str, float]:
        origin = datetime.now(UTC) + timedelta(seconds=lead)
        end = origin.timestamp() + duration
        scheduler = Scheduler(shutdown_grace=5.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortIntervalWarning)
            for i, offset in enumerate(schedule_offsets(count, 1.0)):
                start = origin + timedelta(seconds=offset)
                trigger = Every(seconds=1, start=start)
                scheduler.add(Task(f"every_{i}", tick, trigger=trigger, kwargs={"i": i}))
        async with scheduler:
            settle_garbage()
            await anyio.sleep(max(0.0, origin.timestamp() - time.time()))
            cpu0 = time.process_time()
            await anyio.sleep(max(0.0, end - time.time()))
            cpu1 = time.process_time()
            await anyio.sleep(0.5)  # the fires due at the window's end run
            values: list[float] = []
            for i in range(count):
                # Fires go on meanwhile: only those due in the window are final for sure.
                runs = await scheduler.history(f"every_{i}", limit=10 * int(duration + 10))
                window = [r for r in runs if r.scheduled_at.timestamp() < end]
                due = sorted(r.scheduled_at.timestamp() for r in window)
                bad = [r for r in window if r.status is not RunStatus.SUCCEEDED]
                if bad or len(calls[i]) < len(due):
                    raise BenchError(f"xtasks every_second: every_{i}: {bad or window}")
                values += [c - d for c, d in zip(calls[i], due, strict=False)]
        return window_metrics("xtasks", values, count, duration, cpu1 - cpu0)

    return anyio.run(main, backend="asyncio")


def register_many(count: int, idle_seconds: float, trace: bool = False) -> dict[str, float]:
    """Build ``count`` ``Task(..., trigger=Every(hours=1))``, add them, start; then idle.

    ``seconds``: from the first ``Task`` built to ``async with`` entered. With ``trace``,
    ``bytes``: tracemalloc's live bytes once started, per schedule (the timing is then
    tracemalloc's, so it is measured in a separate run).
    """

    async def main() -> dict[str, float]:
        base = start_registering(trace)
        t0 = time.perf_counter()
        scheduler = Scheduler(shutdown_grace=5.0)
        for i in range(count):
            scheduler.add(Task(f"interval_{i}", noop_async, trigger=Every(hours=1)))
        with anyio.fail_after(TIMEOUT):
            async with scheduler:
                t1 = time.perf_counter()
                return await registered(count, t1 - t0, idle_seconds, trace=trace, base=base)

    return anyio.run(main, backend="asyncio")
