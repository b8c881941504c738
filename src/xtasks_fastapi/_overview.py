"""What the manager page's charts draw: per task, the last 24 hours and the coming fires.

Read from the store and the triggers on request (no state kept): the page asks for it
when it opens and when its live stream reconnects.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from xtasks import RunStatus, TaskNotFoundError, TaskState

from ._schemas import HourCount, Overview, TaskOverview

if TYPE_CHECKING:
    from xtasks import RunRecord, Scheduler, TaskInfo

__all__ = ["MAX_FIRES", "MAX_HORIZON_HOURS", "MAX_RUNS_READ", "overview"]

#: Runs of one task read for its 24 hours, at most: a task firing every second has
#: 86,400; beyond this the counts are of the newest and say so (``complete`` false).
MAX_RUNS_READ = 5000
#: Runs read per store call.
_PAGE = 500
#: Coming fires listed per task, at most.
MAX_FIRES = 200
#: The farthest the coming fires may be asked for.
MAX_HORIZON_HOURS = 48

_FAILED = frozenset({RunStatus.FAILED, RunStatus.LOST})
_DAY_HOURS = 24


def _hour_floor(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def _last_day(scheduler: Scheduler, name: str, now: datetime) -> tuple[list[RunRecord], bool]:
    """The runs of ``name`` scheduled in the 24 hours before ``now``; whether that is all."""
    since = now - timedelta(hours=_DAY_HOURS)
    found: list[RunRecord] = []
    offset = 0
    while offset < MAX_RUNS_READ:
        page = await scheduler.history(name, _PAGE, offset=offset)
        for record in page:
            if record.scheduled_at < since:
                return found, True
            if record.scheduled_at <= now:
                found.append(record)
        if len(page) < _PAGE:
            return found, True
        offset += _PAGE
    return found, False


def _next_fires(info: TaskInfo, until: datetime) -> list[datetime]:
    """The fires the task's trigger plans from its next one up to ``until``."""
    trigger = info.task.trigger
    fire = info.next_fire
    if info.state is not TaskState.ACTIVE or fire is None:
        return []
    fires: list[datetime] = []
    while fire is not None and fire <= until and len(fires) < MAX_FIRES:
        fires.append(fire)
        fire = trigger.next_fire(fire) if trigger is not None else None
    return fires


async def overview(scheduler: Scheduler, horizon_hours: float) -> Overview:
    """Every task's last 24 hours (hour by hour) and its fires in the next ``horizon_hours``."""
    now = scheduler.clock.now().astimezone(UTC)
    first_hour = _hour_floor(now) - timedelta(hours=_DAY_HOURS - 1)
    until = now + timedelta(hours=horizon_hours)
    tasks: list[TaskOverview] = []
    for name in sorted(scheduler.tasks):
        try:
            info = await scheduler.describe(name)
        except TaskNotFoundError:  # removed meanwhile
            continue
        runs, complete = await _last_day(scheduler, name, now)
        counts = [[0, 0] for _ in range(_DAY_HOURS)]
        for record in runs:
            index = int((_hour_floor(record.scheduled_at) - first_hour) / timedelta(hours=1))
            if 0 <= index < _DAY_HOURS:
                counts[index][0] += 1
                counts[index][1] += record.status in _FAILED
        tasks.append(
            TaskOverview(
                name=name,
                state=info.state,
                runs_24h=len(runs),
                failed_24h=sum(record.status in _FAILED for record in runs),
                complete=complete,
                hours=[
                    HourCount(start=first_hour + timedelta(hours=i), runs=runs_, failed=failed)
                    for i, (runs_, failed) in enumerate(counts)
                ],
                next_fires=_next_fires(info, until),
            )
        )
    return Overview(now=now, horizon_hours=horizon_hours, tasks=tasks)
