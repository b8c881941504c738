"""MemoryStore: the reference backend, and the model the stateful tests compare against.

Nothing survives the process. Several schedulers in one process can share one
``MemoryStore`` object and behave as replicas of each other.

**Retention** has the options of :class:`~xtasks.stores.sqlite.SQLiteStore`, with a
bound by default (a process that runs for months must not grow with its history):
``max_runs_per_task`` (1,000) finished runs are kept per task, the oldest to finish
going first, and ``max_age`` drops finished runs (by ``finished_at``, else
``scheduled_at``) and audit records older than it (those from the oldest added on, as
actions are recorded when they happen). Live runs (queued, waiting, running)
are never dropped and do not count. The count bound is applied on every write at an
amortised O(1): each task keeps a deque of its finished records in finish order, and an
entry whose record was replaced or removed since (checked by identity) is skipped when
it comes up. Each run write moves the run to the end of an ordered dict of change
numbers, which ``run_changes`` reads from its end. ``max_age`` is applied after :attr:`~MemoryStore.prune_every` writes or
:attr:`~MemoryStore.prune_interval` seconds, from a heap of finished records by age, so
it never scans the history.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import time
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, final

import anyio

from .._errors import StoreError
from .._feed import DURATION_BUCKETS, RunChanges, RunTotals, duration_bucket, run_seconds
from .._runs import RunStatus, TaskRecord, TaskState
from ..abc import Store
from ._registry import check_retention

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from .._runs import AuditRecord, RunRecord

__all__ = ["MemoryStore"]

#: Claims remembered per task; older ones are summarised by a floor time.
_CLAIMS_KEPT = 2048
#: A dict allocated beyond this many bytes per entry (plus the floor) is copied smaller;
#: a compact one takes about 40.
_SPARSE_BYTES = 256
_SPARSE_FLOOR = 65536
_LIVE = frozenset({RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING})
#: Stale entries a task's deque of finished records may hold beyond twice its count.
_SLACK = 32


class _History:
    """One task's runs: every id in insertion order, and its finished records."""

    __slots__ = ("done", "finished", "ids")

    def __init__(self) -> None:
        self.ids: dict[str, None] = {}  # an ordered set: list_runs' tie-break is insertion
        #: Finished records in finish order; one whose id now maps to another object (or
        #: to none) in the store is stale, skipped when popped, dropped by compaction.
        self.finished: deque[RunRecord] = deque()
        self.done = 0  # finished records of the task in the store: the bound applies to it


def _age(record: RunRecord) -> datetime:
    """What ``max_age`` measures from: the finish, or the fire if it never ran."""
    return record.finished_at or record.scheduled_at


