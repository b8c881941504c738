"""Property tests of the planner, driven in virtual time by :mod:`tests.planner_sim`.

Each property of DESIGN.md's "Behaviour" section is an :class:`Observer` that checks it at
every step of a simulated history (not only at the end); Hypothesis draws the tasks, the
requests and controls, and each attempt's duration and outcome. The simulator itself
checks what holds for any history: legal record paths, one final status per run, the
planner's live runs matching the records, slot limits, and that only ready runs start.

No property may hold because nothing happened: each reports its interesting case
(contention, retries, overlap, dependencies, late fires, lost claims, same-instant events
reordered) as a Hypothesis event (``--hypothesis-show-statistics``), the strategies make it
happen in most examples, and a floor per property (``test_each_property_reaches_...``) fails
when it gets rare. A failure prints its scenario (``note``) and every draw.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tests._work import calls_during
from tests.planner_sim import (
    OVERLAPPING_KINDS,
    QUEUED,
    RUNNING,
    T0,
    Kind,
    Observer,
    Outcome,
    RunView,
    Sim,
    async_noop,
    secs,
    sync_noop,
)
from xtasks import At, Cron, Every
from xtasks._decisions import CancelAttempt, ClaimFire, Decision, RecordRun, StartAttempt
from xtasks._errors import (
    DependencyCycleError,
    DuplicateTaskError,
    ShortIntervalWarning,
    TaskStateError,
    UnknownDependencyError,
    XtasksError,
)
from xtasks._events import Alert, AlertKind
from xtasks._planner import CATCH_UP_CAP, Planner
from xtasks._runs import (
    MAX_EARLIER_ATTEMPTS,
    AttemptRecord,
    ErrorInfo,
    RunCause,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskState,
)
from xtasks._task import CatchUp, Mode, Overlap, Task

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from xtasks._run_state import Run
    from xtasks._triggers import Trigger

TICK = timedelta(microseconds=1)  # timedelta(seconds=float) rounds to the microsecond

#: Multiply every example count, e.g. PLANNER_EXAMPLES_SCALE=20 for a long bug hunt.
SCALE = float(os.environ.get("PLANNER_EXAMPLES_SCALE", "1"))
#: pytest-timeout is a guard against hangs, not a limit on speed: a property's hundreds of
#: examples took over 60 s on a 2-core machine running two test suites at once.
pytestmark = pytest.mark.timeout(300 * max(SCALE, 1))
HEAVY = settings(
    max_examples=int(300 * SCALE),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MEDIUM = settings(HEAVY, max_examples=int(150 * SCALE))
LIGHT = settings(HEAVY, max_examples=int(60 * SCALE))
#: For the floors: few examples, always the same ones (derandomised), no database.
FLOOR = settings(HEAVY, max_examples=40, derandomize=True, database=None)


# --- never vacuous: each property says how often its interesting case happened ---------------

_tally: Counter[str] | None = None


def seen(case: str, happened: bool) -> None:
    """Report whether this example reached ``case``: as a Hypothesis event (shown by
    ``--hypothesis-show-statistics``), and counted for the floors of
    :func:`test_each_property_reaches_its_interesting_case_in_most_examples`."""
    event(f"{case}: {'yes' if happened else 'no'}")
    if _tally is not None and happened:
        _tally[case] += 1


# --- building tasks -----------------------------------------------------------------------


def make_task(name: str, mode: Mode | str = Mode.ASYNC, **policies: Any) -> Task:
    """A task with a dummy body of the right kind (nothing is ever executed)."""
    mode = Mode.parse(mode)
    func = async_noop if mode is Mode.ASYNC else sync_noop
    return Task(name, func, mode=mode, **policies)


def retry_delay_before(task: Task, attempt: int) -> float:
    """The delay the contract asks between the end of ``attempt`` and the next start."""
    return task.retry_delay * task.retry_backoff ** (attempt - 1)


@st.composite
def task_lists(
    draw: st.DrawFn,
    *,
    min_tasks: int = 1,
    max_tasks: int = 6,
    periodic: bool = True,
    periods: tuple[int | None, ...] = (None, 5, 10, 15, 20, 30, 60),
    overlaps: tuple[Overlap, ...] = tuple(Overlap),
    failures: bool = True,
    min_retries: int = 0,
    chained: bool = False,
) -> list[Task]:
    """Tasks ``t0..tn`` whose dependencies form a DAG (edges from higher to lower index);
    ``chained``: every task but ``t0`` depends on at least one other."""
    n = draw(st.integers(min_tasks, max_tasks))
    tasks = []
    for i in range(n):
        at_least = 1 if chained else 0
        deps = (
            draw(st.lists(st.integers(0, i - 1), min_size=at_least, max_size=3, unique=True))
            if i
            else []
        )
        period = draw(st.sampled_from(periods)) if periodic else None
        retries = draw(st.integers(min_retries, 3)) if failures else 0
        tasks.append(
            make_task(
                f"t{i}",
                draw(st.sampled_from(list(Mode))),
                trigger=Every(seconds=period) if period else None,
                priority=draw(st.sampled_from(["high", "normal", "low"])),
                depends_on=[f"t{d}" for d in deps],
                max_retries=retries,
                retry_delay=draw(st.sampled_from([0, 1, 2.5, 10])),
                retry_backoff=draw(st.sampled_from([1, 1.5, 2])),
                jitter=draw(st.sampled_from([0, 0, 0.25, 3])),
                overlap=draw(st.sampled_from(overlaps)),
                catch_up=draw(st.sampled_from(["once", "all", "skip"])),  # timers may lag
                alert_after=draw(st.integers(1, 3)),
                alert_on_failure=draw(st.booleans()),
            )
        )
    return tasks


def describe_task(task: Task) -> str:
    """``make_task(...)`` with only the fields that differ from the defaults."""
    default = make_task(task.name, task.mode)
    fields = ["trigger", "priority", "depends_on", "max_retries", "retry_delay", "retry_backoff"]
    fields += ["jitter", "overlap", "catch_up", "alert_after", "alert_on_failure"]
    changed = [
        f"{key}={short(getattr(task, key))}"
        for key in fields
        if getattr(task, key) != getattr(default, key)
    ]
    return f"make_task({', '.join([repr(task.name), repr(task.mode.value), *changed])})"


def short(value: object) -> str:
    if isinstance(value, Enum):
        return repr(value.value)
    if isinstance(value, tuple):
        return repr(list(value))
    return repr(value)


@dataclass
class Scenario:
    tasks: list[Task]
    actions: list[tuple[float, str, int]]  # (seconds after T0, verb, task index)
    max_concurrency: int
    thread_slots: int
    process_slots: int
    horizon: float
    adhoc: list[Task] = field(default_factory=list)  # submitted under names of their own

    def __repr__(self) -> str:  # short, so that a failing example reads at a glance
        tasks = "".join(f"\n    {describe_task(t)}," for t in self.tasks)
        return (
            f"Scenario(max_concurrency={self.max_concurrency}, "
            f"thread_slots={self.thread_slots}, process_slots={self.process_slots}, "
            f"horizon={self.horizon}, actions={self.actions}, tasks=[{tasks}\n])"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis' printer
        printer.text(repr(self))


VERBS = ["request", "request", "request", "submit", "pause", "resume", "cancel"]


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    tasks: st.SearchStrategy[list[Task]] | None = None,
    verbs: list[str] = VERBS,
    min_actions: int = 0,
    max_actions: int = 12,
    horizon: float = 200,
    burst: bool = False,
    times: st.SearchStrategy[float] | None = None,
    slots: tuple[int, int] = (1, 4),
) -> Scenario:
    """``burst``: every action at 0, 10 or 20 s; ``times``: when actions happen, else
    anywhere up to ``horizon``; ``slots``: the range of ``max_concurrency``."""
    task_list = draw(tasks if tasks is not None else task_lists())
    n = len(task_list)
    if times is None:
        times = (
            st.sampled_from([0.0, 10.0, 20.0]) if burst else st.integers(0, int(horizon)).map(float)
        )
    actions = draw(
        st.lists(
            st.tuples(times, st.sampled_from(verbs), st.integers(0, n - 1)),
            min_size=min_actions,
            max_size=max_actions,
        )
    )
    adhoc = [
        make_task(
            f"adhoc{i}",
            t.mode,
            depends_on=t.depends_on,
            priority=t.priority,
            max_retries=t.max_retries,
            alert_after=t.alert_after,
        )
        for i, t in enumerate(task_list)
    ]
    return Scenario(
        tasks=task_list,
        actions=sorted(actions, key=lambda a: a[0]),
        max_concurrency=draw(st.integers(*slots)),
        thread_slots=draw(st.integers(1, 3)),
        process_slots=draw(st.integers(1, 2)),
        horizon=horizon,
        adhoc=adhoc,
    )


def outcomes_from(
    data: st.DataObject,
    *,
    max_seconds: int = 30,
    long_from: int = 0,
    kinds: tuple[Kind, ...] = ("ok", "fail"),
) -> Callable[[Run, datetime], Outcome]:
    """An ``outcome`` function for :class:`Sim` that lets Hypothesis choose each attempt.

    ``kinds`` lists the endings to draw from; repeat one to make it likelier. Half the
    attempts are short (up to 4 s), half long (from ``long_from`` to ``max_seconds``).
    """
    short = st.integers(0, 8).map(lambda half: half / 2)
    long = st.integers(2 * long_from, 2 * max_seconds).map(lambda half: half / 2)
    durations = st.one_of(short, long)
    weighted = st.sampled_from(kinds)

    def outcome(run: Run, now: datetime) -> Outcome:
        return Outcome(data.draw(durations, label="duration"), data.draw(weighted, label="ends"))

    return outcome


def play(sim: Sim, scenario: Scenario) -> None:
    """Register the scenario's tasks, schedule its actions, run to the horizon, shut down."""
    sim.add(*scenario.tasks)
    for at, verb, index in scenario.actions:
        sim.at(T0 + secs(at), _action(sim, scenario, verb, index))
    sim.run_until(T0 + secs(scenario.horizon))
    sim.close()


def _action(sim: Sim, scenario: Scenario, verb: str, index: int) -> Callable[[], None]:
    name = scenario.tasks[index].name

    def act() -> None:
        if verb == "submit":
            sim.submit(scenario.adhoc[index])
        elif verb == "request":
            state = sim.planner.state_of(name)
            try:
                sim.request(name)
            except TaskStateError:
                assert state is not TaskState.ACTIVE
            else:
                assert state is TaskState.ACTIVE
        else:
            getattr(sim, verb)(name)

    return act


def lags_from(data: st.DataObject) -> Callable[[datetime], float]:
    """A ``wake_lag`` for :class:`Sim`: mostly on time, sometimes late, rarely past grace."""
    lags = st.one_of(st.just(0.0), st.sampled_from([0.5, 3, 12, 75]), st.just(0.0))

    def lag(wake: datetime) -> float:
        return data.draw(lags, label="timer lag")

    return lag


def claims_won_from(data: st.DataObject) -> Callable[[ClaimFire], bool]:
    """A ``claim_won`` for :class:`Sim`: this replica wins most claims, not all."""
    won = st.sampled_from([True, True, False])

    def claim_won(claim: ClaimFire) -> bool:
        return data.draw(won, label=f"claim of {claim.task} at {claim.fire_time:%H:%M:%S} won")

    return claim_won


def tie_breaks_from(data: st.DataObject) -> Callable[[int], list[int]]:
    """A ``tie_break`` for :class:`Sim`: Hypothesis orders the events of one instant."""

    def tie_break(n: int) -> list[int]:
        return data.draw(st.permutations(range(n)), label="order at one instant")

    return tie_break


def new_sim(
    scenario: Scenario,
    data: st.DataObject | None = None,
    *,
    lag: bool = True,
    lose: bool = True,
    shuffle: bool = True,
    **kw: Any,
) -> Sim:
    """A simulator for ``scenario`` whose attempts, timer lags, lost claims and order of
    same-instant events Hypothesis chooses."""
    note(repr(scenario))
    kinds: tuple[Kind, ...] = kw.pop("kinds", ("ok", "fail", "ok", "fail", "cancel"))
    long_from: int = kw.pop("long_from", 0)
    extra: dict[str, Any] = {}
    if data is not None:
        if "outcome" not in kw:
            extra["outcome"] = outcomes_from(data, kinds=kinds, long_from=long_from)
        if lag:
            extra["wake_lag"] = lags_from(data)
        if lose:
            extra["claim_won"] = claims_won_from(data)
        if shuffle:
            extra["tie_break"] = tie_breaks_from(data)
    return Sim(
        max_concurrency=scenario.max_concurrency,
        thread_slots=scenario.thread_slots,
        process_slots=scenario.process_slots,
        **extra,
        **kw,
    )


# --- the properties, as observers checking every step -------------------------------------


class PriorityOrder(Observer):
    """Property 1: a run starts only if no better run was ready for a free slot.

    Better: strictly higher priority, or same priority and earlier due time, or same both
    and arrived earlier. A mode whose slots are full does not hold back the others, and
    nothing ready for a free slot is left waiting while ``max_concurrency`` allows more.
    """

    def __init__(self) -> None:
        self.contended_starts = 0

    def on_pick(self, sim: Sim, run: Run | None, ready: list[Run]) -> None:
        by_mode = sim.running_by_mode()
        free = {mode for mode in Mode if by_mode[mode] < sim.limits[mode]}
        candidates = [r for r in ready if r.entry.task.mode in free]
        if run is None:
            if len(sim.executing) < sim.max_concurrency:
                assert not candidates, f"ready runs left waiting with free slots: {candidates}"
            return
        if len(candidates) > 1:
            self.contended_starts += 1
        for other in candidates:
            if other is run:
                continue
            assert key_of(other) >= key_of(run), (
                f"{run} (priority {run.task.priority.value}, due {run.due}) started while "
                f"{other} (priority {other.task.priority.value}, due {other.due}) was ready"
            )
            if key_of(other) == key_of(run):
                assert sim.ready_since(other.id) >= sim.ready_since(run.id), (
                    f"{run} started at {sim.now} before {other}, which arrived first "
                    f"(both due {run.due}):\n{sim.describe(run.id)}\n{sim.describe(other.id)}"
                )


def bucket(n: int) -> str:
    """A count, in a few ranges, for ``event``."""
    return "0" if n == 0 else "1" if n == 1 else "2-4" if n <= 4 else "5-9" if n <= 9 else "10+"


def key_of(run: Run) -> tuple[int, datetime]:
    return (run.task.priority.rank, run.due)


class DependenciesHonoured(Observer):
    """Property 2: dependency gating, reuse of live runs, and upstream failure.

    When a run a dependent waits on fails, the dependent ends skipped; with ``exact_reason``
    its reason must be ``upstream_failed: <that dependency>`` (the dependency tests), else
    any ``upstream_...`` reason naming one of its dependencies is accepted (the other tests,
    so that they keep checking their own property while that wording is off).
    """

    def __init__(self, *, exact_reason: bool = False) -> None:
        self.exact_reason = exact_reason
        self.successes: dict[str, list[datetime]] = defaultdict(list)
        self.waits: dict[str, set[str]] = {}
        self.must_skip: dict[str, str] = {}  # run id -> the reason it must end with
        self.gated_starts = 0

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        task = sim.tasks[record.task]
        status = record.status
        if status is RunStatus.SUCCEEDED:
            self.successes[record.task].append(sim.now)
        if len(view.records) == 1 and record.cause is RunCause.DEPENDENCY:
            others = sim.active_ids(record.task) - {record.id}
            assert not others, f"pulled a new run of {record.task} although {others} is live"
        if status is RunStatus.RUNNING and record.attempts == 1:
            self.assert_dependencies_succeeded_since_request(sim, task, view)
        if status is RunStatus.WAITING:
            run = sim.planner.get_run(record.id)
            if run is not None:
                self.waits[record.id] = set(run.waiting_on or ())
                for dep_run in run.waiting_on or ():
                    assert sim.views[dep_run].task in task.depends_on
        if status is RunStatus.FAILED:
            for waiter, deps in self.waits.items():
                if record.id in deps and sim.views[waiter].status is RunStatus.WAITING:
                    self.must_skip[waiter] = f"upstream_failed: {record.task}"
        if status is RunStatus.SKIPPED and record.reason and record.reason.startswith("upstream_"):
            dep = record.reason.partition(": ")[2]
            assert dep in task.depends_on, f"skipped for {dep}, not a dependency of {task.name}"
        if status.is_final:
            self.waits.pop(record.id, None)

    def assert_dependencies_succeeded_since_request(
        self, sim: Sim, task: Task, view: RunView
    ) -> None:
        for dep in task.depends_on:
            self.gated_starts += 1
            assert any(view.created <= f <= sim.now for f in self.successes[dep]), (
                f"{view.id} of {task.name} (requested {view.created}) started at {sim.now} "
                f"without a success of {dep} since; {dep} succeeded at {self.successes[dep]}"
            )

    def after_step(self, sim: Sim) -> None:
        for run_id, reason in self.must_skip.items():
            last = sim.views[run_id].last
            ok = reason if self.exact_reason else (last.reason or "")
            assert last.status is RunStatus.SKIPPED and last.reason == ok, (
                f"expected skipped ({reason}):\n{sim.describe(run_id)}"
            )
            assert ok.startswith("upstream_"), sim.describe(run_id)
        self.must_skip.clear()


