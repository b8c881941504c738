"""What the planner keeps about live runs and registered tasks, between commands.

Plain slotted objects, mutated only by the planner. Nothing outside the planner holds a
:class:`Run`: the runtime sees run ids and :class:`~xtasks.RunRecord` snapshots.
"""

from __future__ import annotations

from collections import deque
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Final, cast, final

from ._frozen import writable_twin
from ._runs import RunCause, RunRecord, RunStatus, TaskRecord, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping
    from datetime import datetime

    from ._runs import AttemptRecord, ErrorInfo
    from ._task import Task
    from ._triggers import Trigger

__all__ = ["Run", "TaskEntry"]

#: The fields of a record that a :class:`Run` holds under the same name: every field of
#: :class:`RunRecord` but the two the run gets from elsewhere (its task's name, the
#: replica). Derived, so a new record field is one edit in ``_runs`` plus its slot here.
_COPIED: Final = tuple(f.name for f in fields(RunRecord) if f.name not in ("task", "replica"))


def _snapshot_function() -> Callable[[Run, str], RunRecord]:
    """``Run.record``, written out from :data:`_COPIED` once at import (as ``dataclasses``
    writes ``__init__``): a snapshot is taken three times per run, and straight-line
    keyword arguments cost half what a loop over the fields does."""
    copied = ", ".join(f"{name}=run.{name}" for name in _COPIED)
    source = (
        "def record(run, replica):\n"
        f"    return RunRecord(task=run.entry.task.name, replica=replica, {copied})\n"
    )
    namespace: dict[str, Any] = {"RunRecord": RunRecord}
    exec(source, namespace)  # noqa: S102 - built from our own dataclass's field names only
    return cast("Callable[[Run, str], RunRecord]", namespace["record"])


@final
class Run:
    """A run as the planner tracks it while it lives. History sees :class:`RunRecord`."""

    __slots__ = (
        "args",
        "attempt_started_at",
        "attempts",
        "cause",
        "dependents",
        "due",
        "earlier_attempts",
        "entry",
        "error",
        "executor",
        "finished_at",
        "id",
        "in_ready",
        "kwargs",
        "reason",
        "result",
        "scheduled_at",
        "started_at",
        "status",
        "token",
        "waiting_on",
        "worker",
    )

    def __init__(
        self, run_id: str, entry: TaskEntry, cause: RunCause, scheduled_at: datetime
    ) -> None:
        self.id = run_id
        self.entry = entry
        self.cause = cause
        self.status = RunStatus.QUEUED
        self.scheduled_at = scheduled_at
        self.due = scheduled_at
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.attempts = 0
        self.attempt_started_at: datetime | None = None  #: start of the latest attempt
        # Most runs never retry: they all share the one empty tuple.
        self.earlier_attempts: tuple[AttemptRecord, ...] = ()
        self.error: ErrorInfo | None = None
        self.reason: str | None = None
        self.result: Any = None
        # The task's own string: no object per run.
        self.executor: str = entry.task.runs_on
        self.worker: str | None = None  #: where the latest attempt runs, once reported
        self.args: tuple[Any, ...] = entry.task.args
        self.kwargs: Mapping[str, Any] = entry.task.kwargs
        # Most runs have no dependencies: no set or list until one comes.
        self.waiting_on: set[str] | None = None  #: live runs it waits for
        self.dependents: list[Run] | None = None  #: runs waiting for it
        self.token = 0  # bumped on every change, so stale heap entries are recognised
        self.in_ready = False  # has a live entry in the ready queue

    @property
    def task(self) -> Task:
        return self.entry.task

    def record(self, replica: str) -> RunRecord:
        """A snapshot of the run as history shows it."""
        return _snapshot(self, replica)

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.entry.task.name} {self.status.value}>"


@final
class TaskEntry:
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
        # Live runs, in creation order: made by the first (an idle task keeps none); a
        # dict, so that a run ends in O(1) however many runs of the task wait.
        self.active: Collection[Run] = ()
        self.queued_behind: Run | None = None  # overlap="queue": the one run held back
        # Catch-up replays waiting their turn, oldest first; made by the first: most tasks
        # never have one, and an empty deque costs 600 bytes.
        self.replays: deque[Run] | None = None
        self.releasing = False  # the planner is opening the next run(s) of this task
        self.removed = False  # unregistered: its runs still going end, nothing follows
        self.failures = 0
        self.alerting = False
        self.anchor: datetime | None = None  # registration time: origin of relative grids
        self.last_fire: datetime | None = None
        self.next_fire: datetime | None = None
        self.token = 0

    def add_active(self, run: Run) -> None:
        """``run`` is live."""
        if isinstance(self.active, dict):
            self.active[run] = None
        else:
            self.active = {run: None}

    def drop_active(self, run: Run) -> None:
        """``run`` is no longer live (nothing happens if it was not)."""
        if isinstance(self.active, dict):
            self.active.pop(run, None)

    def hold_replay(self, run: Run) -> None:
        """Queue a catch-up replay behind the others."""
        if self.replays is None:
            self.replays = deque()
        self.replays.append(run)

    def task_record(self, definition: str | None = None) -> TaskRecord:
        record = _WritableRecord()  # start-up makes one per task: see ._frozen
        record.state = self.state
        record.last_fire = self.last_fire
        record.consecutive_failures = self.failures
        record.alerting = self.alerting
        record.anchor = self.anchor
        record.definition = definition
        record.__class__ = TaskRecord
        return record  # type: ignore[no-any-return]  # a TaskRecord now


_snapshot: Final = _snapshot_function()
_WritableRecord = writable_twin(TaskRecord)
