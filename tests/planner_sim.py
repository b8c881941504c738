"""A virtual-time driver for the sans-I/O :class:`~xtasks._planner.Planner`.

No event loop, no clock: :class:`Sim` keeps ``now`` and plays the runtime's part. It
advances the planner's timers, claims fires (winning them all, as a single replica does,
or losing some to an imaginary other replica when ``claim_won`` says so), starts what is
ready, ends attempts after the duration an ``outcome`` function chose (success, failure or
cancellation), cancels attempts when asked, and keeps everything the planner decided,
stamped with the virtual time it was decided at.

Events are handled in time order. At one instant, by default: attempts that end, then
scheduled actions (manual requests, pause, ...), then the planner's timers, then starts;
``tie_break`` shuffles the first three (a real event loop promises no order between them).

The checks that hold for any input are always on, at every step:

* the records of a run follow a legal path (queued/waiting -> running -> ... -> one
  final status) and never change after a final status; fields that name the run never
  change, ``attempts`` grows by one per start, ``finished_at`` is set exactly when final;
* the planner's live runs are exactly the runs whose last record is not final, in the
  status that record says; ``planner.running`` matches the attempts in flight;
* attempts in flight never exceed ``max_concurrency`` nor the slots of their mode;
* a run that starts was ready: queued, due, not held back (by ``overlap="queue"``, or a
  catch-up replay waiting for the runs of its task to end).

Tests add their own checks as :class:`Observer` objects, called at each step.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from xtasks._decisions import (
    CancelAttempt,
    ClaimFire,
    RecordRun,
    SaveTask,
    SendAlert,
    StartAttempt,
)
from xtasks._planner import Planner
from xtasks._runs import (
    MAX_EARLIER_ATTEMPTS,
    AttemptRecord,
    ErrorInfo,
    RunCause,
    RunRecord,
    RunStatus,
    TaskRecord,
)
from xtasks._task import Mode, Overlap, Task

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from xtasks._events import Alert
    from xtasks._run_state import Run

__all__ = [
    "T0",
    "Kind",
    "Observer",
    "Outcome",
    "RunView",
    "Sim",
    "async_noop",
    "secs",
    "sync_noop",
]

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

QUEUED, WAITING, RUNNING = RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING
#: The statuses a run may pass to from each status (``None``: its first record).
LEGAL_NEXT: dict[RunStatus | None, frozenset[RunStatus]] = {
    None: frozenset({QUEUED, WAITING, RunStatus.SKIPPED, RunStatus.MISSED}),
    QUEUED: frozenset({QUEUED, WAITING, RUNNING, RunStatus.CANCELLED, RunStatus.SKIPPED}),
    WAITING: frozenset({QUEUED, RunStatus.SKIPPED, RunStatus.CANCELLED}),
    RUNNING: frozenset({QUEUED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}),
}
#: Triggers that go through the overlap policy (``submit`` and dependency pulls do not;
#: nor do catch-up replays, which wait, one after another, until no run of their task is live).
OVERLAPPING_KINDS = frozenset({RunCause.SCHEDULE, RunCause.MANUAL})


async def async_noop() -> None:
    """Task body for ``mode="async"``; never executed by the simulator."""


def sync_noop() -> None:
    """Task body for ``mode="sync"`` and ``mode="process"`` (module level: importable)."""


def secs(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


Kind = Literal["ok", "fail", "cancel"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ends: after ``seconds``, by succeeding, failing or being cancelled."""

    seconds: float = 0.0
    kind: Kind = "ok"


def instant_success(run: Run, now: datetime) -> Outcome:
    return Outcome()


@dataclass(slots=True)
class RunView:
    """One run as history shows it: every snapshot, with the virtual time it was taken."""

    id: str
    task: str
    kind: RunCause
    created: datetime
    records: list[tuple[datetime, RunRecord]] = field(default_factory=list)
    #: held back (live, but not yet opened): by overlap="queue", or a catch-up replay
    #: waiting for the task's live runs to end
    held: bool = False

    @property
    def last(self) -> RunRecord:
        return self.records[-1][1]

    @property
    def status(self) -> RunStatus:
        return self.last.status

    @property
    def final(self) -> bool:
        return self.last.status.is_final

    def statuses(self) -> list[RunStatus]:
        return [r.status for _, r in self.records]


