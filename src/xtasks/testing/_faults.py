"""A store that fails on demand, around any backend: what a scheduler does when its store
fails is tested the same way on every backend."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, final

import anyio

from .._errors import StoreError
from ..abc import Store
from ._delegating import DelegatingStore

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from datetime import datetime

    from .._runs import AuditRecord, RunRecord, RunStatus, TaskRecord

__all__ = ["FaultyStore"]


@final
class FaultyStore(DelegatingStore[Store]):
    """Wraps ``inner``; every write can be made to fail or to hang, reads pass through.

    Writes are ``claim_fire``, ``save_run(s)``, ``save_task(s)``, ``change_task_state``,
    ``renew_leases``, ``reap_lost`` and ``add_audit``. A failed write raises :class:`xtasks.StoreError` and
    changes nothing in ``inner``. :attr:`committed` lists the ``(run id, status)`` of
    every run snapshot that ``inner`` took, in order: a test can check that nothing was
    reported before it was stored.

    ::

        store = FaultyStore(MemoryStore())
        store.fail_writes(seconds=2.0)      # or count=3, or hang_writes()
        ...
        store.heal()
    """

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        #: ``(run id, status)`` of each run snapshot stored, in order.
        self.committed: list[tuple[str, RunStatus]] = []
        #: Writes refused so far.
        self.failed_writes = 0
        self._fail_count = 0
        self._fail_until = -math.inf
        self._message = "injected store failure"
        self._healed: anyio.Event | None = None  # made in the event loop, when needed
        self._hanging = False

    def fail_writes(
        self,
        count: int | None = None,
        *,
        seconds: float | None = None,
        message: str = "injected store failure",
    ) -> None:
        """Fail the next ``count`` writes, or every write for ``seconds`` (of ``time.monotonic``), or
        every write until :meth:`heal` when neither is given."""
        self._message = message
        if count is not None:
            self._fail_count = count
        elif seconds is not None:
            self._fail_until = time.monotonic() + seconds
        else:
            self._fail_until = math.inf

    def hang_writes(self) -> None:
        """Make every write wait until :meth:`heal` (a store that stopped answering)."""
        self._hanging = True
        self._healed = None

    def heal(self) -> None:
        """Writes work again; hanging ones go through."""
        self._fail_count = 0
        self._fail_until = -math.inf
        self._hanging = False
        if self._healed is not None:
            self._healed.set()

    @property
    def failing(self) -> bool:
        return self._fail_count > 0 or time.monotonic() < self._fail_until

    async def _write(self) -> None:
        if self._hanging:
            if self._healed is None:
                self._healed = anyio.Event()
            await self._healed.wait()
        if self._fail_count > 0:
            self._fail_count -= 1
        elif time.monotonic() >= self._fail_until:
            return
        self.failed_writes += 1
        raise StoreError(self._message)

    # --- writes -------------------------------------------------------------------------

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        await self._write()
        return await self.inner.claim_fire(task, fire_time, replica)

    async def save_run(self, record: RunRecord) -> bool:
        return not await self.save_runs([record])

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        await self._write()
        refused = await self.inner.save_runs(records)
        self.committed.extend((r.id, r.status) for r in records if r.id not in refused)
        return refused

    async def save_task(self, task: str, record: TaskRecord) -> None:
        await self._write()
        await self.inner.save_task(task, record)

    async def save_tasks(self, records: Mapping[str, TaskRecord]) -> None:
        await self._write()
        await self.inner.save_tasks(records)

    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        await self._write()
        return await self.inner.change_task_state(task, record)

    async def renew_leases(self, replica: str, run_ids: Collection[str]) -> set[str]:
        await self._write()
        return await self.inner.renew_leases(replica, run_ids)

    async def reap_lost(self) -> list[RunRecord]:
        await self._write()
        return await self.inner.reap_lost()

    async def add_audit(self, record: AuditRecord) -> None:
        await self._write()
        await self.inner.add_audit(record)

    # --- reads: passed through (the rest come from DelegatingStore) -------------------

    async def load_tasks(self, tasks: Collection[str]) -> dict[str, TaskRecord]:
        return await self.inner.load_tasks(tasks)
