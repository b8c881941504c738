"""Run xtasks's tasks on an existing Celery cluster: :class:`CeleryExecutor`.

Installed with ``pip install xtasks-celery``::

    from xtasks import Cron, Scheduler, Task
    from xtasks_celery import CeleryExecutor

    from myapp.celery import app  # the application's Celery app

    scheduler = Scheduler(executors=[CeleryExecutor(app)])
    scheduler.add(Task("rapport", "myapp.tasks.rapport", executor="celery",
                       trigger=Cron("0 9 * * 1-5")))

Each attempt is sent to the workers by name (``send_task``), with the run id as the
Celery task id; its outcome comes back from the app's Redis result backend. Retries,
timeouts, overlap, dependencies, history, alerts and the manager page work as for any
task; with several replicas on a shared store, each fire is sent once.

Errors an attempt can fail with besides the task's own: :class:`CeleryTaskRevoked`,
:class:`CeleryWorkerLost`, :class:`CeleryResultError`.
"""

from __future__ import annotations

from ._errors import CeleryResultError, CeleryTaskRevoked, CeleryWorkerLost
from ._executor import CeleryExecutor

__all__ = ["CeleryExecutor", "CeleryResultError", "CeleryTaskRevoked", "CeleryWorkerLost"]