@dataclass(slots=True)
class _Attempt:
    run: Run
    ends: datetime
    outcome: Outcome
    order: int


class Observer:
    """Hooks called by :class:`Sim` as the history unfolds; override what you check."""

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        """A snapshot was recorded (``view`` already includes it)."""

    def on_alert(self, sim: Sim, alert: Alert) -> None:
        """The planner asked to send an alert."""

    def on_claim(self, sim: Sim, claim: ClaimFire) -> None:
        """The planner asked to claim a fire (the simulator then wins or loses it)."""

    def on_claim_lost(self, sim: Sim, claim: ClaimFire) -> None:
        """Another replica won ``claim``: the planner is never told (as in the runtime)."""

    def on_pick(self, sim: Sim, run: Run | None, ready: list[Run]) -> None:
        """The planner started ``run`` (``None``: it starts nothing more for now);
        ``ready`` is what was ready just before."""

    def on_attempt_end(self, sim: Sim, run: Run, kind: str) -> None:
        """An attempt ends (``ok``/``fail``/``cancel``), just before the planner hears it."""

    def after_step(self, sim: Sim) -> None:
        """All decisions of one planner call were handled; the state is consistent."""


class Sim:
    """Drive a planner in virtual time; see the module docstring.

    :param outcome: called once per attempt start; chooses its duration and ending.
    :param wake_lag: seconds the timer wakes after each planner wake-up (default 0).
    :param claim_won: whether this replica wins a claim (default: always); a claim lost
        goes to an imaginary other replica, and the planner hears nothing of it.
    :param tie_break: given ``n`` events due at one instant, the order to handle them in
        (a permutation of ``range(n)``; default: ends, actions, timers).
    """

    def __init__(
        self,
        start: datetime = T0,
        *,
        max_concurrency: int = 100,
        thread_slots: int = 40,
        process_slots: int = 4,
        seed: int = 0,
        outcome: Callable[[Run, datetime], Outcome] = instant_success,
        observers: Iterable[Observer] = (),
        wake_lag: Callable[[datetime], float] | None = None,
        claim_won: Callable[[ClaimFire], bool] | None = None,
        tie_break: Callable[[int], list[int]] | None = None,
        max_steps: int = 200_000,
    ) -> None:
        counter = itertools.count(1)
        self.planner = Planner(
            max_concurrency=max_concurrency,
            thread_slots=thread_slots,
            process_slots=process_slots,
            replica="sim",
            rng=random.Random(seed),
            new_id=lambda: f"r{next(counter):05d}",
        )
        self.max_concurrency = max_concurrency
        self.limits: dict[Mode, float] = {
            Mode.ASYNC: math.inf,
            Mode.SYNC: thread_slots,
            Mode.PROCESS: process_slots,
        }
        self.now = start
        self.outcome = outcome
        self.observers = list(observers)
        self.wake_lag = wake_lag
        self._lags: dict[datetime, float] = {}
        self.claim_won = claim_won
        self.tie_break = tie_break
        self.lost_claims: list[tuple[datetime, ClaimFire]] = []
        #: instants with more than one event, and how many of them were not handled in
        #: the default order
        self.crowded_instants = 0
        self.reordered_instants = 0
        self.max_steps = max_steps
        self.tasks: dict[str, Task] = {}  # every task seen: registered and submitted
        self.views: dict[str, RunView] = {}
        self.records: list[tuple[datetime, RunRecord]] = []
        self.alerts: list[tuple[datetime, Alert]] = []
        self.claims: list[tuple[datetime, ClaimFire]] = []
        self.cancel_requests: list[tuple[datetime, CancelAttempt]] = []
        self.saves: list[tuple[datetime, SaveTask]] = []
        self.attempt_ends: dict[str, list[tuple[datetime, str]]] = {}
        self.starts: list[tuple[datetime, str, int]] = []  # (time, run id, attempt)
        self.controls: list[tuple[datetime, str, str]] = []  # (time, pause/resume/.., task)
        self.closed_at: datetime | None = None
        self.executing: dict[str, _Attempt] = {}
        self._live: dict[str, set[str]] = {}  # task -> live run ids (held ones included)
        self._actions: list[tuple[datetime, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._to_cancel: list[CancelAttempt] = []
        self._ready_since: dict[str, int] = {}
        self._pumps = 0
        self._steps = 0

    # --- what a test does ---------------------------------------------------------------

    def add(self, *tasks: Task, validate: bool = True) -> None:
        for task in tasks:
            self.planner.add_task(task, self.now)
            self.tasks[task.name] = task
        if validate:
            self.planner.validate()
        self.settle()

    def restore(self, name: str, record: TaskRecord) -> None:
        """Apply a stored state, as a scheduler does when it starts again after downtime."""
        self.planner.restore(name, record, self.now)
        self.settle()

    def remove(self, name: str) -> None:
        self.controls.append((self.now, "remove", name))
        self.planner.remove_task(name, self.now)
        self.settle()

    def request(self, name: str) -> Run:
        run = self.planner.request(name, self.now)
        self.settle()
        return run

    def submit(
        self, task: Task, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Run:
        self.tasks[task.name] = task
        run = self.planner.submit(task, args, kwargs or {}, self.now)
        self.settle()
        return run

    def pause(self, name: str) -> None:
        self.controls.append((self.now, "pause", name))
        self.planner.pause(name, self.now)
        self.settle()

    def resume(self, name: str) -> None:
        self.controls.append((self.now, "resume", name))
        self.planner.resume(name, self.now)
        self.settle()

    def cancel(self, name: str) -> None:
        self.controls.append((self.now, "cancel", name))
        self.planner.cancel(name, self.now)
        self.settle()

    def shutdown(self) -> list[Run]:
        self.closed_at = self.now
        running = self.planner.shutdown(self.now)
        self.settle()
        return running

    def at(self, when: datetime, action: Callable[[], object]) -> None:
        """Call ``action`` (e.g. ``lambda: sim.request("a")``) at virtual time ``when``."""
        self._actions.append((when, next(self._seq), action))
        self._actions.sort(key=lambda a: (a[0], a[1]))

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + secs(seconds))

    def run_until(self, end: datetime) -> None:
        """Handle every event up to and including ``end``; ``now`` ends at ``end``."""
        while (when := self.next_event()) is not None and when <= end:
            self.step(when)
        self.now = max(self.now, end)

    def run_to_quiet(self, limit: float = 10**7) -> None:
        """Handle events until none is left (after shutdown: every attempt has ended)."""
        end = self.now + secs(limit)
        while (when := self.next_event()) is not None:
            assert when <= end, "the simulation does not quiesce"
            self.step(when)

    def close(self) -> None:
        """Shut down, let the running attempts end, and check nothing is left live."""
        self.shutdown()
        self.run_to_quiet()
        assert not self.planner.live_runs(), f"live after shutdown: {self.planner.live_runs()}"
        assert self.planner.running == 0
        open_views = [v.id for v in self.views.values() if not v.final]
        assert not open_views, f"runs without a final record: {open_views}"

    # --- reading the history ----------------------------------------------------------

    def runs_of(self, task: str) -> list[RunView]:
        return [v for v in self.views.values() if v.task == task]

    def live_ids(self, task: str) -> set[str]:
        return self._live.get(task, set())

    def active_ids(self, task: str) -> set[str]:
        """Live runs of ``task`` that are not held back (``overlap="queue"``, replays)."""
        return {i for i in self.live_ids(task) if not self.views[i].held}

    def running_by_mode(self) -> dict[Mode, int]:
        counts = dict.fromkeys(Mode, 0)
        for attempt in self.executing.values():
            counts[attempt.run.entry.task.mode] += 1
        return counts

    def ready(self) -> list[Run]:
        """Runs the planner may start now: queued, due, and not held back."""
        return [
            run
            for run in self.planner.live_runs()
            if run.status is QUEUED
            and run.due <= self.now
            # not yet recorded: created after the decisions being handled were taken
            and run.id in self.views
            and not self.views[run.id].held
        ]

    def ready_since(self, run_id: str) -> int:
        """The step at which the run joined the ready queue (lower = arrived earlier)."""
        return self._ready_since[run_id]

    def _queued_for_a_slot(self, run: Run) -> bool:
        """Whether the planner has put ``run`` in its ready queue, as far as history tells.

        A queued run joins it at once when it is already due when queued, otherwise at the
        first drain once it is due (every drain moves the due runs to the ready queue, and
        this is asked after one, at ``now``).
        """
        view = self.views[run.id]
        if run.status is not QUEUED or view.held:
            return False
        return run.due <= self.now

    def describe(self, run_id: str) -> str:
        view = self.views[run_id]
        lines = [f"run {run_id} of {view.task} ({view.kind.value}):"]
        lines += [
            f"  {at.isoformat()} {r.status.value} attempts={r.attempts} reason={r.reason}"
            for at, r in view.records
        ]
        return "\n".join(lines)

    # --- the loop ---------------------------------------------------------------------

    def next_event(self) -> datetime | None:
        candidates = [a.ends for a in self.executing.values()]
        if self._actions:
            candidates.append(self._actions[0][0])
        wake = self.planner.next_wakeup()
        if wake is not None:
            if self.wake_lag is not None:  # the timer wakes late (a busy event loop, a GC)
                if wake not in self._lags:
                    self._lags[wake] = self.wake_lag(wake)
                wake += secs(self._lags[wake])
            candidates.append(wake)
        return min(candidates, default=None)

    def step(self, when: datetime) -> None:
        assert when >= self.now, f"time went back: {when} < {self.now}"
        self._steps += 1
        assert self._steps <= self.max_steps, "too many simulation steps"
        self.now = when
        ending = sorted(
            (a for a in self.executing.values() if a.ends == when), key=lambda a: a.order
        )
        events: list[_Attempt | Callable[[], object] | None] = [*ending]
        while self._actions and self._actions[0][0] <= when:
            events.append(self._actions.pop(0)[2])
        events.append(None)  # the planner's timers
        if len(events) > 1:
            self.crowded_instants += 1
            if self.tie_break is not None:
                order = self.tie_break(len(events))
                assert sorted(order) == list(range(len(events))), order
                if order != sorted(order):
                    self.reordered_instants += 1
                events = [events[i] for i in order]
        for event in events:
            if isinstance(event, _Attempt):
                if self.executing.get(event.run.id) is event:  # not cancelled meanwhile
                    self._end_attempt(event.run, event.outcome.kind, "cancelled by the test")
            elif event is None:
                self.planner.advance(when)
                self.pump()
            else:
                event()
                self.pump()
        self.settle()

    def settle(self) -> None:
        """Handle what is due and pending, then start every run the planner lets start."""
        self.planner.advance(self.now)  # a run due now is ready only once its timer ran
        self.pump()
        before = self.ready()
        for observer in self.observers:
            observer.on_pick(self, None, before)

    def _on_start(self, start: StartAttempt, starting: list[str]) -> None:
        """The planner started ``start.run_id``; ``starting`` lists the runs it started
        in the same drain and the simulator has not handled yet (this one first)."""
        run = self.planner.get_run(start.run_id)
        assert run is not None and starting[0] == run.id
        before = [*self.ready(), *(r for i in starting if (r := self.planner.get_run(i)))]
        starting.pop(0)
        for ready in before:  # joined the ready queue during this pump, if not before
            self._ready_since.setdefault(ready.id, self._pumps + 1)
        assert start.number == run.attempts and start.task is run.entry.task
        assert (start.args, start.kwargs) == (run.args, run.kwargs)
        self._check_pick(run, before)
        for observer in self.observers:
            observer.on_pick(self, run, before)
        self.starts.append((self.now, run.id, run.attempts))
        outcome = self.outcome(run, self.now)
        ends = self.now + secs(outcome.seconds)
        self.executing[run.id] = _Attempt(run, ends, outcome, next(self._seq))

    def pump(self) -> None:
        """Handle decisions until the planner has none left (a claim is won or lost at once)."""
        planner = self.planner
        while True:
            decisions = planner.drain(self.now)
            if not decisions and not self._to_cancel:
                break
            starting = [d.run_id for d in decisions if isinstance(d, StartAttempt)]
            for decision in decisions:
                if isinstance(decision, StartAttempt):
                    self._on_start(decision, starting)
                else:
                    self._handle(decision)
            while self._to_cancel:
                cancel = self._to_cancel.pop(0)
                attempt = self.executing.get(cancel.run_id)
                if attempt is not None:
                    self._end_attempt(attempt.run, "cancel", cancel.reason)
        self._check_consistency()
        for observer in self.observers:
            observer.after_step(self)

    def _handle(self, decision: object) -> None:
        now = self.now
        if isinstance(decision, RecordRun):
            self._on_record(decision.record)
        elif isinstance(decision, ClaimFire):
            self.claims.append((now, decision))
            for observer in self.observers:
                observer.on_claim(self, decision)
            if self.claim_won is None or self.claim_won(decision):
                self.planner.fire_claimed(decision, now)
            else:  # another replica runs or records it; the runtime just logs at debug
                self.lost_claims.append((now, decision))
                for observer in self.observers:
                    observer.on_claim_lost(self, decision)
        elif isinstance(decision, SendAlert):
            self.alerts.append((now, decision.alert))
            for observer in self.observers:
                observer.on_alert(self, decision.alert)
        elif isinstance(decision, CancelAttempt):
            self.cancel_requests.append((now, decision))
            self._to_cancel.append(decision)
        else:
            assert isinstance(decision, SaveTask), decision
            self.saves.append((now, decision))

    def _end_attempt(self, run: Run, kind: str, reason: str) -> None:
        del self.executing[run.id]
        self.attempt_ends.setdefault(run.id, []).append((self.now, kind))
        for observer in self.observers:
            observer.on_attempt_end(self, run, kind)
        if kind == "ok":
            self.planner.attempt_succeeded(run.id, self.now, f"result of {run.id}")
        elif kind == "fail":
            self.planner.attempt_failed(
                run.id, self.now, ErrorInfo("Boom", f"attempt {run.attempts}")
            )
        else:
            self.planner.attempt_cancelled(run.id, self.now, reason)
        self.pump()

    # --- the checks that always hold ------------------------------------------------------

    def _on_record(self, record: RunRecord) -> None:
        now = self.now
        view = self.views.get(record.id)
        prev = view.last if view is not None else None
        was_held = view is not None and view.held
        if view is None:
            view = self.views[record.id] = RunView(record.id, record.task, record.cause, now)
            task = self.tasks.get(record.task)
            view.held = (
                record.status is QUEUED
                and task is not None
                and (
                    record.cause is RunCause.CATCH_UP
                    or (task.overlap is Overlap.QUEUE and record.cause in OVERLAPPING_KINDS)
                )
                and bool(self.active_ids(record.task))
            )
        elif was_held:
            view.held = False  # a held run is recorded again when it is opened
        self._check_transition(view, prev, record, was_held=was_held)
        view.records.append((now, record))
        self.records.append((now, record))
        live = self._live.setdefault(record.task, set())
        if record.status.is_final:
            live.discard(record.id)
        else:
            live.add(record.id)
        for observer in self.observers:
            observer.on_record(self, record, view)

    def _check_transition(
        self, view: RunView, prev: RunRecord | None, new: RunRecord, *, was_held: bool
    ) -> None:
        where = f"{self.describe(view.id) if view.records else view.id} then {new.status.value}"
        before = prev.status if prev is not None else None
        assert before is None or not before.is_final, f"record after a final status: {where}"
        assert new.status in LEGAL_NEXT[before], f"illegal transition: {where}"
        if before is QUEUED and new.status in (QUEUED, WAITING, RunStatus.SKIPPED):
            # A held run (overlap="queue", or a catch-up replay waiting its turn) is
            # recorded again when it is opened (and
            # skipped at once when an upstream task cannot run); no other queued run is.
            assert was_held, f"only a held run is opened again: {where}"
            assert prev is not None and prev.attempts == 0, where
        assert new.replica == "sim"
        assert (new.finished_at is not None) == new.status.is_final, where
        if new.status.is_final:
            assert new.finished_at == self.now, where
        # The simulated executors are the built-ins, which never report a worker.
        assert new.worker is None, where
        if prev is None:
            assert new.attempts == 0 and new.started_at is None, where
            assert new.executor == self.tasks[new.task].runs_on, where
            return
        same = ("id", "task", "cause", "scheduled_at", "executor")
        assert all(getattr(prev, f) == getattr(new, f) for f in same), where
        self._check_earlier_attempts(prev, new, where)
        if new.status is RUNNING:
            assert before is QUEUED and not was_held, f"started a run not ready: {where}"
            assert new.attempts == prev.attempts + 1, f"attempts not counted: {where}"
            assert new.started_at == (prev.started_at or self.now), where
        else:
            assert new.attempts == prev.attempts, where
            assert new.started_at == prev.started_at, where

    def _check_earlier_attempts(self, prev: RunRecord, new: RunRecord, where: str) -> None:
        """Earlier attempts: the failed ones, numbered in order, up to the last one (or
        the one before it), each kept unchanged; one more only when a retry is queued."""
        earlier = new.earlier_attempts
        numbers = [attempt.number for attempt in earlier]
        assert len(earlier) <= MAX_EARLIER_ATTEMPTS, where
        if numbers:
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), where
            assert numbers[-1] in (new.attempts, new.attempts - 1), where
            assert all(a.started_at <= a.finished_at <= self.now for a in earlier), where
        if earlier is not prev.earlier_attempts:  # only a failed attempt adds one
            assert prev.status is RUNNING and new.status is QUEUED, where
            assert earlier[-1] == AttemptRecord(
                new.attempts, earlier[-1].started_at, self.now, new.error or earlier[-1].error
            ), where
            assert earlier[:-1] == prev.earlier_attempts[-(MAX_EARLIER_ATTEMPTS - 1) :], where

    def _check_pick(self, run: Run | None, ready: list[Run]) -> None:
        if run is None:
            return
        ids = {r.id for r in ready}
        assert run.id in ids, f"started a run that was not ready: {self.describe(run.id)}"
        by_mode = self.running_by_mode()
        mode = run.entry.task.mode
        assert len(self.executing) < self.max_concurrency, "max_concurrency exceeded"
        assert by_mode[mode] < self.limits[mode], f"{mode.value} slots exceeded"

    def _check_consistency(self) -> None:
        planner = self.planner
        live = planner.live_runs()
        for run in live:
            view = self.views.get(run.id)
            assert view is not None, f"live run {run.id} was never recorded"
            assert view.status is run.status, f"{self.describe(run.id)} but it is {run.status}"
        n_live = sum(len(ids) for ids in self._live.values())
        assert n_live == len(live), "recorded live runs differ from the planner's live runs"
        assert planner.running == len(self.executing), "planner.running is off"
        # Remember when each run joined the ready queue (for the arrival-order check).
        self._pumps += 1
        ready = {run.id for run in live if self._queued_for_a_slot(run)}
        for run_id in list(self._ready_since):
            if run_id not in ready:
                del self._ready_since[run_id]
        for run_id in ready:
            self._ready_since.setdefault(run_id, self._pumps)
