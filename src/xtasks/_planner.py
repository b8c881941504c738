"""The planner: every scheduling policy, as pure code.

It owns the timers (next fire of every task, retry and jitter delays), the ready queue
(priority, then due time, then arrival), dependency gating, overlap policies, retries,
cancellation, the consecutive-failure counter and alert decisions. It never awaits and
never reads a clock: every method takes ``now``. What it wants done in the world (claim a
fire, record a run, cancel an attempt, send an alert, persist a task's state) it appends
to a list of decisions that the runtime drains with :meth:`Planner.drain`.

That shape is what lets Hypothesis drive it through thousands of random histories in
virtual time, and lets a store backend change without the planner noticing.

Late fires (due more than ``misfire_grace`` before the timer ran: downtime, or a timer
that woke very late) go through the task's ``catch_up`` policy: ``once`` replays the
latest of them, ``skip`` none, ``all`` the oldest :data:`CATCH_UP_CAP`; one ``missed``
record counts the others and names their range. The latest late fire and the count come
from grid arithmetic for ``Every`` (exact, O(1)); for another trigger the latest comes
from a bisection over ``next_fire`` and the count is exact up to ``_COUNT_LIMIT``, a lower
bound ("N+") past it: the cost never grows with the downtime. With ``all``, the replays
(trigger ``catch_up``, at most :data:`CATCH_UP_CAP`) run one after another, oldest fire
first, whatever ``overlap`` says: a replay that finds a run of its task live is recorded
``queued`` and waits until none is (replays before a run held by ``overlap="queue"``).
``overlap`` still decides what a fresh fire or a manual request does while a replay runs.

Design note on size: this module is past the ~500-line rule of thumb on purpose for now.
Every policy here mutates the same two structures (a task's ``_Entry`` and its live
``Run`` objects) and their invariants are easiest to keep in one place. The seams, when
it grows again: the dependency graph (cycle check, depths) and the late-fire/catch-up
arithmetic are pure functions of the registry and can move to modules of their own.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, final

from ._errors import (
    ConfigError,
    DependencyCycleError,
    DuplicateTaskError,
    SchedulerStateError,
    TaskNotFoundError,
    TaskStateError,
    UnknownDependencyError,
)
from ._events import Alert, AlertKind
from ._runs import RunCause, RunRecord, RunStatus, TaskRecord, TaskState
from ._task import CatchUp, Mode, Overlap
from ._triggers import Every

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from ._runs import ErrorInfo
    from ._task import Task
    from ._triggers import Trigger

__all__ = [
    "CATCH_UP_CAP",
    "CancelAttempt",
    "ClaimFire",
    "Decision",
    "Planner",
    "RecordRun",
    "Run",
    "SaveTask",
    "SendAlert",
]

#: Most fires one catch-up replays with ``catch_up="all"``; the rest are recorded missed.
CATCH_UP_CAP: Final = 100
#: Late fires counted one by one, at most, for a trigger without grid arithmetic (``Cron``
#: or a custom one); past that, a ``missed`` record's count is a lower bound ("N+"). Its
#: range stays exact: the latest late fire is found by bisection, whatever the downtime.
_COUNT_LIMIT: Final = CATCH_UP_CAP + 1

_FIRE: Final = 0
_START: Final = 1
_TICK: Final = timedelta(microseconds=1)
_log = logging.getLogger("xtasks")


# --- decisions: what the planner asks the runtime to do ------------------------------


@dataclass(frozen=True, slots=True)
class ClaimFire:
    """Claim ``(task, fire_time)`` in the store, then call :meth:`Planner.fire_claimed`.

    ``missed > 0`` means the claim covers a range of fires that will not run: on success
    the planner records one ``missed`` run for the ``missed`` fires from ``fire_time``
    to ``missed_until``.
    """

    task: str
    fire_time: datetime
    kind: RunCause
    missed: int = 0
    missed_until: datetime | None = None
    #: more fires than counted were missed: the count is a lower bound (a trigger without
    #: grid arithmetic, past ``_COUNT_LIMIT``); the range is exact all the same
    missed_more: bool = False


@dataclass(frozen=True, slots=True)
class RecordRun:
    """Write this snapshot to the store and tell subscribers."""

    record: RunRecord


@dataclass(frozen=True, slots=True)
class CancelAttempt:
    """Cancel the running attempt of this run, then report it cancelled."""

    run_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SendAlert:
    """Deliver this alert to every alerter."""

    alert: Alert


@dataclass(frozen=True, slots=True)
class SaveTask:
    """Persist a task's state; ``state_changed`` when pause/resume/cancel changed it."""

    task: str
    record: TaskRecord
    state_changed: bool = False


Decision = ClaimFire | RecordRun | CancelAttempt | SendAlert | SaveTask


# --- planner-side state ---------------------------------------------------------------


