"""The single-item calls of a backend built on batches: each is a batch of one.

SQLite, PostgreSQL and Redis each write one transaction, statement or script per batch
(claims, run records, task records). :class:`~xtasks.abc.Store`'s defaults go the other
way (a batch is a loop of single calls), so such a backend writes only the batch calls
and takes the single ones from here.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from .._errors import StoreError
from ..abc import Store

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence
    from datetime import datetime

    from .._runs import RunRecord, TaskRecord

__all__ = ["BatchFirstStore"]


class BatchFirstStore(Store):
    """A :class:`~xtasks.abc.Store` whose single calls are its batch calls on one item.

    Claims are one atomic :meth:`_claim` of the batch: either every fire got its answer,
    or none was claimed.
    """

    @abstractmethod
    async def _claim(self, fires: Sequence[tuple[str, datetime]], replica: str) -> list[bool]:
        """Claim ``fires`` in one atomic step; whether each was won, in order.

        :raises StoreError: on backend failure: then none of them was claimed.
        """

    @abstractmethod
    def _check_open(self) -> object:
        """Raise :class:`StoreError` when the store is not open."""

    @abstractmethod
    async def save_runs(self, records: Collection[RunRecord]) -> list[str]: ...

    @abstractmethod
    async def load_tasks(self, tasks: Collection[str]) -> dict[str, TaskRecord]: ...

    @abstractmethod
    async def save_tasks(self, records: Mapping[str, TaskRecord]) -> None: ...

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        [won] = await self._claim([(task, fire_time)], replica)
        return won

    async def claim_fires(
        self, fires: Sequence[tuple[str, datetime]], replica: str
    ) -> list[bool | StoreError]:
        if not fires:
            self._check_open()
            return []
        try:
            return list(await self._claim(fires, replica))
        except StoreError as exc:  # one atomic step: none of them was claimed
            return [exc] * len(fires)

    async def save_run(self, record: RunRecord) -> bool:
        return not await self.save_runs([record])

    async def load_task(self, task: str) -> TaskRecord | None:
        return (await self.load_tasks([task])).get(task)

    async def save_task(self, task: str, record: TaskRecord) -> None:
        await self.save_tasks({task: record})
