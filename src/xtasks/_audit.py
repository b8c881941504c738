"""The audit trail: one record per manual action taken with ``by=``, refused or not.

Kept apart from the Scheduler because its rule is subtle: an action that was done
stands even when its record cannot be written (the caller must hear it, so the
:class:`StoreError` is raised), while a refusal's own exception always wins.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

from ._errors import (
    AuditWriteError,
    SchedulerStateError,
    StoreError,
    TaskNotFoundError,
    TaskStateError,
)
from ._runs import AuditRecord

if TYPE_CHECKING:
    from datetime import datetime
    from types import TracebackType

    from .abc import Store

__all__ = ["AUDITED", "Audited", "audit_refusal", "write_audit"]

_log = logging.getLogger("xtasks")

#: ``Scheduler`` actions written to the audit trail (``trigger`` is ``"run"``).
AUDITED = frozenset({"run", "pause", "resume", "cancel"})


async def write_audit(
    store: Store, by: str, action: str, task: str, at: datetime, outcome: str, detail: str | None
) -> None:
    """Record an action that was done.

    :raises AuditWriteError: the record could not be written; the action was done all
        the same (the error names the run), so the caller knows what stands.
    """
    assert action in AUDITED
    record = AuditRecord(at=at, actor=by, action=action, task=task, outcome=outcome, detail=detail)
    try:
        await store.add_audit(record)
    except StoreError as exc:
        error = AuditWriteError(action, task, detail if action == "run" else None, str(exc))
        _log.error("%s (asked by %r)", error, by)
        raise error from exc


async def audit_refusal(
    store: Store, by: str, action: str, task: str, at: datetime, exc: Exception
) -> None:
    """Record an action that raised ``exc``; a store failure here is only logged.

    The outcome is ``"refused"`` for an unknown task or a task in the wrong state,
    ``"failed"`` for anything else. The caller raises ``exc`` afterwards.
    """
    outcome = "refused" if isinstance(exc, (TaskNotFoundError, TaskStateError)) else "failed"
    record = AuditRecord(
        at=at, actor=by, action=action, task=task, outcome=outcome, detail=str(exc)
    )
    try:
        await store.add_audit(record)
    except StoreError:
        _log.exception(
            "%s %r by %r was %s; its audit record could not be written", action, task, by, outcome
        )


@final
class Audited:
    """``async with Audited(...)`` around a manual action: records its outcome.

    With ``by=None`` it records nothing (the hot path). A
    :class:`SchedulerStateError` (the scheduler is not running) is not an action on
    the task and is not recorded. Set :attr:`detail` (the run id) inside the block.
    """

    def __init__(self, store: Store, by: str | None, action: str, task: str, at: datetime) -> None:
        self.store, self.by, self.action, self.task, self.at = store, by, action, task, at
        self.detail: str | None = None

    async def __aenter__(self) -> Audited:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        by = self.by
        if by is None:
            return
        if exc is None:
            await write_audit(self.store, by, self.action, self.task, self.at, "ok", self.detail)
        elif isinstance(exc, Exception) and not isinstance(exc, SchedulerStateError):
            await audit_refusal(self.store, by, self.action, self.task, self.at, exc)