@final
class Run:
    """A run as the planner tracks it while it lives. History sees :class:`RunRecord`."""

    __slots__ = (
        "args",
        "attempts",
        "dependents",
        "due",
        "entry",
        "error",
        "finished_at",
        "id",
        "in_ready",
        "kind",
        "kwargs",
        "reason",
        "result",
        "scheduled_at",
        "started_at",
        "status",
        "token",
        "waiting_on",
    )

    def __init__(self, run_id: str, entry: _Entry, kind: RunCause, scheduled_at: datetime) -> None:
        self.id = run_id
        self.entry = entry
        self.kind = kind
        self.status = RunStatus.QUEUED
        self.scheduled_at = scheduled_at
        self.due = scheduled_at
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.attempts = 0
        self.error: ErrorInfo | None = None
        self.reason: str | None = None
        self.result: Any = None
        self.args: tuple[Any, ...] = entry.task.args
        self.kwargs: Mapping[str, Any] = entry.task.kwargs
        self.waiting_on: set[str] = set()
        self.dependents: list[Run] = []
        self.token = 0  # bumped on every change, so stale heap entries are recognised
        self.in_ready = False  # has a live entry in a ready heap (counted in ready_count)

    @property
    def task(self) -> Task:
        return self.entry.task

    def record(self, replica: str) -> RunRecord:
        return RunRecord(
            id=self.id,
            task=self.entry.task.name,
            status=self.status,
            cause=self.kind,
            scheduled_at=self.scheduled_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            attempts=self.attempts,
            error=self.error,
            reason=self.reason,
            result=self.result,
            replica=replica,
        )

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.entry.task.name} {self.status.value}>"


@final
class _Entry:
    """A task and its live state inside the planner."""

    __slots__ = (
        "active",
        "alerting",
        "anchor",
        "failures",
        "last_fire",
        "next_fire",
        "queued_behind",
        "registered",
        "releasing",
        "removed",
        "replays",
        "state",
        "task",
        "token",
        "trigger",
    )

    def __init__(self, task: Task, trigger: Trigger | None, *, registered: bool) -> None:
        self.task = task
        self.trigger = trigger
        self.registered = registered
        self.state = TaskState.ACTIVE
        self.active: list[Run] = []  # live runs, in creation order
        self.queued_behind: Run | None = None  # overlap="queue": the one run held back
        self.replays: deque[Run] = deque()  # catch-up replays waiting their turn, oldest first
        self.releasing = False  # _release_waiting is opening the next run(s)
        self.removed = False  # unregistered: its runs still going end, nothing follows
        self.failures = 0
        self.alerting = False
        self.anchor: datetime | None = None  # registration time: origin of relative grids
        self.last_fire: datetime | None = None
        self.next_fire: datetime | None = None
        self.token = 0

    def task_record(self) -> TaskRecord:
        return TaskRecord(
            state=self.state,
            last_fire=self.last_fire,
            consecutive_failures=self.failures,
            alerting=self.alerting,
            anchor=self.anchor,
        )


def _default_ids() -> Callable[[], str]:
    prefix = secrets.token_hex(6)
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):08x}"


