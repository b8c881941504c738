"""The recorder: run records and task state go to the store in batches, then out as events.

Everything the planner decides to record is queued here, in order, and one task writes
it: consecutive run records in one ``save_runs`` call (the newest snapshot of each run),
a task's state with ``save_task``. Only after a write returns are its events published
and its run handles resolved, so what a subscriber hears is already stored. Records
another part already stored (runs reaped as ``lost``) go through the same queue, unwritten,
so events keep the order in which things happened.

A write that fails is never dropped: what could not be written stays at the head of the
queue, in order, and is tried again with a growing pause (up to :data:`MAX_BACKOFF`) until
the store takes it. One warning says when writes start failing and one when they work
again, whatever the number of records in between; :class:`StoreHealth` says how it
stands meanwhile (for ``stats()``, ``/health`` and ``/metrics``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast, final

import anyio

from ._decisions import SaveTask
from ._errors import StoreError
from ._events import RunChanged, TaskStateChanged
from ._runs import RunRecord, RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._events import Event
    from ._service import Spawner
    from .abc import Store

__all__ = ["MAX_BACKOFF", "Recorder", "StoreHealth"]

_log = logging.getLogger("xtasks")

#: Seconds between two tries of a failing write, at most (it starts at 50 ms and doubles).
MAX_BACKOFF: Final = 5.0
_FIRST_BACKOFF: Final = 0.05


@final
class _Stored:
    """A record already in the store: publish it, write nothing."""

    __slots__ = ("record",)

    def __init__(self, record: RunRecord) -> None:
        self.record = record


_Item = RunRecord | SaveTask | _Stored | anyio.Event


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreHealth:
    """How the store's writes stand, as the recorder last saw them."""

    writable: bool  #: the last write went through (or none failed yet)
    backlog: int  #: records, task states (and flush markers) waiting to be written
    write_failures: int  #: writes that failed since the scheduler started
    last_error: str | None  #: the last write error, while writes fail; else None
    failing_since: float | None  #: ``anyio.current_time()`` of the first failure of an outage


