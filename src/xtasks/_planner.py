"""The planner: every scheduling policy, as pure code.

It owns the registry, the timers (next fire of every task), the task states (pause,
resume, cancel, shutdown) and what happens to due fires (claim, catch-up, overlap); the
life of each run, from request to final record, is :mod:`._lifecycle`'s. It never awaits
and never reads a clock: every command takes ``now``. It speaks only in decisions
(:mod:`._decisions`): each command appends what it wants done in the world, and
:meth:`Planner.drain` starts what the free slots allow and hands them all over. That is
what lets Hypothesis drive it through thousands of random histories in virtual time.

Its other seams live next door: the dependency graph in :mod:`._graph`, catch-up
arithmetic in :mod:`._catch_up`, the ready queue and its slots in :mod:`._ready`, the
live run and task objects in :mod:`._run_state`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, final

from ._catch_up import CATCH_UP_CAP, due_claims
from ._decisions import CancelAttempt, ClaimFire, Decision
from ._errors import (
    ConfigError,
    DuplicateTaskError,
    SchedulerStateError,
    TaskNotFoundError,
    TaskStateError,
)
from ._graph import DependencyGraph
from ._lifecycle import Lifecycle
from ._ready import ReadyQueue
from ._run_state import Run, TaskEntry
from ._runs import MAX_WORKER_CHARS, RunCause, RunStatus, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    from ._errors import UnknownDependencyError
    from ._runs import ErrorInfo, RunRecord, TaskRecord
    from ._task import Task

__all__ = ["CATCH_UP_CAP", "Planner"]

_log = logging.getLogger("xtasks")


def _sequential_ids() -> Callable[[], str]:
    """Ids ``run-000001``, ``run-000002``...: pure, for a planner driven alone (tests,
    simulations). The scheduler gives its planner time-ordered ids (:mod:`._run_ids`)."""
    counter = itertools.count(1)
    return lambda: f"run-{next(counter):06d}"


@final
class Planner:
    """Sans-I/O scheduling state machine.

    :param max_concurrency: runs executing at once, all modes together.
    :param thread_slots: ``sync`` runs executing at once (the thread pool's size).
    :param process_slots: ``process`` runs executing at once.
    :param replica: written into every record, so history shows who ran what.
    :param rng: source of jitter; seed it for reproducible tests.
    :param new_id: makes run ids; sequential by default, which is unique in this
        planner only (the scheduler gives unique, time-ordered ones: its clock read
        stays out of here).
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
        self._entries: dict[str, TaskEntry] = {}
        self._tasks_view = _TaskView(self._entries)
        self._graph = DependencyGraph()
        self._adhoc: dict[str, TaskEntry] = {}
        # Fire timers: (fire time, depth in the graph, arrival, entry, entry token).
        self._timers: list[tuple[datetime, int, int, TaskEntry, int]] = []
        self._seq = itertools.count()
        self._life = Lifecycle(
            self._entries,
            ReadyQueue(
                max_concurrency=max_concurrency,
                thread_slots=thread_slots,
                process_slots=process_slots,
            ),
            replica=replica,
            rng=rng or random.Random(),
            new_id=new_id or _sequential_ids(),
        )

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
        if task.depends_on:  # else it leaves no trace in the graph
            self._graph.add(task.name, task.depends_on)
        trigger = task.trigger.anchored(now) if task.trigger is not None else None
        entry = TaskEntry(task, trigger, registered=True)
        entry.anchor = now
        self._entries[task.name] = entry
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
        self._graph.remove(name)
        del self._entries[name]
        entry.token += 1
        entry.removed = True
        entry.registered = False  # no SaveTask from now on
        entry.next_fire = None
        self._life.cancel_pending(entry, now, "removed")
        return entry.task

    def set_slots(self, executor: str, slots: int | None, *, reports_start: bool) -> None:
        """Executor ``executor`` runs at most ``slots`` attempts at once (``None``: only
        ``max_concurrency`` bounds them). The built-ins' come from the constructor.

        ``reports_start``: its runs are recorded ``queued`` at dispatch and ``running``
        only at :meth:`attempt_started`."""
        self._life.ready.set_slots(executor, slots)
        if reports_start:
            self._life.reports_start.add(executor)
        else:
            self._life.reports_start.discard(executor)

    def validate(self) -> None:
        """Check that every dependency names a registered task.

        :raises UnknownDependencyError: naming the task and the missing name.
        """
        problems = self.unknown_dependencies()
        if problems:
            raise problems[0]

    def unknown_dependencies(self) -> list[UnknownDependencyError]:
        """One error per ``depends_on`` entry that names no registered task."""
        return self._graph.unknown(self._entries)

    def start(self, now: datetime, records: Mapping[str, TaskRecord] | None = None) -> None:
        """Arm every active task's timer, once: at scheduler start, and again after a stop.

        ``records`` is the state a store kept, by task name: each is applied first, as
        :meth:`restore` does, so a task is armed once from its stored state rather than
        armed here and again by :meth:`restore`. A task that has fired before re-arms
        from its last fire, one that never did from its stored registration, so fires
        missed while stopped go through its ``catch_up`` policy; the others (new tasks)
        count from ``now``.
        """
        self._life.closing = False
        for name, entry in self._entries.items():
            record = records.get(name) if records else None
            if record is not None:
                self._load(entry, record)
            self._rearm(entry, now, record.anchor if record is not None else None)

    def restore(self, name: str, record: TaskRecord, now: datetime) -> None:
        """Apply the state a store kept for ``name`` and re-arm it (a task added while the
        scheduler runs, or after a restart; at start, :meth:`start` takes the records).

        A ``last_fire`` in the past re-arms the trigger from it, so fires missed while no
        scheduler ran go through the task's ``catch_up`` policy on the next :meth:`advance`.
        """
        entry = self._entry(name)
        self._load(entry, record)
        self._rearm(entry, now, record.anchor)

    def task_record(self, name: str, definition: str | None = None) -> TaskRecord:
        """The state the store should hold for ``name`` (with ``definition``, if given)."""
        return self._entry(name).task_record(definition)

    def state_of(self, name: str) -> TaskState:
        return self._entry(name).state

    def states(self) -> dict[str, TaskState]:
        """Every registered task's state, by name, in registration order."""
        return {name: entry.state for name, entry in self._entries.items()}

    def next_fire_of(self, name: str) -> datetime | None:
        return self._entry(name).next_fire

    def consecutive_failures_of(self, name: str) -> int:
        return self._entry(name).failures

    def live_record(self, run_id: str) -> RunRecord | None:
        """A snapshot of the live run ``run_id``, or ``None`` once it is final."""
        run = self._life.runs.get(run_id)
        return None if run is None else self._life.snapshot(run)

    def get_run(self, run_id: str) -> Run | None:
        """The live run with this id (for tests of the planner itself)."""
        return self._life.runs.get(run_id)

    def live_runs(self) -> list[Run]:
        """Every live run (for tests of the planner itself)."""
        return list(self._life.runs.values())

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
        return self._life.request(entry, kind, now, now, args=args, kwargs=kwargs)

    def cancel_run(self, run_id: str, now: datetime, reason: str = "cancelled") -> bool:
        """Cancel one live run, leaving its task's state alone.

        A run not started yet ends ``cancelled`` at once; a running one gets its attempt
        cancelled (:class:`CancelAttempt`) and ends when the runtime reports it. Returns
        ``False`` when no live run has this id (it is final, or never was).
        """
        return self._life.cancel_run(run_id, now, reason)

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
                entry = self._adhoc[task.name] = TaskEntry(task, None, registered=False)
        run = self._life.new_run(entry, RunCause.SUBMIT, now)
        run.args = args
        run.kwargs = kwargs
        self._life.open(run, now)
        return run

    # --- time -------------------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """When :meth:`advance` next has something to do, or ``None`` for never."""
        timers = self._timers
        while timers and _stale_fire(timers[0]):
            heapq.heappop(timers)
        due = self._life.next_due()
        if timers and due is not None:
            return min(timers[0][0], due)
        return timers[0][0] if timers else due

    def advance(self, now: datetime) -> None:
        """Handle every timer due at or before ``now``, in time order.

        Each task's fires due by ``now`` are handled together, once: the task's next
        timer is armed after ``now``, so a late wake-up never turns into a burst.
        """
        timers = self._timers
        while timers and timers[0][0] <= now:
            item = heapq.heappop(timers)
            if not _stale_fire(item):
                self._fire_due(item[3], item[0], now)
        self._life.wake_due(now)

    def fire_claimed(self, claim: ClaimFire, now: datetime) -> Run | None:
        """The store granted ``claim``: create its run (or its ``missed`` record)."""
        entry = self._entries.get(claim.task)
        if entry is None or self._life.closing:
            return None
        handled = claim.missed_until or claim.fire_time  # a missed claim covers a range
        if entry.last_fire is None or handled > entry.last_fire:
            entry.last_fire = handled
        if claim.missed or claim.missed_more:
            run = self._life.new_run(entry, RunCause.SCHEDULE, now, scheduled_at=claim.fire_time)
            first = claim.fire_time.isoformat()
            last = (claim.missed_until or claim.fire_time).isoformat()
            count = f"{claim.missed}+" if claim.missed_more else f"{claim.missed}"
            because = claim.missed_because or f"catch_up={entry.task.catch_up.value}"
            reason = f"missed {count} fire(s) from {first} to {last} ({because})"
            self._life.final(run, RunStatus.MISSED, now, reason=reason)
            return run
        if entry.state is not TaskState.ACTIVE:
            return None
        return self._life.request(entry, claim.kind, now, claim.fire_time)

    def recover_lost(self, record: RunRecord, now: datetime) -> Run | None:
        """A run of ``record.task`` was lost with its replica: re-run it if the task says
        ``recover=True`` (at least once), else leave it recorded ``lost`` (at most once)."""
        entry = self._entries.get(record.task)
        if (
            entry is None
            or not entry.task.recover
            or entry.state is not TaskState.ACTIVE
            or self._life.closing
            # A submission's arguments are not in its record: it cannot be run again as is.
            or record.cause is RunCause.SUBMIT
        ):
            return None
        return self._life.request(entry, record.cause, now, record.scheduled_at)

    # --- attempts ---------------------------------------------------------------------

    def attempt_started(self, run_id: str, now: datetime, where: str | None = None) -> None:
        """The executor of ``run_id`` (one that ``reports_start``) began its attempt, on
        ``where`` (a worker's name, say): it is recorded running, ``where`` as the run's
        ``worker``. Text only, its first :data:`~xtasks.RunRecord.MAX_WORKER_CHARS`
        characters: anything else, or ``""``, records no worker."""
        worker = where[:MAX_WORKER_CHARS] if isinstance(where, str) and where else None
        self._life.started(run_id, now, worker)

    def attempt_succeeded(self, run_id: str, now: datetime, result: Any) -> None:
        """The running attempt of ``run_id`` returned ``result``."""
        self._life.succeeded(run_id, now, result)

    def attempt_failed(self, run_id: str, now: datetime, error: ErrorInfo) -> None:
        """The running attempt of ``run_id`` raised or timed out: retry or fail the run."""
        self._life.failed(run_id, now, error)

    def attempt_cancelled(self, run_id: str, now: datetime, reason: str) -> None:
        """The running attempt of ``run_id`` was cancelled; cancellation is never retried."""
        self._life.cancelled(run_id, now, reason)

    # --- control ----------------------------------------------------------------------

    def pause(self, name: str, now: datetime, *, from_store: bool = False) -> None:
        """Stop firing ``name``; runs already queued or going carry on.

        ``from_store``: another replica paused it (see :meth:`apply_state`).
        """
        entry = self._entry(name)
        if entry.state is TaskState.PAUSED:
            return
        entry.state = TaskState.PAUSED
        entry.token += 1
        entry.next_fire = None
        self._life.save_task(entry, state_changed=True, from_store=from_store)

    def resume(self, name: str, now: datetime, *, from_store: bool = False) -> None:
        """Fire ``name`` again, from ``now`` on (fires while paused are not replayed)."""
        entry = self._entry(name)
        if entry.state is TaskState.ACTIVE:
            return
        entry.state = TaskState.ACTIVE
        entry.token += 1
        if entry.task.enabled:
            self._arm(entry, now)
        self._life.save_task(entry, state_changed=True, from_store=from_store)

    def cancel(self, name: str, now: datetime, *, from_store: bool = False) -> None:
        """Stop firing ``name``, cancel its queued runs and its running attempts."""
        entry = self._entry(name)
        entry.state = TaskState.CANCELLED
        entry.token += 1
        entry.next_fire = None
        self._life.cancel_pending(entry, now, "cancelled")
        for run in entry.active:
            if run.status is RunStatus.RUNNING:
                self._life.decisions.append(CancelAttempt(run.id, "cancelled"))
        self._life.save_task(entry, state_changed=True, from_store=from_store)

    def apply_state(self, name: str, state: TaskState, now: datetime) -> None:
        """Another replica set ``name``'s state (read from the store): do here what the
        pause, resume or cancel does, without writing the change back as a new one.

        A task not registered here, or already in ``state``, is left alone.
        """
        entry = self._entries.get(name)
        if entry is None or entry.state is state:
            return
        if state is TaskState.PAUSED:
            self.pause(name, now, from_store=True)
        elif state is TaskState.ACTIVE:
            self.resume(name, now, from_store=True)
        else:
            self.cancel(name, now, from_store=True)

    def shutdown(self, now: datetime) -> list[Run]:
        """Stop firing everything and cancel what has not started; return what runs."""
        self._life.closing = True
        self._timers.clear()
        self._life.clear_waiting()
        entries = [*self._entries.values(), *self._adhoc.values()]
        for entry in entries:
            entry.token += 1
        for status in (RunStatus.WAITING, RunStatus.QUEUED):
            for entry in entries:
                self._life.cancel_pending(entry, now, "shutdown", only=status)
        return [run for run in self._life.runs.values() if run.status is RunStatus.RUNNING]

    def drain(self, now: datetime) -> list[Decision]:
        """Start what the free slots allow, then hand over every decision taken since the
        last call. Call it after every command (the runtime's one entry point does).

        Starting a run is itself a decision: its ``running`` record, then its
        :class:`StartAttempt`. Order: priority, then due time, then arrival; a run waits
        only for a slot of its own kind. Nothing starts once :meth:`shutdown` was called.
        """
        life = self._life
        if not life.closing:
            life.start_ready(now)
        return life.take_decisions()

    @property
    def running(self) -> int:
        """Attempts started and not yet reported ended."""
        return self._life.ready.running

    @property
    def ready_count(self) -> int:
        """Runs ready to start, waiting for a concurrency slot of their kind. O(1)."""
        return len(self._life.ready)

    # --- internals --------------------------------------------------------------------

    def _refuse_if_closing(self) -> None:
        if self._life.closing:
            raise SchedulerStateError("the scheduler is shutting down; no new run is accepted")

    def _entry(self, name: str) -> TaskEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise TaskNotFoundError(name, sorted(self._entries))
        return entry

    def _load(self, entry: TaskEntry, record: TaskRecord) -> None:
        """Take a stored state into ``entry``, without arming it."""
        if record.anchor is not None and entry.task.trigger is not None:
            if record.anchor != entry.anchor:  # equal: our own anchor won, trigger is right
                entry.trigger = entry.task.trigger.anchored(record.anchor)
            entry.anchor = record.anchor  # the fleet's first registration, not ours
        entry.state = record.state
        entry.failures = record.consecutive_failures
        entry.alerting = record.alerting
        entry.last_fire = record.last_fire

    def _rearm(
        self, entry: TaskEntry, now: datetime, registered_at: datetime | None = None
    ) -> None:
        """Arm an active task from its last fire. One that never fired arms from when the
        store says it was registered (``registered_at``): its fires due since, while no
        scheduler ran, go through ``catch_up`` like any missed fire; else from ``now``."""
        if entry.state is TaskState.ACTIVE and entry.task.enabled:
            if entry.last_fire is not None:
                self._arm(entry, entry.last_fire)
            else:
                since = now if registered_at is None or registered_at > now else registered_at
                self._arm(entry, since, first=True)
        else:
            entry.token += 1
            entry.next_fire = None

    def _arm(self, entry: TaskEntry, after: datetime, *, first: bool = False) -> None:
        """Set the timer of ``entry`` to its trigger's next fire after ``after``.

        ``first``: the task has never fired; ask the trigger for its first fire instead
        (a one-shot ``At`` already past still fires, late, rather than never).
        """
        trigger = entry.trigger
        if trigger is None:
            nxt = None
        elif first:
            nxt = trigger.first_fire(after)
        else:
            nxt = trigger.next_fire(after)
        self._set_timer(entry, nxt)

    def _set_timer(self, entry: TaskEntry, nxt: datetime | None) -> None:
        """Make ``nxt`` the one timer of ``entry`` (``None``: it fires no more)."""
        entry.token += 1
        entry.next_fire = nxt
        if nxt is not None and not self._life.closing:
            heapq.heappush(
                self._timers,
                (nxt, self._graph.depth(entry.task.name), next(self._seq), entry, entry.token),
            )

    def _fire_due(self, entry: TaskEntry, fire_time: datetime, now: datetime) -> None:
        """The timer of ``entry`` is due: claim its fire, or, when more of its fires are
        due at ``now`` (or this one is later than ``misfire_grace``), let ``catch_up``
        decide over all of them at once, at a cost that does not grow with their number;
        then re-arm after the latest of them."""
        trigger = entry.trigger
        assert trigger is not None
        claims, following = due_claims(entry.task, trigger, fire_time, now)
        self._life.decisions.extend(claims)
        self._set_timer(entry, following)


@final
class _TaskView(Mapping[str, "Task"]):
    """The registered tasks by name, read-only and live, read off the planner's entries
    (a second dict of the same names would cost memory per task)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: dict[str, TaskEntry]) -> None:
        self._entries = entries

    def __getitem__(self, name: str) -> Task:
        return self._entries[name].task

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _stale_fire(item: tuple[datetime, int, int, TaskEntry, int]) -> bool:
    """A fire timer that no longer holds: its task was re-armed, paused or cancelled."""
    entry = item[3]
    return entry.token != item[4] or entry.state is not TaskState.ACTIVE