@final
class Planner:
    """Sans-I/O scheduling state machine.

    :param max_concurrency: runs executing at once, all modes together.
    :param thread_slots: ``sync`` runs executing at once (the thread pool's size).
    :param process_slots: ``process`` runs executing at once.
    :param replica: written into every record, so history shows who ran what.
    :param rng: source of jitter; seed it for reproducible tests.
    :param new_id: makes run ids; unique across replicas by default.
    """

    def __init__(
        self,
        *,
        max_concurrency: int = 100,
        thread_slots: int = 40,
        process_slots: int = 4,
        replica: str = "",
        rng: random.Random | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ConfigError(
                f"max_concurrency must be at least 1, got {max_concurrency!r}",
                field="max_concurrency",
            )
        self.max_concurrency = max_concurrency
        self.replica = replica
        self._limits = {Mode.ASYNC: math.inf, Mode.SYNC: thread_slots, Mode.PROCESS: process_slots}
        self._rng = rng or random.Random()
        self._new_id = new_id or _default_ids()
        self._entries: dict[str, _Entry] = {}
        self._tasks: dict[str, Task] = {}
        self._tasks_view = MappingProxyType(self._tasks)
        self._depths: dict[str, int] = {}
        self._dependents: dict[str, set[str]] = {}  # name -> registered tasks depending on it
        self._adhoc: dict[str, _Entry] = {}
        self._runs: dict[str, Run] = {}  # live runs by id
        self._timers: list[tuple[datetime, int, int, int, object, int]] = []
        # Ready heaps, one per mode: (priority rank, due, arrival, token, run).
        self._ready: dict[Mode, list[tuple[int, datetime, int, int, Run]]] = {m: [] for m in Mode}
        self._running = 0
        self._running_by_mode = dict.fromkeys(Mode, 0)
        self._ready_live = 0  # live entries in the ready heaps (the stale ones excluded)
        self._seq = itertools.count()
        self._decisions: list[Decision] = []
        self._closing = False

    # --- registry ---------------------------------------------------------------------

    @property
    def tasks(self) -> Mapping[str, Task]:
        """Registered tasks by name: a live, read-only view."""
        return self._tasks_view

    def add_task(self, task: Task, now: datetime, *, arm: bool = True) -> None:
        """Register ``task`` and arm its trigger from ``now``.

        ``arm=False`` registers it without a timer: it does not fire until :meth:`restore`
        (or :meth:`start`) applies its stored state and arms it, once.

        :raises DuplicateTaskError: a task of that name is registered.
        :raises DependencyCycleError: the new edges close a cycle (the path is named).
        """
        if task.name in self._entries:
            raise DuplicateTaskError(task.name)
        self._check_cycle(task)
        trigger = task.trigger.anchored(now) if task.trigger is not None else None
        entry = _Entry(task, trigger, registered=True)
        entry.anchor = now
        self._entries[task.name] = entry
        self._tasks[task.name] = task
        for dep in task.depends_on:
            self._dependents.setdefault(dep, set()).add(task.name)
        if self._dependents.get(task.name):
            self._depths.clear()  # tasks added earlier depend on this one: depths move
        if task.enabled and arm:
            self._arm(entry, now, first=True)

    def remove_task(self, name: str, now: datetime) -> Task:
        """Unregister ``name``: no more fires; its queued runs are cancelled.

        A run of it still going ends recorded as usual (history is kept), but is not
        retried, and neither its outcome nor anything else saves the task's state again.

        :raises TaskNotFoundError: no such task.
        :raises ConfigError: other tasks depend on it.
        """
        entry = self._entry(name)
        dependents = sorted(self._dependents.get(name, ()))
        if dependents:
            raise ConfigError(
                f"cannot remove it: {', '.join(dependents)} depend on it; remove those tasks first",
                task=name,
            )
        del self._entries[name]
        del self._tasks[name]
        self._depths.pop(name, None)
        for dep in entry.task.depends_on:
            self._dependents[dep].discard(name)
        entry.token += 1
        entry.removed = True
        entry.registered = False  # no SaveTask from now on
        entry.next_fire = None
        self._cancel_pending(entry, now, "removed")
        return entry.task

    def validate(self) -> None:
        """Check that every dependency names a registered task.

        :raises UnknownDependencyError: naming the task and the missing name.
        """
        problems = self.unknown_dependencies()
        if problems:
            raise problems[0]

    def unknown_dependencies(self) -> list[UnknownDependencyError]:
        """One error per ``depends_on`` entry that names no registered task."""
        known = sorted(self._entries)
        return [
            UnknownDependencyError(entry.task.name, dep, known)
            for entry in self._entries.values()
            for dep in entry.task.depends_on
            if dep not in self._entries
        ]

    def start(self, now: datetime, records: Mapping[str, TaskRecord] | None = None) -> None:
        """Arm every active task's timer, once: at scheduler start, and again after a stop.

        ``records`` is the state a store kept, by task name: each is applied first, as
        :meth:`restore` does, so a task is armed once from its stored state rather than
        armed here and again by :meth:`restore`. A task that has fired before re-arms
        from its last fire, so fires missed while stopped go through its ``catch_up``
        policy; the others count from ``now``.
        """
        self._closing = False
        for name, entry in self._entries.items():
            record = records.get(name) if records else None
            if record is not None:
                self._load(entry, record)
            self._rearm(entry, now)

    def restore(self, name: str, record: TaskRecord, now: datetime) -> None:
        """Apply the state a store kept for ``name`` and re-arm it (a task added while the
        scheduler runs, or after a restart; at start, :meth:`start` takes the records).

        A ``last_fire`` in the past re-arms the trigger from it, so fires missed while no
        scheduler ran go through the task's ``catch_up`` policy on the next :meth:`advance`.
        """
        entry = self._entry(name)
        self._load(entry, record)
        self._rearm(entry, now)

    def task_record(self, name: str) -> TaskRecord:
        """The state the store should hold for ``name``."""
        return self._entry(name).task_record()

    def state_of(self, name: str) -> TaskState:
        return self._entry(name).state

    def states(self) -> dict[str, TaskState]:
        """Every registered task's state, by name, in registration order."""
        return {name: entry.state for name, entry in self._entries.items()}

    def next_fire_of(self, name: str) -> datetime | None:
        return self._entry(name).next_fire

    def consecutive_failures_of(self, name: str) -> int:
        return self._entry(name).failures

    def get_run(self, run_id: str) -> Run | None:
        """The live run with this id, or ``None`` once it is final."""
        return self._runs.get(run_id)

    def live_runs(self) -> list[Run]:
        return list(self._runs.values())

    # --- requests ---------------------------------------------------------------------

    def request(
        self,
        name: str,
        now: datetime,
        kind: RunCause = RunCause.MANUAL,
        *,
        args: tuple[Any, ...] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Run:
        """Ask for a run of ``name`` now, honouring its dependencies and overlap policy.

        ``args`` and ``kwargs``, when given, replace the task's own for this run.

        :raises TaskNotFoundError: no such task.
        :raises TaskStateError: the task is paused or cancelled.
        :raises SchedulerStateError: after :meth:`shutdown`.
        """
        self._refuse_if_closing()
        entry = self._entry(name)
        if entry.state is not TaskState.ACTIVE:
            raise TaskStateError(name, entry.state.value)
        return self._request(entry, kind, now, now, args=args, kwargs=kwargs)

    def cancel_run(self, run_id: str, now: datetime, reason: str = "cancelled") -> bool:
        """Cancel one live run, leaving its task's state alone.

        A run not started yet ends ``cancelled`` at once; a running one gets its attempt
        cancelled (:class:`CancelAttempt`) and ends when the runtime reports it. Returns
        ``False`` when no live run has this id (it is final, or never was).
        """
        run = self._runs.get(run_id)
        if run is None:
            return False
        if run.status is RunStatus.RUNNING:
            self._decisions.append(CancelAttempt(run.id, reason))
        else:
            self._final(run, RunStatus.CANCELLED, now, reason=reason)
        return True

    def submit(
        self, task: Task, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: datetime
    ) -> Run:
        """Run ``task`` once with these arguments, tracked in history under its name.

        Every submission runs (overlap does not apply); dependencies are honoured.
        """
        self._refuse_if_closing()
        entry = self._entries.get(task.name)
        if entry is None or entry.task is not task:
            entry = self._adhoc.get(task.name)
            if entry is None or entry.task is not task:
                entry = self._adhoc[task.name] = _Entry(task, None, registered=False)
        run = self._new_run(entry, RunCause.SUBMIT, now)
        run.args = args
        run.kwargs = kwargs
        self._open(run, now)
        return run

    # --- time -------------------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """When :meth:`advance` next has something to do, or ``None`` for never."""
        timers = self._timers
        while timers and self._stale(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def advance(self, now: datetime) -> None:
        """Handle every timer due at or before ``now``, in time order."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            item = heapq.heappop(timers)
            if self._stale(item):
                continue
            when, kind, _depth, _seq, obj, _token = item
            if kind == _FIRE:
                assert isinstance(obj, _Entry)
                self._fire_due(obj, when, now)
            else:
                assert isinstance(obj, Run)
                self._push_ready(obj)

    def fire_claimed(self, claim: ClaimFire, now: datetime) -> Run | None:
        """The store granted ``claim``: create its run (or its ``missed`` record)."""
        entry = self._entries.get(claim.task)
        if entry is None or self._closing:
            return None
        if entry.last_fire is None or claim.fire_time > entry.last_fire:
            entry.last_fire = claim.fire_time
        if claim.missed or claim.missed_more:
            run = self._new_run(entry, RunCause.SCHEDULE, now, scheduled_at=claim.fire_time)
            first = claim.fire_time.isoformat()
            last = (claim.missed_until or claim.fire_time).isoformat()
            count = f"{claim.missed}+" if claim.missed_more else f"{claim.missed}"
            reason = (
                f"missed {count} fire(s) from {first} to {last} "
                f"(catch_up={entry.task.catch_up.value})"
            )
            self._final(run, RunStatus.MISSED, now, reason=reason)
            return run
        if entry.state is not TaskState.ACTIVE:
            return None
        return self._request(entry, claim.kind, now, claim.fire_time)

    def recover_lost(self, record: RunRecord, now: datetime) -> Run | None:
        """A run of ``record.task`` was lost with its replica: re-run it if the task says
        ``recover=True`` (at least once), else leave it recorded ``lost`` (at most once)."""
        entry = self._entries.get(record.task)
        if (
            entry is None
            or not entry.task.recover
            or entry.state is not TaskState.ACTIVE
            or self._closing
        ):
            return None
        return self._request(entry, record.cause, now, record.scheduled_at)

    # --- execution --------------------------------------------------------------------

    def next_ready(self, now: datetime) -> Run | None:
        """Pop the run that should start now, if a slot is free; mark it running.

        Order: priority, then due time, then arrival. A run waits only for a slot of its
        own kind: a ``sync`` run held back by a full thread pool does not hold back an
        ``async`` run of lower priority.
        """
        if self._running >= self.max_concurrency:
            return None
        best: list[tuple[int, datetime, int, int, Run]] | None = None
        for mode, heap in self._ready.items():
            while heap and heap[0][4].token != heap[0][3]:
                heapq.heappop(heap)
            if not heap or self._running_by_mode[mode] >= self._limits[mode]:
                continue
            if best is None or heap[0] < best[0]:
                best = heap
        if best is None:
            return None
        run = heapq.heappop(best)[4]
        run.in_ready = False
        self._ready_live -= 1
        run.token += 1
        run.status = RunStatus.RUNNING
        run.attempts += 1
        if run.started_at is None:
            run.started_at = now
        self._running += 1
        self._running_by_mode[run.entry.task.mode] += 1
        self._record(run)
        return run

    def succeeded(self, run: Run, now: datetime, result: Any) -> None:
        """The running attempt of ``run`` returned ``result``."""
        self._release(run)
        run.result = result
        run.error = None  # the record describes the last attempt, which succeeded
        self._final(run, RunStatus.SUCCEEDED, now)

    def failed(self, run: Run, now: datetime, error: ErrorInfo) -> None:
        """The running attempt of ``run`` raised or timed out: retry or fail the run."""
        self._release(run)
        run.error = error
        task = run.entry.task
        if (
            run.attempts <= task.max_retries
            and not self._closing
            and run.entry.state is not TaskState.CANCELLED
            and not run.entry.removed
        ):
            delay = task.retry_delay * task.retry_backoff ** (run.attempts - 1)
            if task.jitter:
                delay += self._rng.uniform(0, task.jitter)
            run.status = RunStatus.QUEUED
            run.token += 1
            run.due = now + timedelta(seconds=delay)
            self._record(run)
            self._schedule_start(run, now)
            return
        if self._closing and run.attempts <= task.max_retries:
            self._final(run, RunStatus.CANCELLED, now, reason="shutdown (retry pending)")
            return
        self._final(run, RunStatus.FAILED, now)

    def cancelled(self, run: Run, now: datetime, reason: str) -> None:
        """The running attempt of ``run`` was cancelled; cancellation is never retried."""
        self._release(run)
        self._final(run, RunStatus.CANCELLED, now, reason=reason)

    # --- control ----------------------------------------------------------------------

    def pause(self, name: str, now: datetime) -> None:
        """Stop firing ``name``; runs already queued or going carry on."""
        entry = self._entry(name)
        if entry.state is TaskState.PAUSED:
            return
        entry.state = TaskState.PAUSED
        entry.token += 1
        entry.next_fire = None
        self._save_task(entry, state_changed=True)

    def resume(self, name: str, now: datetime) -> None:
        """Fire ``name`` again, from ``now`` on (fires while paused are not replayed)."""
        entry = self._entry(name)
        if entry.state is TaskState.ACTIVE:
            return
        entry.state = TaskState.ACTIVE
        entry.token += 1
        if entry.task.enabled:
            self._arm(entry, now)
        self._save_task(entry, state_changed=True)

    def cancel(self, name: str, now: datetime) -> None:
        """Stop firing ``name``, cancel its queued runs and its running attempts."""
        entry = self._entry(name)
        entry.state = TaskState.CANCELLED
        entry.token += 1
        entry.next_fire = None
        self._cancel_pending(entry, now, "cancelled")
        for run in entry.active:
            if run.status is RunStatus.RUNNING:
                self._decisions.append(CancelAttempt(run.id, "cancelled"))
        self._save_task(entry, state_changed=True)

    def shutdown(self, now: datetime) -> list[Run]:
        """Stop firing everything and cancel what has not started; return what runs."""
        self._closing = True
        self._timers.clear()
        entries = [*self._entries.values(), *self._adhoc.values()]
        for entry in entries:
            entry.token += 1
        for status in (RunStatus.WAITING, RunStatus.QUEUED):
            for entry in entries:
                self._cancel_pending(entry, now, "shutdown", only=status)
        return [run for run in self._runs.values() if run.status is RunStatus.RUNNING]

    def drain(self) -> list[Decision]:
        """Hand over the decisions taken since the last call."""
        decisions = self._decisions
        self._decisions = []
        return decisions

    @property
    def running(self) -> int:
        return self._running

    @property
    def ready_count(self) -> int:
        """Runs ready to start, waiting for a concurrency slot of their kind. O(1)."""
        return self._ready_live

    # --- internals --------------------------------------------------------------------

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise SchedulerStateError("the scheduler is shutting down; no new run is accepted")

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise TaskNotFoundError(name, sorted(self._entries))
        return entry

    def _stale(self, item: tuple[datetime, int, int, int, object, int]) -> bool:
        obj, token = item[4], item[5]
        if item[1] == _FIRE:
            assert isinstance(obj, _Entry)
            return obj.token != token or obj.state is not TaskState.ACTIVE
        assert isinstance(obj, Run)
        return obj.token != token

    def _load(self, entry: _Entry, record: TaskRecord) -> None:
        """Take a stored state into ``entry``, without arming it."""
        if record.anchor is not None and entry.task.trigger is not None:
            if record.anchor != entry.anchor:  # equal: our own anchor won, trigger is right
                entry.trigger = entry.task.trigger.anchored(record.anchor)
            entry.anchor = record.anchor  # the fleet's first registration, not ours
        entry.state = record.state
        entry.failures = record.consecutive_failures
        entry.alerting = record.alerting
        entry.last_fire = record.last_fire

    def _rearm(self, entry: _Entry, now: datetime) -> None:
        """Arm an active task from its last fire, or from ``now`` if it never fired."""
        if entry.state is TaskState.ACTIVE and entry.task.enabled:
            self._arm(entry, entry.last_fire or now, first=entry.last_fire is None)
        else:
            entry.token += 1
            entry.next_fire = None

    def _arm(self, entry: _Entry, after: datetime, *, first: bool = False) -> None:
        """Set the timer of ``entry`` to its trigger's next fire after ``after``.

        ``first``: the task has never fired; ask the trigger for its first fire instead
        (a one-shot ``At`` already past still fires, late, rather than never).
        """
        entry.token += 1
        trigger = entry.trigger
        if trigger is None:
            nxt = None
        elif first:
            nxt = trigger.first_fire(after)
        else:
            nxt = trigger.next_fire(after)
        entry.next_fire = nxt
        if nxt is not None and not self._closing:
            heapq.heappush(
                self._timers,
                (nxt, _FIRE, self._depth(entry), next(self._seq), entry, entry.token),
            )

    def _fire_due(self, entry: _Entry, fire_time: datetime, now: datetime) -> None:
        task = entry.task
        trigger = entry.trigger
        assert trigger is not None
        cutoff = now - timedelta(seconds=task.misfire_grace)
        if fire_time >= cutoff:
            self._decisions.append(ClaimFire(task.name, fire_time, RunCause.SCHEDULE))
            self._arm(entry, fire_time)
            return
        # Late beyond misfire_grace: every fire from fire_time to the latest one before the
        # cutoff is late. Their number and the latest are computed, never replayed one by one.
        last, count, exact = _late_span(trigger, fire_time, cutoff)
        policy = task.catch_up
        replay: list[datetime] = []
        missed_from: datetime | None = fire_time
        missed_until = last
        n_missed = count
        if policy is CatchUp.ALL:
            replay.append(fire_time)
            while len(replay) < min(count, CATCH_UP_CAP):
                nxt = trigger.next_fire(replay[-1])
                assert nxt is not None and nxt <= last
                replay.append(nxt)
            n_missed = count - len(replay)
            missed_from = trigger.next_fire(replay[-1]) if n_missed else None
            if n_missed:
                _log.warning(
                    "task %r missed more than %d fires; replaying %d, recording the rest missed",
                    task.name,
                    CATCH_UP_CAP,
                    CATCH_UP_CAP,
                )
        elif policy is CatchUp.ONCE:
            replay.append(last)
            n_missed = count - 1
            if n_missed:
                missed_until = _previous_fire(trigger, fire_time, last)
            else:
                missed_from = None
        if missed_from is not None:
            self._decisions.append(
                ClaimFire(
                    task.name,
                    missed_from,
                    RunCause.SCHEDULE,
                    n_missed,
                    missed_until,
                    missed_more=not exact,
                )
            )
        self._decisions.extend(ClaimFire(task.name, f, RunCause.CATCH_UP) for f in replay)
        # Resume the normal grid with the first fire inside the grace window.
        self._arm(entry, last)

    def _new_run(
        self,
        entry: _Entry,
        kind: RunCause,
        now: datetime,
        *,
        scheduled_at: datetime | None = None,
        args: tuple[Any, ...] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Run:
        run = Run(self._new_id(), entry, kind, scheduled_at or now)
        if args is not None:
            run.args = args
        if kwargs is not None:
            run.kwargs = kwargs
        self._runs[run.id] = run
        return run

    def _request(
        self,
        entry: _Entry,
        kind: RunCause,
        now: datetime,
        scheduled_at: datetime,
        *,
        args: tuple[Any, ...] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Run:
        if kind is RunCause.CATCH_UP:
            # Replays of missed fires never go through the overlap policy: they run one
            # after another, each once no other run of the task is live.
            run = self._new_run(
                entry, kind, now, scheduled_at=scheduled_at, args=args, kwargs=kwargs
            )
            if entry.active or entry.replays:
                entry.replays.append(run)
                self._record(run)
            else:
                self._open(run, now)
            return run
        overlap = entry.task.overlap
        if entry.active and overlap is not Overlap.ALLOW:
            run = self._new_run(
                entry, kind, now, scheduled_at=scheduled_at, args=args, kwargs=kwargs
            )
            if overlap is Overlap.QUEUE and entry.queued_behind is None:
                entry.queued_behind = run
                self._record(run)
                return run
            self._final(run, RunStatus.SKIPPED, now, reason="overlap")
            return run
        run = self._new_run(entry, kind, now, scheduled_at=scheduled_at, args=args, kwargs=kwargs)
        if entry.task.jitter and kind is RunCause.SCHEDULE:
            run.due = scheduled_at + timedelta(seconds=self._rng.uniform(0, entry.task.jitter))
        self._open(run, now)
        return run

    def _open(self, run: Run, now: datetime) -> None:
        """Make ``run`` live: gate it on its dependencies, pulling runs of them as needed."""
        entry = run.entry
        entry.active.append(run)
        upstream: list[Run] = []
        for dep in entry.task.depends_on:
            dentry = self._entries.get(dep)
            if dentry is None:
                self._final(run, RunStatus.SKIPPED, now, reason=f"unknown dependency: {dep}")
                return
            if dentry.state is not TaskState.ACTIVE:
                self._final(
                    run, RunStatus.SKIPPED, now, reason=f"upstream_{dentry.state.value}: {dep}"
                )
                return
            drun = dentry.active[0] if dentry.active else None
            if drun is None:
                drun = self._new_run(dentry, RunCause.DEPENDENCY, now)
                self._open(drun, now)
            if drun.status.is_final:
                if drun.status is not RunStatus.SUCCEEDED:
                    self._final(
                        run, RunStatus.SKIPPED, now, reason=f"upstream_{drun.status.value}: {dep}"
                    )
                    return
                continue
            upstream.append(drun)
        if upstream:
            run.status = RunStatus.WAITING
            for drun in upstream:
                run.waiting_on.add(drun.id)
                drun.dependents.append(run)
            self._record(run)
            return
        self._record(run)
        self._schedule_start(run, now)

    def _schedule_start(self, run: Run, now: datetime) -> None:
        if run.due > now:
            heapq.heappush(self._timers, (run.due, _START, 0, next(self._seq), run, run.token))
        else:
            self._push_ready(run)

    def _push_ready(self, run: Run) -> None:
        run.in_ready = True
        self._ready_live += 1
        heapq.heappush(
            self._ready[run.entry.task.mode],
            (run.entry.task.priority.rank, run.due, next(self._seq), run.token, run),
        )

    def _release(self, run: Run) -> None:
        self._running -= 1
        self._running_by_mode[run.entry.task.mode] -= 1

    def _record(self, run: Run) -> None:
        self._decisions.append(RecordRun(run.record(self.replica)))

    def _save_task(self, entry: _Entry, *, state_changed: bool = False) -> None:
        if entry.registered:
            self._decisions.append(SaveTask(entry.task.name, entry.task_record(), state_changed))

    def _cancel_pending(
        self, entry: _Entry, now: datetime, reason: str, only: RunStatus | None = None
    ) -> None:
        if only in (None, RunStatus.QUEUED):
            held = [entry.queued_behind] if entry.queued_behind is not None else []
            held.extend(entry.replays)
            entry.queued_behind = None
            entry.replays.clear()
            for run in held:
                self._final(run, RunStatus.CANCELLED, now, reason=reason)
        for run in list(entry.active):
            if run.status is not RunStatus.RUNNING and (only is None or run.status is only):
                self._final(run, RunStatus.CANCELLED, now, reason=reason)

    def _final(
        self, run: Run, status: RunStatus, now: datetime, *, reason: str | None = None
    ) -> None:
        entry = run.entry
        run.status = status
        run.token += 1  # a ready-heap entry of this run is now stale: uncount it
        if run.in_ready:
            run.in_ready = False
            self._ready_live -= 1
        run.finished_at = now
        if reason is not None:
            run.reason = reason
        self._runs.pop(run.id, None)
        if run in entry.active:
            entry.active.remove(run)
        if entry.queued_behind is run:
            entry.queued_behind = None
        elif entry.replays and run.kind is RunCause.CATCH_UP and run in entry.replays:
            entry.replays.remove(run)
        self._record(run)
        if status is RunStatus.FAILED:
            entry.failures += 1
            task = entry.task
            if task.alert_on_failure and not entry.alerting and entry.failures >= task.alert_after:
                entry.alerting = True
                self._alert(AlertKind.FAILING, run, entry.failures, now)
            self._save_task(entry)
        elif status is RunStatus.SUCCEEDED and (entry.failures or entry.alerting):
            if entry.alerting:
                self._alert(AlertKind.RECOVERED, run, 0, now)
            entry.failures = 0
            entry.alerting = False
            self._save_task(entry)
        dependents, run.dependents = run.dependents, []
        if status is RunStatus.SUCCEEDED:
            for dependent in dependents:
                dependent.waiting_on.discard(run.id)
                if not dependent.waiting_on and dependent.status is RunStatus.WAITING:
                    dependent.status = RunStatus.QUEUED
                    dependent.token += 1
                    dependent.due = max(dependent.due, now)
                    self._record(dependent)
                    self._schedule_start(dependent, now)
        else:
            # Name this run as the cause in every direct dependent before skipping any:
            # a dependent reached again through another skipped run keeps this reason.
            # At shutdown every pending run is cancelled for that reason, whatever its
            # upstream did.
            outcome = RunStatus.CANCELLED if self._closing else RunStatus.SKIPPED
            cause = "shutdown" if self._closing else f"upstream_{status.value}: {entry.task.name}"
            doomed = [d for d in dependents if not d.status.is_final]
            for dependent in doomed:
                if dependent.reason is None:
                    dependent.reason = cause
            for dependent in doomed:
                if not dependent.status.is_final:
                    self._final(dependent, outcome, now)
        if not entry.active and not self._closing and not entry.releasing:
            self._release_waiting(entry, now)

    def _release_waiting(self, entry: _Entry, now: datetime) -> None:
        """Nothing of ``entry`` is live: open what waits for that, until something is.

        Catch-up replays first, oldest fire first, then the run ``overlap="queue"`` held
        back (replays first: fresh fires held back one after another cannot starve them).
        A run skipped as it opens (its upstream cannot run) lets the next one go, in this
        loop rather than by recursion.
        """
        entry.releasing = True
        try:
            while not entry.active:
                if entry.replays:
                    run = entry.replays.popleft()
                elif entry.queued_behind is not None:
                    run, entry.queued_behind = entry.queued_behind, None
                else:
                    return
                run.due = max(run.due, now)
                self._open(run, now)
        finally:
            entry.releasing = False

    def _alert(self, kind: AlertKind, run: Run, failures: int, now: datetime) -> None:
        alert = Alert(
            kind=kind,
            task=run.entry.task.name,
            run=run.record(self.replica),
            consecutive_failures=failures,
            at=now,
        )
        self._decisions.append(SendAlert(alert))

    def _check_cycle(self, task: Task) -> None:
        """Raise if adding ``task`` closes a cycle; the message shows the whole path.

        The registered graph is acyclic, so a new cycle must pass through ``task``, which
        needs a registered task depending on it; then a walk from its dependencies
        suffices (no recursion, so long chains are fine).
        """
        if not self._dependents.get(task.name) and task.name not in task.depends_on:
            return  # nothing registered depends on it: no path can lead back to it
        entries = self._entries
        parent: dict[str, str] = {}
        stack = [(task.name, dep) for dep in task.depends_on]
        while stack:
            src, name = stack.pop()
            if name in parent:
                continue
            parent[name] = src
            if name == task.name:
                path = [name]
                node = src
                while node != task.name:
                    path.append(node)
                    node = parent[node]
                path.append(task.name)
                raise DependencyCycleError(path[::-1])
            entry = entries.get(name)
            if entry is not None:
                stack.extend((name, dep) for dep in entry.task.depends_on)

    def _depth(self, entry: _Entry) -> int:
        """Depth in the dependency graph: same-time fires are handled upstream first.

        Memoised in ``_depths`` (iterative, no recursion, so long chains are fine).
        """
        depths = self._depths
        name = entry.task.name
        if name in depths:
            return depths[name]
        stack = [name]
        while stack:
            current = stack[-1]
            e = self._entries.get(current)
            deps = [d for d in (e.task.depends_on if e else ()) if d not in depths]
            if deps:
                stack.extend(deps)
                continue
            stack.pop()
            own = e.task.depends_on if e else ()
            depths[current] = 1 + max((depths[d] for d in own), default=-1)
        return depths[name]


def _late_span(trigger: Trigger, first: datetime, cutoff: datetime) -> tuple[datetime, int, bool]:
    """The fires from ``first`` (a fire, before ``cutoff``) to the latest before ``cutoff``:
    that latest fire, how many they are, and whether that count is exact.

    ``Every``: grid arithmetic, exact, O(1). Any other trigger: the latest by bisection
    (:func:`_previous_fire`), the count one fire at a time up to ``_COUNT_LIMIT`` (then a
    lower bound). Either way the cost does not grow with the downtime.
    """
    if isinstance(trigger, Every):  # fires from ``first`` on are ``first + k * period``
        period = trigger.period
        steps = (cutoff - _TICK - first) // period
        return first + steps * period, steps + 1, True
    last = _previous_fire(trigger, first, cutoff)
    count, fire = 1, first
    while fire < last and count < _COUNT_LIMIT:
        nxt = trigger.next_fire(fire)
        assert nxt is not None and nxt <= last
        fire, count = nxt, count + 1
    return last, count, fire == last


def _previous_fire(trigger: Trigger, first: datetime, end: datetime) -> datetime:
    """The latest fire before ``end``, knowing ``first`` is a fire before ``end``.

    Bisection on ``next_fire``, which is monotonic: about log2 of the span in microseconds
    calls (45 for a year), whatever the number of fires in it.
    """
    lo_next = trigger.next_fire(first)
    if lo_next is None or lo_next >= end:
        return first
    lo, hi = first, end - _TICK  # next_fire(lo) < end <= next_fire(hi)
    while hi - lo > _TICK:
        mid = lo + (hi - lo) // 2
        nxt = trigger.next_fire(mid)
        if nxt is not None and nxt < end:
            lo, lo_next = mid, nxt
        else:
            hi = mid
    return lo_next