@final
class Recorder:
    """Writes what the planner recorded, in batches and in order, then publishes it."""

    def __init__(self, store: Store, publish: Callable[[Event], None]) -> None:
        self._store = store
        self._publish = publish
        self._pending: list[_Item] = []
        self._wakeup = anyio.Event()
        self._stop = False
        self._stop_by = math.inf  # give up retrying at this anyio time, once stopping
        self._done = anyio.Event()
        self._failures = 0
        self._last_error: str | None = None
        self._failing_since: float | None = None
        self._inflight = 0  # items of the batch being written
        #: Runs with a live record handed to the store: the runs to heartbeat.
        self.leased: set[str] = set()
        #: Writes that succeeded: a claim or lease error older than the latest is over.
        self.writes_ok = 0
        #: Called with a task and its change's number once its state change is stored.
        self.state_stored: Callable[[str, int], object] = lambda task, change: None

    def start(self, tg: Spawner) -> None:
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
        """Return once everything queued so far is in the store and published (while the
        store fails, that is once it works again)."""
        marker = anyio.Event()
        self._pending.append(marker)
        self._wakeup.set()
        await marker.wait()

    @property
    def backlog(self) -> int:
        """Items waiting to be written, the batch being written included. O(1): the
        claimer reads it for every claim."""
        return len(self._pending) + self._inflight

    @property
    def health(self) -> StoreHealth:
        return StoreHealth(
            writable=self._failing_since is None,
            backlog=self.backlog,
            write_failures=self._failures,
            last_error=self._last_error,
            failing_since=self._failing_since,
        )

    async def stop(self, grace: float) -> None:
        """Write what is queued, trying for ``grace`` seconds more if the store fails
        (what still fails then is logged, counted, as lost)."""
        self._stop = True
        self._stop_by = anyio.current_time() + grace
        self._wakeup.set()
        await self._done.wait()

    async def _loop(self) -> None:
        backoff = _FIRST_BACKOFF
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                while self._pending:
                    batch, self._pending = self._pending, []
                    self._inflight = len(batch)
                    try:
                        left = await self._write(batch)
                    finally:
                        self._inflight = 0
                    if not left:
                        backoff = _FIRST_BACKOFF
                        continue
                    # Not written: keep it first, in order, and try again after a pause.
                    self._pending = left + self._pending
                    if self._stop and anyio.current_time() >= self._stop_by:
                        self._give_up()
                        return
                    with anyio.move_on_after(
                        min(backoff, max(self._stop_by - anyio.current_time(), 0))
                    ):
                        await anyio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                if self._stop:
                    return
        finally:
            self._done.set()

    async def _write(self, batch: list[_Item]) -> list[_Item]:
        """Store then publish ``batch`` in order; flush markers are set when reached.

        Returns what was not written because the store failed: the failing item and all
        after it, so nothing is stored or published out of order.
        """
        start = 0
        for i, item in enumerate(batch):
            if type(item) is RunRecord:
                continue
            group = cast("list[RunRecord]", batch[start:i])
            if group and not await self._save_runs(group):
                return batch[start:]
            start = i + 1
            if type(item) is SaveTask:
                if not await self._save_task(item):
                    return batch[i:]
            elif type(item) is _Stored:
                self._publish(RunChanged(item.record))
            else:
                assert isinstance(item, anyio.Event)
                item.set()
        group = cast("list[RunRecord]", batch[start:])
        if group and not await self._save_runs(group):
            return batch[start:]
        return []

    async def _save_task(self, save: SaveTask) -> bool:
        try:
            if save.state_changed and not save.from_store:
                self.state_stored(
                    save.task, await self._store.change_task_state(save.task, save.record)
                )
            else:
                await self._store.save_task(save.task, save.record)
        except StoreError as exc:
            self._failed(exc, f"the state of task {save.task!r}")
            return False
        self._succeeded()
        if save.state_changed:
            self._publish(TaskStateChanged(save.task, save.record.state))
        return True

    async def _save_runs(self, group: list[RunRecord]) -> bool:
        """Save a group of records (the newest snapshot of each run), then publish all."""
        latest = {record.id: record for record in group}
        try:
            refused = await self._store.save_runs(latest.values())
        except StoreError as exc:
            self._failed(exc, f"{len(latest)} run record(s)")
            return False
        self._succeeded()
        leased = self.leased
        for record in latest.values():
            # Every live run is leased, queued and waiting too: a dead replica's are reaped.
            if record.status in (RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING):
                leased.add(record.id)
            else:
                leased.discard(record.id)
        for run_id in refused:
            _log.warning(
                "run %s was marked lost by another replica while it ran here; "
                "its result was not recorded",
                run_id,
            )
        publish = self._publish
        for record in group:
            publish(RunChanged(record))
        return True

    def _failed(self, exc: StoreError, what: str) -> None:
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._failing_since is None:
            self._failing_since = anyio.current_time()
            _log.warning(
                "the store cannot write (%s); %s and what follows are kept in memory and "
                "written when it can: runs go on meanwhile, their events wait",
                self._last_error,
                what,
            )

    def _succeeded(self) -> None:
        self.writes_ok += 1
        if self._failing_since is None:
            return
        seconds = anyio.current_time() - self._failing_since
        _log.warning(
            "the store writes again after %.1f s and %d failed write(s); the records kept "
            "meanwhile are being written",
            seconds,
            self._failures,
        )
        self._failing_since = None
        self._last_error = None

    def _give_up(self) -> None:
        """Shutdown, and the store still fails: say what is lost, and how much."""
        runs = {item.id for item in self._pending if type(item) is RunRecord}
        states = sum(1 for item in self._pending if type(item) is SaveTask)
        for item in self._pending:
            if isinstance(item, anyio.Event):
                item.set()  # a flush waiting: it returns, health says what is left
        _log.error(
            "stopping while the store cannot write (%s): the last changes of %d run(s) and "
            "%d task state(s) could not be stored, and were not published",
            self._last_error,
            len(runs),
            states,
        )