class RetriesHonoured(Observer):
    """Property 3: attempt count, delays between attempts, no retry after cancellation."""

    def __init__(self) -> None:
        self.ended: dict[str, str] = {}  # run id -> how its last attempt ended
        self.retries = 0

    def on_attempt_end(self, sim: Sim, run: Run, kind: str) -> None:
        self.ended[run.id] = kind

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        task = sim.tasks[record.task]
        status = record.status
        assert record.attempts <= 1 + task.max_retries, sim.describe(record.id)
        ended = self.ended.pop(record.id, None)
        if ended == "cancel":
            assert status is RunStatus.CANCELLED, f"a cancelled attempt went on: {status}"
        if ended == "fail" and status is not RunStatus.FAILED:
            if status is RunStatus.CANCELLED:  # only a shutdown turns a retry into this
                assert sim.closed_at is not None
                assert record.reason == "shutdown (retry pending)"
            else:
                assert status is RunStatus.QUEUED, status
                self.assert_retry_due(sim, task, record)
        if status is RunStatus.RUNNING and record.attempts > 1:
            self.retries += 1
            end, how = sim.attempt_ends[record.id][-1]
            assert how == "fail"
            earliest = end + secs(retry_delay_before(task, record.attempts - 1)) - TICK
            assert sim.now >= earliest, f"retry too early:\n{sim.describe(record.id)}"
        removed = any(v == "remove" and n == task.name for _, v, n in sim.controls)
        if status is RunStatus.FAILED and record.attempts < 1 + task.max_retries and not removed:
            # Failed early: its task was cancelled (or removed: then nothing is retried).
            assert task.name in sim.planner.tasks, "an ad-hoc run failed early"
            assert sim.planner.state_of(task.name) is TaskState.CANCELLED
        if status is RunStatus.FAILED:
            assert record.error is not None

    def assert_retry_due(self, sim: Sim, task: Task, record: RunRecord) -> None:
        run = sim.planner.get_run(record.id)
        assert run is not None
        base = sim.now + secs(retry_delay_before(task, record.attempts))
        assert base - TICK <= run.due <= base + secs(task.jitter) + TICK, (
            f"retry due {run.due}, expected {base} + [0, {task.jitter}] s"
        )


class AlertsFollowStreaks(Observer):
    """Property 4: one ``failing`` per streak reaching ``alert_after``, one ``recovered``."""

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()
        self.alerting: set[str] = set()
        self.expected: list[tuple[AlertKind, str, str, int]] = []
        self.sent: list[tuple[AlertKind, str, str, int]] = []
        self.last_kind: dict[str, AlertKind] = {}

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        task = sim.tasks[record.task]
        name = task.name
        if record.status is RunStatus.FAILED:
            self.failures[name] += 1
            if (
                task.alert_on_failure
                and name not in self.alerting
                and self.failures[name] >= task.alert_after
            ):
                self.alerting.add(name)
                self.expected.append((AlertKind.FAILING, name, record.id, self.failures[name]))
        elif record.status is RunStatus.SUCCEEDED:
            if name in self.alerting:
                self.expected.append((AlertKind.RECOVERED, name, record.id, 0))
            self.alerting.discard(name)
            self.failures[name] = 0

    def on_alert(self, sim: Sim, alert: Alert) -> None:
        assert self.last_kind.get(alert.task) is not alert.kind, (
            f"two {alert.kind.value} alerts in a row for {alert.task}"
        )
        self.last_kind[alert.task] = alert.kind
        assert alert.at == sim.now and alert.run.status.is_final
        self.sent.append((alert.kind, alert.task, alert.run.id, alert.consecutive_failures))

    def after_step(self, sim: Sim) -> None:
        assert self.sent == self.expected
        for name in sim.planner.tasks:
            assert sim.planner.consecutive_failures_of(name) == self.failures[name]


class OverlapHonoured(Observer):
    """Property 5: ``skip`` records the extra fire skipped, ``queue`` holds at most one.

    Catch-up replays are not subject to it: one that finds a run of its task live waits
    (held) whatever the policy, and is never skipped for overlap.
    """

    def __init__(self) -> None:
        self.skipped = 0
        self.held = 0
        self.max_running: Counter[str] = Counter()

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        skipped_overlap = record.status is RunStatus.SKIPPED and record.reason == "overlap"
        if len(view.records) == 1 and record.cause is RunCause.CATCH_UP:
            busy = sim.active_ids(record.task) - {record.id}
            assert view.held == bool(busy), f"busy={busy}:\n{sim.describe(record.id)}"
        if len(view.records) > 1 or record.cause not in OVERLAPPING_KINDS:
            assert not skipped_overlap
            return
        if record.status is RunStatus.MISSED:
            return  # a record of fires that did not run: not a run, so no overlap
        overlap = sim.tasks[record.task].overlap
        busy = sim.active_ids(record.task) - {record.id}
        already_held = held_by_overlap(sim, record.task) - {record.id}
        if not busy or overlap is Overlap.ALLOW:
            assert not skipped_overlap and not view.held, sim.describe(record.id)
        elif overlap is Overlap.QUEUE and not already_held:
            assert view.held and record.status is RunStatus.QUEUED, sim.describe(record.id)
            self.held += 1
        else:
            assert skipped_overlap, f"fired while {busy} was live:\n{sim.describe(record.id)}"
            if record.cause is RunCause.SCHEDULE:  # not for a fire due with it: one per instant
                assert any(
                    sim.views[i].created < sim.now or sim.views[i].kind is not RunCause.SCHEDULE
                    for i in busy
                ), f"skipped for a fire due at the same moment:\n{sim.describe(record.id)}"
            self.skipped += 1

    def after_step(self, sim: Sim) -> None:
        for name, task in sim.tasks.items():
            running = sum(1 for i in sim.live_ids(name) if sim.views[i].status is RunStatus.RUNNING)
            self.max_running[name] = max(self.max_running[name], running)
            if task.overlap is Overlap.ALLOW or name.startswith("adhoc"):
                continue
            assert running <= 1, f"{name} (overlap={task.overlap.value}) runs {running} at once"
            assert len(sim.active_ids(name)) <= 1
            assert len(held_by_overlap(sim, name)) <= 1, "more than one held"


def held_by_overlap(sim: Sim, task: str) -> set[str]:
    """Live runs of ``task`` held back by ``overlap="queue"`` (not replays waiting)."""
    held = sim.live_ids(task) - sim.active_ids(task)
    return {i for i in held if sim.views[i].kind is not RunCause.CATCH_UP}


class FiresDueTogether(Observer):
    """Property 7: the fires of one task due at one moment are decided together, once.

    README's table: one fire alone and late by no more than ``misfire_grace`` is a
    scheduled claim. Otherwise (several due, or one later than the grace) ``catch_up``
    decides over all of them: ``once`` replays the latest, ``all`` the oldest
    ``CATCH_UP_CAP`` in order, ``skip`` the latest only if it is within the grace; one
    ``missed`` claim counts the rest. Every due fire is claimed run or missed, none twice,
    and none due at that moment is left for later.
    """

    def __init__(self) -> None:
        self.groups: dict[str, list[ClaimFire]] = {}
        self.triggers: dict[str, Trigger] = {}
        self.decided_at: dict[str, datetime] = {}
        self.decided_by_policy = 0  # groups the catch_up policy decided (tests check > 0)

    def on_claim(self, sim: Sim, claim: ClaimFire) -> None:
        self.groups.setdefault(claim.task, []).append(claim)
        task = sim.tasks[claim.task]
        assert task.trigger is not None
        anchor = sim.planner.task_record(claim.task).anchor
        self.triggers[claim.task] = task.trigger.anchored(anchor or sim.now)

    def after_step(self, sim: Sim) -> None:
        for name, claims in self.groups.items():
            assert self.decided_at.get(name) != sim.now, f"{name}: decided twice at {sim.now}"
            self.decided_at[name] = sim.now
            self.check(sim, sim.tasks[name], self.triggers[name], claims)
        self.groups.clear()

    def check(self, sim: Sim, task: Task, trigger: Trigger, claims: list[ClaimFire]) -> None:
        now, cutoff = sim.now, sim.now - secs(task.misfire_grace)
        missed = [c for c in claims if c.missed or c.missed_more]
        runs = [c for c in claims if c not in missed]
        assert len(missed) <= 1 and not any(c.missed_more for c in missed), claims
        ends = [c.fire_time for c in claims] + [c.missed_until for c in missed if c.missed_until]
        first, last = min(ends), max(ends)
        after = trigger.next_fire(last)
        assert after is None or after > now, f"a fire due at {now} was left for later: {claims}"
        due = [first]
        while (nxt := trigger.next_fire(due[-1])) is not None and nxt <= last:
            due.append(nxt)
        n_missed = sum(c.missed for c in missed)
        assert len(runs) + n_missed == len(due), f"{len(due)} due fires, claimed {claims}"
        if len(due) == 1 and first >= cutoff:  # alone and within the grace: on schedule
            assert [(c.kind, c.fire_time) for c in claims] == [(RunCause.SCHEDULE, first)]
            return
        self.decided_by_policy += 1
        assert all(c.kind is RunCause.CATCH_UP for c in runs), f"not decided together: {claims}"
        expected = {
            CatchUp.ONCE: [last],
            CatchUp.SKIP: [last] if last >= cutoff else [],
            CatchUp.ALL: due[:CATCH_UP_CAP],
        }[task.catch_up]
        assert [c.fire_time for c in runs] == expected, (task.catch_up, claims)
        if missed:
            (record,) = missed
            unrun = [f for f in due if f not in expected]
            assert (record.fire_time, record.missed_until) == (unrun[0], unrun[-1]), claims


class PausedTasksDoNotFire(Observer):
    """Pause and cancel stop the fires; resume starts again from then, replaying none."""

    def on_claim(self, sim: Sim, claim: ClaimFire) -> None:
        state, resumed_at = "active", None
        for at, verb, name in sim.controls:
            if name != claim.task:
                continue
            if verb != "resume":
                state = verb
            elif state != "active":  # resuming an active task changes nothing
                state, resumed_at = "active", at
        assert state == "active", f"{claim.task} fired while {state}d: {claim}"
        if resumed_at is not None:
            assert claim.fire_time > resumed_at, f"{claim.task} replayed a fire before resume"


class NothingStartsAfterShutdown(Observer):
    """Property 9 (first half): once shut down, no attempt starts and no fire is claimed."""

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        if sim.closed_at is not None:
            assert record.status is not RunStatus.RUNNING, f"started after shutdown: {record}"
            assert len(view.records) > 1, f"new run after shutdown: {record}"

    def on_claim(self, sim: Sim, claim: ClaimFire) -> None:
        assert sim.closed_at is None, f"claimed after shutdown: {claim}"


class PendingCancelledByShutdown(Observer):
    """Property 9 (second half): what had not started ends ``cancelled`` (``shutdown``)."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        if sim.closed_at is not None and record.id in self.pending:
            assert (record.status, record.reason) == (RunStatus.CANCELLED, "shutdown"), (
                f"pending at shutdown, then:\n{sim.describe(record.id)}"
            )

    def snapshot(self, sim: Sim) -> None:
        self.pending = [i for i, v in sim.views.items() if v.status in PENDING]


PENDING = (RunStatus.QUEUED, RunStatus.WAITING)


class LostClaimsLeaveNoTrace(Observer):
    """A fire claimed by another replica is neither run nor recorded here, and does not
    stop the task: its timer stays armed and its next fires are claimed as usual."""

    def __init__(self) -> None:
        self.lost: set[tuple[str, datetime]] = set()
        self.won_after_lost = 0

    def on_claim_lost(self, sim: Sim, claim: ClaimFire) -> None:
        self.lost.add((claim.task, claim.fire_time))

    def on_claim(self, sim: Sim, claim: ClaimFire) -> None:
        assert (claim.task, claim.fire_time) not in self.lost, f"claimed twice: {claim}"

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        if len(view.records) > 1 or record.cause not in (RunCause.SCHEDULE, RunCause.CATCH_UP):
            return
        assert (record.task, record.scheduled_at) not in self.lost, (
            f"a fire lost to another replica was recorded here:\n{sim.describe(record.id)}"
        )
        if any(task == record.task for task, _ in self.lost) and record.status is not (
            RunStatus.MISSED
        ):
            self.won_after_lost += 1

    def after_step(self, sim: Sim) -> None:
        if sim.closed_at is not None:
            return
        for name in {task for task, _ in self.lost}:
            if name in sim.planner.tasks and sim.planner.state_of(name) is TaskState.ACTIVE:
                # armed (a late timer may be due before now: it wakes late, not never)
                armed = sim.planner.next_fire_of(name) is not None
                assert armed or not isinstance(sim.tasks[name].trigger, Every), (
                    f"{name} stuck after a lost claim"
                )


CHECKS: list[type[Observer]] = [
    PriorityOrder,
    DependenciesHonoured,
    RetriesHonoured,
    AlertsFollowStreaks,
    OverlapHonoured,
    FiresDueTogether,
    PausedTasksDoNotFire,
    NothingStartsAfterShutdown,
    LostClaimsLeaveNoTrace,
]


def all_checks(*mine: Observer) -> list[Observer]:
    """Every property's observer: the instances given (to read them later), new ones else."""
    given_types = {type(o) for o in mine}
    return [*mine, *(check() for check in CHECKS if check not in given_types)]


def assert_one_final_record_per_run(sim: Sim) -> None:
    """Property 10 at the end (the simulator checked each transition on the way)."""
    for view in sim.views.values():
        finals = [r for _, r in view.records if r.status.is_final]
        assert len(finals) == 1 and view.records[-1][1] is finals[0], sim.describe(view.id)
    assert not sim.planner.live_runs()


# --- random histories: every property at once --------------------------------------------


RANDOM_HISTORIES: dict[str, Any] = {
    "scenario": scenarios(
        tasks=task_lists(min_tasks=2),
        min_actions=4,
        max_actions=14,
        slots=(1, 2),
    ),
    "data": st.data(),
}


@HEAVY
@given(**RANDOM_HISTORIES)
def test_random_histories_keep_every_invariant(scenario: Scenario, data: st.DataObject) -> None:
    checks = (PriorityOrder(), DependenciesHonoured(), RetriesHonoured(), OverlapHonoured())
    table = FiresDueTogether()
    sim = new_sim(scenario, data, long_from=5, observers=all_checks(*checks, table))
    play(sim, scenario)
    assert_one_final_record_per_run(sim)
    priority, deps, retries, overlap = checks
    seen("contention", priority.contended_starts > 0)
    seen("dependency", deps.gated_starts > 0)
    seen("retry", retries.retries > 0)
    seen("overlap", overlap.skipped + overlap.held > 0)
    seen("late fires", table.decided_by_policy > 0)
    seen("claim lost", bool(sim.lost_claims))
    seen("same-instant events reordered", sim.reordered_instants > 0)


# --- 1. priority ---------------------------------------------------------------------------


PRIORITY: dict[str, Any] = {
    "scenario": scenarios(
        tasks=task_lists(min_tasks=2, max_tasks=8, periodic=False, overlaps=(Overlap.ALLOW,)),
        verbs=["request", "request", "submit"],
        min_actions=5,
        max_actions=30,
        burst=True,
        slots=(1, 3),
    ),
    "data": st.data(),
}


@MEDIUM
@given(**PRIORITY)
def test_priority_decides_who_starts_under_contention(
    scenario: Scenario, data: st.DataObject
) -> None:
    priority = PriorityOrder()
    sim = new_sim(scenario, data, kinds=("ok", "fail"), long_from=5, observers=all_checks(priority))
    play(sim, scenario)
    assert_one_final_record_per_run(sim)
    seen("contention", priority.contended_starts > 0)
    event(f"contended starts: {bucket(priority.contended_starts)}")


