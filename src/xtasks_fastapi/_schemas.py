"""Response models of the manager API.

Pydantic lives here and only here: the core's frozen dataclasses are converted
explicitly by the ``from_*`` helpers, so the core never depends on pydantic.
"""

from __future__ import annotations

import json
import re
import reprlib
from dataclasses import fields
from datetime import datetime  # noqa: TC003 - pydantic resolves field types at runtime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from xtasks import Priority, RunCause, RunRecord, RunStatus, TaskState  # runtime: pydantic, fields

if TYPE_CHECKING:
    from xtasks import SchedulerStats, TaskInfo

__all__ = [
    "MAX_RESULT_JSON",
    "AttemptOut",
    "AuditOut",
    "AuditPage",
    "ErrorDetail",
    "HealthOut",
    "HourCount",
    "Overview",
    "ResultKind",
    "RunAccepted",
    "RunError",
    "RunOut",
    "RunPage",
    "TaskDetail",
    "TaskOverview",
    "TaskStateOut",
    "TaskSummary",
]

_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
#: Characters of a result's repr() in a run, at most (reprlib usually stops far sooner).
_MAX_RESULT_REPR = 1024
#: Characters of a result's JSON text a run shows, at most: a longer one is shown cut.
MAX_RESULT_JSON = 4096

#: What ``RunOut.result`` holds (``RunOut.result_kind``).
ResultKind = Literal["json", "repr", "cut"]


def _result_repr(result: object) -> str:
    """``repr()`` of a result, shortened; never raises: a ``repr()`` that raises (or an
    int too long to write out) gives ``<repr() raised ValueError: ...>``."""
    try:
        text = _repr.repr(result)
    except BaseException as exc:  # noqa: BLE001 - a task's result must not break a page
        try:
            return f"<repr() raised {type(exc).__name__}: {str(exc)[:200]}>"
        except BaseException:  # noqa: BLE001 - nor may the exception's own str()
            return "<repr() raised an exception>"
    if len(text) > _MAX_RESULT_REPR:  # reprlib cuts each part; nested ones add up
        text = f"{text[:_MAX_RESULT_REPR]}..."
    return _storable(text)


