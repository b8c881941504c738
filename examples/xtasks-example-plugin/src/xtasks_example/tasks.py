"""The plugin's tasks, declared both ways xtasks understands.

- ``PLUGIN_TASKS``: the seed format, a list of plain dicts (no xtasks import needed).
- ``@xtasks.hookimpl def xtasks_add_tasks(register)``: hook style, with full ``xtasks.Task``s.

``config.yaml`` beside this file overrides some of these values, and the application's own
file (``Scheduler(config=...)``, ``xtasks --config``, ``XTASKS_CONFIG``) wins over both.
"""

from __future__ import annotations

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