def test_higher_priority_starts_first_then_due_time_then_arrival() -> None:
    sim = Sim(max_concurrency=1, outcome=lambda run, now: Outcome(10))
    sim.add(
        *(
            make_task(name, priority=prio, overlap="allow")
            for name, prio in [("blocker", "low"), ("lo", "low"), ("mid", "normal"), ("hi", "high")]
        )
    )
    sim.request("blocker")  # takes the only slot for 10 s
    for name in ["lo", "mid", "lo", "hi", "mid", "hi"]:
        sim.request(name)
        sim.run_for(1)
    sim.run_to_quiet()
    sim.close()
    started = [sim.views[run_id].task for _, run_id, _ in sim.starts]
    assert started == ["blocker", "hi", "hi", "mid", "mid", "lo", "lo"]
    lows = [i for _, i, _ in sim.starts if sim.views[i].task == "lo"]
    assert lows == sorted(lows), "equal priority and due: first come, first served"


def test_sync_run_waiting_for_a_thread_does_not_block_a_lower_async_run() -> None:
    sim = Sim(max_concurrency=5, thread_slots=1, outcome=lambda run, now: Outcome(10))
    sim.add(
        make_task("sync_hi", Mode.SYNC, priority="high", overlap="allow"),
        make_task("async_lo", Mode.ASYNC, priority="low"),
    )
    first = sim.request("sync_hi")
    second = sim.request("sync_hi")  # no thread left for it
    low = sim.request("async_lo")
    assert [first.status, second.status, low.status] == [
        RunStatus.RUNNING,
        RunStatus.QUEUED,
        RunStatus.RUNNING,
    ]
    sim.run_for(10)
    assert second.status is RunStatus.RUNNING
    sim.close()


# --- 2. dependencies -----------------------------------------------------------------------


DEPENDENCIES: dict[str, Any] = {
    "scenario": scenarios(
        tasks=task_lists(
            min_tasks=2, max_tasks=7, overlaps=(Overlap.SKIP, Overlap.ALLOW), chained=True
        ),
        verbs=["request", "request", "request", "submit"],
        min_actions=2,
        max_actions=20,
    ),
    "data": st.data(),
}


@MEDIUM  # its interesting case in most examples: 150 suffice
@given(**DEPENDENCIES)
def test_dependencies_gate_runs_in_random_dags(scenario: Scenario, data: st.DataObject) -> None:
    deps = DependenciesHonoured(exact_reason=True)
    sim = new_sim(scenario, data, kinds=("ok", "ok", "fail"), observers=all_checks(deps))
    play(sim, scenario)
    assert_one_final_record_per_run(sim)
    seen("dependency", deps.gated_starts > 0)
    upstream_failed = any(
        (v.last.reason or "").startswith("upstream_failed") for v in sim.views.values()
    )
    seen("upstream failed", upstream_failed)


def test_dependents_due_on_the_same_tick_share_one_run_of_their_dependency() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(3), observers=all_checks())
    sim.add(
        make_task("b", trigger=Every(seconds=10), depends_on="a"),  # before its dependency
        make_task("c", trigger=Every(seconds=10), depends_on="a"),
        make_task("a"),
        validate=True,
    )
    sim.run_until(T0 + secs(59))  # ticks at 10, 20, ... 50; each done 6 s later
    a_runs = sim.runs_of("a")
    assert len(a_runs) == 5 and all(v.kind is RunCause.DEPENDENCY for v in a_runs)
    assert all(v.status is RunStatus.SUCCEEDED for v in sim.views.values())
    assert len(sim.runs_of("b")) == len(sim.runs_of("c")) == 5
    sim.close()


def test_a_live_dependency_run_is_reused_and_its_failure_skips_the_dependents() -> None:
    deps = DependenciesHonoured(exact_reason=True)
    sim = Sim(outcome=lambda run, now: Outcome(5, "fail"), observers=all_checks(deps))
    sim.add(make_task("a", max_retries=1, retry_delay=2), make_task("b", depends_on="a"))
    sim.add(make_task("c", depends_on=["a", "b"]))
    a = sim.request("a")
    b = sim.request("b")  # waits for the live run of a
    c = sim.request("c")  # waits for the same run of a, and the run of b
    assert len(sim.runs_of("a")) == 1
    sim.run_to_quiet()
    assert sim.views[a.id].last.attempts == 2
    assert sim.views[b.id].last.reason == "upstream_failed: a"
    assert sim.views[c.id].last.reason == "upstream_failed: a"
    assert {sim.views[i].status for i in (b.id, c.id)} == {RunStatus.SKIPPED}
    sim.close()


def test_a_dependency_finished_before_the_request_does_not_count() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(5), observers=all_checks())
    sim.add(make_task("a"), make_task("b", depends_on="a"))
    sim.request("a")
    sim.run_for(6)  # a succeeded at T0+5
    b = sim.request("b")
    assert b.status is RunStatus.WAITING
    pulled = sim.runs_of("a")[-1]
    assert pulled.kind is RunCause.DEPENDENCY and pulled.created == sim.now
    sim.close()


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_a_paused_or_cancelled_dependency_skips_its_dependents_without_a_run(action: str) -> None:
    sim = Sim(outcome=lambda run, now: Outcome(5), observers=all_checks())
    sim.add(make_task("a"), make_task("b", depends_on="a"))
    getattr(sim, action)("a")
    b = sim.request("b")
    sim.run_to_quiet()
    state = "paused" if action == "pause" else "cancelled"
    assert (sim.views[b.id].status, sim.views[b.id].last.reason) == (
        RunStatus.SKIPPED,
        f"upstream_{state}: a",
    )
    assert sim.runs_of("a") == []
    sim.close()


def test_a_submission_of_a_registered_task_counts_as_its_run_and_others_save_nothing() -> None:
    """``submit`` of the registered Task object runs as that task (its failure streak
    counts it); a submitted task that is not registered saves no task state."""
    from xtasks._decisions import SaveTask

    planner = Planner(replica="p")
    registered = Task("job", sync_noop)
    planner.add_task(registered, T0)
    planner.drain(T0)
    run = planner.submit(registered, (), {}, T0)
    decisions = planner.drain(T0)
    [start] = [d for d in decisions if isinstance(d, StartAttempt)]
    assert start.run_id == run.id and start.task is registered
    planner.attempt_failed(run.id, T0, ErrorInfo("Boom", "failed"))
    planner.drain(T0)
    assert planner.consecutive_failures_of("job") == 1

    other = Task("once", sync_noop)
    submitted = planner.submit(other, (1,), {"x": 2}, T0)
    assert (submitted.args, dict(submitted.kwargs)) == ((1,), {"x": 2})
    planner.drain(T0)
    planner.attempt_failed(submitted.id, T0, ErrorInfo("Boom", "failed"))
    assert not [d for d in planner.drain(T0) if isinstance(d, SaveTask) and d.task == "once"]


def test_a_restored_task_fires_after_its_last_fire_not_that_fire_again() -> None:
    """Restored with the fire it handled last, a periodic task fires one period after it,
    and a one-shot that fired fires no more; a one-shot that never fired still does, late."""
    planner = Planner(replica="p")
    planner.add_task(make_task("old", trigger=Every(seconds=10, start=T0 - secs(105))), T0)
    planner.add_task(make_task("done", trigger=At(T0 - secs(30))), T0)
    planner.add_task(make_task("late", trigger=At(T0 - secs(30))), T0)
    planner.start(
        T0,
        {
            "old": TaskRecord(last_fire=T0 - secs(5), anchor=T0 - secs(105)),
            "done": TaskRecord(last_fire=T0 - secs(30)),
        },
    )
    assert planner.next_fire_of("old") == T0 + secs(5)
    assert (planner.next_fire_of("done"), planner.next_fire_of("late")) == (None, T0 - secs(30))
    planner.advance(T0 + secs(5))
    claims = [d for d in planner.drain(T0 + secs(5)) if isinstance(d, ClaimFire)]
    assert sorted((c.task, c.fire_time) for c in claims) == [
        ("late", T0 - secs(30)),
        ("old", T0 + secs(5)),
    ]


def test_a_claim_of_missed_fires_is_recorded_missed_naming_its_range_and_why() -> None:
    """A won claim that covers missed fires records one ``missed`` run naming how many,
    from which fire to which, and why; after shutdown a won claim makes no run at all."""
    planner = Planner(replica="p")
    planner.add_task(make_task("tick", trigger=Every(seconds=10, start=T0)), T0)
    planner.drain(T0)
    now = T0 + secs(100)
    for claim, count in [
        (ClaimFire("tick", T0, RunCause.SCHEDULE, 3, T0 + secs(20)), "3"),
        (ClaimFire("tick", T0 + secs(30), RunCause.SCHEDULE, 0, None, missed_more=True), "0+"),
        (
            ClaimFire("tick", T0 + secs(40), RunCause.SCHEDULE, 2, None, missed_because="no store"),
            "2",
        ),
    ]:
        run = planner.fire_claimed(claim, now)
        [record] = [d.record for d in planner.drain(now) if isinstance(d, RecordRun)]
        assert run is not None and record.id == run.id and record.status is RunStatus.MISSED
        last = (claim.missed_until or claim.fire_time).isoformat()
        because = claim.missed_because or "catch_up=once"
        assert record.reason == (
            f"missed {count} fire(s) from {claim.fire_time.isoformat()} to {last} ({because})"
        )
    planner.shutdown(now)
    planner.drain(now)
    assert planner.fire_claimed(ClaimFire("tick", now, RunCause.SCHEDULE), now) is None
    assert planner.drain(now) == []


def test_after_shutdown_nothing_wakes_the_planner_and_no_run_is_accepted() -> None:
    """Shutdown stops the fire timers and the runs waiting for a retry: the runtime has no
    wake-up left to sleep for, the waiting run ends ``cancelled`` (shutdown), and new
    requests are refused."""
    from xtasks._errors import SchedulerStateError

    planner = Planner(replica="p")
    planner.add_task(make_task("tick", trigger=Every(seconds=10, start=T0)), T0)
    planner.add_task(make_task("flaky", max_retries=3, retry_delay=60), T0)
    retrying = planner.request("flaky", T0)
    planner.drain(T0)
    planner.attempt_failed(retrying.id, T0, ErrorInfo("Boom", "first attempt"))
    planner.drain(T0)
    assert planner.next_wakeup() is not None
    assert planner.shutdown(T0) == []
    ended = [d.record for d in planner.drain(T0) if isinstance(d, RecordRun)]
    assert [(r.id, r.status, r.reason) for r in ended] == [
        (retrying.id, RunStatus.CANCELLED, "shutdown")
    ]
    assert planner.next_wakeup() is None
    with pytest.raises(SchedulerStateError, match="shutting down"):
        planner.request("tick", T0)


def test_at_shutdown_a_run_waiting_on_a_queued_dependency_is_cancelled_not_skipped() -> None:
    """Shutdown cancels waiting runs before queued ones: a dependent waiting for a queued
    dependency's run ends ``cancelled`` (shutdown), not ``skipped`` because of it."""
    planner = Planner(max_concurrency=1, replica="p")
    planner.add_task(make_task("blocker"), T0)
    planner.add_task(make_task("a"), T0)
    planner.add_task(make_task("c", depends_on="a"), T0)
    planner.request("blocker", T0)
    planner.drain(T0)  # blocker holds the one slot
    c = planner.request("c", T0)  # pulls a run of a, queued for the slot
    planner.drain(T0)
    planner.shutdown(T0)
    ended = {d.record.task: d.record for d in planner.drain(T0) if isinstance(d, RecordRun)}
    assert (ended["c"].id, ended["c"].status, ended["c"].reason) == (
        c.id,
        RunStatus.CANCELLED,
        "shutdown",
    )
    assert (ended["a"].status, ended["a"].reason) == (RunStatus.CANCELLED, "shutdown")


def test_a_local_resume_is_a_change_to_store_and_one_read_from_the_store_is_not() -> None:
    from xtasks._decisions import SaveTask

    planner = Planner(replica="p")
    planner.add_task(make_task("job"), T0)
    planner.drain(T0)
    saves: list[SaveTask] = []
    acts: list[Callable[[], None]] = [
        lambda: planner.pause("job", T0),
        lambda: planner.resume("job", T0),
        lambda: planner.apply_state("job", TaskState.PAUSED, T0),
        lambda: planner.apply_state("job", TaskState.ACTIVE, T0),
        lambda: planner.apply_state("job", TaskState.CANCELLED, T0),
    ]
    for act in acts:
        act()
        saves += [d for d in planner.drain(T0) if isinstance(d, SaveTask)]
    assert [(s.state_changed, s.from_store) for s in saves] == [
        (True, False),
        (True, False),
        (True, True),
        (True, True),
        (True, True),
    ]


def test_a_one_shot_that_fired_does_not_fire_again_when_resumed() -> None:
    """``At`` fires once; pausing it afterwards and resuming it does not fire it again
    (a resume arms from now, not as a task that never fired)."""
    sim = Sim(outcome=lambda run, now: Outcome(1), observers=all_checks())
    sim.add(make_task("once", trigger=At(T0 + secs(10))))
    sim.run_for(20)
    assert len(sim.runs_of("once")) == 1
    sim.pause("once")
    sim.run_for(10)
    sim.resume("once")
    assert sim.planner.next_fire_of("once") is None
    sim.run_for(60)
    assert len(sim.runs_of("once")) == 1
    sim.close()


def test_a_run_whose_dependency_is_not_registered_is_skipped_naming_it() -> None:
    """Before validation (a scheduler refuses to start with it), a requested run of a task
    whose dependency is unknown is skipped, naming the dependency, not left waiting."""
    sim = Sim(outcome=lambda run, now: Outcome(5), observers=all_checks())
    sim.add(make_task("b", depends_on="nowhere"), validate=False)
    b = sim.request("b")
    assert (sim.views[b.id].status, sim.views[b.id].last.reason) == (
        RunStatus.SKIPPED,
        "unknown dependency: nowhere",
    )
    sim.close()


def test_a_paused_root_skips_every_run_of_a_chain_pulled_for_a_request() -> None:
    """d needs c, c needs b, b needs a, and a is paused: a request of d pulls runs of c and
    b, and each ends skipped, naming the dependency that stopped it; none waits forever."""
    sim = Sim(outcome=lambda run, now: Outcome(5), observers=all_checks())
    sim.add(
        make_task("a"),
        make_task("b", depends_on="a"),
        make_task("c", depends_on="b"),
        make_task("d", depends_on="c"),
    )
    sim.pause("a")
    sim.request("d")
    sim.run_to_quiet()
    ended = {name: [(v.status, v.last.reason) for v in sim.runs_of(name)] for name in "abcd"}
    assert ended == {
        "a": [],
        "b": [(RunStatus.SKIPPED, "upstream_paused: a")],
        "c": [(RunStatus.SKIPPED, "upstream_skipped: b")],
        "d": [(RunStatus.SKIPPED, "upstream_skipped: c")],
    }
    sim.close()


def test_a_live_run_reads_back_until_it_is_final() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(5), observers=all_checks())
    sim.add(make_task("a"))
    run = sim.request("a")
    live = sim.planner.live_record(run.id)
    assert live is not None and (live.id, live.status) == (run.id, RUNNING)
    sim.run_to_quiet()
    assert sim.planner.live_record(run.id) is None
    sim.close()


def test_a_lost_run_runs_again_only_where_its_task_says_recover() -> None:
    """``recover=True``: a run lost with its replica is requested again, with its cause and
    scheduled time; not for a task without it, a paused one, a submission (its arguments
    are gone) or a planner shutting down."""
    sim = Sim(outcome=lambda run, now: Outcome(5), observers=all_checks())
    sim.add(make_task("kept", recover=True), make_task("dropped"), make_task("held", recover=True))
    sim.pause("held")
    sim.run_for(60)
    lost = [
        RunRecord(
            id=f"lost-{name}",
            task=name,
            status=RunStatus.LOST,
            cause=cause,
            scheduled_at=T0,
        )
        for name, cause in [
            ("kept", RunCause.SCHEDULE),
            ("dropped", RunCause.SCHEDULE),
            ("held", RunCause.SCHEDULE),
            ("kept", RunCause.SUBMIT),
        ]
    ]
    again = sim.planner.recover_lost(lost[0], sim.now)
    sim.settle()
    assert again is not None and (again.task.name, again.cause) == ("kept", RunCause.SCHEDULE)
    assert again.scheduled_at == T0 and again.id != lost[0].id
    assert [sim.planner.recover_lost(r, sim.now) for r in lost[1:]] == [None, None, None]
    sim.run_to_quiet()
    assert sim.views[again.id].status is RunStatus.SUCCEEDED
    sim.shutdown()
    assert sim.planner.recover_lost(lost[0], sim.now) is None
    sim.close()


