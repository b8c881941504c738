"""The run log: one line per failed attempt, final failure, recovery, skip and miss.

A failing task must be visible in the log as it fails, not at shutdown. The planner is
pure, so the lines are written here, by an event subscriber reading the records the
runtime publishes (after the store has them): a record back to ``queued`` with an error
is a failed attempt, ``failed`` a run that used all its attempts, a success after
failures a recovery. Every line goes to the ``xtasks.runs`` logger, with the task, the
run id and, for errors, ``Type: message`` cut to :data:`SHORT_ERROR_CHARS` characters
(history keeps the whole error and its traceback).

``attach(scheduler)`` (called as the scheduler starts) subscribes the run log once per
scheduler and calls :func:`ensure_log_handler`: a process that configured no logging at
all (plain ``uvicorn app:app`` configures only uvicorn's loggers) would otherwise show
xtasks's warnings through Python's last-resort handler, without time, and lose INFO.
"""

from __future__ import annotations

import logging
import sys
import weakref
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Final, TextIO, final

from ._events import RunChanged
from ._runs import SHORT_ERROR_CHARS, RunStatus

if TYPE_CHECKING:
    from datetime import datetime

    from ._runs import RunRecord
    from ._scheduler import Scheduler
    from ._task import Task

__all__ = [
    "LOG_FORMAT",
    "RUN_LOGGER",
    "RunLog",
    "attach",
    "ensure_log_handler",
]

#: The logger every run line goes to.
RUN_LOGGER: Final = "xtasks.runs"
#: The lines of the handler :func:`ensure_log_handler` adds: with their time.
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Tasks whose failing streak the run log remembers (to log their recovery), at most.
_MAX_STREAKS = 10_000

_attached: weakref.WeakSet[Scheduler] = weakref.WeakSet()


def attach(scheduler: Scheduler) -> None:
    """Log ``scheduler``'s runs on ``xtasks.runs`` (once, however often it starts), and
    make sure the lines show somewhere (:func:`ensure_log_handler`)."""
    if scheduler not in _attached:
        _attached.add(scheduler)
        scheduler.subscribe(RunLog(scheduler), types=RunChanged)
    ensure_log_handler()


@final
class RunLog:
    """The subscriber: ``RunChanged`` records in, log lines out. Cheap on the hot path:
    a status test per event, and formatting only for the lines written."""

    def __init__(self, scheduler: Scheduler, logger: logging.Logger | None = None) -> None:
        self._scheduler = scheduler
        self.logger = logger or logging.getLogger(RUN_LOGGER)
        #: Failed runs per task since its last success, as seen here (for recoveries).
        self._streaks: dict[str, int] = {}

    def __call__(self, event: RunChanged) -> None:
        record = event.record
        status = record.status
        if status is RunStatus.QUEUED:
            if record.error is not None and _retry_waits(record):
                self._attempt_failed(record)
        elif status is RunStatus.FAILED:
            self._failed(record)
        elif status is RunStatus.SUCCEEDED:
            if record.attempts > 1 or record.task in self._streaks:
                self._recovered(record)
        elif status is RunStatus.SKIPPED or status is RunStatus.MISSED:
            self._not_run(record)

    def _attempt_failed(self, record: RunRecord) -> None:
        assert record.error is not None
        task = self._task(record.task)
        due = self._retry_due(record, task)
        if due is None:
            when = "a retry follows"
        else:
            wait = max((due - self._scheduler.clock.now()).total_seconds(), 0.0)
            when = f"retry in {_duration(wait)} (at {_time(due)})"
        self.logger.warning(
            "task %r attempt %s failed: %s; %s [run %s]",
            record.task,
            _of(record.attempts, task),
            record.error.short(SHORT_ERROR_CHARS),
            when,
            record.id,
            extra=_extra(record),
        )

    def _failed(self, record: RunRecord) -> None:
        streaks = self._streaks
        if record.task in streaks or len(streaks) < _MAX_STREAKS:
            streaks[record.task] = streaks.get(record.task, 0) + 1
        error = record.error.short(SHORT_ERROR_CHARS) if record.error is not None else "?"
        self.logger.error(
            "task %r failed after %d attempt(s): %s [run %s]",
            record.task,
            record.attempts,
            error,
            record.id,
            extra=_extra(record),
        )

    def _recovered(self, record: RunRecord) -> None:
        failed_runs = self._streaks.pop(record.task, 0)
        what = []
        if record.attempts > 1:
            what.append(f"on attempt {_of(record.attempts, self._task(record.task))}")
        if failed_runs:
            what.append(f"after {failed_runs} failed run(s): recovered")
        self.logger.info(
            "task %r succeeded %s [run %s]",
            record.task,
            ", ".join(what),
            record.id,
            extra=_extra(record),
        )

    def _not_run(self, record: RunRecord) -> None:
        reason = record.reason or "no reason recorded"
        if reason == "overlap":
            reason = "overlap: a run of it is still going"
        self.logger.info(
            "task %r %s: %s [run %s]",
            record.task,
            record.status.value,
            reason,
            record.id,
            extra=_extra(record),
        )

    def _task(self, name: str) -> Task | None:
        """The task of that name: registered, or the last one submitted under it."""
        task = self._scheduler.tasks.get(name)
        if task is None:  # a submission: the planner keeps its task by name
            submitted = getattr(self._scheduler._planner, "_adhoc", {}).get(name)
            task = getattr(submitted, "task", None)
        return task

    def _retry_due(self, record: RunRecord, task: Task | None) -> datetime | None:
        """When the next attempt is due: the planner's own time while it holds the run
        (jitter included), else the task's policy counted from now."""
        run = self._scheduler._planner.get_run(record.id)  # the core's own planner
        if run is not None:
            task = run.task
            if run.status is RunStatus.QUEUED and run.attempts == record.attempts:
                return run.due
        if task is None:
            return None
        delay = task.retry_delay * task.retry_backoff ** (record.attempts - 1)
        return self._scheduler.clock.now() + timedelta(seconds=delay)


