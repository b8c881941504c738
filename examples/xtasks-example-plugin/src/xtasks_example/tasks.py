"""The plugin's tasks, declared both ways xtasks understands.

- ``PLUGIN_TASKS``: the seed format, a list of plain dicts (no xtasks import needed).
- ``@xtasks.hookimpl def xtasks_add_tasks(register)``: hook style, with full ``xtasks.Task``s.

``config.yaml`` beside this file overrides some of these values, and the application's own
file (``Scheduler(config=...)``, ``xtasks --config``, ``XTASKS_CONFIG``) wins over both.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import xtasks

if TYPE_CHECKING:
    from xtasks.hookspecs import RegisterTask


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


async def cleanup() -> int:
    """Async: runs on the event loop."""
    print(f"[xtasks-example] {_now()} example_cleanup: removed 3 stale entries", flush=True)
    return 3


def stats() -> dict[str, int]:
    """Sync: runs in the scheduler's thread pool, so blocking here is fine."""
    time.sleep(0.1)
    print(f"[xtasks-example] {_now()} example_stats: 42 orders", flush=True)
    return {"orders": 42}


async def report() -> str:
    """Runs only after a fresh successful run of ``example_stats`` (``depends_on``)."""
    print(f"[xtasks-example] {_now()} example_report: report written", flush=True)
    return "report.txt"


async def sync_partners() -> int:
    """Fails about one run in three, as a flaky upstream does: shows retries and alerts."""
    if random.random() < 0.35:
        raise ConnectionError("partner API timed out after 10 s (demo failure)")
    print(f"[xtasks-example] {_now()} example_sync_partners: 12 partners synced", flush=True)
    return 12


async def backup() -> str:
    """On demand and slow: run it from the manager and watch it go from running to done."""
    import anyio

    await anyio.sleep(5)
    print(f"[xtasks-example] {_now()} example_backup: backup written", flush=True)
    return "backup-1.tar.gz"


# The seed format: loads unchanged. config.yaml brings example_cleanup down to 10 s.
PLUGIN_TASKS = [
    {
        "name": "example_cleanup",
        "function": cleanup,
        "interval_seconds": 30,
        "async": True,
        "priority": "low",
        "max_retries": 1,
    },
    {
        "name": "example_stats",
        "function": stats,
        "cron": "* * * * *",  # every minute
        "async": False,
        "priority": "high",
        "retry_delay_seconds": 5,
        "timeout_seconds": 30,
    },
]


@xtasks.hookimpl
def xtasks_add_tasks(register: RegisterTask) -> None:
    """Hook style: any ``xtasks.Task`` (or a seed-format dict)."""
    register(
        xtasks.Task(
            "example_report",
            report,
            trigger=xtasks.Every(seconds=30),
            depends_on=["example_stats"],
            description="writes a report from fresh stats",
        )
    )
    register(
        xtasks.Task(
            "example_sync_partners",
            sync_partners,
            trigger=xtasks.Every(seconds=20),
            max_retries=1,
            retry_delay=2,
            alert_after=2,
            description="flaky on purpose: fails about one run in three",
        )
    )
    register(
        xtasks.Task(
            "example_backup",
            backup,
            priority="low",
            timeout=60,
            description="on demand: press Run in the manager",
        )
    )