# --- 3. retries ----------------------------------------------------------------------------


RETRIES: dict[str, Any] = {
    "scenario": scenarios(
        tasks=task_lists(max_tasks=3, min_retries=1),
        verbs=["request", "request", "submit", "cancel", "resume"],
        min_actions=1,
        max_actions=10,
    ),
    "data": st.data(),
}


@MEDIUM  # its interesting case in most examples: 150 suffice
@given(**RETRIES)
def test_retries_respect_count_and_delays(scenario: Scenario, data: st.DataObject) -> None:
    retries = RetriesHonoured()
    kinds: tuple[Kind, ...] = ("fail", "fail", "ok", "cancel")
    sim = new_sim(scenario, data, kinds=kinds, observers=all_checks(retries))
    play(sim, scenario)
    assert_one_final_record_per_run(sim)
    seen("retry", retries.retries > 0)
    event(f"retries: {bucket(retries.retries)}")


@LIGHT
@given(
    max_retries=st.integers(1, 5),
    delay=st.sampled_from([0, 0.5, 1, 7]),
    backoff=st.sampled_from([1, 1.5, 2, 3]),
    jitter=st.sampled_from([0, 0.5, 4]),
    duration=st.integers(0, 9),
)
def test_a_run_that_always_fails_makes_every_attempt_with_backoff(
    max_retries: int, delay: float, backoff: float, jitter: float, duration: int
) -> None:
    task = make_task(
        "flaky", max_retries=max_retries, retry_delay=delay, retry_backoff=backoff, jitter=jitter
    )
    sim = Sim(outcome=lambda run, now: Outcome(duration, "fail"), observers=all_checks())
    note(describe_task(task))
    sim.add(task)
    run = sim.request("flaky")
    sim.run_to_quiet()
    seen("retry", max_retries > 0)
    view = sim.views[run.id]
    assert view.status is RunStatus.FAILED and view.last.attempts == 1 + max_retries
    starts = [at for at, i, _ in sim.starts if i == run.id]
    ends = [at for at, _ in sim.attempt_ends[run.id]]
    for k in range(1, max_retries + 1):  # attempt k+1 after attempt k ended
        gap = (starts[k] - ends[k - 1]).total_seconds()
        expected = delay * backoff ** (k - 1)
        assert expected - 1e-6 <= gap <= expected + jitter + 1e-6
    sim.close()


def test_a_cancelled_attempt_is_never_retried() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(5), observers=all_checks())
    sim.add(make_task("a", max_retries=3))
    run = sim.request("a")
    sim.run_for(1)
    sim.cancel("a")
    view = sim.views[run.id]
    assert (view.status, view.last.attempts, view.last.reason) == (
        RunStatus.CANCELLED,
        1,
        "cancelled",
    )
    sim.resume("a")
    sim.run_for(30)
    assert len(sim.runs_of("a")) == 1
    sim.close()


def test_a_succeeded_record_carries_no_error_from_an_earlier_attempt() -> None:
    """``RunRecord.error`` is "the last attempt's error": none when the last one succeeded."""
    kinds: Iterator[Kind] = iter(["fail", "ok"])
    sim = Sim(outcome=lambda run, now: Outcome(1, next(kinds)))
    sim.add(make_task("a", max_retries=1))
    run = sim.request("a")
    sim.run_to_quiet()
    last = sim.views[run.id].last
    assert (last.status, last.attempts) == (RunStatus.SUCCEEDED, 2)
    assert last.error is None, f"succeeded, yet reports {last.error}"


def test_a_run_that_failed_twice_then_succeeded_keeps_both_failures_with_their_times() -> None:
    """History shows why a run needed three attempts: each earlier one, with its error and
    when it started and ended (attempts of 3 s; retries after 5 s, then 10 s)."""
    kinds: Iterator[Kind] = iter(["fail", "fail", "ok"])
    sim = Sim(outcome=lambda run, now: Outcome(3, next(kinds)))
    sim.add(make_task("a", max_retries=2, retry_delay=5, retry_backoff=2))
    run = sim.request("a")
    sim.run_to_quiet()
    records = [record for _, record in sim.views[run.id].records]
    last = records[-1]
    assert (last.status, last.attempts, last.error) == (RunStatus.SUCCEEDED, 3, None)
    assert last.started_at == T0  # of the first attempt
    assert last.finished_at == T0 + secs(24)
    assert last.earlier_attempts == (
        AttemptRecord(1, T0, T0 + secs(3), ErrorInfo("Boom", "attempt 1")),
        AttemptRecord(2, T0 + secs(8), T0 + secs(11), ErrorInfo("Boom", "attempt 2")),
    )
    # Each snapshot holds the attempts that failed so far: none until the first failed.
    assert [len(r.earlier_attempts) for r in records] == [0, 0, 1, 1, 2, 2, 2]
    succeeded = RunStatus.SUCCEEDED
    assert [r.status for r in records] == [QUEUED, RUNNING] * 3 + [succeeded]
    sim.close()


def test_a_run_that_failed_for_good_keeps_the_attempts_before_its_last() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(1, "fail"))
    sim.add(make_task("a", max_retries=1, retry_delay=2))
    run = sim.request("a")
    sim.run_to_quiet()
    last = sim.views[run.id].last
    assert (last.status, last.attempts) == (RunStatus.FAILED, 2)
    assert last.error == ErrorInfo("Boom", "attempt 2")  # the last attempt: the record's own
    assert last.earlier_attempts == (
        AttemptRecord(1, T0, T0 + secs(1), ErrorInfo("Boom", "attempt 1")),
    )
    sim.close()


def test_earlier_attempts_keep_only_the_last_ones_and_attempts_counts_them_all() -> None:
    retries = MAX_EARLIER_ATTEMPTS + 5
    sim = Sim(outcome=lambda run, now: Outcome(1, "fail"))
    sim.add(make_task("a", max_retries=retries, retry_delay=1))
    run = sim.request("a")
    sim.run_to_quiet()
    last = sim.views[run.id].last
    assert (last.status, last.attempts) == (RunStatus.FAILED, retries + 1)
    numbers = [attempt.number for attempt in last.earlier_attempts]
    assert numbers == list(range(retries + 1 - MAX_EARLIER_ATTEMPTS, retries + 1))
    assert [a.error.message for a in last.earlier_attempts] == [f"attempt {n}" for n in numbers]
    sim.close()


def test_runs_that_never_retry_share_the_one_empty_tuple() -> None:
    """The hot path allocates nothing for earlier attempts: every snapshot holds ``()``."""
    empty = ()
    sim = Sim(outcome=lambda run, now: Outcome(1))
    sim.add(make_task("a"))
    runs = [sim.request("a") for _ in range(3)]
    sim.run_to_quiet()
    for run in runs:
        assert all(id(r.earlier_attempts) == id(empty) for _, r in sim.views[run.id].records)
    sim.close()


# --- 3b. where a run runs: its executor and the worker it reports ---------------------------


@pytest.mark.parametrize("mode", list(Mode))
def test_every_record_of_a_run_names_the_executor_of_its_task(mode: Mode) -> None:
    """History says which built-in ran each run, from the moment it is requested; they do
    not report a worker."""
    kinds: Iterator[Kind] = iter(["fail", "ok"])
    sim = Sim(outcome=lambda run, now: Outcome(1, next(kinds)))
    sim.add(make_task("a", mode, max_retries=1))
    run = sim.request("a")
    sim.run_to_quiet()
    records = [record for _, record in sim.views[run.id].records]
    assert [r.status for r in records] == [QUEUED, RUNNING, QUEUED, RUNNING, RunStatus.SUCCEEDED]
    assert {(r.executor, r.worker) for r in records} == {(mode.value, None)}
    sim.close()


def test_a_skipped_run_and_a_pulled_dependency_name_their_own_executors() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(5))
    sim.add(make_task("up", Mode.PROCESS), make_task("down", Mode.SYNC, depends_on=["up"]))
    first = sim.request("down")
    second = sim.request("down")  # overlap="skip": recorded skipped at once
    sim.run_to_quiet()
    [pulled] = sim.runs_of("up")
    assert {r.executor for _, r in sim.views[pulled.id].records} == {"process"}
    assert {r.executor for _, r in sim.views[first.id].records} == {"sync"}
    assert sim.views[second.id].last.status is RunStatus.SKIPPED
    assert sim.views[second.id].last.executor == "sync"
    sim.close()


class _Remote:
    """A planner whose task ``far`` runs on ``remote``, an executor that reports starts
    (as Celery's does, with the worker's name); the test plays the runtime."""

    def __init__(self, **policies: Any) -> None:
        self.now = T0
        self.planner = Planner(replica="p", new_id=iter(f"r{i}" for i in range(99)).__next__)
        self.planner.set_slots("remote", None, reports_start=True)
        self.planner.add_task(Task("far", sync_noop, executor="remote", **policies), T0)
        self.records: list[RunRecord] = []
        self.starts: list[StartAttempt] = []

    def pump(self) -> list[RunRecord]:
        """The records the planner's decisions since the last pump wrote."""
        new = []
        for decision in self.planner.drain(self.now):
            if isinstance(decision, RecordRun):
                new.append(decision.record)
            elif isinstance(decision, StartAttempt):
                self.starts.append(decision)
        self.records += new
        return new

    def later(self, seconds: float) -> None:
        self.now += secs(seconds)
        self.planner.advance(self.now)


def test_the_worker_an_executor_reports_is_recorded_until_a_retry_clears_it() -> None:
    remote = _Remote(max_retries=1, retry_delay=2)
    run = remote.planner.request("far", T0)
    [requested, dispatched] = remote.pump()
    assert (requested.executor, requested.worker) == ("remote", None)
    assert (dispatched.status, dispatched.worker) == (QUEUED, None)  # not started yet

    remote.later(1)
    remote.planner.attempt_started(run.id, remote.now, "celery@host1")
    [started] = remote.pump()
    assert (started.status, started.executor, started.worker) == (
        RUNNING,
        "remote",
        "celery@host1",
    )
    remote.planner.attempt_started(run.id, remote.now, "celery@other")  # once per attempt
    assert remote.pump() == []

    remote.later(1)
    remote.planner.attempt_failed(run.id, remote.now, ErrorInfo("Boom", "attempt 1"))
    [retry] = remote.pump()
    assert (retry.status, retry.worker) == (QUEUED, None)  # the next attempt: not known yet

    remote.later(2)
    [dispatched_again] = remote.pump()
    assert (dispatched_again.status, dispatched_again.attempts) == (QUEUED, 2)
    assert dispatched_again.worker is None
    remote.planner.attempt_started(run.id, remote.now, "celery@host2")
    [restarted] = remote.pump()
    assert (restarted.status, restarted.attempts, restarted.worker) == (RUNNING, 2, "celery@host2")

    remote.later(1)
    remote.planner.attempt_succeeded(run.id, remote.now, 8)
    [done] = remote.pump()
    assert (done.status, done.executor, done.worker) == (
        RunStatus.SUCCEEDED,
        "remote",
        "celery@host2",
    )


def test_a_run_reads_queued_until_its_own_start_and_keeps_its_first_start_time() -> None:
    """Each run of an executor that reports starts is ``queued`` until *its* start is
    reported, whatever other runs wait for theirs; ``started_at`` is the first attempt's
    start, kept while a retry waits for its own."""
    remote = _Remote(overlap="allow", max_retries=1, retry_delay=1)
    first, second = (remote.planner.request("far", T0) for _ in range(2))
    remote.pump()
    remote.later(1)
    started_at = remote.now
    remote.planner.attempt_started(first.id, remote.now, "w1")
    [running] = remote.pump()
    assert (running.id, running.status, running.started_at) == (first.id, RUNNING, started_at)
    live_first = remote.planner.live_record(first.id)
    assert live_first is not None and live_first.status is RUNNING
    live = remote.planner.live_record(second.id)
    assert live is not None and (live.status, live.started_at) == (QUEUED, None)
    remote.later(1)
    remote.planner.attempt_failed(first.id, remote.now, ErrorInfo("Boom", "attempt 1"))
    remote.pump()
    remote.later(1)
    [again] = remote.pump()  # the retry, dispatched, its start not reported yet
    assert (again.status, again.attempts, again.started_at) == (QUEUED, 2, started_at)
    remote.later(1)
    remote.planner.attempt_started(first.id, remote.now, "w2")
    [restarted] = remote.pump()
    assert (restarted.status, restarted.started_at) == (RUNNING, started_at)
    remote.planner.attempt_started(second.id, remote.now, "w3")  # late: still its first
    [second_running] = remote.pump()
    assert (second_running.status, second_running.started_at) == (RUNNING, remote.now)


def test_a_built_in_run_is_running_at_dispatch_beside_an_executor_that_reports_starts() -> None:
    remote = _Remote()
    remote.planner.add_task(Task("near", sync_noop), T0)
    remote.planner.request("far", T0)
    near = remote.planner.request("near", T0)
    records = remote.pump()
    [dispatched] = [r for r in records if r.id == near.id and r.started_at is not None]
    assert dispatched.status is RUNNING


def test_a_request_returns_the_run_it_made_held_or_skipped() -> None:
    """What ``request`` returns is the run the request made, whatever became of it: held
    behind the live one (``overlap="queue"``, a catch-up replay) or skipped (overlap)."""
    planner = Planner(replica="p")
    planner.add_task(make_task("q", overlap="queue"), T0)
    planner.add_task(make_task("s", overlap="skip"), T0)
    planner.add_task(make_task("c", trigger=Every(seconds=10, start=T0)), T0)
    for name in ("q", "s", "c"):
        planner.request(name, T0)
    planner.drain(T0)
    held = planner.request("q", T0)
    skipped = planner.request("s", T0)
    replay = planner.fire_claimed(ClaimFire("c", T0, RunCause.CATCH_UP), T0)
    records = {d.record.id: d.record for d in planner.drain(T0) if isinstance(d, RecordRun)}
    assert records[held.id].status is QUEUED and records[held.id].task == "q"
    assert (records[skipped.id].status, records[skipped.id].reason) == (
        RunStatus.SKIPPED,
        "overlap",
    )
    assert replay is not None and records[replay.id].status is QUEUED
    assert records[replay.id].cause is RunCause.CATCH_UP


def test_an_executors_slots_bound_its_attempts_at_once() -> None:
    """``set_slots("remote", 2)``: of five runs on it, two are dispatched; each end lets
    exactly one more go, whatever ``max_concurrency`` allows."""
    remote = _Remote(overlap="allow")
    remote.planner.set_slots("remote", 2, reports_start=True)
    runs = [remote.planner.request("far", T0) for _ in range(5)]
    remote.pump()
    assert [s.run_id for s in remote.starts] == [runs[0].id, runs[1].id]
    for i, run in enumerate(runs):
        remote.later(1)
        remote.planner.attempt_succeeded(run.id, remote.now, None)
        remote.pump()
        assert len(remote.starts) == min(3 + i, 5)
    assert [s.run_id for s in remote.starts] == [run.id for run in runs]


def test_cancelling_one_run_ends_a_waiting_one_at_once_and_asks_to_stop_a_running_one() -> None:
    remote = _Remote(overlap="allow")
    remote.planner.set_slots("remote", 1, reports_start=True)
    running, waiting = (remote.planner.request("far", T0) for _ in range(2))
    remote.pump()
    assert [s.run_id for s in remote.starts] == [running.id]
    assert remote.planner.cancel_run(waiting.id, T0, "by hand")
    [ended] = remote.pump()
    assert (ended.id, ended.status, ended.reason) == (waiting.id, RunStatus.CANCELLED, "by hand")
    assert remote.planner.cancel_run(running.id, T0, "by hand")
    asked = remote.planner.drain(T0)
    assert asked == [CancelAttempt(running.id, "by hand")]  # it ends when its attempt does
    remote.planner.attempt_cancelled(running.id, T0, "by hand")
    [stopped] = remote.pump()
    assert (stopped.id, stopped.status) == (running.id, RunStatus.CANCELLED)
    assert not remote.planner.cancel_run(running.id, T0)  # final: nothing to cancel
    assert not remote.planner.cancel_run("no-such-run", T0)