def _retry_waits(record: RunRecord) -> bool:
    """A ``queued`` record with an error is a retry waiting after its latest attempt
    failed, or -- for an executor that reports starts -- the next attempt sent and not
    started yet, which must not be logged as a failure again."""
    earlier = record.earlier_attempts
    return bool(earlier) and earlier[-1].number == record.attempts


def _of(attempt: int, task: Task | None) -> str:
    """``2/4``: the attempt and how many the task allows (``2`` when unknown)."""
    return f"{attempt}/{task.max_retries + 1}" if task is not None else str(attempt)


def _extra(record: RunRecord) -> dict[str, object]:
    """Fields a structured log handler can use without parsing the line."""
    return {
        "xtasks_task": record.task,
        "xtasks_run_id": record.id,
        "xtasks_status": record.status.value,
        "xtasks_attempts": record.attempts,
    }


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- a handler when the application configured none ------------------------------------


@final
class _FallbackHandler(logging.StreamHandler[TextIO]):
    """Writes xtasks's records to stderr, with their time, while the application has
    configured no logging; it retires (and gives the ``xtasks`` logger its level back)
    the first time it sees a handler above it, so no line is ever written twice."""

    def __init__(self, logger: logging.Logger, level_was: int) -> None:
        super().__init__(sys.stderr)
        self._logger = logger
        self._level_was = level_was
        self.name = "xtasks-fallback"
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def handle(self, record: logging.LogRecord) -> bool:
        if _handled_above(self._logger):  # the application configured logging since
            self._retire()
            return False
        return bool(super().handle(record))

    def _retire(self) -> None:
        logger = self._logger
        logger.removeHandler(self)
        if self._level_was == logging.NOTSET and logger.level == logging.INFO:  # ours
            logger.setLevel(logging.NOTSET)


def ensure_log_handler(logger: logging.Logger | None = None) -> logging.Handler | None:
    """Give the ``xtasks`` logger a stderr handler at INFO, with timestamps, when the
    application configured no logging: no handler on it, on any logger above it (the
    root) or below it (``xtasks.runs``...). Returns the handler added, or ``None``.

    It never overrides a configuration: it adds nothing when one exists, and retires
    when one appears later (``logging.basicConfig`` after the scheduler started).
    """
    logger = logger or logging.getLogger("xtasks")
    if logger.hasHandlers() or _handled_below(logger):
        return None
    level_was = logger.level
    if level_was == logging.NOTSET:  # a level set by the application stays
        logger.setLevel(logging.INFO)
    handler = _FallbackHandler(logger, level_was)
    logger.addHandler(handler)
    return handler


def _handled_above(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` reaches a handler of an ancestor (the root's)."""
    parent = logger.parent if logger.propagate else None
    while parent is not None:
        if parent.handlers:
            return True
        parent = parent.parent if parent.propagate else None
    return False


def _handled_below(logger: logging.Logger) -> bool:
    """Whether the application gave a handler to a logger under ``logger``."""
    prefix = f"{logger.name}."
    return any(
        isinstance(child, logging.Logger) and child.handlers
        for name, child in list(logging.Logger.manager.loggerDict.items())
        if name.startswith(prefix)
    )
