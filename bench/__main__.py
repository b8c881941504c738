"""``python -m bench``: xtasks against raw asyncio, APScheduler 3.x and taskiq, in one run.

Sections: 1. tiny async jobs, 2. tiny sync jobs (throughput, repeated ``--repeat`` times,
interleaved, medians and ratios to the raw floor); 3. start lateness of a 0.2 s periodic
task; 4. idle cost of 100,000 hourly tasks. ``--quick`` for a ~20 s run, ``--profile`` for
a cProfile of the xtasks submit path instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import logging
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from . import apscheduler_bench, asyncio_raw, idle, taskiq_bench, xtasks_bench

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .jobs import Lateness

#: Jobs run once per peer before measuring: imports, first-use caches, thread start-up.
WARMUP_JOBS = 500


@dataclass
class Peer:
    """One row of a throughput table: ``measure(n)`` returns the seconds ``n`` jobs took."""

    name: str
    measure: Callable[[int], float]
    rates: list[float] = field(default_factory=list)
    error: str | None = None

    def run(self, n: int) -> None:
        if self.error is not None:
            return
        gc.collect()
        try:
            seconds = self.measure(n)
        except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.rates.append(n / seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def _async_peers() -> list[Peer]:
    return [
        Peer("asyncio TaskGroup (floor)", asyncio_raw.async_taskgroup),
        Peer("asyncio.gather", asyncio_raw.async_gather),
        Peer("xtasks submit", xtasks_bench.submit_async),
        Peer("xtasks trigger (overlap=allow)", xtasks_bench.trigger_async),
        Peer("APScheduler 3 add_job (run now)", apscheduler_bench.add_job_async),
        Peer("taskiq InMemoryBroker kiq", taskiq_bench.kiq_async),
    ]


def _sync_peers(threads: int) -> list[Peer]:
    loop_pool = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor size
    return [
        Peer(
            f"loop.run_in_executor, pool {threads} (floor)",
            lambda n: asyncio_raw.sync_run_in_executor(n, threads),
        ),
        Peer(
            f"anyio.to_thread, limiter {threads}",
            lambda n: asyncio_raw.sync_anyio_to_thread(n, threads),
        ),
        Peer(
            f"xtasks submit, thread_slots={threads}",
            lambda n: xtasks_bench.submit_sync(n, threads),
        ),
        Peer(
            f"APScheduler 3 add_job, default exec ({loop_pool} thr)",
            apscheduler_bench.add_job_sync,
        ),
        Peer(
            f"taskiq InMemoryBroker kiq, pool {threads}",
            lambda n: taskiq_bench.kiq_sync(n, threads),
        ),
    ]


def _throughput(title: str, peers: list[Peer], n: int, repeat: int) -> None:
    for peer in peers:
        peer.run(min(n, WARMUP_JOBS))
        peer.rates.clear()
    for _ in range(repeat):
        for peer in peers:  # interleaved, so drift of the machine hits every peer alike
            peer.run(n)
    _print_table(title, peers, n, repeat)


def _print_table(title: str, peers: list[Peer], n: int, repeat: int) -> None:
    print(f"\n== {title}: N={n:,}, {repeat} repeats, jobs/s (median, min, max) ==")
    floor = peers[0].median if peers[0].rates else None
    head = (
        f"{'peer':<46} {'median':>9} {'min':>9} {'max':>9} {'us/job':>8} {'ratio':>7} {'x time':>7}"
    )
    print(head)
    print("-" * len(head))
    for peer in peers:
        if not peer.rates:
            print(f"{peer.name:<46} FAILED: {peer.error}")
            continue
        median = peer.median
        ratio = f"{median / floor:6.3f}" if floor else "   n/a"
        slower = f"{floor / median:6.1f}x" if floor else "    n/a"
        print(
            f"{peer.name:<46} {median:>9,.0f} {min(peer.rates):>9,.0f} {max(peer.rates):>9,.0f} "
            f"{1e6 / median:>8.1f} {ratio:>7} {slower:>7}"
        )
        if peer.error:
            print(f"{'':<46} (a later repeat FAILED: {peer.error})")
    print("ratio = median jobs/s / floor's median; x time = how many times the floor's time")


def _precision(interval: float, duration: float) -> None:
    print(f"\n== 3. start lateness of a {interval:g} s periodic task over {duration:g} s ==")
    print("lateness = wall clock when the job is called - its due time")
    head = f"{'peer':<46} {'fires':>6} {'median ms':>10} {'p90 ms':>8} {'worst ms':>9}"
    print(head)
    print("-" * len(head))
    runs: list[tuple[str, Callable[[float, float], Lateness]]] = [
        (f"xtasks Every(seconds={interval:g})", xtasks_bench.precision),
        (f"APScheduler 3 IntervalTrigger({interval:g} s)", apscheduler_bench.precision),
    ]
    for name, measure in runs:
        try:
            result = measure(interval, duration)
        except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
            print(f"{name:<46} FAILED: {type(exc).__name__}: {exc}")
            continue
        print(
            f"{name:<46} {result.fires:>6} {result.median * 1e3:>10.2f} "
            f"{result.p90 * 1e3:>8.2f} {result.worst * 1e3:>9.2f}"
        )


def _idle(count: int, idle_seconds: float, add_budget: float, memory_budget: float) -> None:
    print(f"\n== 4. idle cost: {count:,} xtasks tasks with Every(hours=1) ==")
    try:
        empty = idle.idle_cost(0, idle_seconds, add_budget)
        cost = idle.idle_cost(count, idle_seconds, add_budget)
    except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
        print(f"FAILED: {type(exc).__name__}: {exc}")
        return
    if cost.truncated:
        print(
            f"!! adding all {count:,} tasks would exceed the {add_budget:g} s budget: "
            f"stopped at {cost.added:,}. The last {idle.CHUNK:,} adds took "
            f"{cost.last_chunk_add:.2f} s ({cost.last_chunk_add / idle.CHUNK * 1e3:.2f} ms "
            f"per add): the cost of add grows with the number of tasks registered. "
            f"Extrapolated time for {count:,}: ~{cost.add_extrapolated:,.0f} s."
        )
    n = cost.added
    print(f"tasks registered                  {n:>12,}")
    print(
        f"build Task objects                {cost.build:>12.3f} s  ({cost.build / n * 1e6:.1f} us/task)"
    )
    print(
        f"scheduler.add (before start)      {cost.add:>12.3f} s  ({cost.add / n * 1e6:.1f} us/task)"
    )
    print(f"async with: enter                 {cost.enter:>12.3f} s")
    print(f"async with: exit                  {cost.exit:>12.3f} s")
    print(
        f"CPU over {cost.idle_seconds:.2f} s idle              {cost.idle_cpu * 1e3:>12.2f} ms "
        f"(empty scheduler: {empty.idle_cpu * 1e3:.2f} ms; "
        f"{cost.idle_cpu / cost.idle_seconds * 100:.3f} % of a core)"
    )
    print(f"events while idle                 {cost.events:>12,}")
    try:
        memory = idle.idle_memory(n, memory_budget)
    except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
        print(f"memory: FAILED: {type(exc).__name__}: {exc}")
        return
    scope = "" if memory.added == n else f" (budget: measured on {memory.added:,} tasks)"
    print(
        f"tracemalloc after start           {memory.current / 2**20:>12.1f} MiB "
        f"({memory.per_task:,.0f} B/task; x {count:,} = "
        f"{memory.per_task * count / 2**20:,.0f} MiB){scope}"
    )
    print(f"tracemalloc peak (build+add+start){memory.peak / 2**20:>12.1f} MiB")


def _profile(n: int) -> None:
    """cProfile the xtasks submit path (submit + wait) for ``n`` async jobs."""
    xtasks_bench.submit_async(min(n, WARMUP_JOBS))
    profiler = cProfile.Profile()
    profiler.enable()
    seconds = xtasks_bench.submit_async(n)
    profiler.disable()
    print(f"\n== cProfile: xtasks submit + wait, N={n:,} ({n / seconds:,.0f} jobs/s profiled) ==")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)


def _versions() -> str:
    found = []
    for dist in ("xtasks", "anyio", "apscheduler", "taskiq"):
        try:
            found.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            found.append(f"{dist} (not installed)")
    return ", ".join(found)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=None, help="async jobs (default 20000)")
    parser.add_argument("--n-sync", type=int, default=None, help="sync jobs (default 5000)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 5)")
    parser.add_argument("--threads", type=int, default=40, help="thread pool size (40)")
    parser.add_argument("--idle-tasks", type=int, default=100_000, help="idle tasks (100000)")
    parser.add_argument("--quick", action="store_true", help="a ~20 s run with small sizes")
    parser.add_argument("--skip-precision", action="store_true", help="skip section 3")
    parser.add_argument("--skip-idle", action="store_true", help="skip section 4")
    parser.add_argument(
        "--profile", action="store_true", help="only cProfile the xtasks submit path"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (2_000 if quick else 20_000)
    args.n_sync = args.n_sync or (1_000 if quick else 5_000)
    args.repeat = args.repeat or (3 if quick else 5)
    args.precision_seconds = 1.0 if quick else 3.0
    args.idle_seconds = 1.0 if quick else 2.0
    args.add_budget = 3.0 if quick else 15.0
    args.memory_budget = 2.0 if quick else 10.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.disable(logging.CRITICAL)  # every peer logs per job at INFO/DEBUG: silence all
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    print(f"Python {platform.python_version()} ({platform.python_implementation()}) on ", end="")
    print(f"{platform.system()} {platform.machine()}, os.cpu_count() = {os.cpu_count()}")
    print(_versions())
    if args.profile:
        _profile(args.n)
        return 0
    print(
        f"async N={args.n:,}, sync N={args.n_sync:,}, repeats={args.repeat}, "
        f"max_concurrency=100, threads={args.threads}"
    )
    _throughput("1. tiny async jobs", _async_peers(), args.n, args.repeat)
    _throughput("2. tiny sync jobs", _sync_peers(args.threads), args.n_sync, args.repeat)
    if not args.skip_precision:
        _precision(0.2, args.precision_seconds)
    if not args.skip_idle:
        _idle(args.idle_tasks, args.idle_seconds, args.add_budget, args.memory_budget)
    print(f"\ntotal bench time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