def _storable(text: str) -> str:
    """``text`` with any lone surrogate escaped: JSON cannot carry one."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _result_out(result: object) -> tuple[JsonValue, ResultKind | None]:
    """A run's result as the API shows it, with what it is; never raises.

    The JSON value itself when JSON can encode it in at most :data:`MAX_RESULT_JSON`
    characters (``"json"``); the start of its JSON text, cut marked, when longer
    (``"cut"``); its ``repr()``, shortened, when JSON cannot encode it (``"repr"``:
    a ``datetime``, a set, an object of the task's own, ``NaN``).
    """
    if result is None:
        return None, None
    try:
        # allow_nan=False: NaN and Infinity are not JSON, whatever Python's json writes.
        text = json.dumps(result, allow_nan=False, ensure_ascii=False)
    except BaseException:  # noqa: BLE001 - a task's object must not break a page
        return _result_repr(result), "repr"
    if len(text) > MAX_RESULT_JSON:
        mark = f" [... {len(text):,} characters of JSON, cut]"
        return _storable(text[: MAX_RESULT_JSON - len(mark)] + mark), "cut"
    if not text.isascii():
        # A lone surrogate (only a string holds one) becomes its escape, as history's
        # texts do: written ``\\udXXXX`` in the JSON text, so it reads back as six characters.
        text = _SURROGATE.sub(lambda found: f"\\\\u{ord(found[0]):04x}", text)
    # Read back: plain JSON values, whatever subclasses the task returned.
    value: JsonValue = json.loads(text)
    return value, "json"


_SURROGATE = re.compile("[\ud800-\udfff]")


class ErrorDetail(BaseModel):
    """Every error response: a message a person can act on."""

    detail: str


class RunError(BaseModel):
    """The last attempt's exception, as history keeps it."""

    type: str
    message: str
    traceback: str = ""

    model_config = ConfigDict(from_attributes=True)  # built from the core's ErrorInfo


class AttemptOut(BaseModel):
    """A failed attempt before a run's latest (the latest is the run's own fields)."""

    number: int = Field(description="1 for the first attempt")
    started_at: datetime
    finished_at: datetime = Field(description="when it raised or timed out")
    error: RunError

    model_config = ConfigDict(from_attributes=True)  # built from the core's AttemptRecord


class RunOut(BaseModel):
    """One run record."""

    id: str
    task: str
    status: RunStatus
    cause: RunCause
    scheduled_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    error: RunError | None = None
    reason: str | None = None
    result: JsonValue = Field(
        None,
        description="what the run returned: the JSON value itself when `result_kind` is "
        "`json`; a string otherwise (see `result_kind`)",
    )
    result_kind: ResultKind | None = Field(
        None,
        description="`json`: `result` is the value returned; `cut`: its JSON text was over "
        f"{MAX_RESULT_JSON:,} characters, `result` is its start, the cut marked; `repr`: "
        "JSON cannot encode it (a datetime, a set, an object), `result` is its repr(), "
        "shortened; null: no result",
    )
    replica: str = ""
    earlier_attempts: list[AttemptOut] = Field(
        default_factory=list,
        description="the attempts that failed before the latest one, oldest first (at most "
        f"the last {RunRecord.MAX_EARLIER_ATTEMPTS}; `attempts` counts them all)",
    )
    executor: str = Field(
        "",
        description="the executor the latest attempt went to (`async`, `sync`, `process`, "
        "or one a plugin adds, such as `celery`); empty for a run recorded before "
        "xtasks kept it",
    )
    worker: str | None = Field(
        None,
        description="where the latest attempt runs or ran, as its executor reported it "
        f"(a Celery worker's name, say; at most {RunRecord.MAX_WORKER_CHARS} characters); "
        "null when the executor does not say, or until a retry's attempt has started",
    )

    @classmethod
    def from_core(cls, record: RunRecord) -> RunOut:
        """Every field of ``record``; the error and the result as JSON can carry them."""
        values = {name: getattr(record, name) for name in _RUN_FIELDS}
        if values["error"] is not None:
            values["error"] = RunError.model_validate(values["error"])  # its attributes
        values["result"], values["result_kind"] = _result_out(values["result"])
        values["earlier_attempts"] = [
            AttemptOut.model_validate(attempt) for attempt in record.earlier_attempts
        ]
        return cls.model_validate(values)


#: The fields of :class:`~xtasks.RunRecord`: :meth:`RunOut.from_core` copies each.
_RUN_FIELDS = tuple(field.name for field in fields(RunRecord))

#: The fields of :class:`RunOut` that say how another one was converted: not the record's.
_RUN_DERIVED = frozenset({"result_kind"})


def _check_run_out() -> None:
    """Fail at import when RunOut and RunRecord disagree: a field added to the record
    must be added to the API model too (with a conversion if JSON cannot carry it)."""
    record, model = set(_RUN_FIELDS), set(RunOut.model_fields) - _RUN_DERIVED
    if record != model:
        raise TypeError(
            f"RunOut must have the fields of RunRecord: missing {sorted(record - model)}, "
            f"extra {sorted(model - record)}"
        )


_check_run_out()


class TaskSummary(BaseModel):
    """A task and where it stands, as ``GET /tasks`` lists it."""

    name: str
    plugin: str | None = Field(None, description="the plugin that provides it, if any")
    trigger: str = Field(description="the trigger in words, or 'on demand'")
    state: TaskState
    next_fire: datetime | None
    last_run_id: str | None
    last_run_status: RunStatus | None
    priority: Priority
    depends_on: list[str]
    consecutive_failures: int

    @classmethod
    def fields_from_core(cls, info: TaskInfo, plugin: str | None) -> dict[str, object]:
        task = info.task
        last = info.last_run
        return {
            "name": task.name,
            "plugin": plugin,
            "trigger": task.trigger.describe() if task.trigger is not None else "on demand",
            "state": info.state,
            "next_fire": info.next_fire,
            "last_run_id": last.id if last is not None else None,
            "last_run_status": last.status if last is not None else None,
            "priority": task.priority,
            "depends_on": list(task.depends_on),
            "consecutive_failures": info.consecutive_failures,
        }

    @classmethod
    def from_core(cls, info: TaskInfo, plugin: str | None) -> TaskSummary:
        return cls.model_validate(cls.fields_from_core(info, plugin))


class TaskDetail(TaskSummary):
    """A task's settings and a page of its history, newest first."""

    description: str
    tags: list[str]
    target: str
    mode: str
    max_retries: int
    timeout: float | None
    overlap: str
    enabled: bool
    history: list[RunOut]
    limit: int
    offset: int

    @classmethod
    def from_history(
        cls,
        info: TaskInfo,
        plugin: str | None,
        history: list[RunRecord],
        *,
        limit: int,
        offset: int,
    ) -> TaskDetail:
        task = info.task
        return cls.model_validate(
            {
                **cls.fields_from_core(info, plugin),
                "description": task.description,
                "tags": sorted(task.tags),
                "target": task.target,
                "mode": str(task.mode),
                "max_retries": task.max_retries,
                "timeout": task.timeout,
                "overlap": str(task.overlap),
                "enabled": task.enabled,
                "history": [RunOut.from_core(r) for r in history],
                "limit": limit,
                "offset": offset,
            }
        )


#: Present only when the action was done but its audit entry is missing.
_AUDIT_NOTE = Field(
    None,
    description="present only when the action was done but its audit entry could not be "
    "written: `not recorded: <why>`. The action stands: do not retry it.",
)


class RunAccepted(BaseModel):
    """A manual run was requested; follow it at ``GET /runs/{run_id}``."""

    run_id: str
    task: str
    audit: str | None = _AUDIT_NOTE


class TaskStateOut(BaseModel):
    """A task's state after pause, resume or cancel."""

    name: str
    state: TaskState
    audit: str | None = _AUDIT_NOTE


class RunPage(BaseModel):
    """A page of run records, newest first."""

    runs: list[RunOut]
    limit: int
    offset: int


class HealthOut(BaseModel):
    """Whether the scheduler can do its job. ``ok`` is false (HTTP 503) when not."""

    ok: bool
    running: bool
    store_reachable: bool
    store_error: str | None = None
    degraded_plugins: list[str]
    loop_lag_seconds: float = Field(
        description="how late the event loop woke the scheduler's periodic sleeper last "
        "time: high values mean a task blocks the loop (a synchronous call in async code)"
    )
    loop_lag_max_seconds: float = Field(description="the largest loop lag of the last minute")
    timer_lag_seconds: float = Field(
        description="how late the scheduler's timer handled its latest due fire"
    )
    queued: int = Field(description="runs ready to start, waiting for a worker or a slot")
    running_runs: int = Field(description="attempts executing now in this process")
    store_writable: bool = Field(
        description="false while the store's writes fail: records are kept and retried"
    )
    store_backlog: int = Field(description="run records and task states waiting to be written")
    store_write_failures: int = Field(description="store writes that failed since start")
    fires_unclaimed: int = Field(
        description="due fires the store could not claim; recorded missed once it can"
    )
    mismatched_tasks: list[str] = Field(
        description="tasks another replica sharing the store defines differently (function, "
        "trigger or options): each replica fires its own definition until one is deployed "
        "everywhere; the scheduler's log says how they differ"
    )

    @classmethod
    def from_stats(cls, stats: SchedulerStats, **fields: object) -> HealthOut:
        return cls.model_validate(
            {
                **fields,
                "loop_lag_seconds": stats.loop_lag,
                "loop_lag_max_seconds": stats.loop_lag_max,
                "timer_lag_seconds": stats.timer_lag,
                "queued": stats.queued,
                "running_runs": stats.running,
                "store_writable": stats.store_writable,
                "store_backlog": stats.store_backlog,
                "store_write_failures": stats.store_write_failures,
                "fires_unclaimed": stats.fires_unclaimed,
                "mismatched_tasks": list(stats.mismatched_tasks),
            }
        )


class AuditOut(BaseModel):
    """One manual action: who did what to which task, when, and how it ended."""

    model_config = ConfigDict(from_attributes=True)  # built from the core's AuditRecord

    id: str
    at: datetime
    actor: str = Field(description="the principal's name and the client address")
    action: str = Field(description="run, pause, resume or cancel")
    task: str
    outcome: str = Field(description="ok, refused (unknown task, paused...) or failed")
    detail: str | None = Field(
        None, description="the run id of an accepted run, or why the action failed"
    )


class AuditPage(BaseModel):
    """A page of the audit trail, newest first."""

    records: list[AuditOut]
    limit: int
    offset: int


class HourCount(BaseModel):
    """The runs of one task scheduled within one hour."""

    start: datetime = Field(description="the hour's start (UTC)")
    runs: int = Field(description="runs scheduled in the hour, whatever their status")
    failed: int = Field(description="of those, the failed and the lost")


class TaskOverview(BaseModel):
    """A task at a glance: its last 24 hours hour by hour, and its coming fires."""

    name: str
    state: TaskState
    runs_24h: int = Field(description="runs scheduled in the last 24 hours")
    failed_24h: int = Field(description="of those, the failed and the lost")
    complete: bool = Field(
        description="false when the task had more runs in 24 hours than the overview "
        "reads: the counts are then of the newest ones only"
    )
    hours: list[HourCount] = Field(description="the last 24 hours, oldest first")
    next_fires: list[datetime] = Field(
        description="the fires its trigger plans within the horizon, soonest first (none "
        "while paused or cancelled, or before the scheduler runs); jitter not included"
    )


class Overview(BaseModel):
    """Every task at a glance, for the manager page's charts."""

    now: datetime = Field(description="the scheduler's clock when this was read")
    horizon_hours: float = Field(description="how far ahead `next_fires` looks")
    tasks: list[TaskOverview]
