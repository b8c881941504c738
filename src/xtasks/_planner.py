"""The planner: every scheduling policy, as pure code.

It owns the registry, the timers (next fire of every task, retry and jitter delays), the
run lifecycle (dependency gating, overlap, retries, cancellation, the failure streak and
its alerts) and what starts when. It never awaits and never reads a clock: every command
takes ``now``. It speaks only in decisions (:mod:`._decisions`): each command appends
what it wants done in the world, and :meth:`Planner.drain` starts what the free slots
allow and hands them all over. That is what lets Hypothesis drive it through thousands of
random histories in virtual time.

Its seams live next door: the dependency graph in :mod:`._graph`, catch-up arithmetic in
:mod:`._catch_up`, the ready queue and its slots in :mod:`._ready`, the live run and task
objects in :mod:`._run_state`.

With ``catch_up="all"``, the replays (cause ``catch_up``) run one after another, oldest
fire first, whatever ``overlap`` says: a replay that finds a run of its task live is
recorded ``queued`` and waits until none is. ``overlap`` still decides what a fresh fire
or a manual request does while a replay runs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import secrets
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, final

from ._catch_up import CATCH_UP_CAP, late_claims
from ._decisions import (
    CancelAttempt,
    ClaimFire,
    Decision,
    RecordRun,
    SaveTask,
    SendAlert,
    StartAttempt,
)
from ._errors import (
    ConfigError,
    DuplicateTaskError,
    SchedulerStateError,
    TaskNotFoundError,
    TaskStateError,
)
from ._events import Alert, AlertKind
from ._graph import DependencyGraph
from ._ready import ReadyQueue
from ._run_state import Run, TaskEntry
from ._runs import RunCause, RunStatus, TaskState
from ._task import Overlap

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from ._errors import UnknownDependencyError
    from ._runs import ErrorInfo, RunRecord, TaskRecord
    from ._task import Task

__all__ = ["CATCH_UP_CAP", "Planner"]

_log = logging.getLogger("xtasks")


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
        self._rng = rng or random.Random()
        self._new_id = new_id or _default_ids()
        self._entries: dict[str, TaskEntry] = {}
        self._tasks: dict[str, Task] = {}
        self._tasks_view = MappingProxyType(self._tasks)
        self._graph = DependencyGraph()
        self._adhoc: dict[str, TaskEntry] = {}
        self._runs: dict[str, Run] = {}  # live runs by id
        # Fire timers: (fire time, depth in the graph, arrival, entry, entry token).
        self._timers: list[tuple[datetime, int, int, TaskEntry, int]] = []
        # Runs waiting for their due time (retry delay, jitter): (due, arrival, run, token).
        # Pure bookkeeping, so every drain moves the due ones to the ready queue.
        self._waking: list[tuple[datetime, int, Run, int]] = []
        self._ready = ReadyQueue(
            max_concurrency=max_concurrency,
            thread_slots=thread_slots,
            process_slots=process_slots,
        )
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
        self._graph.add(task.name, task.depends_on)
        trigger = task.trigger.anchored(now) if task.trigger is not None else None
        entry = TaskEntry(task, trigger, registered=True)
        entry.anchor = now
        self._entries[task.name] = entry
        self._tasks[task.name] = task
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
        del self._tasks[name]
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
        return self._graph.unknown()

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

    def live_record(self, run_id: str) -> RunRecord | None:
        """A snapshot of the live run ``run_id``, or ``None`` once it is final."""
        run = self._runs.get(run_id)
        return None if run is None else run.record(self.replica)

    def get_run(self, run_id: str) -> Run | None:
        """The live run with this id (for tests of the planner itself)."""
        return self._runs.get(run_id)

    def live_runs(self) -> list[Run]:
        """Every live run (for tests of the planner itself)."""
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
                entry = self._adhoc[task.name] = TaskEntry(task, None, registered=False)
        run = self._new_run(entry, RunCause.SUBMIT, now)
        run.args = args
        run.kwargs = kwargs
        self._open(run, now)
        return run

    # --- time -------------------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """When :meth:`advance` next has something to do, or ``None`` for never."""
        timers = self._timers
        while timers and _stale_fire(timers[0]):
            heapq.heappop(timers)
        waking = self._waking
        while waking and waking[0][2].token != waking[0][3]:
            heapq.heappop(waking)
        if timers and waking:
            return min(timers[0][0], waking[0][0])
        return timers[0][0] if timers else (waking[0][0] if waking else None)

    def advance(self, now: datetime) -> None:
        """Handle every timer due at or before ``now``, in time order."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            item = heapq.heappop(timers)
            if not _stale_fire(item):
                self._fire_due(item[3], item[0], now)
        self._wake_due(now)

    def _wake_due(self, now: datetime) -> None:
        """Runs whose due time came join the ready queue, earliest due first."""
        waking = self._waking
        while waking and waking[0][0] <= now:
            _due, _seq, run, token = heapq.heappop(waking)
            if run.token == token:
                self._ready.push(run)

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

    # --- attempts ---------------------------------------------------------------------

    def attempt_succeeded(self, run_id: str, now: datetime, result: Any) -> None:
        """The running attempt of ``run_id`` returned ``result``."""
        run = self._running_run(run_id)
        run.result = result
        run.error = None  # the record describes the last attempt, which succeeded
        self._final(run, RunStatus.SUCCEEDED, now)

    def attempt_failed(self, run_id: str, now: datetime, error: ErrorInfo) -> None:
        """The running attempt of ``run_id`` raised or timed out: retry or fail the run."""
        run = self._running_run(run_id)
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

    def attempt_cancelled(self, run_id: str, now: datetime, reason: str) -> None:
        """The running attempt of ``run_id`` was cancelled; cancellation is never retried."""
        self._final(self._running_run(run_id), RunStatus.CANCELLED, now, reason=reason)

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
        self._waking.clear()
        entries = [*self._entries.values(), *self._adhoc.values()]
        for entry in entries:
            entry.token += 1
        for status in (RunStatus.WAITING, RunStatus.QUEUED):
            for entry in entries:
                self._cancel_pending(entry, now, "shutdown", only=status)
        return [run for run in self._runs.values() if run.status is RunStatus.RUNNING]

    def drain(self, now: datetime) -> list[Decision]:
        """Start what the free slots allow, then hand over every decision taken since the
        last call. Call it after every command (the runtime's one entry point does).

        Starting a run is itself a decision: its ``running`` record, then its
        :class:`StartAttempt`. Order: priority, then due time, then arrival; a run waits
        only for a slot of its own kind. Nothing starts once :meth:`shutdown` was called.
        """
        if not self._closing:
            self._wake_due(now)  # a run due now competes for the slots with the others
            ready = self._ready
            run = ready.pop()
            while run is not None:
                self._start(run, now)
                run = ready.pop()
        decisions = self._decisions
        self._decisions = []
        return decisions

    @property
    def running(self) -> int:
        """Attempts started and not yet reported ended."""
        return self._ready.running

    @property
    def ready_count(self) -> int:
        """Runs ready to start, waiting for a concurrency slot of their kind. O(1)."""
        return len(self._ready)

    # --- internals --------------------------------------------------------------------

    def _refuse_if_closing(self) -> None:
        if self._closing:
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

    def _rearm(self, entry: TaskEntry, now: datetime) -> None:
        """Arm an active task from its last fire, or from ``now`` if it never fired."""
        if entry.state is TaskState.ACTIVE and entry.task.enabled:
            self._arm(entry, entry.last_fire or now, first=entry.last_fire is None)
        else:
            entry.token += 1
            entry.next_fire = None

    def _arm(self, entry: TaskEntry, after: datetime, *, first: bool = False) -> None:
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
                (nxt, self._graph.depth(entry.task.name), next(self._seq), entry, entry.token),
            )

    def _fire_due(self, entry: TaskEntry, fire_time: datetime, now: datetime) -> None:
        task = entry.task
        trigger = entry.trigger
        assert trigger is not None
        cutoff = now - timedelta(seconds=task.misfire_grace)
        if fire_time >= cutoff:
            self._decisions.append(ClaimFire(task.name, fire_time, RunCause.SCHEDULE))
            self._arm(entry, fire_time)
            return
        # Late beyond misfire_grace: the catch-up policy decides, at a cost that does
        # not grow with the number of fires missed.
        claims, last = late_claims(task, trigger, fire_time, cutoff)
        self._decisions.extend(claims)
        # Resume the normal grid with the first fire inside the grace window.
        self._arm(entry, last)

    def _new_run(
        self,
        entry: TaskEntry,
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
        entry: TaskEntry,
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
            heapq.heappush(self._waking, (run.due, next(self._seq), run, run.token))
        else:
            self._ready.push(run)

    def _start(self, run: Run, now: datetime) -> None:
        """``run`` got a slot: it is running, stored so, then executed."""
        run.token += 1
        run.status = RunStatus.RUNNING
        run.attempts += 1
        if run.started_at is None:
            run.started_at = now
        self._record(run)
        self._decisions.append(
            StartAttempt(run.id, run.entry.task, run.args, run.kwargs, run.attempts)
        )

    def _running_run(self, run_id: str) -> Run:
        """The run whose attempt just ended; its slot is free again."""
        run = self._runs[run_id]
        assert run.status is RunStatus.RUNNING, run
        self._ready.release(run)
        return run

    def _record(self, run: Run) -> None:
        self._decisions.append(RecordRun(run.record(self.replica)))

    def _save_task(self, entry: TaskEntry, *, state_changed: bool = False) -> None:
        if entry.registered:
            self._decisions.append(SaveTask(entry.task.name, entry.task_record(), state_changed))

    def _cancel_pending(
        self, entry: TaskEntry, now: datetime, reason: str, only: RunStatus | None = None
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
        run.token += 1  # a ready-queue entry of this run is now stale: uncount it
        self._ready.discard(run)
        run.finished_at = now
        if reason is not None:
            run.reason = reason
        self._runs.pop(run.id, None)
        if run in entry.active:
            entry.active.remove(run)
        if entry.queued_behind is run:
            entry.queued_behind = None
        elif entry.replays and run.cause is RunCause.CATCH_UP and run in entry.replays:
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

    def _release_waiting(self, entry: TaskEntry, now: datetime) -> None:
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


def _stale_fire(item: tuple[datetime, int, int, TaskEntry, int]) -> bool:
    """A fire timer that no longer holds: its task was re-armed, paused or cancelled."""
    entry = item[3]
    return entry.token != item[4] or entry.state is not TaskState.ACTIVE