def test_a_run_whose_executor_never_reported_its_start_ends_recorded_as_it_ended() -> None:
    """Recorded ``queued`` while its executor has not said it began; once the attempt ends
    (it may never say so), the final record says how it ended, and so do its retries."""
    remote = _Remote(max_retries=1, retry_delay=1)
    run = remote.planner.request("far", T0)
    remote.pump()
    remote.later(1)
    remote.planner.attempt_failed(run.id, remote.now, ErrorInfo("Boom", "no start said"))
    [retry] = remote.pump()
    assert (retry.status, retry.attempts) == (QUEUED, 1)
    remote.later(1)
    remote.pump()
    remote.planner.attempt_succeeded(run.id, remote.now, 3)
    [done] = remote.pump()
    assert (done.status, done.result, done.attempts) == (RunStatus.SUCCEEDED, 3, 2)


def test_an_executor_never_set_is_bounded_by_max_concurrency_only() -> None:
    """A task may name an executor the planner was told nothing about (the scheduler sets
    every one, a planner driven alone may not): its runs start, ``max_concurrency`` at once."""
    planner = Planner(max_concurrency=2, replica="p")
    planner.add_task(Task("far", sync_noop, executor="unset", overlap="allow"), T0)
    runs = [planner.request("far", T0) for _ in range(3)]
    starts = [d for d in planner.drain(T0) if isinstance(d, StartAttempt)]
    assert [s.run_id for s in starts] == [runs[0].id, runs[1].id]
    assert repr(runs[0]) == f"<Run {runs[0].id} far running>"  # as failures print it


def test_an_executor_set_again_without_reporting_starts_records_running_at_dispatch() -> None:
    remote = _Remote()
    remote.planner.set_slots("remote", None, reports_start=False)
    remote.planner.request("far", T0)
    [_requested, dispatched] = remote.pump()
    assert dispatched.status is RUNNING and dispatched.started_at == T0


@pytest.mark.parametrize(
    ("where", "recorded"),
    [
        ("w" * 300, "w" * RunRecord.MAX_WORKER_CHARS),
        ("wörker@hôte ✓", "wörker@hôte ✓"),
        ("", None),
        (None, None),
        (42, None),  # not text: an executor's bug, never the record's
    ],
)
def test_the_reported_worker_is_text_of_bounded_length(where: object, recorded: object) -> None:
    remote = _Remote()
    run = remote.planner.request("far", T0)
    remote.pump()
    remote.planner.attempt_started(run.id, T0, where)  # type: ignore[arg-type]
    [started] = remote.pump()
    assert (started.status, started.worker) == (RUNNING, recorded)


def test_a_built_in_run_ignores_a_reported_worker() -> None:
    """Only an executor that reports starts names a worker; for the others, a stray
    report changes nothing."""
    sim = Sim(outcome=lambda run, now: Outcome(5))
    sim.add(make_task("a"))
    run = sim.request("a")
    sim.planner.attempt_started(run.id, sim.now, "somewhere")
    assert sim.planner.drain(sim.now) == []
    sim.run_to_quiet()
    assert {r.worker for _, r in sim.views[run.id].records} == {None}
    sim.close()


# --- 4. alerts -----------------------------------------------------------------------------

ALERT_OUTCOMES: list[Kind] = ["fail", "ok", "fail", "fail", "cancel"]


ALERTS: dict[str, Any] = {
    "outcomes": st.lists(st.sampled_from(ALERT_OUTCOMES), min_size=4, max_size=40),
    "alert_after": st.integers(1, 3),
    "alert_on_failure": st.sampled_from([True, True, True, False]),
    "max_retries": st.integers(0, 1),
}


@HEAVY
@given(**ALERTS)
def test_one_failing_alert_per_streak_and_one_recovered_after_it(
    outcomes: list[Kind], alert_after: int, alert_on_failure: bool, max_retries: int
) -> None:
    kinds = iter(outcomes)

    def outcome(run: Run, now: datetime) -> Outcome:
        return Outcome(1, next(kinds, "ok"))

    sim = Sim(outcome=outcome, observers=all_checks())
    task = make_task(
        "a", alert_after=alert_after, alert_on_failure=alert_on_failure, max_retries=max_retries
    )
    note(describe_task(task))
    sim.add(task)
    for _ in range(len(outcomes)):
        sim.request("a")
        sim.run_for(10)
    sim.close()
    finals = [v.status for v in sim.runs_of("a")]
    # the alert decision was made (an alert sent, or withheld by alert_on_failure=False)
    streaks = [kind for kind, _ in expected_alerts(finals, alert_after, enabled=True)]
    seen("failing streak", AlertKind.FAILING in streaks)
    seen("recovered streak", AlertKind.RECOVERED in streaks)
    assert [(a.kind, a.consecutive_failures) for _, a in sim.alerts] == expected_alerts(
        finals, alert_after, alert_on_failure
    )
    # what the task's state last saved says, which is what a restart reads back
    streak = 0
    for status in finals:
        if status is RunStatus.FAILED:
            streak += 1
        elif status is RunStatus.SUCCEEDED:
            streak = 0
    saves = [save for _, save in sim.saves if save.task == "a"]
    # progress, not a change of state another replica must apply (nothing paused here)
    assert not [save for save in saves if save.state_changed or save.from_store]
    last = saves[-1].record if saves else TaskRecord()
    assert (last.consecutive_failures, last.alerting) == (
        streak,
        alert_on_failure and streak >= alert_after,
    )


def expected_alerts(
    finals: list[RunStatus], alert_after: int, enabled: bool
) -> list[tuple[AlertKind, int]]:
    """Alerts for a sequence of final statuses, computed from the streaks directly."""
    alerts: list[tuple[AlertKind, int]] = []
    streak = 0
    for status in finals:
        if status is RunStatus.FAILED:
            streak += 1
            if enabled and streak == alert_after:
                alerts.append((AlertKind.FAILING, alert_after))
        elif status is RunStatus.SUCCEEDED:
            if enabled and streak >= alert_after:
                alerts.append((AlertKind.RECOVERED, 0))
            streak = 0
    return alerts


def test_alerts_count_runs_not_attempts() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(1, "fail"), observers=all_checks())
    sim.add(make_task("a", max_retries=4, alert_after=2))
    sim.request("a")
    sim.run_for(60)
    assert not sim.alerts  # five failed attempts, one failed run
    sim.request("a")
    sim.run_for(60)
    assert [a.kind for _, a in sim.alerts] == [AlertKind.FAILING]
    sim.close()


# --- 5. overlap ----------------------------------------------------------------------------


OVERLAP: dict[str, Any] = {
    "overlap": st.sampled_from(list(Overlap)),
    "period": st.sampled_from([5, 10, 30]),
    "requests": st.lists(st.integers(0, 120), max_size=6),
    "data": st.data(),
}


@MEDIUM  # its interesting case in most examples: 150 suffice
@given(**OVERLAP)
def test_overlap_policy_of_a_periodic_task(
    overlap: Overlap, period: int, requests: list[int], data: st.DataObject
) -> None:
    check = OverlapHonoured()
    sim = Sim(
        outcome=outcomes_from(data, max_seconds=3 * period, long_from=period),
        observers=all_checks(check),
        claim_won=claims_won_from(data),
        tie_break=tie_breaks_from(data),
    )
    task = make_task("a", trigger=Every(seconds=period), overlap=overlap, max_retries=1)
    note(f"{describe_task(task)}, requests at {requests}")
    sim.add(task)
    for at in requests:
        sim.at(T0 + secs(at), lambda: sim.request("a"))
    sim.run_until(T0 + secs(120))
    sim.close()
    fires = [c for _, c in sim.claims]
    assert len(fires) == 120 // period
    if overlap is Overlap.SKIP:
        assert check.max_running["a"] <= 1 and check.held == 0
    if overlap is Overlap.ALLOW:
        assert check.skipped == 0
    seen("overlap", check.skipped + check.held > 0 or check.max_running["a"] > 1)


def test_overlap_allow_runs_fires_at_the_same_time() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(25), observers=all_checks())
    sim.add(make_task("a", trigger=Every(seconds=10), overlap="allow"))
    sim.run_until(T0 + secs(30))
    running = [v for v in sim.runs_of("a") if v.status is RunStatus.RUNNING]
    assert len(running) == 3
    sim.close()


def test_overlap_skip_and_queue_on_a_slow_run() -> None:
    for overlap, statuses in [
        ("skip", ["succeeded", "skipped", "skipped", "succeeded"]),
        ("queue", ["succeeded", "succeeded", "skipped", "cancelled"]),
    ]:
        sim = Sim(outcome=lambda run, now: Outcome(25), observers=all_checks())
        sim.add(make_task("a", trigger=Every(seconds=10), overlap=overlap))
        sim.run_until(T0 + secs(40))
        sim.close()
        views = sim.runs_of("a")
        assert [v.status.value for v in views][:4] == statuses, overlap
        assert all(v.last.reason == "overlap" for v in views if v.status is RunStatus.SKIPPED)


# --- 6. interval counting ------------------------------------------------------------------

DIVISORS_OF_AN_HOUR = [p for p in range(5, 3601) if 3600 % p == 0]


@MEDIUM
@given(
    period=st.sampled_from(DIVISORS_OF_AN_HOUR),
    offset_us=st.integers(0, 10**6),
    duration=st.sampled_from([0, 0.5, 2]),
)
def test_an_interval_fires_exactly_period_divides_hour_times(
    period: int, offset_us: int, duration: float
) -> None:
    start = T0 + timedelta(microseconds=offset_us)
    note(f"Every(seconds={period}) registered at {start}, runs of {duration} s")
    event(f"fires in the hour: {bucket(3600 // period)}")
    sim = Sim(start, outcome=lambda run, now: Outcome(min(duration, period / 2)))
    sim.add(make_task("a", trigger=Every(seconds=period)))
    sim.run_until(start + timedelta(hours=1))
    fired = [v for v in sim.runs_of("a") if v.kind is RunCause.SCHEDULE]
    assert len(fired) == 3600 // period
    assert [v.last.scheduled_at for v in fired] == [
        start + secs(period * k) for k in range(1, 3600 // period + 1)
    ]
    sim.close()
    assert all(v.status is RunStatus.SUCCEEDED for v in fired)


@pytest.mark.parametrize("period", [0.5, 1, 2, 4.5])
def test_a_short_interval_warns_and_still_counts_right(period: float) -> None:
    with pytest.warns(ShortIntervalWarning):
        trigger = Every(seconds=period)
    sim = Sim()
    sim.add(make_task("a", trigger=trigger))
    sim.run_until(T0 + timedelta(minutes=3))
    assert sum(1 for _, c in sim.claims if c.fire_time <= T0 + timedelta(minutes=3)) == int(
        180 / period
    )
    sim.close()


# --- 7. catch-up ---------------------------------------------------------------------------


def late_fires(sim: Sim) -> tuple[list[ClaimFire], list[RunView], list[RunView]]:
    claims = [c for _, c in sim.claims]
    missed = [v for v in sim.views.values() if v.status is RunStatus.MISSED]
    caught = [v for v in sim.views.values() if v.kind is RunCause.CATCH_UP]
    return claims, missed, caught


def missed_count(view: RunView) -> str:
    reason = view.last.reason or ""
    found = re.match(r"missed (\d+\+?) fire\(s\)", reason)
    assert found, reason
    return found.group(1)


@HEAVY
@given(
    policy=st.sampled_from(["once", "skip", "all"]),
    n_late=st.integers(1, 250),
    period=st.sampled_from([10, 30, 60]),
    grace_fraction=st.floats(0.05, 0.8),
    data=st.data(),
)
def test_late_timers_apply_catch_up(
    policy: str, n_late: int, period: int, grace_fraction: float, data: st.DataObject
) -> None:
    grace = period * grace_fraction  # below the period: no fire lies inside the grace window
    task = make_task(
        "a", trigger=Every(seconds=period), catch_up=policy, misfire_grace=grace, overlap="allow"
    )
    note(describe_task(task))
    seen("several late fires", n_late > 1)
    seen("late fires past the cap", n_late > CATCH_UP_CAP)
    sim = Sim(observers=all_checks())
    sim.add(task)
    after_grace = data.draw(st.floats(grace + 0.01, period - 0.01), label="now past last fire")
    sim.step(T0 + secs(period * n_late + after_grace))  # the timer wakes after n_late fires
    claims, missed, caught = late_fires(sim)
    assert len(claims) <= CATCH_UP_CAP + 1, "catching up must not replay every fire"
    if policy == "once":
        assert len(caught) == 1
        assert caught[0].last.scheduled_at == T0 + secs(period * n_late), "not the latest"
        assert len(missed) == (1 if n_late > 1 else 0)
        if missed:
            assert missed_count(missed[0]) == str(n_late - 1)
    elif policy == "skip":
        assert not caught and len(missed) == 1
        assert missed_count(missed[0]) == str(n_late)
    else:
        assert len(caught) == min(n_late, CATCH_UP_CAP)
        assert len(missed) == (0 if n_late <= CATCH_UP_CAP else 1)
        if missed:
            assert missed_count(missed[0]) == str(n_late - CATCH_UP_CAP)
    # Every late fire is run or counted missed, none dropped silently (counted exactly).
    counted = sum(int(missed_count(v)) for v in missed)
    assert counted + len(caught) == n_late
    assert sim.planner.next_fire_of("a") == T0 + secs(period * (n_late + 1))
    sim.close()


@MEDIUM
@given(
    policy=st.sampled_from(["once", "skip", "all"]),
    n_fires=st.integers(1, 60),
    grace=st.sampled_from([0, 5, 25, 60, 200]),
)
def test_every_fire_of_a_long_jump_is_run_or_recorded(
    policy: str, n_fires: int, grace: int
) -> None:
    period = 10
    sim = Sim(observers=all_checks())
    task = make_task(
        "a", trigger=Every(seconds=period), catch_up=policy, misfire_grace=grace, overlap="allow"
    )
    note(describe_task(task))
    sim.add(task)
    sim.step(T0 + secs(period * n_fires + 1))  # the timer wakes late, once
    sim.run_for(0)  # the instant attempts end
    claims, missed, caught = late_fires(sim)
    on_time = [c for c in claims if c.kind is RunCause.SCHEDULE and not c.missed]
    seen("late fires", bool(caught or missed))
    counted = sum(int(missed_count(v)) for v in missed)
    assert len(on_time) + len(caught) + counted == n_fires
    assert all(v.status is RunStatus.SUCCEEDED for v in sim.views.values() if v not in missed)
    sim.close()


class CatchUpReplaysInOrder(Observer):
    """``catch_up="all"``: the replays of a task run one at a time, oldest fire first.

    A replay is never skipped for overlap: it waits until no run of its task is live
    (``overlap`` still decides what a fresh fire or a request does meanwhile, so with
    ``allow`` a fresh fire may run beside a replay, never two replays together).
    """

    def __init__(self) -> None:
        self.started: dict[str, list[datetime]] = defaultdict(list)

    def on_record(self, sim: Sim, record: RunRecord, view: RunView) -> None:
        if record.cause is not RunCause.CATCH_UP:
            return
        assert record.reason != "overlap", f"a replay was skipped:\n{sim.describe(record.id)}"
        opened = (RunStatus.QUEUED, RunStatus.WAITING, RunStatus.SKIPPED)
        if len(view.records) == 2 and record.status in opened:
            others = sim.active_ids(record.task) - {record.id}  # a held replay let go
            assert not others, f"a replay opened beside {others}:\n{sim.describe(record.id)}"
        if record.status is RunStatus.RUNNING and record.attempts == 1:
            others = {
                i
                for i in sim.active_ids(record.task) - {record.id}
                if sim.views[i].kind is RunCause.CATCH_UP
            }
            assert not others, f"a replay started beside {others}:\n{sim.describe(record.id)}"
            started = self.started[record.task]
            assert not started or started[-1] < record.scheduled_at, "replays out of order"
            started.append(record.scheduled_at)


def test_held_replays_skipped_as_they_open_are_released_in_a_loop_not_by_recursion() -> None:
    """Sixty-one catch-up replays held behind a long run, whose upstream is paused by the
    time that run ends: each is skipped as it opens and lets the next go, within a few
    frames of stack however many there are (not one nested call per replay)."""
    lagged: list[datetime] = []
    long_runs: list[str] = []

    def lag(when: datetime) -> float:  # the event loop blocked once, for 300 s
        if when >= T0 + secs(6) and not lagged:
            lagged.append(when)
            return 300.0
        return 0.0

    def outcome(run: Run, now: datetime) -> Outcome:
        if run.entry.task.name == "down" and not long_runs:  # the first: 1000 s
            long_runs.append(run.id)
            return Outcome(1000, "ok")
        return Outcome(1, "ok")

    sim = Sim(outcome=outcome, observers=all_checks(), wake_lag=lag)
    down = make_task(
        "down",
        trigger=Every(seconds=5, start=T0),
        depends_on=["up"],
        catch_up="all",
        overlap="queue",
    )
    sim.add(make_task("up"), down)
    sim.run_for(400)
    sim.pause("up")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 100)  # 4 frames a replay would not fit
    try:
        sim.run_for(1000)
    finally:
        sys.setrecursionlimit(limit)
    sim.close()
    replays = [v.last for v in sim.runs_of("down") if v.last.cause is RunCause.CATCH_UP]
    assert len(replays) == 61  # the fires of the 300 s the loop was blocked, and its end
    assert {(r.status, r.reason) for r in replays} == {(RunStatus.SKIPPED, "upstream_paused: up")}


