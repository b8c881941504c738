"""The records of what happened: runs, their errors, manual actions (the audit trail)
and the persisted state of a task.

Plain frozen, slotted data: these cross the planner, the runtime, the stores and the
API, so they are cheap to build and never validated again after construction.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import traceback as _traceback
import uuid
import warnings
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from ._task import Task

__all__ = [
    "AuditRecord",
    "ErrorInfo",
    "RunCause",
    "RunRecord",
    "RunStatus",
    "TaskInfo",
    "TaskRecord",
    "TaskState",
]


class RunStatus(StrEnum):
    """Where a run is in its life. The last six are final."""

    QUEUED = "queued"  #: ready to start, or waiting for its retry delay or overlap turn
    WAITING = "waiting"  #: waiting for the runs of its dependencies to succeed
    RUNNING = "running"  #: an attempt is executing
    SUCCEEDED = "succeeded"  #: an attempt returned
    FAILED = "failed"  #: the last allowed attempt raised or timed out
    CANCELLED = "cancelled"  #: cancelled by shutdown or ``Scheduler.cancel``; never retried
    SKIPPED = "skipped"  #: not run: overlap policy, or an upstream dependency did not succeed
    MISSED = "missed"  #: a fire that passed while it could not run (catch-up policy)
    LOST = "lost"  #: its owner replica went silent past its lease

    @property
    def is_final(self) -> bool:
        """Whether the run can change no more."""
        return self not in _LIVE


_LIVE = frozenset({RunStatus.QUEUED, RunStatus.WAITING, RunStatus.RUNNING})


class RunCause(StrEnum):
    """Why a run exists."""

    SCHEDULE = "schedule"  #: a due fire of the task's trigger
    MANUAL = "manual"  #: ``Scheduler.trigger`` (or the manager API)
    DEPENDENCY = "dependency"  #: pulled in by a dependent's run
    SUBMIT = "submit"  #: ``Scheduler.submit``
    CATCH_UP = "catch_up"  #: a fire missed while no scheduler ran, replayed per ``catch_up``


class TaskState(StrEnum):
    """Whether a task fires. Persisted in the store, so it survives restarts."""

    ACTIVE = "active"  #: fires on schedule and accepts manual runs
    PAUSED = "paused"  #: no fires, no manual runs; runs already going finish
    CANCELLED = "cancelled"  #: like paused, and its queued and running runs were cancelled


def _package_dirs(*names: str) -> list[Path]:
    """Where these packages are installed, found without importing them."""
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found += [Path(location) for location in spec.submodule_search_locations]
    return found


#: Heads the note carrying the traceback of an exception raised in a worker process,
#: which pickling would otherwise lose (written by ``_executors``).
WORKER_TRACEBACK = "Traceback in the worker process (most recent call last):"

_STDLIB = Path(threading.__file__).parent
#: Where the code between the scheduler and a task's function lives.
_MACHINERY = (
    *(
        f"{directory}{os.sep}"
        for directory in (
            Path(__file__).parent,
            _STDLIB / "asyncio",
            _STDLIB / "concurrent",
            *_package_dirs("anyio", "trio", "outcome"),
        )
    ),
    threading.__file__,
)


def _is_machinery(filename: str) -> bool:
    return filename.startswith(_MACHINERY)


def _from_worker_process(exc: BaseException) -> bool:
    """Whether ``exc`` carries the traceback of a worker process (see ``_executors``)."""
    return any(note.startswith(WORKER_TRACEBACK) for note in getattr(exc, "__notes__", ()))


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as recorded in history: it outlives the exception object."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Capture type, message and formatted traceback of ``exc``.

        The traceback starts at the first frame outside the machinery that called the
        task (xtasks, anyio, asyncio, threads), so history shows the user's code first.
        """
        tb = exc.__traceback__
        while tb is not None and _is_machinery(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        if tb is None and not _from_worker_process(exc):
            tb = exc.__traceback__  # the machinery's own error: keep all of it
        lines = _traceback.format_exception(type(exc), exc, tb)
        return cls(type=type(exc).__qualname__, message=str(exc), traceback="".join(lines))

    def traceback_tail(self, lines: int) -> str:
        """The last ``lines`` lines of the traceback (where the error is), marked when
        earlier ones were left out: what a page or an alert has room for."""
        all_lines = self.traceback.rstrip("\n").splitlines()
        if len(all_lines) <= lines:
            return "\n".join(all_lines)
        left_out = len(all_lines) - lines
        return "\n".join([f"[... {left_out} earlier line(s) left out ...]", *all_lines[-lines:]])

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One run as history shows it: a snapshot taken at each change of status."""

    id: str
    task: str
    status: RunStatus
    cause: RunCause  #: why the run exists
    scheduled_at: datetime  #: the fire time, or when the run was requested
    started_at: datetime | None = None  #: start of the first attempt
    finished_at: datetime | None = None
    attempts: int = 0
    error: ErrorInfo | None = None  #: the last attempt's error
    reason: str | None = None  #: why skipped, missed, cancelled or lost
    result: Any = None
    replica: str = ""

    def evolve(self, **changes: Any) -> RunRecord:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)

    @property
    def trigger(self) -> RunCause:
        """Deprecated alias of :attr:`cause` (the word "trigger" names the schedule)."""
        warnings.warn(
            "RunRecord.trigger is deprecated; use RunRecord.cause",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.cause


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord:
    """What a store keeps about a task between runs and across restarts."""

    state: TaskState = TaskState.ACTIVE
    last_fire: datetime | None = None  #: the latest fire time handled (run, skipped or missed)
    consecutive_failures: int = 0
    alerting: bool = False  #: a ``failing`` alert was sent and no success followed yet
    #: When the task was first registered anywhere: the grid origin of an ``Every`` without
    #: ``start``, shared by every replica and kept across restarts. Set once, never moved.
    anchor: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInfo:
    """A task and where it stands, as ``Scheduler.describe`` returns it."""

    task: Task
    state: TaskState
    next_fire: datetime | None
    last_run: RunRecord | None
    consecutive_failures: int


def _audit_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One manual action on a task, as the audit trail keeps it.

    Written by ``Scheduler.trigger``, ``pause``, ``resume`` and ``cancel`` when they are
    given ``by=`` (the manager API does); read with ``Scheduler.audit``. An action the
    scheduler refused is recorded too, with its outcome.
    """

    id: str = field(default_factory=_audit_id)  #: unique: a uuid4, in hex
    at: datetime  #: when the action was asked for: aware UTC, from the scheduler's clock
    actor: str  #: who asked, free text from the caller (``"manager-token@127.0.0.1"``)
    action: str  #: ``"run"``, ``"pause"``, ``"resume"`` or ``"cancel"``
    task: str  #: the task's name, as the caller gave it (it may name no task)
    #: ``"ok"``; ``"refused"`` (unknown task, or a paused or cancelled one asked to run);
    #: ``"failed"`` (any other error)
    outcome: str
    #: the run id of an accepted run; the error message of a refused or failed action
    detail: str | None = None
