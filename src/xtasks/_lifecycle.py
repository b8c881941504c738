"""The life of a run, from its request to its final record: pure, like the planner.

A request opens a run (or skips it, per ``overlap``); the run waits for its dependencies,
for its due time (jitter, retry delay), then for a slot; it starts, and its attempts end
in success, a retry, or a final status that releases its dependents and the runs held
behind it, moves the task's failure streak and decides its alerts. Every step appends
its decisions (:mod:`._decisions`) to :attr:`Lifecycle.decisions`, which the planner
hands over on ``drain``.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from datetime import timedelta
from typing import TYPE_CHECKING, Any, final

from ._decisions import CancelAttempt, Decision, RecordRun, SaveTask, SendAlert, StartAttempt
from ._events import Alert, AlertKind
from ._run_state import Run
from ._runs import MAX_EARLIER_ATTEMPTS, AttemptRecord, RunCause, RunStatus, TaskState
from ._task import Overlap

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator, Mapping
    from datetime import datetime

    from ._ready import ReadyQueue
    from ._run_state import TaskEntry
    from ._runs import ErrorInfo, RunRecord

__all__ = ["Lifecycle"]


@final
class _Opening:
    """A run being opened by :meth:`Lifecycle.open`: how far its dependencies are gated."""

    __slots__ = ("dep", "deps", "pulled", "run", "upstream")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.deps: Iterator[str] = iter(run.entry.task.depends_on)
        self.dep = ""  #: the dependency being gated
        self.pulled: Run | None = None  #: a run of ``dep`` made live, to open next
        self.upstream: list[Run] = []  #: live runs of its dependencies it will wait for


@final
class Lifecycle:
    """Live runs, the ready queue and the runs waiting for their due time.

    :param entries: the planner's registered tasks by name (shared, read here to gate
        runs on their dependencies).
    """

    def __init__(
        self,
        entries: Mapping[str, TaskEntry],
        ready: ReadyQueue,
        *,
        replica: str,
        rng: random.Random,
        new_id: Callable[[], str],
    ) -> None:
        self._entries = entries
        self.ready = ready
        self.replica = replica
        self._rng = rng
        self._new_id = new_id
        self.runs: dict[str, Run] = {}  #: live runs by id
        self.decisions: list[Decision] = []  #: taken since the planner's last drain
        #: Set by the planner's shutdown: nothing starts or retries any more.
        self.closing = False
        #: Executors whose runs stay recorded ``queued`` until the executor reports the
        #: start (``Executor.reports_start``); the ids of those runs not started yet.
        self.reports_start: set[str] = set()
        self._awaiting_start: set[str] = set()
        # Runs waiting for their due time (retry delay, jitter): (due, arrival, run, token).
        # Pure bookkeeping, so every drain moves the due ones to the ready queue.
        self._waking: list[tuple[datetime, int, Run, int]] = []
        self._seq = itertools.count()

    def next_due(self) -> datetime | None:
        """When the next run waiting for its due time becomes ready, or ``None``."""
        waking = self._waking
        while waking and waking[0][2].token != waking[0][3]:
            heapq.heappop(waking)
        return waking[0][0] if waking else None

    def start_ready(self, now: datetime) -> None:
        """Start what the free slots allow, best first (priority, due time, arrival)."""
        self.wake_due(now)  # a run due now competes for the slots with the others
        ready = self.ready
        run = ready.pop()
        while run is not None:
            self._start(run, now)
            run = ready.pop()

    def take_decisions(self) -> list[Decision]:
        decisions = self.decisions
        self.decisions = []
        return decisions

    def clear_waiting(self) -> None:
        """Shutdown: no run waits for its due time any more."""
        self._waking.clear()

    def new_run(
        self,
        entry: TaskEntry,
        kind: RunCause,
        now: datetime,
        *,
        scheduled_at: datetime | None = None,
        args: tuple[Any, ...] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Run:
        """A new live run of ``entry``; ``args``/``kwargs`` replace the task's own."""
        run = Run(self._new_id(), entry, kind, scheduled_at or now)
        if args is not None:
            run.args = args
        if kwargs is not None:
            run.kwargs = kwargs
        self.runs[run.id] = run
        return run

    def request(
        self,
        entry: TaskEntry,
        kind: RunCause,
        now: datetime,
        scheduled_at: datetime,
        *,
        args: tuple[Any, ...] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Run:
        """A run of ``entry`` is asked for (a fire, a manual request, a recovery): open it,
        hold it behind the live one (``overlap="queue"``, catch-up replays) or skip it."""
        if kind is RunCause.CATCH_UP:
            # Replays of missed fires never go through the overlap policy: they run one
            # after another, each once no other run of the task is live.
            run = self.new_run(
                entry, kind, now, scheduled_at=scheduled_at, args=args, kwargs=kwargs
            )
            if entry.active or entry.replays:
                entry.hold_replay(run)
                self.record(run)
            else:
                self.open(run, now)
            return run
        overlap = entry.task.overlap
        if entry.active and overlap is not Overlap.ALLOW:
            run = self.new_run(
                entry, kind, now, scheduled_at=scheduled_at, args=args, kwargs=kwargs
            )
            if overlap is Overlap.QUEUE and entry.queued_behind is None:
                entry.queued_behind = run
                self.record(run)
                return run
            self.final(run, RunStatus.SKIPPED, now, reason="overlap")
            return run
        run = self.new_run(entry, kind, now, scheduled_at=scheduled_at, args=args, kwargs=kwargs)
        if entry.task.jitter and kind is RunCause.SCHEDULE:
            run.due = scheduled_at + timedelta(seconds=self._rng.uniform(0, entry.task.jitter))
        self.open(run, now)
        return run

    def open(self, run: Run, now: datetime) -> None:
        """Make ``run`` live: gate it on its dependencies, pulling runs of them as needed.

        Depth first, as a recursion would go (a pulled run is opened, and recorded,
        before the run that pulled it), on a stack of its own: a chain of dependencies
        100,000 deep costs memory, never the interpreter's recursion limit.
        """
        run.entry.add_active(run)
        if not run.entry.task.depends_on:  # most runs: nothing to gate
            self.record(run)
            self.schedule_start(run, now)
            return
        stack = [_Opening(run)]
        while stack:
            frame = stack[-1]
            pulled = frame.pulled
            if pulled is not None:  # the run it pulled is open now: gate on it
                frame.pulled = None
                if not self._gate(frame, pulled, now):
                    stack.pop()
                    continue
            gated = self._gate_next(frame, now)
            if frame.pulled is not None:  # open the pulled run first, then come back
                stack.append(_Opening(frame.pulled))
                continue
            stack.pop()
            if gated:
                self._opened(frame, now)

    def _gate_next(self, frame: _Opening, now: datetime) -> bool:
        """Gate ``frame.run`` on its remaining dependencies until one needs a run pulled
        (left in ``frame.pulled``, made live but not opened yet). ``False`` when the run
        ended instead (skipped: a dependency is unknown, paused or did not succeed)."""
        run = frame.run
        for dep in frame.deps:
            frame.dep = dep
            dentry = self._entries.get(dep)
            if dentry is None:
                self.final(run, RunStatus.SKIPPED, now, reason=f"unknown dependency: {dep}")
                return False
            if dentry.state is not TaskState.ACTIVE:
                self.final(
                    run, RunStatus.SKIPPED, now, reason=f"upstream_{dentry.state.value}: {dep}"
                )
                return False
            if not dentry.active:
                pulled = frame.pulled = self.new_run(dentry, RunCause.DEPENDENCY, now)
                dentry.add_active(pulled)
                return True
            if not self._gate(frame, next(iter(dentry.active)), now):  # the oldest
                return False
        return True

    def _gate(self, frame: _Opening, drun: Run, now: datetime) -> bool:
        """Gate ``frame.run`` on ``drun``, the live run of its dependency ``frame.dep``.
        ``False`` when that ended the run: ``drun`` is over and did not succeed."""
        if drun.status.is_final:
            if drun.status is not RunStatus.SUCCEEDED:
                reason = f"upstream_{drun.status.value}: {frame.dep}"
                self.final(frame.run, RunStatus.SKIPPED, now, reason=reason)
                return False
            return True
        frame.upstream.append(drun)
        return True

    def _opened(self, frame: _Opening, now: datetime) -> None:
        """Every dependency of ``frame.run`` is gated: it waits for their runs, or is due."""
        run = frame.run
        if frame.upstream:
            run.status = RunStatus.WAITING
            run.waiting_on = {drun.id for drun in frame.upstream}
            for drun in frame.upstream:
                if drun.dependents is None:
                    drun.dependents = [run]
                else:
                    drun.dependents.append(run)
            self.record(run)
            return
        self.record(run)
        self.schedule_start(run, now)

    def cancel_run(self, run_id: str, now: datetime, reason: str = "cancelled") -> bool:
        """Cancel one live run, leaving its task's state alone.

        A run not started yet ends ``cancelled`` at once; a running one gets its attempt
        cancelled (:class:`CancelAttempt`) and ends when the runtime reports it. Returns
        ``False`` when no live run has this id (it is final, or never was).
        """
        run = self.runs.get(run_id)
        if run is None:
            return False
        if run.status is RunStatus.RUNNING:
            self.decisions.append(CancelAttempt(run.id, reason))
        else:
            self.final(run, RunStatus.CANCELLED, now, reason=reason)
        return True

    def schedule_start(self, run: Run, now: datetime) -> None:
        if run.due > now:
            heapq.heappush(self._waking, (run.due, next(self._seq), run, run.token))
        else:
            self.ready.push(run)

    def wake_due(self, now: datetime) -> None:
        """Runs whose due time came join the ready queue, earliest due first."""
        waking = self._waking
        while waking and waking[0][0] <= now:
            _due, _seq, run, token = heapq.heappop(waking)
            if run.token == token:
                self.ready.push(run)

    def _start(self, run: Run, now: datetime) -> None:
        """``run`` got a slot: it is running, stored so, then executed."""
        run.token += 1
        run.status = RunStatus.RUNNING
        run.attempts += 1
        run.attempt_started_at = now
        if run.started_at is None:
            run.started_at = now
        if self.reports_start and run.entry.task.runs_on in self.reports_start:
            # It holds its slot, but history says queued until the executor reports.
            self._awaiting_start.add(run.id)
            self.decisions.append(RecordRun(self.snapshot(run)))
        else:
            self.record(run)
        self.decisions.append(
            StartAttempt(run.id, run.entry.task, run.args, run.kwargs, run.attempts)
        )

    def snapshot(self, run: Run) -> RunRecord:
        """``run`` as history shows it: ``queued`` while its executor has not reported
        the start of its attempt."""
        record = run.record(self.replica)
        if self._awaiting_start and run.id in self._awaiting_start:
            started_at = None if run.attempts == 1 else record.started_at
            record = dataclasses.replace(record, status=RunStatus.QUEUED, started_at=started_at)
        return record

    def started(self, run_id: str, now: datetime, worker: str | None = None) -> None:
        """The executor reports that the attempt of ``run_id`` began, on ``worker`` (as
        the executor names it; bounded by the planner): it is recorded ``running`` from
        ``now``. Once per attempt; a run that ended meanwhile, or whose executor does not
        report starts, is left alone."""
        if run_id not in self._awaiting_start:
            return
        self._awaiting_start.discard(run_id)
        run = self.runs.get(run_id)
        if run is None or run.status is not RunStatus.RUNNING:
            return
        run.attempt_started_at = now
        run.worker = worker
        if run.attempts == 1:
            run.started_at = now
        self.record(run)

    def succeeded(self, run_id: str, now: datetime, result: Any) -> None:
        """The running attempt of ``run_id`` returned ``result``."""
        run = self._running_run(run_id)
        run.result = result
        run.error = None  # the record describes the last attempt, which succeeded
        self.final(run, RunStatus.SUCCEEDED, now)

    def failed(self, run_id: str, now: datetime, error: ErrorInfo) -> None:
        """The running attempt of ``run_id`` raised or timed out: retry or fail the run."""
        run = self._running_run(run_id)
        run.error = error
        task = run.entry.task
        if (
            run.attempts <= task.max_retries
            and not self.closing
            and run.entry.state is not TaskState.CANCELLED
            and not run.entry.removed
        ):
            delay = task.retry_delay * task.retry_backoff ** (run.attempts - 1)
            if task.jitter:
                delay += self._rng.uniform(0, task.jitter)
            run.status = RunStatus.QUEUED
            run.token += 1
            run.due = now + timedelta(seconds=delay)
            attempt = AttemptRecord(run.attempts, run.attempt_started_at or now, now, error)
            run.earlier_attempts = (*run.earlier_attempts, attempt)[-MAX_EARLIER_ATTEMPTS:]
            run.worker = None  # until the next attempt's executor says where it runs
            self.record(run)
            self.schedule_start(run, now)
            return
        if self.closing and run.attempts <= task.max_retries:
            self.final(run, RunStatus.CANCELLED, now, reason="shutdown (retry pending)")
            return
        self.final(run, RunStatus.FAILED, now)

    def cancelled(self, run_id: str, now: datetime, reason: str) -> None:
        """The running attempt of ``run_id`` was cancelled; cancellation is never retried."""
        self.final(self._running_run(run_id), RunStatus.CANCELLED, now, reason=reason)

    def _running_run(self, run_id: str) -> Run:
        """The run whose attempt just ended; its slot is free again."""
        run = self.runs[run_id]
        assert run.status is RunStatus.RUNNING, run
        self.ready.release(run)
        if self._awaiting_start:
            self._awaiting_start.discard(run_id)
        return run

    def cancel_pending(
        self, entry: TaskEntry, now: datetime, reason: str, only: RunStatus | None = None
    ) -> None:
        if only in (None, RunStatus.QUEUED):
            held = [entry.queued_behind] if entry.queued_behind is not None else []
            held.extend(entry.replays or ())
            entry.queued_behind = None
            entry.replays = None
            for run in held:
                self.final(run, RunStatus.CANCELLED, now, reason=reason)
        for run in list(entry.active):
            if run.status is not RunStatus.RUNNING and (only is None or run.status is only):
                self.final(run, RunStatus.CANCELLED, now, reason=reason)

    def final(
        self, run: Run, status: RunStatus, now: datetime, *, reason: str | None = None
    ) -> None:
        """End ``run`` with ``status``; a run that did not succeed ends its dependents too.

        Depth first, as a recursion would go (each dependent ends, and its own dependents
        after it, before the next one; a task's held runs are released once all of that
        is done), on a stack of its own: 100,000 dependents in a chain cost memory, never
        the interpreter's recursion limit.
        """
        stack = [(run, iter(self._end(run, status, now, reason)))]
        while stack:
            ended, doomed = stack[-1]
            for dependent in doomed:
                if not dependent.status.is_final:
                    outcome = RunStatus.CANCELLED if self.closing else RunStatus.SKIPPED
                    stack.append((dependent, iter(self._end(dependent, outcome, now, None))))
                    break
            else:
                stack.pop()
                entry = ended.entry
                if not entry.active and not self.closing and not entry.releasing:
                    self._release_waiting(entry, now)

    def _end(self, run: Run, status: RunStatus, now: datetime, reason: str | None) -> list[Run]:
        """Record ``run`` ended with ``status``: its task's failure streak and alerts, the
        release of its dependents when it succeeded. Returns the dependents it dooms when
        it did not (each one's reason already set), for :meth:`final` to end in turn."""
        entry = run.entry
        run.status = status
        run.token += 1  # a ready-queue entry of this run is now stale: uncount it
        self.ready.discard(run)
        run.finished_at = now
        if reason is not None:
            run.reason = reason
        self.runs.pop(run.id, None)
        entry.drop_active(run)
        if entry.queued_behind is run:
            entry.queued_behind = None
        elif entry.replays and run.cause is RunCause.CATCH_UP and run in entry.replays:
            entry.replays.remove(run)
        self.record(run)
        if status is RunStatus.FAILED:
            entry.failures += 1
            task = entry.task
            if task.alert_on_failure and not entry.alerting and entry.failures >= task.alert_after:
                entry.alerting = True
                self._alert(AlertKind.FAILING, run, entry.failures, now)
            self.save_task(entry)
        elif status is RunStatus.SUCCEEDED and (entry.failures or entry.alerting):
            if entry.alerting:
                self._alert(AlertKind.RECOVERED, run, 0, now)
            entry.failures = 0
            entry.alerting = False
            self.save_task(entry)
        dependents, run.dependents = run.dependents or (), None
        if status is RunStatus.SUCCEEDED:
            for dependent in dependents:
                waiting = dependent.waiting_on
                if waiting is not None:
                    waiting.discard(run.id)
                if not waiting and dependent.status is RunStatus.WAITING:
                    dependent.status = RunStatus.QUEUED
                    dependent.token += 1
                    dependent.due = max(dependent.due, now)
                    self.record(dependent)
                    self.schedule_start(dependent, now)
            return []
        # Name this run as the cause in every direct dependent before skipping any: a
        # dependent reached again through another skipped run keeps this reason. At
        # shutdown every pending run is cancelled for that reason, whatever its upstream
        # did.
        cause = "shutdown" if self.closing else f"upstream_{status.value}: {entry.task.name}"
        doomed = [d for d in dependents if not d.status.is_final]
        for dependent in doomed:
            if dependent.reason is None:
                dependent.reason = cause
        return doomed

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
                self.open(run, now)
        finally:
            entry.releasing = False

    def record(self, run: Run) -> None:
        self.decisions.append(RecordRun(run.record(self.replica)))

    def save_task(
        self, entry: TaskEntry, *, state_changed: bool = False, from_store: bool = False
    ) -> None:
        if entry.registered:
            record = entry.task_record()
            self.decisions.append(SaveTask(entry.task.name, record, state_changed, from_store))

    def _alert(self, kind: AlertKind, run: Run, failures: int, now: datetime) -> None:
        alert = Alert(
            kind=kind,
            task=run.entry.task.name,
            run=run.record(self.replica),
            consecutive_failures=failures,
            at=now,
        )
        self.decisions.append(SendAlert(alert))
