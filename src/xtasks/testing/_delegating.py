"""A store that forwards every call to another: the base of stores that watch, spoil or
fail some calls (:class:`~xtasks.testing.FaultyStore`, and broken stores in tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from ..abc import Store

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from .._feed import RunChanges, RunTotals
    from .._runs import AuditRecord, RunRecord, RunStatus, TaskRecord, TaskState

__all__ = ["DelegatingStore"]

S = TypeVar("S", bound=Store)


class DelegatingStore(Store, Generic[S]):
    """``inner`` behind every call; subclasses override the calls they are about.

    The batch calls ``load_tasks``/``save_tasks`` keep :class:`Store`'s defaults, which go
    through ``load_task``/``save_task``: an override of those covers both.
    """

    def __init__(self, inner: S) -> None:
        self.inner = inner
        self.lease_ttl = inner.lease_ttl

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        return await self.inner.claim_fire(task, fire_time, replica)

    async def save_run(self, record: RunRecord) -> bool:
        return await self.inner.save_run(record)

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        return await self.inner.save_runs(records)

    async def run_changes(self, after: int, limit: int = 1000) -> RunChanges:
        return await self.inner.run_changes(after, limit)

    async def run_totals(self) -> list[RunTotals]:
        return await self.inner.run_totals()

    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        return await self.inner.renew_leases(replica, run_ids)

    async def reap_lost(self) -> list[RunRecord]:
        return await self.inner.reap_lost()

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self.inner.get_run(run_id)

    async def list_runs(
        self,
        *,
        task: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        return await self.inner.list_runs(task=task, statuses=statuses, limit=limit, offset=offset)

    async def load_task(self, task: str) -> TaskRecord | None:
        return await self.inner.load_task(task)

    async def save_task(self, task: str, record: TaskRecord) -> None:
        await self.inner.save_task(task, record)

    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        return await self.inner.change_task_state(task, record)

    async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
        return await self.inner.task_state_changes(after)

    async def wait_for_changes(self, after: int, at_most: float) -> None:
        await self.inner.wait_for_changes(after, at_most)

    async def add_audit(self, record: AuditRecord) -> None:
        await self.inner.add_audit(record)

    async def list_audit(
        self, *, task: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AuditRecord]:
        return await self.inner.list_audit(task=task, limit=limit, offset=offset)