@final
class MemoryStore(Store):
    """Keeps everything in dictionaries.

    :param max_runs_per_task: finished runs kept per task (``None``: all); the oldest to
        finish are dropped beyond it, live ones never.
    :param max_age: drop finished runs, and audit records, older than this many seconds
        (``None``: never).
    :param max_audit: audit records kept (all tasks together); the oldest are dropped
        beyond it, for the same reason. ``max_runs_per_task`` does not apply to them.
    :param lease_ttl: seconds a live record's lease lasts without renewal.
    :param clock: store time for leases, in seconds (``time.monotonic``; a test may
        pass a fake one).
    :param wall_clock: Unix time for ``max_age`` (``time.time``; a test may pass a fake).
    :raises ConfigError: a bound that is not positive, naming it.
    """

    #: ``max_age`` is applied after this many writes since it last was...
    prune_every: int = 1000
    #: ...or at a write this many seconds after it last was.
    prune_interval: float = 60.0

    def __init__(
        self,
        *,
        max_runs_per_task: int | None = 1000,
        max_age: float | None = None,
        max_audit: int = 100_000,
        lease_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        check_retention(max_runs_per_task=max_runs_per_task, max_age=max_age)
        self.max_runs_per_task = max_runs_per_task
        self.max_age = max_age
        self.lease_ttl = lease_ttl
        self._clock = clock  # store time: leases never compare a replica's wall clock
        self._wall_clock = wall_clock
        self._leases: dict[str, tuple[str, float]] = {}  # run id -> (owner, expires)
        self._closed = False
        self._runs: dict[str, RunRecord] = {}  # insertion order: list_runs' tie-break
        self._history: dict[str, _History] = {}
        #: Finished records by age, for max_age: (age, tie-break, record); stale like
        #: the deques' entries. Kept only when max_age is set.
        self._by_age: list[tuple[datetime, int, RunRecord]] = []
        self._tie = itertools.count()
        self._writes = 0  # since retention last ran
        self._trimmed: _History | None = None  # the last history the count bound trimmed
        self._last_prune = time.monotonic()
        self._claims: dict[str, set[datetime]] = {}
        self._claim_floor: dict[str, datetime] = {}  # claims at or before this were pruned
        self._tasks: dict[str, TaskRecord] = {}
        self._change = 0  # the latest state change's number
        self._changed: dict[str, int] = {}  # task -> the number of its latest state change
        self._change_made: anyio.Event | None = None  # set at the next change, if awaited
        self._audit: deque[AuditRecord] = deque(maxlen=max_audit)  # in insertion order
        self._run_change = 0  # the latest run change's number
        #: Run id -> the number of its latest change, in number order (a change moves
        #: the id to the end), so run_changes reads from the end, O(what it returns).
        self._run_changed: dict[str, int] = {}
        self._pruned = 0  # the highest number of a run retention dropped
        #: (task, status) -> [runs, timed, seconds, per-bucket counts...]
        self._totals: dict[tuple[str, RunStatus], list[Any]] = {}

    def __repr__(self) -> str:
        return (
            f"MemoryStore(max_runs_per_task={self.max_runs_per_task!r}, max_age={self.max_age!r})"
        )

    async def open(self) -> None:
        self._closed = False  # the data stays: reopening is a restart of the process's store

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the memory store is closed; open() it first")

    async def claim_fire(self, task: str, fire_time: datetime, replica: str) -> bool:
        self._check_open()
        return self._claim(task, fire_time)

    async def claim_fires(
        self, fires: Sequence[tuple[str, datetime]], replica: str
    ) -> list[bool | StoreError]:
        self._check_open()
        return [self._claim(task, fire_time) for task, fire_time in fires]

    def _claim(self, task: str, fire_time: datetime) -> bool:
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
        saved = self._save(record)
        self._wrote(1)
        return saved

    async def save_runs(self, records: Collection[RunRecord]) -> list[str]:
        self._check_open()
        refused = [r.id for r in records if not self._save(r)]
        self._wrote(len(records))
        return refused

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
                self._number(run_id)
                self._count(record)
                self._put(record, current)
                reaped.append(record)
        return reaped

    def _save(self, record: RunRecord) -> bool:
        # The hot path of every run (queued, running, final): kept to dict operations.
        run_id = record.id
        old = self._runs.get(run_id)
        if old is not None and old.status is RunStatus.LOST:
            return False  # fenced
        self._number(run_id)
        if record.status in _LIVE:  # held by the replica that wrote it, until final
            self._leases[run_id] = (record.replica, self._clock() + self.lease_ttl)
            if old is not None and old.status in _LIVE and old.task == record.task:
                self._runs[run_id] = record  # live to live: nothing else to keep
                return True
        else:  # final: nothing left to do, nothing to reap
            self._leases.pop(run_id, None)
            if old is None or old.status in _LIVE:  # its first final write: count it
                self._count(record)
        if old is not record:  # the same object again (a retried write) changes nothing
            self._put(record, old)
        return True

    def _number(self, run_id: str) -> None:
        """Give the run's latest change the next number."""
        self._run_change += 1
        changed = self._run_changed
        changed.pop(run_id, None)
        changed[run_id] = self._run_change

    def _count(self, record: RunRecord) -> None:
        """Add the final ``record`` to the fleet's totals."""
        key = (record.task, record.status)
        totals = self._totals.get(key)
        if totals is None:
            totals = self._totals[key] = [0, 0, 0.0, *([0] * (len(DURATION_BUCKETS) + 1))]
        totals[0] += 1
        seconds = run_seconds(record)
        if seconds is not None:
            totals[1] += 1
            totals[2] += seconds
            totals[3 + duration_bucket(seconds)] += 1

    def _forget(self, run_id: str) -> None:
        """Retention dropped the run: its latest change can no longer be read."""
        number = self._run_changed.pop(run_id, 0)
        self._pruned = max(self._pruned, number)

    def _put(self, record: RunRecord, old: RunRecord | None) -> None:
        """Store ``record`` in place of ``old`` (its id's current record, if any), then
        apply the count bound to its task."""
        history = self._history.get(record.task)
        if history is None:
            history = self._history[record.task] = _History()
        if old is not None and old.task != record.task:  # moved: it leaves the old task
            previous = self._history[old.task]
            del previous.ids[old.id]
            if old.status not in _LIVE:
                previous.done -= 1  # its entry in the deque is stale from now on
            if not previous.ids:
                del self._history[old.task]
            old = None
        if old is None:
            history.ids[record.id] = None
        elif old.status not in _LIVE:
            history.done -= 1  # replaced: its entry is stale; counted again below if final
        self._runs[record.id] = record
        if record.status in _LIVE:
            return
        history.done += 1
        history.finished.append(record)
        if self.max_age is not None:
            heapq.heappush(self._by_age, (_age(record), next(self._tie), record))
            if len(self._by_age) > 2 * len(self._runs) + _SLACK:
                self._compact_by_age()
        bound = self.max_runs_per_task
        if bound is not None and history.done > bound:
            finished, runs = history.finished, self._runs
            while history.done > bound:  # drop the oldest to finish; live runs stay
                oldest = finished.popleft()
                if runs.get(oldest.id) is oldest:  # else stale: replaced or gone already
                    del runs[oldest.id]  # _drop, inlined: the task keeps this record
                    del history.ids[oldest.id]
                    history.done -= 1
                    self._forget(oldest.id)
            self._trimmed = history
            head = finished[0]
            if runs.get(head.id) is not head or len(finished) > 2 * history.done + _SLACK:
                self._tidy(history)

    def _drop(self, record: RunRecord, history: _History) -> None:
        """Forget the finished ``record`` (current in the store) of ``history``'s task."""
        del self._runs[record.id]
        del history.ids[record.id]
        history.done -= 1
        self._forget(record.id)
        if not history.ids:
            del self._history[record.task]

    def _tidy(self, history: _History) -> None:
        """Drop stale entries at the head of ``history``'s deque, and rebuild it when stale
        ones elsewhere outnumber the live: each entry is removed once, O(1) amortised."""
        finished, runs = history.finished, self._runs
        while finished and runs.get(finished[0].id) is not finished[0]:
            finished.popleft()
        if len(finished) > 2 * history.done + _SLACK:
            history.finished = deque(reversed(_current(reversed(finished), runs)))

    def _compact_by_age(self) -> None:
        """Rebuild the age heap from its current entries: as :meth:`_tidy` for the deques."""
        runs = self._runs
        seen: set[str] = set()
        entries = []
        for entry in self._by_age:
            record = entry[2]
            if runs.get(record.id) is record and record.id not in seen:
                seen.add(record.id)
                entries.append(entry)
        heapq.heapify(entries)
        self._by_age = entries

    def _wrote(self, writes: int) -> None:
        """Count ``writes``; every :attr:`prune_every` of them, or :attr:`prune_interval`
        seconds with ``max_age``, apply it and give back what a burst left allocated."""
        self._writes += writes
        if self._writes >= self.prune_every:
            self._prune()
            self._shrink()
        elif self.max_age is not None and (
            time.monotonic() - self._last_prune >= self.prune_interval
        ):
            self._prune()

    def _shrink(self) -> None:
        """Copy the dictionaries a burst of live runs left mostly empty: a dict never
        gives its table back by itself. O(size), once per ``prune_every`` writes at most
        and only when most of the table is empty, so amortised O(1)."""
        if _sparse(self._runs):
            self._runs = dict(self._runs)  # keeps the insertion order: list_runs' tie-break
        if _sparse(self._leases):
            self._leases = dict(self._leases)
        if _sparse(self._run_changed):
            self._run_changed = dict(self._run_changed)  # keeps the order: by number
        history = self._trimmed
        if history is not None and _sparse(history.ids):
            history.ids = dict(history.ids)
        self._trimmed = None

    async def prune(self) -> int:
        """Apply ``max_age`` now (it also runs by itself after writes; the count bound
        needs no call: it holds after every write).

        :return: the number of run records dropped (audit records are not counted).
        """
        self._check_open()
        return self._prune()

    def _prune(self) -> int:
        self._writes = 0
        self._last_prune = time.monotonic()
        if self.max_age is None:
            return 0
        cutoff = datetime.fromtimestamp(self._wall_clock() - self.max_age, UTC)
        heap, runs = self._by_age, self._runs
        deleted = 0
        while heap and heap[0][0] < cutoff:
            record = heapq.heappop(heap)[2]
            if runs.get(record.id) is record:
                history = self._history[record.task]
                self._drop(record, history)
                self._tidy(history)
                deleted += 1
        audit = self._audit  # appended as actions happen: oldest first
        while audit and audit[0].at < cutoff:
            audit.popleft()
        return deleted

    async def get_run(self, run_id: str) -> RunRecord | None:
        self._check_open()
        return self._runs.get(run_id)

    async def run_changes(self, after: int, limit: int = 1000) -> RunChanges:
        self._check_open()
        found: list[tuple[int, RunRecord]] = []
        runs = self._runs
        if limit > 0:
            for run_id, number in reversed(self._run_changed.items()):
                if number <= after:
                    break
                found.append((number, runs[run_id]))
            found.reverse()
        return RunChanges(self._run_change, self._pruned, tuple(found[: max(limit, 0)]))

    async def run_totals(self) -> list[RunTotals]:
        self._check_open()
        return [
            RunTotals(task, status, t[0], t[1], t[2], tuple(t[3:]))
            for (task, status), t in self._totals.items()
        ]

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
            history = self._history.get(task)
            runs = self._runs
            candidates = [runs[i] for i in history.ids] if history is not None else []
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
        self._save_task(task, record)

    async def load_tasks(self, tasks: Collection[str]) -> dict[str, TaskRecord]:
        # One pass, not an await per task: start-up reads every task (twice on a fresh store).
        self._check_open()
        stored = self._tasks
        return {task: record for task in tasks if (record := stored.get(task)) is not None}

    async def save_tasks(self, records: Mapping[str, TaskRecord]) -> None:
        self._check_open()
        for task, record in records.items():
            self._save_task(task, record)

    def _save_task(self, task: str, record: TaskRecord) -> None:
        old = self._tasks.get(task)
        if old is not None:
            last = old.last_fire
            if record.last_fire is not None and (last is None or record.last_fire > last):
                last = record.last_fire
            record = replace(
                record,
                state=old.state,
                last_fire=last,
                anchor=old.anchor or record.anchor,
                definition=record.definition or old.definition,
            )
        self._tasks[task] = record

    async def change_task_state(self, task: str, record: TaskRecord) -> int:
        await self.save_task(task, record)
        self._tasks[task] = replace(self._tasks[task], state=record.state)
        self._change += 1
        self._changed[task] = self._change
        if self._change_made is not None:
            self._change_made.set()
            self._change_made = None
        return self._change

    async def task_state_changes(self, after: int) -> tuple[int, dict[str, TaskState]]:
        self._check_open()
        if after >= self._change:  # the poll's usual answer, without a scan
            return self._change, {}
        tasks = self._tasks
        return self._change, {t: tasks[t].state for t, n in self._changed.items() if n > after}

    async def wait_for_changes(self, after: int, at_most: float) -> None:
        """Several schedulers sharing this object wake at once on a change."""
        if after < self._change:
            return
        if self._change_made is None:  # made here: its loop is the waiters'
            self._change_made = anyio.Event()
        with anyio.move_on_after(at_most):
            await self._change_made.wait()

    async def add_audit(self, record: AuditRecord) -> None:
        self._check_open()
        self._audit.append(record)
        self._wrote(1)

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


def _sparse(table: dict[str, Any]) -> bool:
    """Whether ``table``'s allocation is far above what its entries need."""
    return sys.getsizeof(table) > _SPARSE_BYTES * len(table) + _SPARSE_FLOOR


def _current(records: Iterable[RunRecord], runs: dict[str, RunRecord]) -> list[RunRecord]:
    """The records of ``records`` still current in ``runs``, each id once (its first)."""
    seen: set[str] = set()
    kept = []
    for record in records:
        if runs.get(record.id) is record and record.id not in seen:
            seen.add(record.id)
            kept.append(record)
    return kept
