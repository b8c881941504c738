"""The peer of section 8: APScheduler 3 in several processes on one shared job store.

``python -m bench.apscheduler_fleet [--store postgresql://...] [--replicas 3]`` starts that
many processes, each an ``AsyncIOScheduler`` on one ``SQLAlchemyJobStore`` in PostgreSQL
with the same job (``replace_existing=True``), every ``--interval`` seconds for
``--seconds``. Each process counts the executions it ran; the total is compared with the
fires the window holds. APScheduler 3 has no claim per fire: every process that finds the
job due runs it, so the fleet runs most fires more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["measure"]

_ROOT = Path(__file__).resolve().parent.parent
_ran = 0


def _tick() -> None:
    global _ran
    _ran += 1


async def _replica(args: argparse.Namespace) -> int:
    """One process: the shared job, from ``--start`` for ``--seconds``; how many times it ran."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    store = SQLAlchemyJobStore(url=args.store, tableschema=args.schema)
    scheduler = AsyncIOScheduler(jobstores={"default": store})
    await asyncio.sleep(max(0.0, args.start - time.time()))
    scheduler.add_job(_tick, "interval", seconds=args.interval, id="tick", replace_existing=True)
    scheduler.start()
    await asyncio.sleep(args.seconds)
    scheduler.shutdown(wait=False)
    return _ran


def measure(
    server: str, *, replicas: int = 3, interval: float = 0.5, seconds: float = 5.0
) -> dict[str, float]:
    """Run the fleet on a new schema of the PostgreSQL at ``server`` (a ``postgresql://``
    URL), dropped afterwards; the executions in all and the fires the window held."""
    import uuid

    import psycopg

    schema = f"aps_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = server.replace("postgresql://", "postgresql+psycopg://", 1)
        _create_table(url, schema)  # at once, the processes race to create it and fail
        start = time.time() + 3.0
        base = [sys.executable, "-m", "bench.apscheduler_fleet", "replica", "--store", url]
        base += ["--schema", schema, "--start", repr(start), "--seconds", repr(seconds)]
        base += ["--interval", repr(interval)]
        procs = [
            subprocess.Popen(
                [*base, "--name", f"r{i}"], cwd=_ROOT, stdout=subprocess.PIPE, text=True
            )
            for i in range(replicas)
        ]
        outputs = [proc.communicate(timeout=seconds + 60)[0] for proc in procs]
        if any(proc.returncode for proc in procs):
            raise RuntimeError(f"a replica failed: {[p.returncode for p in procs]}")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    executions = sum(json.loads(out.strip().splitlines()[-1]) for out in outputs)
    fires = seconds / interval
    return {"executions": executions, "fires": fires, "duplicates": max(executions - fires, 0)}


def _create_table(url: str, schema: str) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    store = SQLAlchemyJobStore(url=url, tableschema=schema)
    store.start(None, "default")  # no scheduler needed to create it
    store.shutdown()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.apscheduler_fleet", description=__doc__)
    parser.add_argument("role", nargs="?", default="measure", choices=["measure", "replica"])
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="public", help=argparse.SUPPRESS)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--name", default="r0", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    args = _parse(argv)
    if args.role == "replica":
        print(json.dumps(asyncio.run(_replica(args))))
        return 0
    figures: dict[str, Any] = measure(
        args.store, replicas=args.replicas, interval=args.interval, seconds=args.seconds
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
