"""MemoryStore: the reference backend, and the model the stateful tests compare against.

Nothing survives the process. Several schedulers in one process can share one
``MemoryStore`` object and behave as replicas of each other.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, final

from .._runs import TaskRecord
from ..abc import Store

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from .._runs import RunRecord, RunStatus

__all__ = ["MemoryStore"]

#: Claims remembered per task; older ones are summarised by a floor time.
_CLAIMS_KEPT = 2048


@final
class MemoryStore(Store):
    """Keeps everything in dictionaries.

    :param max_runs_per_task: history kept per task; older records are dropped so a
        long-running process does not grow without bound.
    """

    def __init__(self, *, max_runs_per_task: int = 1000) -> None:
        self.max_runs_per_task = max_runs_per_task
        self._runs: dict[str, RunRecord] = {}
        self._order: dict[str, deque[str]] = {}
        self._claims: dict[str, set[datetime]] = {}
        self._claim_floor: dict[str, datetime] = {}  # claims at or before this were pruned
        self._tasks: dict[str, TaskRecord] = {}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        claims = self._claims.setdefault(task, set())
        floor = self._claim_floor.get(task)
        if fire_time in claims or (floor is not None and fire_time <= floor):
            return False
        claims.add(fire_time)
        if len(claims) > _CLAIMS_KEPT:
            # Keep memory bounded: forget the older half; anything that old counts as taken.
            ordered = sorted(claims)
            half = len(ordered) // 2
            self._claim_floor[task] = ordered[half - 1]
            self._claims[task] = set(ordered[half:])
        record = self._tasks.get(task) or TaskRecord()
        if record.last_fire is None or fire_time > record.last_fire:
            self._tasks[task] = TaskRecord(
                state=record.state,
                last_fire=fire_time,
                consecutive_failures=record.consecutive_failures,
                alerting=record.alerting,
            )
        return True

    async def save_run(self, record: RunRecord) -> None:
        self._save(record)

    async def save_runs(self, records: Collection[RunRecord]) -> None:
        for record in records:
            self._save(record)

    def _save(self, record: RunRecord) -> None:
        if record.id not in self._runs:
            order = self._order.get(record.task)
            if order is None:
                order = self._order[record.task] = deque()
            order.append(record.id)
            if len(order) > self.max_runs_per_task:
                self._runs.pop(order.popleft(), None)
        self._runs[record.id] = record

    async def get_run(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    async def list_runs(
        self,
        *,
        task: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        if task is not None:
            ids = list(self._order.get(task, ()))
            candidates = [self._runs[i] for i in ids if i in self._runs]
        else:
            candidates = list(self._runs.values())
        if statuses is not None:
            wanted = set(statuses)
            candidates = [r for r in candidates if r.status in wanted]
        # Stable sort over insertion order: newest scheduled first, later inserts first.
        candidates.reverse()
        candidates.sort(key=lambda r: r.scheduled_at, reverse=True)
        return candidates[offset : offset + limit]

    async def load_task(self, task: str) -> TaskRecord | None:
        return self._tasks.get(task)

    async def save_task(self, task: str, record: TaskRecord) -> None:
        old = self._tasks.get(task)
        if (
            old is not None
            and old.last_fire is not None
            and (record.last_fire is None or record.last_fire < old.last_fire)
        ):
            record = TaskRecord(
                state=record.state,
                last_fire=old.last_fire,
                consecutive_failures=record.consecutive_failures,
                alerting=record.alerting,
            )
        self._tasks[task] = record
