"""The recorder: run records and task state go to the store in batches, then out as events.

Everything the planner decides to record is queued here, in order, and one task writes
it: consecutive run records in one ``save_runs`` call (the newest snapshot of each run),
a task's state with ``save_task``. Only after a write returns are its events published
and its run handles resolved, so what a subscriber hears is already stored. Records
another part already stored (runs reaped as ``lost``) go through the same queue, unwritten,
so events keep the order in which things happened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

import anyio

from ._decisions import SaveTask
from ._errors import StoreError
from ._events import RunChanged, TaskStateChanged
from ._runs import RunRecord, RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup

    from ._events import Event
    from .abc import Store

__all__ = ["Recorder"]

_log = logging.getLogger("xtasks")


@final
class _Stored:
    """A record already in the store: publish it, write nothing."""

    __slots__ = ("record",)

    def __init__(self, record: RunRecord) -> None:
        self.record = record


_Item = RunRecord | SaveTask | _Stored | anyio.Event


@final
class Recorder:
    """Writes what the planner recorded, in batches, then publishes it."""

    def __init__(self, store: Store, publish: Callable[[Event], None]) -> None:
        self._store = store
        self._publish = publish
        self._pending: list[_Item] = []
        self._wakeup = anyio.Event()
        self._stop = False
        self._done = anyio.Event()
        #: Runs whose ``running`` record was handed to the store: the runs to heartbeat.
        self.leased: set[str] = set()

    def start(self, tg: TaskGroup) -> None:
        tg.start_soon(self._loop, name="xtasks recorder")

    def record(self, record: RunRecord) -> None:
        """Queue a run snapshot; the recorder is woken at once, so the write goes out
        before any task woken after this call runs (a run's body, say)."""
        self._pending.append(record)
        self._wakeup.set()

    def save_task(self, save: SaveTask) -> None:
        """Queue a task's state."""
        self._pending.append(save)
        self._wakeup.set()

    def stored(self, record: RunRecord) -> None:
        """Queue the event of a record someone else already stored."""
        self._pending.append(_Stored(record))
        self._wakeup.set()

    async def flush(self) -> None:
        """Return once everything queued so far is in the store and published."""
        marker = anyio.Event()
        self._pending.append(marker)
        self._wakeup.set()
        await marker.wait()

    async def stop(self) -> None:
        """Write what is queued, then end the loop."""
        self._stop = True
        self._wakeup.set()
        await self._done.wait()

    async def _loop(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                while self._pending:
                    batch, self._pending = self._pending, []
                    await self._write(batch)
                if self._stop:
                    return
        finally:
            self._done.set()

    async def _write(self, batch: list[_Item]) -> None:
        """Store then publish ``batch`` in order; flush markers are set when reached."""
        group: list[RunRecord] = []
        for item in batch:
            if type(item) is RunRecord:
                group.append(item)
                continue
            await self._save_runs(group)
            group = []
            if type(item) is SaveTask:
                await self._save_task(item)
            elif type(item) is _Stored:
                self._publish(RunChanged(item.record))
            else:
                assert isinstance(item, anyio.Event)
                item.set()
        await self._save_runs(group)

    async def _save_task(self, save: SaveTask) -> None:
        try:
            await self._store.save_task(save.task, save.record)
        except StoreError:
            _log.exception("could not save the state of task %r", save.task)
        if save.state_changed:
            self._publish(TaskStateChanged(save.task, save.record.state))

    async def _save_runs(self, group: list[RunRecord]) -> None:
        """Save a group of records (the newest snapshot of each run), then publish all."""
        if not group:
            return
        latest = {record.id: record for record in group}
        leased = self.leased
        for record in latest.values():
            # Every live run is leased, queued and waiting too: a dead replica's are reaped.
            if record.status in (RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING):
                leased.add(record.id)
            else:
                leased.discard(record.id)
        try:
            refused = await self._store.save_runs(latest.values())
        except StoreError:
            _log.exception("could not record %d run(s) in the store", len(latest))
        else:
            for run_id in refused:
                _log.warning(
                    "run %s was marked lost by another replica while it ran here; "
                    "its result was not recorded",
                    run_id,
                )
        publish = self._publish
        for record in group:
            publish(RunChanged(record))