@MEDIUM
@given(
    overlap=st.sampled_from(list(Overlap)),
    n_late=st.integers(1, 130),
    period=st.sampled_from([10, 60]),
    max_retries=st.integers(0, 1),
    data=st.data(),
)
def test_catch_up_all_runs_each_missed_fire_one_after_another(
    overlap: Overlap, n_late: int, period: int, max_retries: int, data: st.DataObject
) -> None:
    """After downtime, ``all`` runs min(missed fires, cap) replays, whatever ``overlap`` says."""
    grace = period / 2
    task = make_task(
        "a",
        trigger=Every(seconds=period, start=T0),
        catch_up="all",
        misfire_grace=grace,
        overlap=overlap,
        max_retries=max_retries,
    )
    replays = CatchUpReplaysInOrder()
    note(describe_task(task))
    back = T0 + secs(period * n_late + data.draw(st.floats(grace + 0.01, period - 0.01)))
    sim = Sim(
        back,
        outcome=outcomes_from(data, max_seconds=2 * period, kinds=("ok", "fail")),
        observers=all_checks(replays),
    )
    sim.add(task)
    sim.restore("a", TaskRecord(last_fire=T0, anchor=T0))  # down since T0
    caught = [v for v in sim.runs_of("a") if v.kind is RunCause.CATCH_UP]
    assert len(caught) == min(n_late, CATCH_UP_CAP)
    for _ in range(10 * CATCH_UP_CAP):
        if all(v.final for v in caught):
            break
        sim.run_for(period)
    sim.close()
    ran = [v for v in caught if RunStatus.RUNNING in v.statuses()]
    seen("replay held behind another", any(v.held or len(v.records) > 2 for v in caught[1:]))
    seen("replay retried", any(v.last.attempts > 1 for v in caught))
    assert len(ran) == min(n_late, CATCH_UP_CAP), [v.status.value for v in caught]
    assert replays.started["a"] == [T0 + secs(period * k) for k in range(1, len(ran) + 1)]


#: Python calls a catch-up may make, however long the downtime: constant cost. Replaying
#: fire by fire would make millions (a year of half-second fires: 63 million).
CONSTANT_CALLS = 50_000


def claims_after_downtime(
    task: Task, last_fire: datetime, now: datetime
) -> tuple[Planner, list[ClaimFire], int]:
    """A planner restarted at ``now`` whose store says ``task`` last fired at ``last_fire``;
    the claims it makes and the Python calls it took to make them."""
    planner = Planner()
    planner.add_task(task, now)
    planner.restore(task.name, TaskRecord(last_fire=last_fire, anchor=last_fire), now)
    planner.drain(now)

    def catch_up() -> list[ClaimFire]:
        planner.advance(now)
        return [d for d in planner.drain(now) if isinstance(d, ClaimFire)]

    claims, calls = calls_during(catch_up)
    return planner, claims, calls


@MEDIUM
@given(
    policy=st.sampled_from(["once", "skip", "all"]),
    n_late=st.one_of(st.integers(1, 300), st.integers(300, 10**7)),  # 10**7 h: 1141 years
    period=st.sampled_from([0.5, 10, 60, 3600]),
    grace_fraction=st.floats(0.05, 0.8),
    after_fraction=st.floats(0.01, 0.99),
)
def test_catch_up_after_any_downtime_counts_every_fire_at_constant_cost(
    policy: str, n_late: int, period: float, grace_fraction: float, after_fraction: float
) -> None:
    """``once`` replays the LATEST late fire; the ``missed`` record counts all the others
    exactly and names their range, however long the downtime; ``all`` replays the oldest
    ``CATCH_UP_CAP``. The cost does not grow with the number of fires missed."""
    grace = period * grace_fraction
    after = grace + (period - grace) * after_fraction  # past the last late fire, past grace
    trigger = Every(seconds=period, start=T0) if period >= 5 else every_short(period, T0)
    task = make_task("a", trigger=trigger, catch_up=policy, misfire_grace=grace)
    note(describe_task(task))
    seen("late fires past the cap", n_late > CATCH_UP_CAP)
    step = secs(period)
    now = T0 + n_late * step + secs(after)
    planner, claims, calls = claims_after_downtime(task, T0, now)
    assert calls < CONSTANT_CALLS and len(claims) <= CATCH_UP_CAP + 1, (calls, len(claims))
    fire = [T0 + k * step for k in range(min(n_late, CATCH_UP_CAP) + 2)]  # fire[k]: k-th
    latest = T0 + n_late * step
    replays = [c.fire_time for c in claims if c.kind is RunCause.CATCH_UP]
    missed = [c for c in claims if c.missed or c.missed_more]
    assert len(claims) == len(replays) + len(missed) and len(missed) <= 1
    n_missed = {"once": n_late - 1, "skip": n_late, "all": max(0, n_late - CATCH_UP_CAP)}[policy]
    if policy == "once":
        assert replays == [latest]
    elif policy == "skip":
        assert replays == []
    else:
        assert replays == fire[1 : min(n_late, CATCH_UP_CAP) + 1]
    if n_missed:
        (record,) = missed
        first = fire[CATCH_UP_CAP + 1] if policy == "all" else fire[1]
        until = latest - step if policy == "once" else latest
        assert (record.missed, record.missed_more) == (n_missed, False)
        assert (record.fire_time, record.missed_until) == (first, until)
        run = planner.fire_claimed(record, now)
        assert run is not None and run.reason is not None
        assert run.reason.startswith(f"missed {n_missed} fire(s) from {first.isoformat()} ")
    else:
        assert not missed
    assert planner.next_fire_of("a") == latest + step


def test_a_replay_cancelled_while_it_waits_is_not_started_and_the_others_run() -> None:
    """``catch_up="all"`` holds replays behind the one running; cancelling a held one ends
    it ``cancelled`` without a start, and the replays after it still run in order."""
    task = make_task("a", trigger=Every(seconds=10, start=T0), catch_up="all", misfire_grace=1)
    sim = Sim(T0 + secs(35), outcome=lambda run, now: Outcome(5), observers=all_checks())
    sim.add(task)
    sim.restore("a", TaskRecord(last_fire=T0, anchor=T0))  # down since T0: 3 late fires
    caught = [v for v in sim.runs_of("a") if v.kind is RunCause.CATCH_UP]
    assert len(caught) == 3 and caught[0].status is RUNNING
    assert sim.planner.cancel_run(caught[1].id, sim.now)
    sim.settle()
    sim.run_for(30)
    assert [v.status for v in caught] == [
        RunStatus.SUCCEEDED,
        RunStatus.CANCELLED,
        RunStatus.SUCCEEDED,
    ]
    assert RUNNING not in caught[1].statuses()
    sim.close()


def every_short(period: float, start: datetime) -> Every:
    with pytest.warns(ShortIntervalWarning):
        return Every(seconds=period, start=start)


@pytest.mark.parametrize("policy", ["once", "skip", "all"])
def test_catch_up_of_a_cron_after_a_long_downtime_replays_the_latest_fire(policy: str) -> None:
    """A trigger without grid arithmetic (cron): the latest late fire is still found
    without replaying the downtime, and the ``missed`` record's range reaches it."""
    task = make_task("a", trigger=Cron("* * * * *"), catch_up=policy, misfire_grace=30)
    last = T0 - timedelta(days=400)
    now = T0 + secs(45)  # T0 itself is 45 s back: late beyond the grace; T0 + 1 min is ahead
    planner, claims, calls = claims_after_downtime(task, last, now)
    assert calls < CONSTANT_CALLS and len(claims) <= CATCH_UP_CAP + 1, (calls, len(claims))
    replays = [c.fire_time for c in claims if c.kind is RunCause.CATCH_UP]
    (missed,) = [c for c in claims if c.missed or c.missed_more]
    minute = timedelta(minutes=1)
    n_late = 400 * 24 * 60
    if policy == "once":
        assert replays == [T0]
        assert (missed.fire_time, missed.missed_until) == (last + minute, T0 - minute)
        assert missed.missed == n_late - 1 or missed.missed_more
    elif policy == "skip":
        assert replays == []
        assert (missed.fire_time, missed.missed_until) == (last + minute, T0)
        assert missed.missed == n_late or missed.missed_more
    else:
        assert replays == [last + k * minute for k in range(1, CATCH_UP_CAP + 1)]
        assert missed.fire_time == last + (CATCH_UP_CAP + 1) * minute
        assert missed.missed_until == T0
    assert planner.next_fire_of("a") == T0 + minute


def test_a_half_second_schedule_started_a_year_ago_costs_o1() -> None:
    year_ago = T0 - timedelta(days=365)
    with pytest.warns(ShortIntervalWarning):
        trigger = Every(seconds=0.5, start=year_ago)
    task = make_task("a", trigger=trigger)

    sim = Sim()
    _, calls = calls_during(lambda: sim.add(task))  # fires at once, not replaying the year
    assert sim.planner.next_wakeup() is not None
    assert sim.planner.next_wakeup() - T0 <= secs(0.5)  # type: ignore[operator]
    assert calls < CONSTANT_CALLS

    planner = Planner()  # restarted after a year away: last fire a year back
    planner.add_task(task, T0)
    planner.restore("a", TaskRecord(last_fire=year_ago), T0)

    def restart() -> list[Decision]:
        planner.advance(T0)
        return planner.drain(T0)

    decisions, calls = calls_during(restart)
    assert calls < CONSTANT_CALLS and len(decisions) < 500, (calls, len(decisions))
    catch_up = [d for d in decisions if isinstance(d, ClaimFire) and d.kind is RunCause.CATCH_UP]
    missed = [d for d in decisions if isinstance(d, ClaimFire) and d.missed]
    assert len(catch_up) == 1 and len(missed) == 1 and not missed[0].missed_more
    due = 2 * 365 * 86400  # every 0.5 s after a year back, up to now: all due at once
    assert catch_up[0].fire_time == T0  # the latest of them
    assert missed[0].missed == due - 1  # all the others, counted exactly

    sim = Sim(T0 - timedelta(days=365))  # one scheduler whose timer wakes a year late
    sim.add(task)
    _, calls = calls_during(lambda: sim.step(T0))
    assert calls < CONSTANT_CALLS
    assert len(sim.claims) < 500
    sim.close()


@pytest.mark.parametrize("seconds_late", [0, 1, 30])
def test_an_at_trigger_already_due_when_registered_still_fires(seconds_late: int) -> None:
    """``At(now)`` (or an instant that passed a moment ago, within ``misfire_grace``) runs."""
    sim = Sim(observers=all_checks())
    sim.add(make_task("once", trigger=At(T0 - secs(seconds_late))))
    sim.run_for(3600)
    runs = [(v.kind, v.status) for v in sim.runs_of("once")]
    assert len(runs) == 1, f"At(T0 - {seconds_late} s) registered at T0 gave {runs}"
    assert runs[0][1] is RunStatus.SUCCEEDED
    sim.close()


def test_an_at_trigger_long_past_when_registered_is_recorded_not_dropped() -> None:
    sim = Sim(observers=all_checks())
    sim.add(make_task("once", trigger=At(T0 - timedelta(days=1))))
    sim.run_for(3600)
    sim.close()
    statuses = [v.status for v in sim.runs_of("once")]
    assert len(statuses) == 1, "a fire that passed must be run or recorded missed"


def by_the_table(policy: str, due: int, latest_late: timedelta, grace: float) -> tuple[int, int]:
    """README's catch-up table for ``due`` fires of one task due at once, the latest of
    them ``latest_late`` late: how many run, and how many are recorded missed."""
    if due == 0:
        return 0, 0
    runs = {
        "once": 1,
        "skip": 1 if latest_late <= secs(grace) else 0,
        "all": min(due, CATCH_UP_CAP),
    }[policy]
    if due == 1 and latest_late <= secs(grace):
        runs = 1  # alone and within the grace: a normal scheduled run, whatever the policy
    return runs, due - runs


@st.composite
def catch_up_tasks(draw: st.DrawFn) -> tuple[Task, float]:
    """An interval task with a random period, grace, policy and overlap; and its period."""
    period = draw(st.sampled_from([1, 5, 10, 60]))
    grace = draw(st.sampled_from([0, 0.5 * period, 1.5 * period, 10 * period, 60]))
    trigger = Every(seconds=period, start=T0) if period >= 5 else every_short(period, T0)
    task = make_task(
        "a",
        trigger=trigger,
        catch_up=draw(st.sampled_from(["once", "skip", "all"])),
        misfire_grace=grace,
        overlap=draw(st.sampled_from(list(Overlap))),
    )
    return task, period


def assert_decided_by_the_table(sim: Sim, task: Task, at: datetime, due: int) -> None:
    """The ``due`` fires of ``task`` due at ``at`` (the latest of them before it) ran and
    were recorded missed as the table says; none ran as a burst, none was skipped."""
    assert isinstance(task.trigger, Every)
    step = task.trigger.period
    latest = at - (at - T0) % step
    first = latest - (due - 1) * step
    runs, n_missed = by_the_table(task.catch_up.value, due, at - latest, task.misfire_grace)
    group = [c for when, c in sim.claims if when == at]
    assert all(first <= c.fire_time <= latest for c in group), group
    views = [v for v in sim.runs_of("a") if first <= v.last.scheduled_at <= latest]
    missed = [v for v in views if v.status is RunStatus.MISSED]
    ran = [v for v in views if RunStatus.RUNNING in v.statuses()]
    assert len(ran) == runs, [sim.describe(v.id) for v in views]
    assert sum(int(missed_count(v)) for v in missed) == n_missed and len(missed) <= 1
    assert len(views) == len(ran) + len(missed), "a due fire was skipped or left unrun"
    if runs == 1 and task.catch_up is not CatchUp.ALL:
        assert ran[0].last.scheduled_at == latest, "the latest due fire is the one that runs"


RESTART: dict[str, Any] = {
    "task_and_period": catch_up_tasks(),
    "periods_down": st.floats(0, 30),
    "data": st.data(),
}


@MEDIUM
@given(**RESTART)
def test_a_restart_after_any_downtime_runs_and_records_what_the_table_says(
    task_and_period: tuple[Task, float], periods_down: float, data: st.DataObject
) -> None:
    """A scheduler restarted after a downtime (its task last fired at T0): the fires due
    meanwhile go by README's catch-up table; a restart shorter than the grace replays no
    burst, and nothing is skipped for an overlap that did not happen."""
    task, period = task_and_period
    note(describe_task(task))
    back = T0 + secs(period * periods_down)
    table = FiresDueTogether()
    sim = Sim(
        back,
        outcome=outcomes_from(data, max_seconds=int(2 * period), kinds=("ok", "fail")),
        observers=all_checks(table),
    )
    sim.add(task)
    sim.restore("a", TaskRecord(last_fire=T0, anchor=T0))  # down from T0 to back
    due = (back - T0) // secs(period)
    run_until_done(sim, back, period)
    assert_decided_by_the_table(sim, task, back, due)
    latest_late = back - T0 - due * secs(period)
    alone_in_grace = due == 1 and latest_late <= secs(task.misfire_grace)
    assert table.decided_by_policy == (0 if due == 0 or alone_in_grace else 1)
    seen("late fires", table.decided_by_policy > 0)
    sim.close()


