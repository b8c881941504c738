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
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from datetime import datetime
    from types import TracebackType

    from ._task import Task

__all__ = [
    "MAX_EARLIER_ATTEMPTS",
    "MAX_MESSAGE_CHARS",
    "MAX_TRACEBACK_CHARS",
    "MAX_TYPE_CHARS",
    "MAX_WORKER_CHARS",
    "SHORT_ERROR_CHARS",
    "AttemptRecord",
    "AuditRecord",
    "ErrorInfo",
    "RunCause",
    "RunRecord",
    "RunStatus",
    "TaskInfo",
    "TaskRecord",
    "TaskState",
    "clip_end",
    "clip_start",
    "describe_failure",
    "safe_str",
    "storable",
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
    #: a late fire replayed per ``catch_up``: several fires were due at once (a restart, a
    #: blocked loop, a stalled store), or one alone was later than ``misfire_grace``
    CATCH_UP = "catch_up"


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


#: Characters of an error message kept in history: its start, then a mark of the cut.
MAX_MESSAGE_CHARS = 64 * 1024
#: Characters of a traceback kept in history: its end (where the error is), after a mark
#: of the cut.
MAX_TRACEBACK_CHARS = 64 * 1024
#: Characters of an exception type's name kept (a name is short; a hostile one is cut).
MAX_TYPE_CHARS = 1024
#: Characters of ``Type: message`` in a log line, an alert or a live event by default.
SHORT_ERROR_CHARS = 1024
#: Characters kept of one piece of a formatted traceback (a frame, a note, the line of
#: the exception and its message), so one huge message cannot push the frames out.
_TRACEBACK_PIECE_CHARS = 8 * 1024


def clip_end(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: its start, then how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit - len(f" [... {len(text):,} characters cut]")
    if keep <= 0:
        return text[:limit]
    return f"{text[:keep]} [... {len(text) - keep:,} characters cut]"


def clip_start(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: how much was cut, then its end."""
    if len(text) <= limit:
        return text
    keep = limit - len(f"[... {len(text):,} characters cut ...]\n")
    if keep <= 0:
        return text[len(text) - limit :]
    return f"[... {len(text) - keep:,} characters cut ...]\n{text[len(text) - keep :]}"


def _clip_middle(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: its start and its end around a mark."""
    if len(text) <= limit:
        return text
    mark = f" [... {len(text):,} characters cut ...] "
    half = (limit - len(mark)) // 2
    if half <= 0:
        return text[:limit]
    return f"{text[:half]} [... {len(text) - 2 * half:,} characters cut ...] {text[-half:]}"


def storable(text: str) -> str:
    """``text`` as UTF-8 can encode it: a lone surrogate (``"\\ud800"``, which ``str()``
    of a hostile object may hold) becomes its escape, so no store or channel chokes."""
    if text.isascii():  # the usual case, and the quickest check
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def describe_failure(what: str, exc: BaseException) -> str:
    """``<str() raised ValueError: why>``: the placeholder of a value that could not be
    had, itself bounded and built without calling anything that may raise again."""
    kind = _name_of(type(exc))
    try:
        why = storable(clip_end(_exact(str(exc)), 200))
    except BaseException:  # noqa: BLE001 - the placeholder must not fail in its turn
        why = ""
    return f"<{what} raised {kind}: {why}>" if why else f"<{what} raised {kind}>"


def _name_of(kind: type) -> str:
    """The qualified name of ``kind``; a metaclass may make ``__qualname__`` anything."""
    try:
        name = kind.__qualname__
    except BaseException:  # noqa: BLE001 - a property of a metaclass may raise
        name = None
    if not isinstance(name, str):
        name = type.__dict__["__qualname__"].__get__(kind, type)  # type's own slot
    return storable(clip_end(_exact(name), MAX_TYPE_CHARS))


def safe_str(value: object, what: str = "str()") -> str:
    """``str(value)``, or the placeholder of why it could not be had; never raises.

    Whatever the task's ``__str__`` raises is caught, ``SystemExit`` included: synchronous
    code cannot receive a cancellation, so nothing caught here belongs to the scheduler.
    """
    try:
        text = _exact(str(value))
    except BaseException as exc:  # noqa: BLE001 - a task's object must not break a record
        return describe_failure(what, exc)
    return text


def _exact(text: str) -> str:
    """``text`` as a plain ``str``: a subclass's own methods (``__len__``, slicing, ...)
    are the task's code, which the bounding must not run."""
    return text if type(text) is str else str.__str__(text)


def _user_traceback(exc: BaseException) -> TracebackType | None:
    """Where the traceback of ``exc`` leaves the machinery (see ``from_exception``)."""
    tb = exc.__traceback__
    while tb is not None and _is_machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    if tb is None and not _from_worker_process(exc):
        tb = exc.__traceback__  # the machinery's own error: keep all of it
    return tb


def _format_traceback(exc: BaseException, tb: TracebackType | None) -> str:
    """The formatted traceback, each piece of it bounded. When the exception itself cannot
    be formatted (its type's name raises, say), its frames are, under a line saying why."""
    try:
        pieces = _traceback.format_exception(type(exc), exc, tb)
    except BaseException as failure:  # noqa: BLE001 - the error must be recorded all the same
        why = describe_failure("formatting the exception", failure)
        try:
            pieces = ["Traceback (most recent call last):\n", *_traceback.format_tb(tb), why]
        except BaseException as again:  # noqa: BLE001 - nor may the frames stop it
            return describe_failure("formatting the traceback", again)
    return "".join(_clip_middle(piece, _TRACEBACK_PIECE_CHARS) for piece in pieces)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as recorded in history: it outlives the exception object.

    Bounded whoever builds it: ``type`` to :data:`MAX_TYPE_CHARS` characters, ``message``
    to :data:`MAX_MESSAGE_CHARS` (its start), ``traceback`` to :data:`MAX_TRACEBACK_CHARS`
    (its end, where the error is), each cut marked; text UTF-8 cannot encode is escaped.
    """

    type: str
    message: str
    traceback: str = ""

    #: The bounds above, as the class carries them for code that sees only the public API.
    MAX_MESSAGE_CHARS: ClassVar[int] = MAX_MESSAGE_CHARS
    MAX_TRACEBACK_CHARS: ClassVar[int] = MAX_TRACEBACK_CHARS

    def __post_init__(self) -> None:
        # Cheap when within bounds (a length and an encode check), and it makes the bound
        # hold for every record, however built: a store never writes more than this.
        for name, clip, limit in _BOUNDS:
            value = getattr(self, name)
            if isinstance(value, str):
                bounded = storable(clip(value, limit))
                if bounded is not value:
                    object.__setattr__(self, name, bounded)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Capture type, message and formatted traceback of ``exc``; never raises.

        The traceback starts at the first frame outside the machinery that called the
        task (xtasks, anyio, asyncio, threads), so history shows the user's code first.
        A ``str()`` or a type name that fails, or a traceback that cannot be formatted,
        leaves a placeholder saying why (``<str() raised ValueError: ...>``) in its place.
        """
        try:
            tb = _user_traceback(exc)
        except BaseException:  # noqa: BLE001 - hostile notes or attributes: format it all
            tb = None
        return cls(
            type=_name_of(type(exc)),
            message=safe_str(exc),
            traceback=_format_traceback(exc, tb),
        )

    def short(self, limit: int = SHORT_ERROR_CHARS) -> str:
        """``Type: message`` in at most ``limit`` characters, cut marked: what a log line
        or a notification has room for."""
        return clip_end(str(self), limit)

    def short_message(self, limit: int = SHORT_ERROR_CHARS) -> str:
        """The message in at most ``limit`` characters, cut marked."""
        return clip_end(self.message, limit)

    def traceback_tail(self, lines: int, limit: int | None = None) -> str:
        """The last ``lines`` lines of the traceback (where the error is), marked when
        earlier ones were left out, in at most ``limit`` characters (its end) when given:
        what a page or an alert has room for."""
        all_lines = self.traceback.rstrip("\n").splitlines()
        if len(all_lines) <= lines:
            tail = "\n".join(all_lines)
        else:
            left_out = len(all_lines) - lines
            tail = "\n".join(
                [f"[... {left_out} earlier line(s) left out ...]", *all_lines[-lines:]]
            )
        return tail if limit is None else clip_start(tail, limit)

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


_BOUNDS = (
    ("type", clip_end, MAX_TYPE_CHARS),
    ("message", clip_end, MAX_MESSAGE_CHARS),
    ("traceback", clip_start, MAX_TRACEBACK_CHARS),
)


#: Earlier attempts a run record keeps (:attr:`RunRecord.earlier_attempts`): the last
#: ones. A run allowed more retries still counts every attempt in ``attempts``; 20 errors
#: of at most 64 KiB message and 64 KiB traceback each bound what one record holds.
MAX_EARLIER_ATTEMPTS = 20

#: The longest :attr:`RunRecord.worker` kept: an executor's name for where an attempt
#: runs (a Celery worker's ``celery@host1``) is short; a longer one is cut to this.
MAX_WORKER_CHARS = 200


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One failed attempt of a run, before the one its record describes: so that history
    shows why a run that succeeded at its third attempt needed three."""

    number: int  #: 1 for the first attempt
    started_at: datetime
    finished_at: datetime  #: when it raised or timed out
    error: ErrorInfo  #: bounded as every ``ErrorInfo`` is


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One run as history shows it: a snapshot taken at each change of status.

    The latest attempt is described by the record's own fields (``error``, and
    ``finished_at`` once final; ``started_at`` is the first attempt's start); those
    before it, each of which failed (only a failure is retried), by
    :attr:`earlier_attempts`, each with its own times and error.
    """

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
    #: The attempts that failed before the latest one, oldest first: at most the last
    #: :data:`MAX_EARLIER_ATTEMPTS`. While a retry waits (``queued``), the failed attempt
    #: it follows is here already, and still in ``error``. The one empty tuple for a run
    #: that never retried.
    earlier_attempts: tuple[AttemptRecord, ...] = ()
    #: The name of the executor the run's latest attempt goes (or went) to: the task's
    #: executor (``"async"``, ``"sync"``, ``"process"``, or one a plugin registered, such
    #: as ``"celery"``), set from the moment the run is requested. ``""`` in a record
    #: written by an xtasks that did not keep it.
    executor: str = ""
    #: Where the latest attempt runs or ran, as its executor reported it when the attempt
    #: began (a Celery worker's name, ``"celery@host1"``; at most
    #: :data:`MAX_WORKER_CHARS` characters). ``None`` for an executor that does not say
    #: (the built-ins), and while a retry waits until its executor reports the new start.
    worker: str | None = None

    #: The bounds above, as the class carries them for code that sees only the public API.
    MAX_EARLIER_ATTEMPTS: ClassVar[int] = MAX_EARLIER_ATTEMPTS
    MAX_WORKER_CHARS: ClassVar[int] = MAX_WORKER_CHARS

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
    #: How the replica that registered the task last defined it (function, trigger,
    #: options, in words): a replica starting with another definition of the same name
    #: says so. ``None`` in a save keeps the stored one.
    definition: str | None = None


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
