"""How an attempt on Celery fails when the task itself did not raise."""

from __future__ import annotations

from xtasks import XtasksError

__all__ = ["CeleryResultError", "CeleryTaskRevoked", "CeleryWorkerLost"]


class CeleryTaskRevoked(XtasksError):
    """Celery revoked the task before it finished: someone revoked it (Flower,
    ``celery control revoke``), or its message expired in the queue."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"Celery task {task_id} was revoked before it finished (a revoke from outside "
            f"xtasks, or its message expired in the queue)"
        )
        self.task_id = task_id


class CeleryWorkerLost(XtasksError):
    """The worker running the attempt stopped answering: it died, or is cut off."""

    def __init__(self, task_id: str, worker: str, silent_for: float) -> None:
        super().__init__(
            f"Celery worker {worker} stopped answering pings {silent_for:.0f} s ago while "
            f"running task {task_id}; the attempt is counted as failed (the work may or "
            f"may not have finished there)"
        )
        self.task_id, self.worker = task_id, worker


class CeleryResultError(XtasksError):
    """The result backend holds an outcome xtasks cannot read."""
