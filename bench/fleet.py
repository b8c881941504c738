"""Section 8: a fleet of replica processes on one shared store, runs/s and duplicates.

``python -m bench.fleet --store URL [--replicas 3] [--seconds 10]`` measures two
workloads on a fresh, empty store (a new SQLite file, PostgreSQL schema or Redis key
prefix, removed afterwards):

- **fires**: ``--tasks`` no-op tasks, each every second, registered on every replica: each
  fire is claimed by one replica and run there. Counted from the store: fires run per
  second over the window, fires run twice (must be 0), fires recorded missed.
- **submissions**: each replica submits no-op runs back to back (at most
  ``--in-flight`` unfinished), all with history kept in the shared store: runs/s in total.

Each replica is ``python -m bench.fleet replica ...`` in a process of its own; all start
their window at the same wall-clock instant. A single replica on the same store is the
baseline the fleet's figures are compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["fresh_store", "measure"]

_ROOT = Path(__file__).resolve().parent.parent
#: Seconds the replicas get to start before their common window opens.
START_SLACK = 4.0


async def _noop() -> None:
    pass


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _replica(args: argparse.Namespace) -> dict[str, Any]:
    """One replica: run the workload from ``--start`` for ``--seconds``, then leave."""
    import anyio

    from xtasks import Every, Scheduler, Task

    scheduler = Scheduler(args.store, plugins=False, replica_id=args.name, max_concurrency=100)
    if args.workload == "fires":
        for i in range(args.tasks):
            scheduler.add(Task(f"t{i}", _noop, trigger=Every(seconds=1), misfire_grace=0.5))
    submitted = 0
    async with scheduler:
        await anyio.sleep(max(0.0, args.start - time.time()))
        cpu = _cpu()
        end = args.start + args.seconds
        if args.workload == "submissions":
            handles: list[Any] = []
            while time.time() < end:
                handles.append(await scheduler.submit(_noop))
                submitted += 1
                if len(handles) >= args.in_flight:
                    for handle in handles:
                        await handle.wait()
                    handles.clear()
            for handle in handles:
                await handle.wait()
        else:
            await anyio.sleep(max(0.0, end - time.time()))
        cpu = _cpu() - cpu
    return {"cpu": cpu, "submitted": submitted}


def _count(store_url: str, since: datetime, until: datetime) -> dict[str, float]:
    """Read the runs back: how many of the window ran, twice, or were missed."""
    import anyio

    from xtasks import RunStatus
    from xtasks.stores import open_store

    async def read() -> list[Any]:
        store = open_store(store_url)
        await store.open()
        try:
            return await store.list_runs(limit=10**8)
        finally:
            await store.close()

    runs = [r for r in anyio.run(read) if since <= r.scheduled_at < until]
    ran = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    scheduled = Counter((r.task, r.scheduled_at) for r in ran if r.cause.value == "schedule")
    return {
        "ran": len(ran),
        "duplicates": sum(n - 1 for n in scheduled.values()),
        "missed": sum(1 for r in runs if r.status is RunStatus.MISSED),
        "replicas_used": len({r.replica for r in ran}),
    }


def measure(
    store_url: str,
    *,
    replicas: int,
    workload: str,
    seconds: float,
    tasks: int = 1000,
    in_flight: int = 200,
) -> dict[str, float]:
    """Run ``replicas`` processes on ``store_url`` for ``seconds``; return the figures."""
    start = time.time() + START_SLACK + 0.5 * replicas
    base = [sys.executable, "-m", "bench.fleet", "replica", "--store", store_url]
    base += ["--workload", workload, "--start", repr(start), "--seconds", repr(seconds)]
    base += ["--tasks", str(tasks), "--in-flight", str(in_flight)]
    procs = [
        subprocess.Popen([*base, "--name", f"r{i}"], cwd=_ROOT, stdout=subprocess.PIPE, text=True)
        for i in range(replicas)
    ]
    outputs = [proc.communicate(timeout=seconds + 120)[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"a replica failed: {[p.returncode for p in procs]}")
    stats = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    # Fires: only whole seconds inside the window (the first and last may be partial).
    since = datetime.fromtimestamp(start, UTC) + timedelta(seconds=1)
    until = datetime.fromtimestamp(start + seconds, UTC) - timedelta(seconds=1)
    window = (until - since).total_seconds()
    if workload == "submissions":
        since, until = datetime.fromtimestamp(0, UTC), datetime.now(UTC) + timedelta(days=1)
        window = seconds
    counted = _count(store_url, since, until)
    return {
        **counted,
        "rate": counted["ran"] / window,
        "cpu_per_run_us": 1e6 * sum(s["cpu"] for s in stats) / max(counted["ran"], 1),
    }


@contextmanager
def fresh_store(kind: str, server: str | None = None) -> Iterator[str]:
    """A new, empty store of ``kind`` (``sqlite``, ``postgres``, ``redis``), removed after."""
    name = f"xt_bench_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif kind == "postgres":
        import psycopg

        server = server or "postgresql://postgres@127.0.0.1:5432/test"
        try:
            yield f"{server}?schema={name}"
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    else:
        import redis

        server = server or "redis://127.0.0.1:6379/0"
        try:
            # History kept whole, as on the SQL stores (Redis keeps 1,000 runs per task
            # by default, and every submission is one task's run).
            yield f"{server}?prefix={name}&max_runs_per_task=100000000"
        finally:
            client = redis.Redis.from_url(server)
            keys = list(client.scan_iter(match=f"{{{name}}}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("role", nargs="?", default="measure", choices=["measure", "replica"])
    parser.add_argument("--store", default="postgres", help="sqlite, postgres, redis or a URL")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=1000, help="fires workload: tasks")
    parser.add_argument("--in-flight", type=int, default=200, help="submissions in flight")
    parser.add_argument("--workload", default="both", choices=["fires", "submissions", "both"])
    parser.add_argument("--name", default="r0", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.role == "replica":
        import logging
        import warnings

        import anyio

        logging.disable(logging.CRITICAL)
        warnings.simplefilter("ignore")
        print(json.dumps(anyio.run(_replica, args)))
        return 0
    workloads = ["fires", "submissions"] if args.workload == "both" else [args.workload]
    kind = args.store if "://" not in args.store else None
    for workload in workloads:
        for replicas in sorted({1, args.replicas}):
            if kind is None:
                figures = measure(
                    args.store,
                    replicas=replicas,
                    workload=workload,
                    seconds=args.seconds,
                    tasks=args.tasks,
                    in_flight=args.in_flight,
                )
            else:
                with fresh_store(kind) as url:
                    figures = measure(
                        url,
                        replicas=replicas,
                        workload=workload,
                        seconds=args.seconds,
                        tasks=args.tasks,
                        in_flight=args.in_flight,
                    )
            print(
                f"{args.store} {workload}: {replicas} replica(s): {figures['rate']:,.0f} runs/s, "
                f"{figures['duplicates']:.0f} duplicates, {figures['missed']:.0f} missed, "
                f"{figures['replicas_used']:.0f} replicas ran, "
                f"{figures['cpu_per_run_us']:,.0f} µs CPU/run (replicas' own)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
