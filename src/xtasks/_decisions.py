"""Decisions: the only way the planner speaks to the world.

Every planner command (a fire is due, an attempt ended, pause, ...) appends decisions;
the runtime drains them after each command and carries each out. The union is closed:
the runtime dispatches with ``match`` and ``assert_never``, so a new kind of decision
cannot be forgotten there.

Plain slotted dataclasses, not frozen ones: several are built for every run, and a frozen
one costs a ``object.__setattr__`` per field (3% of a run's instructions). Nothing
changes a decision once it is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from ._events import Alert
    from ._runs import RunCause, RunRecord, TaskRecord
    from ._task import Task

__all__ = [
    "Attempt",
    "CancelAttempt",
    "ClaimFire",
    "Decision",
    "RecordRun",
    "SaveTask",
    "SendAlert",
    "StartAttempt",
]


@dataclass(slots=True)
class ClaimFire:
    """Claim ``(task, fire_time)`` in the store, then call ``Planner.fire_claimed``.

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
    #: grid arithmetic, past the counting limit); the range is exact all the same
    missed_more: bool = False
    #: why they were missed, when it is not the task's ``catch_up`` (the store was down)
    missed_because: str | None = None


@dataclass(slots=True)
class RecordRun:
    """Write this snapshot to the store, then tell subscribers."""

    record: RunRecord


@dataclass(slots=True)
class StartAttempt:
    """Execute one attempt of run ``run_id``: ``task.func(*args, **kwargs)``.

    Also what an executor receives (public as :class:`xtasks.Attempt`): the decision is
    handed over as is, so a run costs no extra object. Always follows the
    :class:`RecordRun` that stores the run ``running`` (or, for an executor that
    ``reports_start``, ``queued`` until :meth:`started`). The outcome goes back with
    ``Planner.attempt_succeeded``, ``attempt_failed`` or ``attempt_cancelled``.
    """

    run_id: str
    task: Task
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    number: int  #: 1 for the first attempt, 2 for the first retry, ...
    #: Set by the runtime for an executor that ``reports_start``: records the run running.
    on_started: Callable[[str, str | None], None] | None = None

    def started(self, where: str | None = None) -> None:
        """The work began (``where``: a worker's name, say). Only executors that
        ``reports_start`` need call it; the run is then recorded ``running``. Called
        again, or for an executor that does not report, it does nothing. Call it on the
        scheduler's event loop (from another thread: ``anyio.from_thread.run_sync``)."""
        report = self.on_started
        if report is not None:
            self.on_started = None
            report(self.run_id, where)


#: The public name of an attempt, as executors see it.
Attempt = StartAttempt


@dataclass(slots=True)
class CancelAttempt:
    """Cancel the running attempt of this run; it is then reported cancelled."""

    run_id: str
    reason: str


@dataclass(slots=True)
class SendAlert:
    """Deliver this alert to the task's alert channels."""

    alert: Alert


@dataclass(slots=True)
class SaveTask:
    """Persist a task's progress; ``state_changed`` when pause/resume/cancel changed its
    state, which then is written as a numbered change for the other replicas to apply,
    unless ``from_store``: the change came from another replica and is stored already."""

    task: str
    record: TaskRecord
    state_changed: bool = False
    from_store: bool = False


Decision = ClaimFire | RecordRun | StartAttempt | CancelAttempt | SendAlert | SaveTask
