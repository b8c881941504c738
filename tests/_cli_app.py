"""A scheduler for the CLI tests: one task that prints a line each time it fires."""

from __future__ import annotations

import sys
import warnings

from xtasks import Every, Scheduler, ShortIntervalWarning, Task


async def tick() -> None:
    print("tick", flush=True)


async def report_stop() -> None:
    pass


with warnings.catch_warnings():
    warnings.simplefilter("ignore", ShortIntervalWarning)
    scheduler = Scheduler()
    scheduler.add(Task("tick", tick, trigger=Every(seconds=0.2)))

not_a_scheduler = sys