def run_until_done(sim: Sim, upto: datetime, period: float) -> None:
    """Run until the runs for fires up to ``upto`` are final (``all``: one at a time)."""
    for _ in range(3 * CATCH_UP_CAP):
        if all(v.final for v in sim.runs_of("a") if v.last.scheduled_at <= upto):
            return
        sim.run_for(period)


LATE_TIMER: dict[str, Any] = {
    "task_and_period": catch_up_tasks(),
    "fires_before": st.integers(0, 3),
    "periods_late": st.floats(0, 30),
}


@MEDIUM
@given(**LATE_TIMER)
def test_a_timer_that_wakes_late_runs_and_records_what_the_table_says(
    task_and_period: tuple[Task, float], fires_before: int, periods_late: float
) -> None:
    """A blocked event loop: one timer wakes ``periods_late`` periods late; the fires due by
    then go by README's catch-up table, and the grid goes on after them on time."""
    task, period = task_and_period
    note(describe_task(task))
    step = secs(period)
    late_wake = T0 + (fires_before + 1) * step
    lag = period * periods_late
    table = FiresDueTogether()
    sim = Sim(
        outcome=lambda run, now: Outcome(period / 2),
        observers=all_checks(table),
        wake_lag=lambda wake: lag if wake == late_wake else 0.0,
    )
    sim.add(task)
    at = late_wake + secs(lag)
    sim.run_until(at + 5 * step)
    run_until_done(sim, at, period)
    assert_decided_by_the_table(sim, task, at, (at - late_wake) // step + 1)
    on_time = [c.fire_time for when, c in sim.claims if when > at]
    latest_due = at - (at - T0) % step
    assert on_time == [latest_due + k * step for k in range(1, len(on_time) + 1)]
    assert len(on_time) >= 4
    seen("late fires", table.decided_by_policy > 0)
    sim.close()


@pytest.mark.parametrize(
    ("down", "policy", "grace", "caught_up", "n_missed"),
    [
        (1.5, "once", 60, [], 0),  # one fire due, 0.5 s late: a scheduled run
        (3, "once", 60, [3], 2),  # the issue's case: one run, one record of 2, no skip
        (30, "once", 60, [30], 29),  # a 30 s deploy: no burst of 30 runs
        (3, "skip", 60, [3], 2),  # the latest is within the grace: it runs
        (3.7, "skip", 0.5, [], 3),  # the latest is 0.7 s late: none runs
        (3, "all", 60, [1, 2, 3], 0),  # each, one after another
    ],
)
def test_an_every_second_task_restarted_after_a_short_downtime(
    down: float, policy: str, grace: float, caught_up: list[int], n_missed: int
) -> None:
    """The issue's example, by the table: fires due together never run as a burst of
    scheduled runs, and none is recorded ``skipped`` since no run was in progress."""
    sim = Sim(T0 + secs(down), observers=all_checks())
    sim.add(make_task("a", trigger=every_short(1, T0), catch_up=policy, misfire_grace=grace))
    sim.restore("a", TaskRecord(last_fire=T0, anchor=T0))  # stopped right after T0's fire
    sim.run_until(T0 + secs(int(down) + 1) - TICK)  # until just before the next fire
    views = sim.runs_of("a")
    catch_ups = [v.last.scheduled_at for v in views if v.kind is RunCause.CATCH_UP]
    scheduled = [
        v for v in views if v.kind is RunCause.SCHEDULE and v.status is not RunStatus.MISSED
    ]
    missed = [v for v in views if v.status is RunStatus.MISSED]
    assert catch_ups == [T0 + secs(k) for k in caught_up]
    assert len(scheduled) == (0 if caught_up or n_missed else 1)
    assert [int(missed_count(v)) for v in missed] == ([n_missed] if n_missed else [])
    assert all(v.status is RunStatus.SUCCEEDED for v in views if v not in missed)
    sim.close()


# --- 8. dependency graph errors --------------------------------------------------------------


@MEDIUM
@given(data=st.data())
def test_cycles_are_refused_with_their_path_and_order_does_not_matter(
    data: st.DataObject,
) -> None:
    n = data.draw(st.integers(2, 8), label="tasks")
    deps = {
        i: data.draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True), label=f"deps {i}")
        if i
        else []
        for i in range(n)
    }
    tasks = [make_task(f"n{i}", depends_on=[f"n{d}" for d in deps[i]]) for i in range(n)]
    held_back = data.draw(st.integers(0, n - 1), label="registered last")
    order = data.draw(st.permutations([t for t in tasks if t.name != f"n{held_back}"]))
    note(f"dependencies {deps}; n{held_back} registered last")
    planner = Planner()
    for task in order:
        planner.add_task(task, T0)
    dependents = [t.name for t in order if f"n{held_back}" in t.depends_on]
    seen("unknown dependency", bool(dependents))
    if dependents:
        with pytest.raises(UnknownDependencyError) as unknown:
            planner.validate()
        assert f"'n{held_back}'" in str(unknown.value)
        assert unknown.value.task in dependents and unknown.value.missing == f"n{held_back}"
    # Closing a cycle: the held-back task now also depends on something that needs it.
    above = reaching(deps, held_back)
    seen("cycle", bool(above))
    if above:
        closer = data.draw(st.sampled_from(sorted(above)), label="cycle closer")
        own = [f"n{d}" for d in deps[held_back]]
        bad = make_task(f"n{held_back}", depends_on=[*own, f"n{closer}"])
        with pytest.raises(DependencyCycleError) as cycle:
            planner.add_task(bad, T0)
        path = cycle.value.path
        assert path[0] == path[-1] == f"n{held_back}" and len(path) >= 3
        assert " -> ".join(path) in str(cycle.value)
        graph = {t.name: t.depends_on for t in order} | {bad.name: bad.depends_on}
        assert all(b in graph[a] for a, b in itertools.pairwise(path))
        assert bad.name not in planner.tasks, "a refused task must leave no trace"
    planner.add_task(tasks[held_back], T0)
    planner.validate()
    with pytest.raises(DuplicateTaskError):
        planner.add_task(tasks[held_back], T0)


def test_runs_that_end_before_they_were_ready_leave_the_ready_count_alone() -> None:
    """``ready_count`` (what ``stats().queued`` shows) counts runs waiting for a slot: a
    run skipped as it opens, or cancelled while it waits for its upstream, never was."""
    planner = Planner(max_concurrency=1)
    planner.add_task(make_task("up"), T0)
    planner.add_task(make_task("down", depends_on="up"), T0)
    planner.add_task(make_task("other"), T0)
    planner.start(T0)
    planner.drain(T0)
    planner.pause("up", T0)
    planner.request("down", T0)  # skipped: its upstream is paused
    planner.drain(T0)
    assert planner.ready_count == 0
    planner.resume("up", T0)
    planner.request("other", T0)  # takes the one slot
    planner.request("down", T0)  # pulls a run of up, which waits for the slot
    planner.drain(T0)
    assert planner.ready_count == 1  # up's run; down waits on it, not for a slot
    planner.cancel("down", T0)
    planner.drain(T0)
    assert planner.ready_count == 1


def test_a_cycle_behind_a_task_reached_twice_is_refused() -> None:
    """The walk for a cycle meets ``z`` twice (through ``y``, then through ``x``) before the
    path back to ``a``: it goes on past a task it has seen instead of stopping there."""
    planner = Planner()
    planner.add_task(make_task("c", depends_on="a"), T0)
    planner.add_task(make_task("x", depends_on=["c", "z"]), T0)
    planner.add_task(make_task("y", depends_on="z"), T0)
    planner.add_task(make_task("z"), T0)
    with pytest.raises(DependencyCycleError) as cycle:
        planner.add_task(make_task("a", depends_on=["x", "y"]), T0)
    assert cycle.value.path == ["a", "x", "c", "a"]
    assert "a" not in planner.tasks


def reaching(deps: dict[int, list[int]], target: int) -> set[int]:
    """Nodes whose dependencies lead (transitively) to ``target``."""
    found: set[int] = set()
    changed = True
    while changed:
        changed = False
        for node, ds in deps.items():
            if node not in found and any(d == target or d in found for d in ds):
                found.add(node)
                changed = True
    return found


def test_a_two_task_cycle_names_its_path() -> None:
    planner = Planner()
    planner.add_task(make_task("a", depends_on="b"), T0)
    with pytest.raises(DependencyCycleError, match=r"b -> a -> b"):
        planner.add_task(make_task("b", depends_on="a"), T0)
    with pytest.raises(UnknownDependencyError, match=r"task 'a'.*'b'"):
        planner.validate()


def test_a_dependency_without_dependencies_of_its_own_is_known_and_fires_first() -> None:
    """Tasks with no ``depends_on`` leave the graph empty, yet count as registered names
    and as depth 0: same-time fires still go upstream first, whatever the order of adds."""
    planner = Planner()
    every = Every(seconds=10, start=T0)
    planner.add_task(make_task("c", trigger=every, depends_on="b"), T0)
    planner.add_task(make_task("b", trigger=every, depends_on="fetch"), T0)
    planner.add_task(make_task("fetch", trigger=every), T0)
    planner.add_task(make_task("a", trigger=every, depends_on="fech"), T0)
    with pytest.raises(UnknownDependencyError, match="'fech'.*did you mean 'fetch'"):
        planner.validate()
    planner.remove_task("a", T0)
    planner.add_task(make_task("a", trigger=every, depends_on="fetch"), T0)
    planner.validate()
    planner.start(T0)
    planner.advance(T0 + secs(10))
    claims = [d.task for d in planner.drain(T0 + secs(10)) if isinstance(d, ClaimFire)]
    assert claims == ["fetch", "b", "a", "c"]  # by depth, then as armed (registration order)


def test_the_catch_up_boundaries_readme_states(caplog: pytest.LogCaptureFixture) -> None:
    """README's catch-up table, at its edges: ``all`` replays the oldest 100 and one
    ``missed`` record (and one warning) counts the rest; a ``Cron``'s count is exact up to
    101 fires, then a lower bound; ``skip`` runs a fire late by exactly ``misfire_grace``;
    and a timer handled a microsecond before a fire leaves that fire for later."""
    from xtasks._catch_up import due_claims

    every = Every(seconds=10, start=T0)
    minutely = Cron("* * * * *")

    def due(task: Task, trigger: Trigger, fires: int, step: float = 10) -> list[ClaimFire]:
        first = T0 + secs(step)
        return due_claims(task, trigger, first, first + secs(step * (fires - 1)))[0]

    def shape(claims: list[ClaimFire]) -> list[tuple[RunCause, int, bool]]:
        return [(c.kind, c.missed, c.missed_more) for c in claims]

    replay_all = make_task("all", catch_up="all")
    with caplog.at_level(logging.WARNING, "xtasks"):
        claims = due(replay_all, every, 100)
        assert shape(claims) == [(RunCause.CATCH_UP, 0, False)] * 100 and not caplog.records
        claims = due(replay_all, every, 150)
    assert shape(claims) == [(RunCause.SCHEDULE, 50, False)] + [(RunCause.CATCH_UP, 0, False)] * 100
    assert (claims[0].fire_time, claims[0].missed_until) == (T0 + secs(1010), T0 + secs(1500))
    assert [r.getMessage() for r in caplog.records] == [
        "task 'all' missed more than 100 fires; replaying 100, recording the rest missed"
    ]

    once = make_task("once")
    assert shape(due(once, minutely, 101, 60))[0] == (RunCause.SCHEDULE, 100, False)
    claims = due(once, minutely, 102, 60)
    assert shape(claims)[0] == (RunCause.SCHEDULE, 100, True)  # "100+" missed
    assert (claims[0].fire_time, claims[0].missed_until) == (T0 + secs(60), T0 + secs(60 * 101))

    skip = make_task("skip", catch_up="skip", misfire_grace=5)
    first = T0 + secs(10)
    on_the_edge = due_claims(skip, every, first, first + secs(20 + 5))[0]
    assert shape(on_the_edge) == [(RunCause.SCHEDULE, 2, False), (RunCause.CATCH_UP, 0, False)]
    past = due_claims(skip, every, first, first + secs(20 + 5) + timedelta(microseconds=1))[0]
    assert shape(past) == [(RunCause.SCHEDULE, 3, False)]

    before_a_fire = timedelta(microseconds=-1)
    for trigger, step in ((every, 10), (minutely, 60)):
        first = T0 + secs(step)
        claims, after = due_claims(once, trigger, first, first + secs(2 * step) + before_a_fire)
        assert [(c.fire_time, c.kind) for c in claims] == [
            (first, RunCause.SCHEDULE),
            (first + secs(step), RunCause.CATCH_UP),
        ]
        assert after == first + secs(2 * step)  # the fire a microsecond away: still to come


def test_same_time_fires_go_upstream_first_as_tasks_come_and_go() -> None:
    """The depth that orders same-time fires follows the graph: a task added after the
    tasks that depend on it deepens them, and a task removed and added again with other
    dependencies gets its new depth (the order of the claims shows both)."""
    every = Every(seconds=10, start=T0)

    def claims(planner: Planner) -> list[str]:
        planner.validate()
        planner.start(T0)
        planner.advance(T0 + secs(10))
        return [d.task for d in planner.drain(T0 + secs(10)) if isinstance(d, ClaimFire)]

    later = Planner()  # c and b armed before what they depend on was added
    later.add_task(make_task("c", trigger=every, depends_on="b"), T0)
    later.add_task(make_task("b", trigger=every, depends_on="a"), T0)
    later.add_task(make_task("a", trigger=every), T0)
    assert claims(later) == ["a", "b", "c"]

    again = Planner()  # a, at depth 2, removed and added again at depth 1
    again.add_task(make_task("p", trigger=every), T0)
    again.add_task(make_task("q", trigger=every, depends_on="p"), T0)
    again.add_task(make_task("a", trigger=every, depends_on="q"), T0)
    again.remove_task("a", T0)
    again.add_task(make_task("r", trigger=every, depends_on="q"), T0)
    again.add_task(make_task("a", trigger=every, depends_on="p"), T0)
    assert claims(again) == ["p", "q", "a", "r"]


def test_tasks_is_a_live_read_only_mapping() -> None:
    planner = Planner()
    view = planner.tasks
    a, b = make_task("a"), make_task("b", depends_on="a")
    planner.add_task(a, T0)
    planner.add_task(b, T0)
    assert dict(view) == {"a": a, "b": b} and len(view) == 2 and "b" in view
    with pytest.raises(TypeError):
        view["c"] = a  # type: ignore[index]
    planner.remove_task("b", T0)
    assert list(view) == ["a"] and view.get("b") is None and "b" not in view


# --- 8b. removal ----------------------------------------------------------------------------


REMOVAL: dict[str, Any] = {
    "overlap": st.sampled_from(list(Overlap)),
    "catch_up": st.sampled_from(["once", "all"]),
    "max_retries": st.integers(0, 2),
    # mostly just after a fire at 10 s, 20 s...: while its run may still be going
    "remove_at": st.builds(
        lambda k, after: 10 * k + after, st.integers(1, 12), st.sampled_from([0.5, 1, 3, 7, 0])
    ),
    "lag": st.booleans(),
    "data": st.data(),
}


@MEDIUM
@given(**REMOVAL)
def test_a_removed_task_records_its_late_outcomes_and_nothing_else(
    overlap: Overlap,
    catch_up: str,
    max_retries: int,
    remove_at: float,
    lag: bool,
    data: st.DataObject,
) -> None:
    """After ``remove_task``: no fire is claimed, no state is saved, no attempt starts;
    the runs still going end recorded (history is kept), and nothing is left live."""
    sim = Sim(
        outcome=outcomes_from(data, max_seconds=40, long_from=10, kinds=("ok", "fail", "fail")),
        observers=all_checks(),
        wake_lag=lags_from(data) if lag else None,
        tie_break=tie_breaks_from(data),  # removed at the instant of a fire: either first
    )
    task = make_task(
        "a",
        trigger=Every(seconds=10),
        overlap=overlap,
        catch_up=catch_up,
        max_retries=max_retries,
        retry_delay=1,
    )
    note(f"{describe_task(task)}, removed at {remove_at} s")
    sim.add(task)
    live: set[str] = set()
    before: dict[str, int] = {}  # what was claimed, saved and started before the removal

    def remove() -> None:  # a fire due at the same instant may come first, or not
        live.update(i for i, v in sim.views.items() if v.status is RunStatus.RUNNING)
        before.update(claims=len(sim.claims), saves=len(sim.saves), starts=len(sim.starts))
        sim.remove("a")

    sim.at(T0 + secs(remove_at), remove)
    sim.run_until(T0 + secs(remove_at))
    removed_at = sim.now
    seen("a run going at removal", bool(live))
    sim.run_for(200)
    assert not sim.claims[before["claims"] :], "fired after removal"
    saves = [s for at, s in sim.saves[before["saves"] :] if at > removed_at]
    assert not saves, "saved state after removal"
    assert not sim.starts[before["starts"] :], "started after removal"
    assert not sim.planner.live_runs() and sim.planner.running == 0
    for run_id in live:  # the runs that were going end recorded, with their outcome
        view = sim.views[run_id]
        assert view.status in (RunStatus.SUCCEEDED, RunStatus.FAILED), sim.describe(run_id)
    assert "a" not in sim.planner.tasks
    sim.close()


