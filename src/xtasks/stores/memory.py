"""MemoryStore: the reference backend, and the model the stateful tests compare against.

Nothing survives the process. Several schedulers in one process can share one
``MemoryStore`` object and behave as replicas of each other.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, final

from .._errors import StoreError
from .._runs import RunStatus, TaskRecord
from ..abc import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from datetime import datetime

    from .._runs import AuditRecord, RunRecord

__all__ = ["MemoryStore"]

#: Claims remembered per task; older ones are summarised by a floor time.
_CLAIMS_KEPT = 2048


@final
class MemoryStore(Store):
    """Keeps everything in dictionaries.

    :param max_runs_per_task: history kept per task; older records are dropped so a
        long-running process does not grow without bound.
    :param max_audit: audit records kept (all tasks together); the oldest are dropped
        beyond it, for the same reason. ``max_runs_per_task`` does not apply to them.
    :param lease_ttl: seconds a live record's lease lasts without renewal.
    :param clock: store time for leases, in seconds (``time.monotonic``; a test may
        pass a fake one).
    """

    def __init__(
        self,
        *,
        max_runs_per_task: int = 1000,
        max_audit: int = 100_000,
        lease_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_runs_per_task = max_runs_per_task
        self.lease_ttl = lease_ttl
        self._clock = clock  # store time: leases never compare a replica's wall clock
        self._leases: dict[str, tuple[str, float]] = {}  # run id -> (owner, expires)
        self._closed = False
        self._runs: dict[str, RunRecord] = {}
        self._order: dict[str, deque[str]] = {}
        self._claims: dict[str, set[datetime]] = {}
        self._claim_floor: dict[str, datetime] = {}  # claims at or before this were pruned
        self._tasks: dict[str, TaskRecord] = {}
        self._audit: deque[AuditRecord] = deque(maxlen=max_audit)  # in insertion order

    async def open(self) -> None:
        self._closed = False  # the data stays: reopening is a restart of the process's store

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the memory store is closed; open() it first")

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        self._check_open()
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
            self._tasks[task] = replace(record, last_fire=fire_time)
        return True

    async def save_run(self, record: RunRecord) -> bool:
        self._check_open()
        return self._save(record)

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        self._check_open()
        return [r.id for r in records if not self._save(r)]

    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        self._check_open()
        expires = self._clock() + self.lease_ttl
        lost = set()
        for run_id in run_ids:
            lease = self._leases.get(run_id)
            if lease is None or lease[0] != replica:
                lost.add(run_id)
            else:
                self._leases[run_id] = (replica, expires)
        return lost

    async def reap_lost(self) -> list[RunRecord]:
        self._check_open()
        now = self._clock()
        reaped = []
        for run_id, (owner, expires) in list(self._leases.items()):
            if expires < now:
                del self._leases[run_id]
                current = self._runs.get(run_id)
                if current is None:  # pruned from history meanwhile
                    continue
                record = current.evolve(
                    status=RunStatus.LOST,
                    reason=f"lost: its replica {owner} went silent past its lease",
                )
                self._runs[run_id] = record
                reaped.append(record)
        return reaped

    def _save(self, record: RunRecord) -> bool:
        old = self._runs.get(record.id)
        if old is not None and old.status is RunStatus.LOST:
            return False  # fenced
        if record.status.is_final:  # nothing left to do: nothing to reap
            self._leases.pop(record.id, None)
        else:  # live: queued, waiting or running, held by the replica that wrote it
            self._leases[record.id] = (record.replica, self._clock() + self.lease_ttl)
        if old is not None and old.task != record.task:
            self._order[old.task].remove(record.id)
            old = None
        if old is None:
            order = self._order.get(record.task)
            if order is None:
                order = self._order[record.task] = deque()
            order.append(record.id)
            if len(order) > self.max_runs_per_task:
                self._runs.pop(order.popleft(), None)
        self._runs[record.id] = record
        return True

    async def get_run(self, run_id: str) -> RunRecord | None:
        self._check_open()
        return self._runs.get(run_id)

    async def list_runs(
        self,
        *,
        task: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        self._check_open()
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
        self._check_open()
        return self._tasks.get(task)

    async def save_task(self, task: str, record: TaskRecord) -> None:
        self._check_open()
        old = self._tasks.get(task)
        if old is not None:
            last = old.last_fire
            if record.last_fire is not None and (last is None or record.last_fire > last):
                last = record.last_fire
            record = replace(record, last_fire=last, anchor=old.anchor or record.anchor)
        self._tasks[task] = record

    async def add_audit(self, record: AuditRecord) -> None:
        self._check_open()
        self._audit.append(record)

    async def list_audit(
        self, *, task: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AuditRecord]:
        self._check_open()
        if task is None:
            candidates = list(self._audit)
        else:
            candidates = [r for r in self._audit if r.task == task]
        # Stable sort over insertion order: newest first, later inserts first.
        candidates.reverse()
        candidates.sort(key=lambda r: r.at, reverse=True)
        return candidates[max(offset, 0) : max(offset, 0) + max(limit, 0)]
