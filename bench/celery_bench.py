"""Section 9: what the Celery executor adds to a run, against Celery used directly.

``python -m bench.celery_bench [--n 500] [--batch 2000] [--repeat 3]`` starts a Celery
worker (threads pool, 8 threads) on the machine's Redis (database 14, a key prefix of its
own, removed afterwards) and measures, interleaved and repeated:

- **one at a time**: the latency of one no-op task, from send to result. Direct:
  ``app.send_task(...).get()``. xtasks: ``await scheduler.run(name)`` on a memory store
  (history kept), through :class:`xtasks_celery.CeleryExecutor`.
- **a batch**: ``--batch`` no-op tasks in flight at once, runs/s until the last result.
  Direct: send them all, then ``.get()`` each. xtasks: trigger them all (overlap
  ``allow``), then wait for every run.

The worker is the same for both, so the difference is the executor's: the run record,
the dispatch to a thread for ``send_task``, and hearing the outcome on the watcher.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
BROKER = "redis://127.0.0.1:6379/14"
#: Generous: a worker starts in a few seconds.
READY_WITHIN = 60.0


def _app() -> Any:
    from bench.celery_app import app

    return app


def start_worker() -> subprocess.Popen[bytes]:
    """The worker of ``bench.celery_app``, once it answers a ping."""
    app = _app()
    hostname = f"bench-{uuid.uuid4().hex[:6]}@xtasks-bench"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "--pool=threads",
            "--concurrency=8",
            f"--hostname={hostname}",
            f"--queues={os.environ['BENCH_CELERY_QUEUE']}",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=WARNING",
        ],
        cwd=_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the Celery worker exited at start")
        if app.control.ping(destination=[hostname], timeout=0.5):
            return process
    _stop(process)
    raise RuntimeError("the Celery worker did not answer a ping")


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def direct_latency(n: int) -> list[float]:
    """Seconds per task: ``send_task(...).get()``, one after the other."""
    app = _app()
    out = []
    for i in range(n):
        began = time.perf_counter()
        assert app.send_task("bench.noop", (i,)).get(timeout=30) == i
        out.append(time.perf_counter() - began)
    return out


def direct_batch(n: int) -> float:
    """Seconds for ``n`` tasks sent at once, then each result got."""
    app = _app()
    began = time.perf_counter()
    results = [app.send_task("bench.noop", (i,)) for i in range(n)]
    for i, result in enumerate(results):
        assert result.get(timeout=60) == i
    return time.perf_counter() - began


def xtasks_latency(n: int) -> list[float]:
    """Seconds per run: ``await scheduler.run(...)``, one after the other."""
    import anyio

    out: list[float] = []

    async def main() -> None:
        async with _scheduler() as scheduler:
            for _ in range(n):
                began = time.perf_counter()
                record = await scheduler.run("noop")
                out.append(time.perf_counter() - began)
                assert record.result == 7, record

    anyio.run(main)
    return out


def xtasks_batch(n: int) -> float:
    """Seconds for ``n`` runs triggered at once, until each is final."""
    import anyio

    took = 0.0

    async def main() -> None:
        nonlocal took
        async with _scheduler() as scheduler:
            began = time.perf_counter()
            handles = [await scheduler.trigger("noop") for _ in range(n)]
            for handle in handles:
                record = await handle.wait()
                assert record.result == 7, record
            took = time.perf_counter() - began

    anyio.run(main)
    return took


def _scheduler() -> Any:
    import logging

    from xtasks import Scheduler, Task
    from xtasks_celery import CeleryExecutor

    logging.getLogger("xtasks").setLevel(logging.ERROR)
    scheduler = Scheduler(
        "memory://", plugins=False, executors=[CeleryExecutor(_app())], max_concurrency=100_000
    )
    scheduler.add(Task("noop", "bench.noop", args=(7,), executor="celery", overlap="allow"))
    return scheduler


def measure(n: int, batch: int, repeat: int) -> dict[str, Any]:
    """Medians over ``repeat`` interleaved rounds (one worker for all)."""
    prefix = f"xt-bench-{uuid.uuid4().hex[:8]}-"
    os.environ.update(
        BENCH_CELERY_URL=BROKER, BENCH_CELERY_PREFIX=prefix, BENCH_CELERY_QUEUE=f"{prefix}q"
    )
    worker = start_worker()
    samples: dict[str, list[float]] = {
        "direct_ms": [],
        "xtasks_ms": [],
        "direct_rate": [],
        "xtasks_rate": [],
    }
    try:
        direct_latency(20)  # warm the connections
        for _ in range(repeat):
            samples["direct_ms"].append(statistics.median(direct_latency(n)) * 1000)
            samples["xtasks_ms"].append(statistics.median(xtasks_latency(n)) * 1000)
            samples["direct_rate"].append(batch / direct_batch(batch))
            samples["xtasks_rate"].append(batch / xtasks_batch(batch))
    finally:
        _stop(worker)
        _clean(prefix)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    medians["overhead_ms"] = medians["xtasks_ms"] - medians["direct_ms"]
    medians["rate_ratio"] = medians["xtasks_rate"] / medians["direct_rate"]
    return {"n": n, "batch": batch, "repeat": repeat, "samples": samples, **medians}


def _clean(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(BROKER)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


def report(figures: dict[str, Any]) -> None:
    print(
        f"  one at a time ({figures['n']} runs, median latency): direct "
        f"{figures['direct_ms']:.2f} ms, xtasks {figures['xtasks_ms']:.2f} ms "
        f"(+{figures['overhead_ms']:.2f} ms per run)"
    )
    print(
        f"  batch of {figures['batch']:,}: direct {figures['direct_rate']:,.0f} runs/s, "
        f"xtasks {figures['xtasks_rate']:,.0f} runs/s ({figures['rate_ratio']:.2f}x direct)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.celery_bench", description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report(measure(args.n, args.batch, args.repeat))


if __name__ == "__main__":
    main()