def test_a_run_going_when_its_task_is_removed_fails_without_saving_state() -> None:
    sim = Sim(outcome=lambda run, now: Outcome(30, "fail"), observers=all_checks())
    sim.add(make_task("a", trigger=Every(seconds=60), max_retries=3, alert_after=1))
    sim.run_for(61)  # the fire at 60 s runs until 90 s
    (run,) = sim.runs_of("a")
    assert run.status is RunStatus.RUNNING
    saves = len(sim.saves)
    sim.remove("a")
    sim.run_for(600)
    assert (run.status, run.last.attempts) == (RunStatus.FAILED, 1)  # no retry either
    assert len(sim.saves) == saves, [s for _, s in sim.saves[saves:]]
    assert len(sim.runs_of("a")) == 1  # and no fire
    sim.close()


# --- 9. shutdown ---------------------------------------------------------------------------


SHUTDOWN: dict[str, Any] = {
    "scenario": scenarios(
        tasks=task_lists(min_tasks=2),
        horizon=100,
        min_actions=4,
        # many requests close to the shutdown, so that some have not started by then
        times=st.one_of(st.integers(0, 100), st.integers(90, 100), st.integers(98, 100)).map(float),
        verbs=["request", "request", "request", "submit", "pause", "resume", "cancel"],
        slots=(1, 1),
    ),
    "data": st.data(),
}


@MEDIUM  # its interesting case in most examples: 150 suffice
@given(**SHUTDOWN)
def test_shutdown_cancels_what_has_not_started(scenario: Scenario, data: st.DataObject) -> None:
    pending = PendingCancelledByShutdown()
    sim = new_sim(scenario, data, long_from=20, observers=all_checks(pending))
    sim.add(*scenario.tasks)
    for at, verb, index in scenario.actions:
        sim.at(T0 + secs(at), _action(sim, scenario, verb, index))
    sim.run_until(T0 + secs(scenario.horizon))
    pending.snapshot(sim)
    seen("runs pending at shutdown", bool(pending.pending))
    running = {r.id for r in sim.shutdown()}
    seen("runs going at shutdown", bool(running))
    assert running == {i for i, v in sim.views.items() if v.status is RunStatus.RUNNING}
    for run_id in pending.pending:
        assert sim.views[run_id].status is RunStatus.CANCELLED
    assert sim.planner.next_wakeup() is None
    sim.run_to_quiet()
    assert_one_final_record_per_run(sim)


def test_shutdown_cancels_a_waiting_chain_as_shutdown() -> None:
    sim = Sim(max_concurrency=1, observers=all_checks())
    sim.add(make_task("a"), make_task("b", depends_on="a"), make_task("c", depends_on="b"))
    sim.add(make_task("blocker"))
    sim.request("blocker")  # holds the only slot
    sim.request("c")  # a queued for a slot, b and c waiting: nothing of them started
    sim.shutdown()
    outcome = {
        v.task: (v.status.value, v.last.reason) for v in sim.views.values() if v.task != "blocker"
    }
    assert outcome == {
        "a": ("cancelled", "shutdown"),
        "b": ("cancelled", "shutdown"),
        "c": ("cancelled", "shutdown"),
    }


@pytest.mark.parametrize("how", ["request", "submit"])
def test_no_run_starts_after_shutdown(how: str) -> None:
    sim = Sim()
    task = make_task("a")
    sim.add(task)
    sim.shutdown()
    try:
        if how == "request":
            run = sim.planner.request("a", sim.now)
        else:
            run = sim.planner.submit(task, (), {}, sim.now)
    except XtasksError:
        return  # refusing is fine
    started = [d for d in sim.planner.drain(sim.now) if isinstance(d, StartAttempt)]
    assert not started, "a run started after shutdown"
    assert run.status is RunStatus.CANCELLED and run.reason == "shutdown"


# --- start-up: every task armed once from its stored state ------------------------------


@MEDIUM
@given(
    data=st.data(),
    n=st.integers(2, 6),
    down=st.floats(0, 10_000),
)
def test_start_applies_stored_records_and_arms_each_task_once(
    data: st.DataObject, n: int, down: float
) -> None:
    """``start(now, records)`` arms each active task once, from its stored state: late
    fires from its last fire (catch-up), or from its stored registration if it never
    fired, the stored grid anchor, paused and cancelled states kept; a task without a
    record counts from now. ``restore`` agrees."""
    registered = T0 - secs(20_000)
    now = T0 + secs(down)
    triggers = st.sampled_from(
        [Every(seconds=30), Every(minutes=7), Every(seconds=45, start=T0), Cron("*/5 * * * *")]
    )
    tasks = [
        make_task(
            f"t{i}",
            trigger=data.draw(triggers),
            catch_up=data.draw(st.sampled_from(["once", "skip", "all"])),
            enabled=data.draw(st.sampled_from([True, True, True, False])),
        )
        for i in range(n)
    ]
    # mostly a stored last fire of an active task: the late fires start() must catch up
    instants = st.floats(-20_000, 0).map(lambda s: T0 + secs(s)) | st.none()
    states = [TaskState.ACTIVE, TaskState.ACTIVE, TaskState.PAUSED, TaskState.CANCELLED]
    records = {
        t.name: TaskRecord(
            state=data.draw(st.sampled_from(states)),
            last_fire=data.draw(instants),
            consecutive_failures=data.draw(st.integers(0, 3)),
            anchor=data.draw(st.sampled_from([None, registered, T0 - secs(12_345)])),
        )
        for t in tasks
        if t.name == "t0" or data.draw(st.sampled_from([True, True, True, False]))
    }
    if tasks[0].enabled and records["t0"].last_fire is None:  # t0 is late, mostly
        records["t0"] = replace(records["t0"], last_fire=T0 - secs(data.draw(st.floats(0, 9e3))))

    note(f"tasks {[describe_task(t) for t in tasks]}, records {records}")
    late = [
        name
        for name, r in records.items()
        if r.state is TaskState.ACTIVE and r.last_fire is not None and enabled_in(tasks, name)
    ]
    seen("late fires from the store", bool(late))
    planner = Planner()
    for task in tasks:
        planner.add_task(task, registered)
    before = len(planner._timers)
    planner.start(now, records)
    armed = len(planner._timers) - before
    for task in tasks:
        record = records.get(task.name, TaskRecord(anchor=registered))
        assert task.trigger is not None
        trigger = task.trigger.anchored(record.anchor or registered)
        if record.state is not TaskState.ACTIVE or not task.enabled:
            expected = None
        elif record.last_fire is None and task.name in records and record.anchor is not None:
            # never fired, registered before: fires since then are late (catch_up)
            expected = trigger.first_fire(min(record.anchor, now))
        elif record.last_fire is None:
            expected = trigger.first_fire(now)  # new to the store: counts from now
        else:
            expected = trigger.next_fire(record.last_fire)  # late fires: catch_up
        assert planner.next_fire_of(task.name) == expected, task
        assert planner.state_of(task.name) is record.state
        assert planner.task_record(task.name) == replace(record, anchor=record.anchor or registered)
    assert armed == sum(1 for name in planner.tasks if planner.next_fire_of(name) is not None)
    restored = Planner()  # restore (a task added while running) applies a record the same way
    for task in tasks:
        restored.add_task(task, registered, arm=False)
    assert restored.next_wakeup() is None
    for name, record in records.items():
        restored.restore(name, record, now)
    assert [restored.next_fire_of(n) for n in records] == [planner.next_fire_of(n) for n in records]


def enabled_in(tasks: list[Task], name: str) -> bool:
    """Whether the task ``name`` of ``tasks`` is enabled."""
    return any(t.name == name and t.enabled for t in tasks)


def test_a_state_read_from_the_store_is_applied_without_being_written_back_as_a_change() -> None:
    """Another replica's pause, resume or cancel: the same effect here as a local one (no
    fire while paused, queued runs cancelled), saved as progress, never numbered again;
    a task not registered here, or already in that state, is left alone."""
    from xtasks._decisions import SaveTask

    planner = Planner()
    planner.add_task(make_task("a", trigger=Every(seconds=10, start=T0)), T0)
    planner.start(T0)
    planner.drain(T0)

    def saves(now: datetime) -> list[tuple[TaskState, bool, bool]]:
        return [
            (d.record.state, d.state_changed, d.from_store)
            for d in planner.drain(now)
            if isinstance(d, SaveTask)
        ]

    planner.apply_state("a", TaskState.PAUSED, T0)
    assert saves(T0) == [(TaskState.PAUSED, True, True)]
    assert planner.next_fire_of("a") is None
    planner.apply_state("a", TaskState.PAUSED, T0)
    planner.apply_state("unknown", TaskState.CANCELLED, T0)
    assert saves(T0) == []
    planner.apply_state("a", TaskState.ACTIVE, T0 + secs(25))
    assert saves(T0 + secs(25)) == [(TaskState.ACTIVE, True, True)]
    assert planner.next_fire_of("a") == T0 + secs(30)  # fires while paused are not replayed
    planner.request("a", T0 + secs(26))
    planner.apply_state("a", TaskState.CANCELLED, T0 + secs(26))
    assert planner.state_of("a") is TaskState.CANCELLED and planner.running == 0
    planner.pause("a", T0 + secs(27))  # a local change is numbered: not from the store
    assert (TaskState.PAUSED, True, False) in saves(T0 + secs(27))


# --- claims lost to another replica ----------------------------------------------------------


LOST_CLAIMS: dict[str, Any] = {
    "scenario": scenarios(
        tasks=task_lists(min_tasks=1, max_tasks=4, periods=(5, 10, 15, 20)),
        verbs=["request", "submit"],
        max_actions=6,
        horizon=120,
    ),
    "data": st.data(),
}


@MEDIUM
@given(**LOST_CLAIMS)
def test_a_fire_claimed_by_another_replica_is_neither_run_nor_recorded_here(
    scenario: Scenario, data: st.DataObject
) -> None:
    """Another replica wins some claims: this planner neither runs nor records those
    fires, and each task still claims every later fire of its grid, on time."""
    lost = LostClaimsLeaveNoTrace()
    sim = new_sim(scenario, data, lag=False, observers=all_checks(lost))
    play(sim, scenario)
    assert_one_final_record_per_run(sim)
    won = {(c.task, c.fire_time) for _, c in sim.claims} - lost.lost
    for task in scenario.tasks:
        assert isinstance(task.trigger, Every)
        grid = [
            T0 + k * task.trigger.period
            for k in range(1, int(120 / task.trigger.period.total_seconds()) + 1)
        ]
        claimed = sorted(c.fire_time for _, c in sim.claims if c.task == task.name)
        assert claimed == grid, f"{task.name}: claimed {claimed}"
        fired = sorted(
            v.last.scheduled_at
            for v in sim.runs_of(task.name)
            if v.kind in (RunCause.SCHEDULE, RunCause.CATCH_UP)
        )
        assert fired == sorted(f for name, f in won if name == task.name), task.name
    seen("claim lost", bool(lost.lost))
    seen("fire run after a lost claim", lost.won_after_lost > 0)


# --- events due at one instant, in any order -------------------------------------------------


SAME_INSTANT: dict[str, Any] = {
    "scenario": scenarios(
        tasks=task_lists(min_tasks=2, max_tasks=5, periods=(None, 5, 10, 20)),
        min_actions=3,
        max_actions=12,
        times=st.sampled_from([0.0, 5.0, 10.0, 20.0, 30.0]),
        horizon=60,
        slots=(1, 3),
    ),
    "durations": st.lists(st.sampled_from([0, 5, 10, 2.5]), min_size=1, max_size=6),
    "data": st.data(),
}


@MEDIUM  # its interesting case in most examples: 150 suffice
@given(**SAME_INSTANT)
def test_events_due_at_one_instant_keep_every_invariant_in_any_order(
    scenario: Scenario, durations: list[float], data: st.DataObject
) -> None:
    """Attempts that end, requests and controls, and fires all due at one instant (runs
    of 0, 5 or 10 s; fires and actions on a 5 s grid) are handled in an order Hypothesis
    draws: every property holds whichever comes first."""
    note(f"durations {durations}")
    kinds: Iterator[Kind] = itertools.cycle(["ok", "fail", "ok", "cancel"])
    lengths = itertools.cycle(durations)

    def outcome(run: Run, now: datetime) -> Outcome:
        return Outcome(next(lengths), next(kinds))

    sim = new_sim(scenario, data, lag=False, outcome=outcome, observers=all_checks())
    play(sim, scenario)
    assert_one_final_record_per_run(sim)
    seen("same-instant events reordered", sim.reordered_instants > 0)
    event(f"instants reordered: {bucket(sim.reordered_instants)}")


# --- the floors: no property is vacuous ------------------------------------------------------

#: Each property test, its strategies, and the cases it must reach in at least half of
#: :data:`FLOOR`'s examples (the events it reports with :func:`seen`).
FLOORS: list[tuple[Callable[..., None], dict[str, Any], tuple[str, ...]]] = [
    (
        test_random_histories_keep_every_invariant,
        RANDOM_HISTORIES,
        ("overlap", "retry", "claim lost", "same-instant events reordered"),
    ),
    (test_priority_decides_who_starts_under_contention, PRIORITY, ("contention",)),
    (test_dependencies_gate_runs_in_random_dags, DEPENDENCIES, ("dependency",)),
    (test_retries_respect_count_and_delays, RETRIES, ("retry",)),
    (test_one_failing_alert_per_streak_and_one_recovered_after_it, ALERTS, ("failing streak",)),
    (test_overlap_policy_of_a_periodic_task, OVERLAP, ("overlap",)),
    (test_shutdown_cancels_what_has_not_started, SHUTDOWN, ("runs pending at shutdown",)),
    (
        test_a_removed_task_records_its_late_outcomes_and_nothing_else,
        REMOVAL,
        ("a run going at removal",),
    ),
    (
        test_a_fire_claimed_by_another_replica_is_neither_run_nor_recorded_here,
        LOST_CLAIMS,
        ("claim lost", "fire run after a lost claim"),
    ),
    (
        test_events_due_at_one_instant_keep_every_invariant_in_any_order,
        SAME_INSTANT,
        ("same-instant events reordered",),
    ),
    (
        test_a_restart_after_any_downtime_runs_and_records_what_the_table_says,
        RESTART,
        ("late fires",),
    ),
    (
        test_a_timer_that_wakes_late_runs_and_records_what_the_table_says,
        LATE_TIMER,
        ("late fires",),
    ),
    (
        test_cycles_are_refused_with_their_path_and_order_does_not_matter,
        {"data": st.data()},
        ("cycle", "unknown dependency"),
    ),
]


@pytest.mark.parametrize(
    ("test", "strategies", "cases"), FLOORS, ids=[test.__name__[5:] for test, _, _ in FLOORS]
)
def test_each_property_reaches_its_interesting_case_in_most_examples(
    test: Callable[..., None], strategies: dict[str, Any], cases: tuple[str, ...]
) -> None:
    """A property that holds because nothing happened proves nothing: the same body and
    strategies as the property, on :data:`FLOOR`'s derandomised examples, must reach each
    of its interesting cases in at least half of them."""
    global _tally
    tally: Counter[str] = Counter()
    body = test.hypothesis.inner_test  # type: ignore[attr-defined]

    @FLOOR
    @given(**strategies)
    def sample(**kwargs: Any) -> None:
        body(**kwargs)
        tally["examples"] += 1  # not an example Hypothesis gave up on (too much data)

    _tally = tally
    try:
        sample()
    finally:
        _tally = None
    for case in cases:
        assert tally[case] >= tally["examples"] / 2, f"{case}: {tally[case]} of {dict(tally)}"
